"""Experiment notebooks: well-formed papermill parameters, the papermill CLI from the repo root, the profiles' plans,
and pretraining's routes (committed base, continued, bad input). The smoke profile end to end: tests/test_smoke.py."""
import json, os, re, subprocess, sys
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from jigsaw_forget.runner import load_metrics, main, notebook_front_matter, plan_profile

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((ROOT / "nbs/experiments").glob("*.ipynb"))
BIN = Path(sys.executable).parent


def test_there_are_experiments():
    assert {p.stem for p in EXPERIMENTS} >= {"00_pretrain_base", "01_zero_shot", "02_prior_eval"}


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), "the first code cell must be tagged `parameters`"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    # papermill silently drops lines it cannot parse (e.g. an '=' inside a comment): then the runner would call a
    # real parameter unknown. Every assignment in the cell must be seen by papermill.
    assigned = [m.group(1) for m in re.finditer(r"(?m)^(\w+)\s*(?::[^=]+)?=", code[0].source)]
    assert list(pm.inspect_notebook(str(path))) == assigned
    assert "run_dir" in assigned
    # experiments are run by papermill/pytest, not by nbdev-test (they train models)
    assert nb.cells[0].cell_type == "raw" and "skip_exec: true" in nb.cells[0].source


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_seeds_resume_is_declared_exactly_where_seeds_resume(path):
    "`--jobs` runs a stage's seeds as parts of their own only if its notebook says (front matter `seeds_resume: true`)\n\n"\
    "that it skips the seeds already done: so the flag must sit on exactly the notebooks that loop over `seeds` with `seed_done`."
    src = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    resumes = "seeds" in pm.inspect_notebook(str(path)) and re.search(r"for s in seeds:[\s\S]*seed_done\(", src) is not None
    assert bool(notebook_front_matter(path).get("seeds_resume")) == resumes


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiments_define_nothing_long_lived(path):
    "Experiments call the library; definitions belong in nbs/ library notebooks (exported and tested there)."
    nb = nbformat.read(path, as_version=4)
    src = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert not re.search(r"(?m)^(def|class) ", src), f"{path.name} defines functions/classes at top level"
    assert "#| export" not in src


