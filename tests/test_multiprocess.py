"""Several processes: the smoke SFT-GT stage trained on 2 processes (DDP, gloo on the CPU) follows the loss curve of
the same training on 1 process; GRPO with the paper's restart on 2 processes restarts in step on every process.

The 2-process run is the real stage, started the way a user starts it: `jigsaw-forget run --profile smoke --only sft_gt
--processes 2` (papermill runs nbs/experiments/10_sft_gt.ipynb, whose `run_sft` trains under `accelerate launch` on 2
CPU processes and replays its perplexity tracker on weight snapshots). Overrides: lr 1e-3 instead of 1e-5 (the loss
then falls from 8.5 to 3.1 in 4 steps, so steps 2-4 depend on the earlier updates, i.e. on the gradients having been
all-reduced; at 1e-5 it hardly moves), 4 steps instead of 2, and no accuracy curve and 1 item per benchmark in the final
scoring (greedy generations, ~15 s a puzzle on 2 busy cores, unrelated to the loss). The 1-process reference is the same
training in this process, built from the parameters the stage recorded: the same task and 16 puzzles, the same
`sft_args` (batch 4, seed 0), the same base. On 2 processes each step's batch of 4 is split 2 + 2; with the same seed
both runs deal out the same permutation, so step k sees the same rows.

Tolerance: |loss(2 processes) - loss(1 process)| <= 1e-4 at every step. Measured on 2 CPU cores in fp32: at most
7.2e-7 here (and 9.5e-7 for 3 steps at lr 1e-5): the two halves' token losses and gradients are summed in another
order, nothing more. 1e-4 leaves two orders of magnitude for other CPUs and BLAS builds and stays far below what
another run gives: the same training with a global batch of 2 instead of 4 is 0.61 away at its first step already
(checked at the end, so the comparison can fail). The replayed tracker (perplexity of 2 training puzzles at steps 0-4)
must match the in-process tracker within 1e-4 relative (measured: at most 1.3e-6).

Runtime: 57 s on 2 idle CPU cores (about 75 s of CPU: one papermill stage including the 2-process launch, whose
start-up of two Pythons importing torch, transformers and TRL is most of it, then a 4-step and a 1-step training in
process); 3-10 minutes when other jobs share the cores.

GRPO (`test_grpo_restarts_in_step_on_every_process`): the micro model, 4 prompts (2 per step, 2 completions each: an
epoch is 2 steps), a restart every epoch, 4 steps, under `launch.train_grpo(processes=2)`; each process runs
`launch.worker` through tests/grpo_ranks.py, which records on every rank, right after each restart, digests of that
rank's policy and reference. A reward that grows with the completion's length moves the policy every step (the micro
model never solves a puzzle: under the jigsaw rewards nothing moves and reference = policy would hold unsynced).
Then the run resumed on 2 processes from its checkpoint-3 (mid-way through epoch 2) must restart at step 4 with the same
digests and end with the same weights. Checked that it can fail: with rank 1 skipping its first restart
(`JF_TEST_SKIP_SYNC_RANK=1`) it fails on rank 1's reference at step 2 (still the base; rank 1's policy at step 4 then
differs from rank 0's too: its Adam moments were kept); with `_GRPOTrainer` lacking its `_run_epoch`
(`JF_TEST_PLAIN_RUN_EPOCH=1`) the resumed run's policy at step 4 differs (the rest of epoch 2 came in epoch 1's order).
Runtime: 2 min on 2 busy cores (two launches of two Pythons, ~40 s each, are most of it).
"""
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS, LR, BATCH, N_TRAIN = 4, 1e-3, 4, 16
TOL = 1e-4


