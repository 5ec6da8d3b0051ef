"""The study's stages: a GRPO run killed mid-way resumes from its checkpoint with its weights, restart schedule and
reference intact (the uninterrupted run's weights, bit for bit: GRPO on the CPU with a fixed seed and one thread is
deterministic); per-seed runs skip finished seeds; LoRA with restarts is refused; bad input is a clear error."""
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import papermill as pm
import pytest

from jigsaw_forget.runner import load_metrics

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GRPO = dict(n_train=4, n_test=2, prior_n=1, steps=6, prompts_per_step=2, num_generations=2, lr=1e-5, max_completion_length=40,
            restart_every_epochs=1.0, mid_step=0, save_steps=1, eval_batch_size=16)


ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}   # deterministic: bit-for-bit comparable runs


def _same_files(a, b) -> bool:
    "Two safetensors files hold the same tensors, bit for bit."
    from safetensors.torch import load_file
    x, y = load_file(str(a)), load_file(str(b))
    return x.keys() == y.keys() and all(x[k].equal(y[k]) for k in x)


def _grpo_cmd(run_dir, out):
    cmd = [str(BIN / "papermill"), "nbs/experiments/11_grpo.ipynb", str(out), "--cwd", str(ROOT), "-p", "run_dir", str(run_dir),
           "-p", "figures_dir", str(Path(run_dir) / "fig")]
    for k, v in GRPO.items(): cmd += ["-p", k, str(v)]
    return cmd


@pytest.mark.slow
def test_grpo_killed_midway_resumes(tmp_path):
    "Kill the GRPO stage once a complete checkpoint past its first restart exists; the re-run continues from it (not from\n\n"\
    "step 0) and keeps the restarts (4 prompts, 2 per step: an epoch is 2 steps) that happened before the kill."
    run = tmp_path / "grpo"
    p = subprocess.Popen(_grpo_cmd(run, tmp_path / "a.ipynb"), cwd=ROOT, start_new_session=True, env=ONE_THREAD,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = lambda: [p for p in (run / "seed0/trainer").glob("checkpoint-*") if (p / "restarts.json").exists() and int(p.name.split("-")[1]) >= 2]
    t0 = time.time()
    while not done() and p.poll() is None and time.time() - t0 < 400: time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL); p.wait()                 # killed as soon as a checkpoint past the first restart is complete
    assert done(), "no complete checkpoint at step >= 2 appeared"
    assert not (run / "seed0/metrics.json").exists()           # killed before it finished
    from jigsaw_forget.train import last_checkpoint
    ck = last_checkpoint(run / "seed0/trainer", "restarts.json"); step = int(ck.name.split("-")[1])
    assert json.loads((ck / "restarts.json").read_text())["points"] == list(range(2, step + 1, 2))
    assert (ck / "ref_model.safetensors").exists()
    subprocess.run(_grpo_cmd(run, tmp_path / "b.ipynb"), cwd=ROOT, check=True, capture_output=True, timeout=900, env=ONE_THREAD)
    m = load_metrics(run)["per_seed"][0]
    assert m["resumed_from_step"] >= step >= 2 and m["steps"] == 6
    assert m["restarts"] == [2, 4, 6]                          # the schedule went on where it stopped
    whole = tmp_path / "whole"                                 # the same stage, never interrupted
    subprocess.run(_grpo_cmd(whole, tmp_path / "c.ipynb"), cwd=ROOT, check=True, capture_output=True, timeout=900, env=ONE_THREAD)
    later = sorted(p.name for p in (run / "seed0/trainer").glob("checkpoint-*") if int(p.name.split("-")[1]) > step)
    assert later                                                # the resumed run wrote checkpoints after the kill
    for name in later:                                          # the policy and the reference at every later checkpoint …
        for f in ("model.safetensors", "ref_model.safetensors"):
            assert _same_files(run / "seed0/trainer" / name / f, whole / "seed0/trainer" / name / f), (name, f)
    assert _same_files(run / "seed0/model/model.safetensors", whole / "seed0/model/model.safetensors")   # … and at the end
    assert not _same_files(run / "seed0/model/model.safetensors", ROOT / "bases/tiny/model/model.safetensors")   # it trained


TINY = dict(prompts_per_step=2, num_generations=4, max_steps=4, lr=1e-4, max_completion_length=16, temperature=2.0, save_strategy="steps", save_steps=1)


def _text_reward(completions, **kw):
    "A reward that differs whenever the texts differ (a hash of the text): the base's jigsaw rewards, and even their lengths\n\n"\
    "(16 tokens, always cut), hardly differ within a group, and a run with zero advantages moves nothing."
    import zlib
    return [zlib.crc32((c[0]["content"] if isinstance(c, list) else c).encode()) % 100 / 100 for c in completions]


def _tiny_grpo(out, copy_from=None):
    "The committed tiny base's GRPO on 4 puzzles (an epoch is 2 steps, a restart every epoch), a checkpoint every step, one\n\n"\
    "thread; `copy_from`: a checkpoint folder put alone into `out` first (a run killed right after writing it) → (model, log)."
    import torch
    from jigsaw_forget.models import load_model
    from jigsaw_forget.tasks import JigsawTask
    from jigsaw_forget.train import grpo_args, run_grpo
    torch.set_num_threads(1)
    if copy_from: shutil.copytree(copy_from, Path(out) / Path(copy_from).name)
    task = JigsawTask(rows=2, cols=2, image_size=56)
    model, processor = load_model(ROOT / "bases/tiny/model")
    _, log, restarts = run_grpo(model, processor, task.rl_rows("train", 4), [_text_reward], grpo_args(out, **TINY), restart_every_epochs=1.0)
    assert restarts == [2, 4]
    return model, log


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    "The uninterrupted run: its folder and final weights."
    out = tmp_path_factory.mktemp("whole")
    model, log = _tiny_grpo(out)
    return out, {k: v.clone() for k, v in model.state_dict().items()}, log


