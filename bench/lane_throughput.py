"""What `jigsaw-forget run --jobs 2` buys on this machine: the work done per second by one training process on every
core against two processes side by side on one core each (`OMP_NUM_THREADS=1`), for a tiny-base GRPO step (4 prompts x
8 completions, via bench/grpo_step_profile.py) and a batch-64 SFT step (the learning-rate ablation's). A benchmark,
not a test: it writes bench/results/lane_throughput.json.

    .venv/bin/python bench/lane_throughput.py [--grpo-steps 10] [--sft-steps 10]"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sft_worker(steps: int, out: str):
    "Time `steps` batch-64 SFT steps on the tiny base (the first, which pays one-off costs, left out)."
    import torch
    from transformers import TrainerCallback
    from jigsaw_forget.models import load_model
    from jigsaw_forget.tasks import JigsawTask
    from jigsaw_forget.train import run_sft, sft_args
    model, processor = load_model(ROOT / "bases/tiny/model")
    data = JigsawTask(rows=2, cols=2, cue=0.6).sft_rows("train", 64 * (steps + 1))
    times = []

    class Step(TrainerCallback):
        def on_step_begin(self, *a, **k): self.t = time.perf_counter()
        def on_step_end(self, *a, **k): times.append(time.perf_counter() - self.t)
    run_sft(model, processor, data, sft_args(tempfile.mkdtemp(), max_steps=steps + 1, batch_size=64, lr=1e-4), callbacks=[Step()])
    Path(out).write_text(json.dumps({"seconds_per_step": sum(times[1:]) / len(times[1:]), "threads": torch.get_num_threads()}))


def run(kind: str, steps: int, threads: int, n: int) -> list[float]:
    "Seconds per step of each of `n` processes started together, each with `threads` OpenMP threads."
    outs = [tempfile.mktemp(suffix=".json") for _ in range(n)]
    cmd = {"grpo": lambda o: [sys.executable, str(ROOT / "bench/grpo_step_profile.py"), "--steps", str(steps + 1), "--cue", "0.6", "--out", o],
           "sft": lambda o: [sys.executable, __file__, "--sft-worker", "--sft-steps", str(steps), "--out", o]}[kind]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    procs = [subprocess.Popen(cmd(o), env=env, stdout=subprocess.DEVNULL) for o in outs]
    if any(p.wait() for p in procs): raise RuntimeError(f"a {kind} worker failed")
    got = [json.loads(Path(o).read_text()) for o in outs]
    return [g["seconds_per_step"]["seconds"] if isinstance(g["seconds_per_step"], dict) else g["seconds_per_step"] for g in got]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--grpo-steps", type=int, default=10); ap.add_argument("--sft-steps", type=int, default=10)
    ap.add_argument("--sft-worker", action="store_true"); ap.add_argument("--out", default=str(ROOT / "bench/results/lane_throughput.json"))
    a = ap.parse_args(argv)
    if a.sft_worker: return sft_worker(a.sft_steps, a.out)
    cores = os.cpu_count() or 1
    res = {"what": "steps per second: one process on every core against two 1-thread processes side by side", "cores": cores}
    for kind, steps in (("grpo", a.grpo_steps), ("sft", a.sft_steps)):
        alone, = run(kind, steps, cores, 1)
        pair = run(kind, steps, 1, 2)
        res[kind] = {"seconds_per_step_alone": alone, "seconds_per_step_in_each_lane": pair,
                     "throughput_ratio": sum(1 / s for s in pair) / (1 / alone)}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True); Path(a.out).write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    sys.exit(main())
