"""Batched response scoring against a one-at-a-time loop (issue: perplexity): 64 responses of mini-world prior tasks
(1 to 4 images each) under the committed tiny base on the CPU; both paths' seconds, the speed-up and the largest
difference of their log-probabilities. A benchmark, not a test: it writes bench/results/perplexity_speedup.json.

    .venv/bin/python bench/perplexity_speedup.py [--n 64] [--batch-size 16] [--repeats 3]"""
import argparse, json, sys, time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64); ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3); ap.add_argument("--base", default=str(ROOT / "bases/tiny/model"))
    ap.add_argument("--out", default=str(ROOT / "bench/results/perplexity_speedup.json"))
    a = ap.parse_args(argv)
    from jigsaw_forget.models import load_model
    from jigsaw_forget.perplexity import response_logprob
    from jigsaw_forget.world import sample_examples, example_messages, load_world_config
    model, processor = load_model(a.base)
    exs = list(sample_examples(a.n, seed=7, cfg=load_world_config(a.base), split="test"))
    rows = [{"prompt": example_messages(e)["prompt"], "images": e.images or [e.image], "response": e.completion} for e in exs]
    def best(fn):
        ts, out = [], None
        for _ in range(a.repeats):
            t = time.perf_counter(); out = fn(); ts.append(time.perf_counter() - t)
        return min(ts), out
    t_loop, lp_loop = best(lambda: [response_logprob(model, processor, [r])[0] for r in rows])
    t_batch, lp_batch = best(lambda: response_logprob(model, processor, rows, batch_size=a.batch_size))
    res = {"what": "response_logprob, batched vs one at a time, tiny base, CPU", "n": a.n, "batch_size": a.batch_size,
           "torch_threads": torch.get_num_threads(), "seconds_loop": t_loop, "seconds_batched": t_batch,
           "speedup": t_loop / t_batch, "max_abs_logprob_difference": max(abs(x - y) for x, y in zip(lp_loop, lp_batch)),
           "images_per_row": sorted({len(r["images"]) for r in rows})}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True); Path(a.out).write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    sys.exit(main())