@pytest.mark.slow
def test_papermill_cli_override_takes_effect(tmp_path):
    "`papermill nb out -p name value` from the repo root: the overridden parameter reaches the run."
    run_dir = tmp_path / "zs"
    cmd = [str(BIN / "papermill"), "nbs/experiments/01_zero_shot.ipynb", str(tmp_path / "out.ipynb"),
           "-p", "run_dir", str(run_dir), "-p", "n_test", "3", "-p", "cols", "3", "-p", "max_new_tokens", "8",
           "-p", "figures_dir", str(tmp_path / "figures"), "--cwd", str(ROOT)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=600)
    m = load_metrics(run_dir)
    assert (m["n_test"], m["rows"], m["cols"]) == (3, 2, 3)
    assert m["trained_base"] is False                    # no model_dir: the untrained model, and it says so
    assert 0 <= m["hit"] <= 1 and 0 <= m["accuracy"] <= 1
    assert len((run_dir / "predictions.jsonl").read_text().splitlines()) == 3
    assert (tmp_path / "figures/zero_shot_examples.png").stat().st_size > 1000
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    injected = [c for c in out.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "n_test = 3" in injected[0].source


def test_every_profile_plans(capsys):
    "Each shipped profile names existing notebooks and only parameters they declare."
    for profile in ("smoke", "tiny", "gpu", "paper", "base", "text-base", "text-tiny", "text-real"):
        assert plan_profile(profile)
    assert main(["run", "--profile", "nope", "--dry-run"]) == 2
    assert "nope" in capsys.readouterr().err


def _pretrain(tmp_path, **params):
    "Execute the pretraining notebook with `params` into `tmp_path`."
    pm.execute_notebook(str(ROOT / "nbs/experiments/00_pretrain_base.ipynb"), str(tmp_path / "out.ipynb"),
                        parameters=params, cwd=str(ROOT), progress_bar=False)


@pytest.mark.slow
def test_committed_base_is_loaded_not_retrained(tmp_path):
    "The tiny profile's route: a committed base folder is verified and loaded instead of pretraining."
    committed = ROOT / "bases/tiny"
    _pretrain(tmp_path, run_dir=str(tmp_path / "pre"), committed_base=str(committed), eval_n=2, figures_dir=str(tmp_path / "fig"))
    m = load_metrics(tmp_path / "pre")
    assert m["source"].startswith("committed base") and m["stage_seconds"] < 60
    assert (tmp_path / "pre/model/model.safetensors").read_bytes() == (committed / "model/model.safetensors").read_bytes()


@pytest.mark.slow
def test_bad_init_from_is_a_clear_error(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="init_from"):
        _pretrain(tmp_path, run_dir=str(tmp_path / "pre"), init_from=str(tmp_path / "nowhere"))
    assert not (tmp_path / "pre/metrics.json").exists()


@pytest.mark.slow
def test_missing_committed_base_is_a_clear_error(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="committed_base"):
        _pretrain(tmp_path, run_dir=str(tmp_path / "pre"), committed_base=str(tmp_path / "nowhere"))
    assert not (tmp_path / "pre/metrics.json").exists()


def test_committed_tiny_base():
    "The committed base the tiny profile starts from: safetensors ≤ 50 MB, its world, its metrics and the command that made it."
    from jigsaw_forget.models import load_model, count_parameters
    from jigsaw_forget.world import load_world_config, WorldConfig, world_tasks
    base = ROOT / "bases/tiny"
    size = sum(f.stat().st_size for f in base.rglob("*") if f.is_file())
    assert size <= 50e6
    meta = json.loads((base / "metrics.json").read_text())
    assert meta["command"] == "jigsaw-forget run --profile base"
    # made by the base profile's last stage: from scratch, or continuing the profile's earlier stage (its run folder)
    stages = {st.name: st for st in plan_profile("base")}
    last = list(stages)[-1]
    made = stages[last].params                                         # the profile as committed made this base
    assert {k: meta[k] for k in ("steps", "batch_size", "lr", "vision_lr_scale")} == {k: made[k] for k in ("steps", "batch_size", "lr", "vision_lr_scale")}
    assert meta["world_version"] == (made.get("world_version") or WorldConfig().version)
    assert (meta.get("vision_pretraining") or {}).get("steps", 0) == made.get("vision_steps", 0)
    if meta["source"] != "trained here":
        earlier = {f"{st.params['run_dir']}/model" for st in stages.values()}
        assert meta["source"].startswith("continued from") and meta["init_from"] in earlier
    assert set(meta["held_out"]) == {f"mini_{t}" for t in world_tasks(load_world_config(base / "model"))}
    model, processor = load_model(base / "model")
    assert count_parameters(model) == meta["n_parameters"]
    assert load_world_config(base / "model").version == WorldConfig().version     # a world change must rebuild the base
    assert not list(base.rglob("*.bin")) and not list(base.rglob("*.pt"))     # safetensors only, no pickles


# ---- the text study inside `tiny` (issue #21): its committed base and its stages ------------------------------------------
TEXT_BASE = ROOT / "bases/text-tiny"


def test_tiny_runs_the_text_study():
    "`tiny` includes `text-tiny`: every text stage is planned in tiny with text-tiny's own params (tiny's profile-wide\n\n"\
    "params add only its `seed`, 0), and its text base is the committed one."
    tiny = {st.name: st for st in plan_profile("tiny")}
    for st in plan_profile("text-tiny"):
        assert st.name in tiny, f"text-tiny stage {st.name} is not planned in tiny"
        want = json.loads(json.dumps(st.params).replace("runs/text-tiny/", "runs/tiny/"))
        got = tiny[st.name].params
        assert set(got) - set(want) <= {"seed"} and got.get("seed", 0) == 0, st.name
        assert {k: got[k] for k in want} == want, st.name
        assert {n: tiny[n].param_hash for n in st.needs} == tiny[st.name].needs
    assert tiny["text_base"].params["committed_base"] == "bases/text-tiny"
    # text_base repeats text-base's recipe (for `--set text_base.committed_base=""`): the two must not drift apart
    recipe = plan_profile("text-base")[-1].params
    drop = {"run_dir", "committed_base", "publish_to", "made_by", "seed"}
    assert {k: v for k, v in tiny["text_base"].params.items() if k not in drop} == {k: v for k, v in recipe.items() if k not in drop}


def test_committed_text_base():
    "The committed text base: made by the text-base profile as committed, every target met, and held-out suites that\n\n"\
    "share no item with its training stream (both prompt styles, every prior task, as many items as it was scored on)."
    import random
    import numpy as np
    from jigsaw_forget.models import load_model, count_parameters
    from jigsaw_forget.text_world import TextWorldConfig, PRIOR_TASKS, held_out_suite, example_digest, stream_example
    size = sum(f.stat().st_size for f in TEXT_BASE.rglob("*") if f.is_file())
    assert size <= 20e6 and not list(TEXT_BASE.rglob("*.bin")) and not list(TEXT_BASE.rglob("*.pt"))
    meta = json.loads((TEXT_BASE / "metrics.json").read_text())
    made = plan_profile("text-base")[-1].params
    assert meta["command"] == made["made_by"] == "jigsaw-forget run --profile text-base"
    assert {k: meta[k] for k in ("steps", "batch_size", "lr", "split_digits")} == {k: made[k] for k in ("steps", "batch_size", "lr", "split_digits")}
    world = TextWorldConfig(**json.loads((TEXT_BASE / "model/text_world_config.json").read_text()))
    assert world == TextWorldConfig(**meta["world"])
    assert (world.version, world.arith_max, world.story_share, world.mixture) == \
        (made["world_version"], made["arith_max"], made["story_share"], made["mixture"] or TextWorldConfig().mixture)
    assert meta["targets_met"] and all(meta["targets_met"].values()), meta["targets_met"]
    model, tok = load_model(TEXT_BASE / "model")
    assert count_parameters(model) == meta["n_parameters"] and type(model).__name__ == "Qwen2ForCausalLM"
    seen = set(np.load(TEXT_BASE / "model/train_digests.npy").tolist())
    (stream,) = json.loads((TEXT_BASE / "model/training_streams.json").read_text())
    assert TextWorldConfig(**stream["world"]) == world and stream["n"] == min(made["n_train"], made["steps"] * made["batch_size"])
    for i in random.Random(0).sample(range(stream["n"]), 300):        # the digests are the stream's (300 indices regenerated)
        assert example_digest(stream_example(i, stream["seed"], world)) in seen
    for task in PRIOR_TASKS:
        for reasoning in (False, True):
            suite = held_out_suite(task, meta["eval_n"], cfg=world, reasoning=reasoning)
            assert not {example_digest(x) for x in suite} & seen, f"held-out {task} (reasoning={reasoning}) items were trained on"


@pytest.mark.slow
def test_committed_text_base_is_loaded_not_retrained(tmp_path):
    "The text study's route in tiny: stage 60 given the committed text base verifies and loads it, it does not train."
    pm.execute_notebook(str(ROOT / "nbs/experiments/60_pretrain_text_base.ipynb"), str(tmp_path / "out.ipynb"),
                        parameters=dict(run_dir=str(tmp_path / "tb"), committed_base="bases/text-tiny", eval_n=2, steps=1),
                        cwd=str(ROOT), progress_bar=False)
    m = load_metrics(tmp_path / "tb")
    assert m["source"].startswith("committed base bases/text-tiny") and m["stage_seconds"] < 60
    assert (tmp_path / "tb/model/model.safetensors").read_bytes() == (TEXT_BASE / "model/model.safetensors").read_bytes()
    assert m["world"] == json.loads((TEXT_BASE / "metrics.json").read_text())["world"]
