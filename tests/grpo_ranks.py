"""What each process of the 2-process GRPO restart test (tests/test_multiprocess.py) runs in place of
`python -m jigsaw_forget.launch <spec>`: `launch.worker` itself, with `train.restart_policy` (which `PeriodicRestart`
calls at each restart) wrapped so that every rank records, right after each restart, the step and a digest of its own
policy and of its own reference, in `<output_dir>/ranks/rank<r>.json`; and the reward that moves the micro model's policy.

The test's own checks that it can fail: `JF_TEST_SKIP_SYNC_RANK=<r>`: rank r skips its first restart;
`JF_TEST_PLAIN_RUN_EPOCH=1`: `_GRPOTrainer` without its `_run_epoch` (the sampler is told its epoch by accelerate alone)."""
import hashlib, json, os, sys
from pathlib import Path

import torch


def length_reward(completions, **kw):
    "A reward that differs within a group (longer completions score more), so the micro model's policy moves every step."
    return [float(len(c[0]["content"] if isinstance(c, list) else c)) for c in completions]


def digest(model) -> str:
    "SHA-256 of every tensor of `model`'s state dict (names, dtypes, shapes and bytes, in name order)."
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        t = v.detach().to("cpu").contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode()); h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def main(spec_dir):
    from jigsaw_forget import launch, train
    rank, records = int(os.environ["RANK"]), []
    out = Path(json.loads((Path(spec_dir) / "spec.json").read_text())["args"]["output_dir"]) / "ranks"
    out.mkdir(parents=True, exist_ok=True)
    restart = train.restart_policy

    def recorded(trainer):
        if not (os.environ.get("JF_TEST_SKIP_SYNC_RANK") == str(rank) and not records): restart(trainer)
        unwrap = trainer.accelerator.unwrap_model
        opt = getattr(trainer.optimizer, "optimizer", trainer.optimizer)          # accelerate wraps the torch optimiser
        records.append({"step": trainer.state.global_step, "policy": digest(unwrap(trainer.model)),
                        "ref": digest(unwrap(trainer.ref_model)), "optimizer_state": len(opt.state)})
        (out / f"rank{rank}.json").write_text(json.dumps({"rank": rank, "world": int(os.environ["WORLD_SIZE"]), "restarts": records}))

    train.restart_policy = recorded                    # PeriodicRestart.on_step_end looks it up in train's namespace
    if os.environ.get("JF_TEST_PLAIN_RUN_EPOCH"): del train._GRPOTrainer._run_epoch
    launch.worker(spec_dir)


if __name__ == "__main__": main(sys.argv[1])