@pytest.mark.slow
def test_two_identical_grpo_runs_give_identical_weights(whole_run, tmp_path):
    "Determinism, which the resume tests rely on: the same run twice ends with the same weights, bit for bit; and it moved."
    out, final, _ = whole_run
    model, _ = _tiny_grpo(tmp_path)
    assert all(model.state_dict()[k].equal(v) for k, v in final.items())
    from safetensors.torch import load_file
    prev = load_file(str(ROOT / "bases/tiny/model/model.safetensors"))
    for s in range(1, 5):                                       # the policy moves at every step (else nothing here could fail)
        now = load_file(str(out / f"checkpoint-{s}/model.safetensors"))
        assert any(not now[k].equal(prev[k]) for k in now), s
        prev = now


@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 2], ids=["mid-epoch", "restart-step"])
def test_grpo_resumed_from_a_checkpoint_equals_the_uninterrupted_run(whole_run, tmp_path, k):
    "Killed right after writing checkpoint-k (k = 1: mid-epoch; k = 2: the first restart) and started again: the policy and\n\n"\
    "the reference equal the uninterrupted run's at every later checkpoint and at the end, bit for bit; after a restart the\n\n"\
    "first KL logged is 0 (the reference is the policy), as in the uninterrupted run."
    out, final, whole_log = whole_run
    model, log = _tiny_grpo(tmp_path, copy_from=out / f"checkpoint-{k}")
    for s in range(k + 1, 5):
        for f in ("model.safetensors", "ref_model.safetensors"):
            assert _same_files(tmp_path / f"checkpoint-{s}" / f, out / f"checkpoint-{s}" / f), (s, f)
    assert all(model.state_dict()[n].equal(v) for n, v in final.items())
    new = log[log["step"] > k]
    assert new["step"].tolist() == list(range(k + 1, 5))
    assert new["kl"].tolist() == whole_log[whole_log["step"] > k]["kl"].tolist()
    if k == 2: assert new["kl"].iloc[0] < 1e-6


@pytest.mark.slow
def test_a_checkpoint_whose_keys_do_not_fit_is_an_error_naming_it(whole_run, tmp_path):
    "Resuming from a checkpoint whose weights do not fit the model raises, naming the file (never a silent fresh start)."
    from safetensors.torch import load_file, save_file
    out, _, _ = whole_run
    bad = tmp_path / "checkpoint-1"; shutil.copytree(out / "checkpoint-1", bad)
    save_file({f"old.{k}": v for k, v in load_file(str(bad / "model.safetensors")).items()}, str(bad / "model.safetensors"))
    with pytest.raises(RuntimeError, match=str(bad / "model.safetensors")):
        _tiny_grpo(tmp_path)


@pytest.mark.slow
def test_finished_seeds_are_kept(tmp_path):
    "A second run with one more seed trains only the new seed."
    common = dict(run_dir=str(tmp_path / "sft"), figures_dir=str(tmp_path / "fig"), n_train=4, n_test=2, prior_n=1, steps=1,
                  batch_size=2, eval_batch_size=16)
    pm.execute_notebook(str(ROOT / "nbs/experiments/10_sft_gt.ipynb"), str(tmp_path / "a.ipynb"), parameters={**common, "seeds": [0]},
                        cwd=str(ROOT), progress_bar=False)
    first = (tmp_path / "sft/seed0/metrics.json").stat().st_mtime_ns
    nb = pm.execute_notebook(str(ROOT / "nbs/experiments/10_sft_gt.ipynb"), str(tmp_path / "b.ipynb"),
                             parameters={**common, "seeds": [0, 1]}, cwd=str(ROOT), progress_bar=False)
    assert (tmp_path / "sft/seed0/metrics.json").stat().st_mtime_ns == first           # seed 0 not retrained
    m = load_metrics(tmp_path / "sft")
    assert m["seeds"] == [0, 1] and m["summary"]["jigsaw_sft"]["n"] == 2
    assert "seed 0: done before, kept" in json.dumps(nb.cells[[i for i, c in enumerate(nb.cells) if "per_seed, logs" in c.source][0]].outputs)


def test_rollouts_without_a_grpo_model_is_a_clear_error(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="grpo_dir .* has no trained model for seed"):
        pm.execute_notebook(str(ROOT / "nbs/experiments/12_sft_rollouts.ipynb"), str(tmp_path / "o.ipynb"),
                            parameters=dict(run_dir=str(tmp_path / "r"), grpo_dir=str(tmp_path / "nowhere")), cwd=str(ROOT), progress_bar=False)
    assert not (tmp_path / "r/metrics.json").exists()


def test_lora_with_restart_is_refused(tmp_path):
    from peft import LoraConfig, get_peft_model
    from jigsaw_forget.models import load_model
    from jigsaw_forget.tasks import JigsawTask
    from jigsaw_forget.train import grpo_args, run_grpo
    model, processor = load_model(ROOT / "bases/tiny/model")
    lora = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    task = JigsawTask(image_size=56)
    with pytest.raises(ValueError, match="PEFT"):
        run_grpo(lora, processor, task.rl_rows("train", 2), task.reward_funcs, grpo_args(tmp_path, max_steps=1), restart_every_epochs=2.0)


def test_bad_cue_and_source_are_clear_errors():
    from jigsaw_forget.tasks import JigsawTask
    with pytest.raises(ValueError, match="cue must be in"):
        JigsawTask(cue=2.0).data("train", 1)
    with pytest.raises(ValueError, match="unknown image source 'imagenet'"):
        JigsawTask(source="imagenet").data("train", 1)