def _in_process(tmp, p, batch_size):
    "SFT-GT's training as 10_sft_gt does it with the stage's parameters `p` (seed 0), in this process; (losses, tracked perplexities)."
    from jigsaw_forget.models import load_model
    from jigsaw_forget.runner import resolve
    from jigsaw_forget.study import PerplexityTracker, task_rows
    from jigsaw_forget.tasks import JigsawTask
    from jigsaw_forget.train import run_sft, sft_args
    data = JigsawTask(**{k: v for k, v in p["task"].items() if k != "task"}).sft_rows("train", p["n_train"], seed=0)
    model, processor = load_model(resolve(p["base_dir"]))
    tracker = PerplexityTracker(processor, {"jigsaw": task_rows(data, 2)}, every=1)
    args = sft_args(tmp, max_steps=p["steps"], num_train_epochs=p["epochs"], batch_size=batch_size, lr=p["lr"], seed=0)
    _, log = run_sft(model, processor, data, args, vision_lr_scale=p["vision_lr_scale"], callbacks=[tracker])
    return log["loss"].tolist(), [h["ppl/jigsaw"] for h in tracker.history]


@pytest.mark.slow
def test_two_processes_follow_the_one_process_loss_curve(tmp_path):
    from jigsaw_forget.runner import load_metrics, main
    rc = main(["run", "--profile", "smoke", "--only", "sft_gt", "--runs-root", str(tmp_path / "runs"), "--processes", "2",
               "--set", f"sft_gt.steps={STEPS}", "--set", f"sft_gt.lr={LR}", "--set", f"sft_gt.batch_size={BATCH}",
               "--set", f"sft_gt.n_train={N_TRAIN}", "--set", "sft_gt.track_every=1", "--set", "sft_gt.track_n=2",
               "--set", "sft_gt.eval_every=0", "--set", "sft_gt.n_test=1", "--set", "sft_gt.prior_n=1"])
    assert rc == 0
    run = tmp_path / "runs/smoke/sft_gt"
    m = load_metrics(run)
    assert m["_stage"]["params"]["processes"] == 2
    seed = m["per_seed"][0]
    world = seed["world"]                                    # what the processes reported about themselves
    assert (world["num_processes"], world["distributed_type"], world["backend"]) == (2, "MULTI_CPU", "gloo")
    assert (world["per_device_train_batch_size"], world["global_batch"]) == (BATCH // 2, BATCH)
    launch = run / "seed0/trainer/launch"
    assert json.loads((launch / "world.json").read_text())["num_processes"] == 2 and (launch / "launch.log").exists()
    assert not (launch / "model").exists()                   # the spec's copies are removed after success
    two = pd.read_csv(run / "seed0/train_log.csv")
    assert two["step"].tolist() == list(range(1, STEPS + 1)) and seed["steps"] == STEPS

    one, ppl_one = _in_process(tmp_path / "one", seed["params"], BATCH)
    diff = max(abs(a - b) for a, b in zip(two["loss"], one))
    print(f"loss, 1 process: {one}\nloss, 2 processes: {two['loss'].tolist()}\nmax |difference| {diff:.2e}")
    assert len(one) == STEPS and diff <= TOL, f"2-process loss curve differs from the 1-process one by {diff:.2e} > {TOL}"
    assert one[-1] < one[0] - 3                              # lr 1e-3: the curve falls, later steps depend on the updates

    ppl_two = [h["ppl/jigsaw"] for h in seed["perplexity"]]  # replayed on snapshots in the kernel
    assert [h["step"] for h in seed["perplexity"]] == list(range(STEPS + 1))
    print(f"ppl/jigsaw, 1 process: {ppl_one}\nppl/jigsaw, 2 processes (replayed): {ppl_two}")
    assert all(abs(a - b) <= 1e-4 * b for a, b in zip(ppl_two, ppl_one)), (ppl_two, ppl_one)

    other, _ = _in_process(tmp_path / "other", {**seed["params"], "steps": 1}, BATCH // 2)   # another global batch: another
    assert abs(two["loss"][0] - other[0]) > 1000 * TOL                                     # curve, from its first step on


@pytest.mark.slow
def test_grpo_restarts_in_step_on_every_process(tmp_path, monkeypatch):
    "GRPO with a restart every epoch on 2 processes (`launch.train_grpo`, gloo on the CPU): every rank restarts at the same\n\n"\
    "steps; right after each restart every rank's reference is its own policy, its optimiser state is empty, and the\n\n"\
    "reference and policy are the same on both ranks; the policy moved between restarts (else reference = policy would\n\n"\
    "hold without any sync). Then resumed on 2 processes from its mid-epoch checkpoint-3: the same restart at step 4 and\n\n"\
    "the same final weights, bit for bit. Each process runs `launch.worker` through tests/grpo_ranks.py, which records\n\n"\
    "per-rank digests."
    import os, time
    import grpo_ranks
    from jigsaw_forget import launch
    from jigsaw_forget.models import load_model, mini_world_model, save_model
    from jigsaw_forget.tasks import JigsawTask
    from jigsaw_forget.train import grpo_args
    plain = launch.launch_command
    def recording(*a, **kw):                                  # the same launch, each process running grpo_ranks.main
        cmd, env = plain(*a, **kw)
        assert cmd[-3:-1] == ["-m", "jigsaw_forget.launch"], cmd
        return cmd[:-2] + ["grpo_ranks", cmd[-1]], {**env, "PYTHONPATH": os.pathsep.join([env["PYTHONPATH"], str(ROOT / "tests")])}
    monkeypatch.setattr(launch, "launch_command", recording)
    save_model(*mini_world_model("micro"), tmp_path / "base")
    model, processor = load_model(tmp_path / "base")
    base = grpo_ranks.digest(model)
    data = JigsawTask(rows=2, cols=2, image_size=56).rl_rows("train", 4)     # 4 prompts, 2 per step: an epoch is 2 steps
    grpo = lambda out: grpo_args(out, prompts_per_step=2, num_generations=2, max_steps=4, lr=1e-2, max_completion_length=6,
                                 temperature=1.5, save_strategy="steps", save_steps=1)
    train = lambda model, out: launch.train_grpo(model, processor, data, [grpo_ranks.length_reward], grpo(out),
                                                 restart_every_epochs=1.0, processes=2)
    t0 = time.time()
    run, log, restarts = train(model, tmp_path / "grpo")
    print(f"2-process GRPO, 4 steps: {time.time() - t0:.0f} s")
    assert (run.world["num_processes"], run.world["backend"], restarts) == (2, "gloo", [2, 4])
    assert log["step"].tolist() == [1, 2, 3, 4]
    ranks = [json.loads((tmp_path / f"grpo/ranks/rank{r}.json").read_text()) for r in range(2)]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world"] == 2 for r in ranks)
    for r in ranks:
        assert [x["step"] for x in r["restarts"]] == restarts, r          # every rank restarted at rank 0's steps
        for x in r["restarts"]:
            assert x["ref"] == x["policy"], (r["rank"], x["step"])         # the reference is that rank's policy …
            assert x["optimizer_state"] == 0, (r["rank"], x["step"])       # … and its Adam moments are gone
    for a, b in zip(*(r["restarts"] for r in ranks)):
        assert a["ref"] == b["ref"] and a["policy"] == b["policy"], a["step"]   # the same reference on every rank
    policies = [base] + [x["policy"] for x in ranks[0]["restarts"]]
    assert len(set(policies)) == len(policies)                # the policy moved: the base, step 2 and step 4 all differ
    assert grpo_ranks.digest(model) == policies[-1]           # the weights that came back are the last restart's policy

    # killed right after checkpoint-3 (mid-way through the second epoch) and started again on 2 processes: the same
    # restart at step 4 and the same weights, bit for bit (the rest of epoch 2 in epoch 2's order: accelerate's
    # `set_epoch` does not reach the sampler through the skip of a mid-epoch resume on several processes)
    shutil.copytree(tmp_path / "grpo/checkpoint-3", tmp_path / "resumed/checkpoint-3")
    again, _ = load_model(tmp_path / "base")
    t0 = time.time()
    run2, log2, restarts2 = train(again, tmp_path / "resumed")
    print(f"resumed from step 3: {time.time() - t0:.0f} s")
    assert restarts2 == [2, 4] and log2["step"].tolist()[-1:] == [4]
    for r in range(2):
        rec = json.loads((tmp_path / f"resumed/ranks/rank{r}.json").read_text())["restarts"]
        assert rec == ranks[r]["restarts"][1:], r                # the restart at step 4, as in the uninterrupted run
    assert grpo_ranks.digest(again) == grpo_ranks.digest(model)
