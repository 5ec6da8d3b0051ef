"""The study's stages: a GRPO run killed mid-way resumes from its checkpoint with its restart schedule and reference
intact; per-seed runs skip finished seeds; LoRA with restarts is refused; bad input is a clear error."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import papermill as pm
import pytest

from jigsaw_forget.runner import load_metrics

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GRPO = dict(n_train=4, n_test=2, prior_n=1, steps=6, prompts_per_step=2, num_generations=2, lr=1e-5, max_completion_length=40,
            restart_every_epochs=1.0, mid_step=0, save_steps=1, eval_batch_size=16)


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
    p = subprocess.Popen(_grpo_cmd(run, tmp_path / "a.ipynb"), cwd=ROOT, start_new_session=True,
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
    subprocess.run(_grpo_cmd(run, tmp_path / "b.ipynb"), cwd=ROOT, check=True, capture_output=True, timeout=900)
    m = load_metrics(run)["per_seed"][0]
    assert m["resumed_from_step"] >= step >= 2 and m["steps"] == 6
    assert m["restarts"] == [2, 4, 6]                          # the schedule went on where it stopped


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
