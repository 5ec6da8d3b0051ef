"""Where GRPO's time goes on the tiny base (2x2 jigsaw, CPU): seconds per optimiser step split into generation, the
reference model's forward, the policy's forward (old log-probs and the loss) and the backward pass, plus completions
per second. A benchmark, not a test: it writes bench/results/grpo_step_profile.json.

    .venv/bin/python bench/grpo_step_profile.py [--steps 8] [--prompts 4] [--generations 8] [--cue 1.0]

TRL's trainer is timed from outside: its `_generate` (sampling), `_get_per_token_logps_and_entropies` (attributed to
the reference model when called with it, to the policy otherwise) and `accelerator.backward` are wrapped on the
instance; nothing in TRL is changed."""
import argparse, json, platform, sys, tempfile, time
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8); ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--generations", type=int, default=8); ap.add_argument("--cue", type=float, default=1.0)
    ap.add_argument("--max-completion-length", type=int, default=48); ap.add_argument("--base", default=str(ROOT / "bases/tiny/model"))
    ap.add_argument("--out", default=str(ROOT / "bench/results/grpo_step_profile.json"))
    a = ap.parse_args(argv)
    from transformers import TrainerCallback
    from jigsaw_forget.models import load_model
    from jigsaw_forget.tasks import JigsawTask
    from jigsaw_forget.train import grpo_args
    from trl import GRPOTrainer

    task = JigsawTask(rows=2, cols=2, cue=a.cue)
    data = task.rl_rows("train", a.prompts * a.steps)
    model, processor = load_model(a.base)
    args = grpo_args(tempfile.mkdtemp(), prompts_per_step=a.prompts, num_generations=a.generations, lr=2e-5, beta=0.04,
                     max_steps=a.steps, max_completion_length=a.max_completion_length)
    tr = GRPOTrainer(model=model, reward_funcs=list(task.reward_funcs), args=args, train_dataset=data, processing_class=processor)
    acc = defaultdict(float); steps = []

    def timed(name_of, fn):
        def wrapper(*x, **k):
            t = time.perf_counter()
            try: return fn(*x, **k)
            finally: acc[name_of(*x, **k)] += time.perf_counter() - t
        return wrapper
    tr._generate = timed(lambda *x, **k: "generation", tr._generate)
    ref = tr.ref_model
    tr._get_per_token_logps_and_entropies = timed(lambda m, *x, **k: "reference_forward" if m is ref else "policy_forward",
                                                  tr._get_per_token_logps_and_entropies)
    tr.accelerator.backward = timed(lambda *x, **k: "backward", tr.accelerator.backward)

    class Step(TrainerCallback):
        def on_step_begin(self, *x, **k): self.t = time.perf_counter(); self.before = dict(acc)
        def on_step_end(self, *x, **k):
            steps.append({"seconds": time.perf_counter() - self.t, **{n: acc[n] - self.before.get(n, 0.0) for n in list(acc)}})
    tr.add_callback(Step())
    tr.train()
    warm = steps[1:] if len(steps) > 1 else steps                 # the first step pays one-off costs
    mean = {k: sum(s.get(k, 0.0) for s in warm) / len(warm) for k in warm[0]}
    mean["other"] = mean["seconds"] - sum(v for k, v in mean.items() if k != "seconds")
    completions = a.prompts * a.generations
    res = {"what": "GRPO optimiser step on the tiny base, 2x2 jigsaw, CPU", "torch_threads": torch.get_num_threads(),
           "machine": platform.machine(), "prompts_per_step": a.prompts, "num_generations": a.generations,
           "max_completion_length": a.max_completion_length, "steps_measured": len(warm),
           "seconds_per_step": mean, "completions_per_second": completions / mean["seconds"],
           "share": {k: v / mean["seconds"] for k, v in mean.items() if k != "seconds"}, "per_step": steps}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True); Path(a.out).write_text(json.dumps(res, indent=1))
    print(json.dumps({k: res[k] for k in ("seconds_per_step", "completions_per_second", "share")}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
