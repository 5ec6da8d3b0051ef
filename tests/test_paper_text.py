"""The `paper` profile's text runs (issue #21, items 2, 3 and 8b), offline: a hub id of a text model is a text base
(read from its cached config), the text prior suite runs in lm-evaluation-harness through the package's one evaluation
engine (score_model, the curve tracker), the profile's text stages resolve, and one of them runs end to end on a micro
Qwen2 folder with the real datasets' schemas (tests/fixtures/text) and a fixture lm_eval task.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jigsaw_forget.models import load_model, mini_world_model, save_model, text_mini_model
from jigsaw_forget.study import CurveTracker, prior_benchmarks, prior_mean, score_model
from jigsaw_forget.text_benchmarks import PAPER_TEXT_PRIOR, run_lm_eval
from jigsaw_forget.text_tasks import make_task

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures" / "text"
TASKS = FIX / "lm_eval_tasks"
SUITE = "lm_eval:mmlu_like@tests/fixtures/text/lm_eval_tasks"        # relative to the repo root, as a profile writes it
FILES = {"gsm8k": "gsm8k", "math": "math", "sciq": "sciq", "arc": "arc_challenge"}


def data_folders(root: Path) -> Path:
    "Each dataset as a folder of train.jsonl / test.jsonl in its hub schema (the fixture rows as both splits)."
    for name, f in FILES.items():
        (root / name).mkdir(parents=True)
        for split in ("train", "test"): shutil.copy(FIX / f"{f}.jsonl", root / name / f"{split}.jsonl")
    return root


@pytest.fixture(scope="module")
def text_base(tmp_path_factory):
    "A micro Qwen2ForCausalLM saved as a plain folder, as from the hub: no text world beside it."
    d = tmp_path_factory.mktemp("qwen2") / "micro"
    save_model(*text_mini_model("micro", vocab_size=400), d)
    assert not (d / "text_world_config.json").exists()
    return d


def test_a_hub_id_of_a_text_model_is_a_text_base(tmp_path, text_base):
    "A hub id (no folder) is judged by its config from the hub cache, offline: text for Qwen2, not text for a Qwen2.5-VL."
    cache = tmp_path / "hub"
    vl = tmp_path / "vl"
    save_model(*mini_world_model("micro"), vl)
    for repo, src in (("Qwen/Qwen2.5-1.5B-Instruct", text_base), ("Qwen/Qwen2.5-VL-3B-Instruct", vl)):
        snap = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
        snap.mkdir(parents=True)
        shutil.copy(src / "config.json", snap / "config.json")
        (snap.parents[1] / "refs").mkdir()
        (snap.parents[1] / "refs" / "main").write_text("0" * 40)
    code = ("from jigsaw_forget.study import is_text_base\n"
            "print([is_text_base(r) for r in ('Qwen/Qwen2.5-1.5B-Instruct', 'Qwen/Qwen2.5-VL-3B-Instruct')])\n"
            "try: is_text_base('Qwen/not-cached')\n"
            "except ValueError as e: print('error', 'Qwen/not-cached' in str(e))\n")
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:2] == ["[True, False]", "error True"], out.stdout


def test_text_prior_suites(text_base, tmp_path):
    "Suite names of a text base: `paper` is lm_eval's PAPER_TEXT_PRIOR, `lm_eval:<tasks>@<folder>` any lm_eval tasks."
    assert [b.name for b in prior_benchmarks(text_base, 5, "paper")] == PAPER_TEXT_PRIOR
    bs = prior_benchmarks(text_base, 5, "lm_eval:mmlu_like,arc_challenge@tests/fixtures/text/lm_eval_tasks")
    assert [(b.name, b.axis, b.n) for b in bs] == [("mmlu_like", "knowledge", 5), ("arc_challenge", "knowledge", 5)]
    with pytest.raises(ValueError, match="a text base"): prior_benchmarks(text_base, 5, "paper:somewhere")
    with pytest.raises(ValueError, match="a text base"): prior_benchmarks(text_base, 5, "lm_eval:")
    with pytest.raises(KeyError, match="mmlu_lik"): prior_benchmarks(text_base, 5, "lm_eval:mmlu_lik@tests/fixtures/text/lm_eval_tasks")
    vl = tmp_path / "vl"; save_model(*mini_world_model("micro"), vl)
    with pytest.raises(ValueError, match="vision-language base"): prior_benchmarks(vl, 5, SUITE)


def test_lm_eval_priors_through_score_model_and_the_curve(text_base, tmp_path):
    "score_model and CurveTracker score the lm_eval prior on the model in memory: lm_eval's own number, in the prior mean."
    data = data_folders(tmp_path / "data")
    task = make_task(f"math:gsm8k@{data / 'gsm8k'}", text_base)
    model, tok = load_model(text_base)
    expect = run_lm_eval(model, tok, ["mmlu_like"], limit=2, task_dir=TASKS)["mmlu_like"]
    res, scores = score_model(model, tok, task, text_base, tmp_path / "out", n_prior=2, n_jigsaw=2, batch_size=4, suite=SUITE)
    assert set(scores) == {"math_sft", "math_sft:format", "math_reasoning", "math_reasoning:format", "mmlu_like"}
    assert scores["mmlu_like"] == pytest.approx(expect, abs=1e-12)
    assert prior_mean(scores, task.name) == pytest.approx(expect, abs=1e-12)      # the task's own scores left out
    assert set(res[res.benchmark == "mmlu_like"].n) == {2}
    saved = json.loads((tmp_path / "out" / "predictions" / "mmlu_like.jsonl").read_text())
    assert saved["results"]["mmlu_like"]["acc,none"] == pytest.approx(expect, abs=1e-12)
    tracker = CurveTracker(tok, task, text_base, "reasoning", every=1, n_task=2, n_prior=2, suite=SUITE, batch_size=4)
    tracker._record(model, 0)
    point = tracker.curve()[0]
    assert point["scores"]["mmlu_like"] == pytest.approx(expect, abs=1e-12) and point["prior_mean"] == pytest.approx(expect, abs=1e-12)


TEXT_STAGES = [f"{d}{size}_{s}" for size in ("", "15") for d in ("math", "science")
               for s in ("sft_gt", "grpo", "sft_rollouts", "self_sft", "forgetting_table", "claims")]


def test_paper_profile_text_stages_resolve(capsys):
    "The paper profile plans its text stages as written: hub bases, real-data tasks make_task builds, the lm_eval suite, 3 seeds."
    from jigsaw_forget.runner import main, plan_profile
    plan = {s.name: s for s in plan_profile("paper")}
    assert set(TEXT_STAGES) <= set(plan)
    for name in TEXT_STAGES:
        p = plan[name].params
        kind = "math" if name.startswith("math") else "science_qa"
        t = make_task(p["task"])                                               # no base: builds, reads no data
        assert t.name == kind and t.settings()["source"] == ("gsm8k" if kind == "math" else "sciq"), name
        assert [x.source for x in t.also_test] == (["math"] if kind == "math" else ["arc"]), name
        if "base_dir" in p:
            assert p["base_dir"] == ("Qwen/Qwen2.5-1.5B-Instruct" if "15_" in name else "Qwen/Qwen2.5-3B-Instruct"), name
        if "suite" in p: assert p["suite"] == "paper" and p["prior_n"] == 0, name
        if "seeds" in p: assert p["seeds"] == [0, 1, 2], name
    g = plan["math_grpo"].params
    assert (g["prompts_per_step"], g["num_generations"], g["grad_accum"], g["beta"], g["lr"]) == (4, 4, 4, 0.04, 1e-6)
    assert plan["science15_sft_rollouts"].params["grpo_dir"].endswith("/science15_grpo")
    assert set(plan["math_claims"].needs) == {"math_sft_gt", "math_grpo", "math_sft_rollouts", "math_forgetting_table", "math_self_sft"}
    assert main(["run", "--profile", "paper", "--only", "math_sft_gt", "--dry-run"]) == 0
    assert "math_sft_gt" in capsys.readouterr().out


@pytest.mark.slow
def test_paper_text_stage_runs_offline(text_base, tmp_path):
    "math_sft_gt of the paper profile, 2 steps on the micro Qwen2 folder, the datasets' schemas and a fixture lm_eval prior."
    from jigsaw_forget.runner import load_metrics, run_profile
    data = data_folders(tmp_path / "data")
    task = f"math:gsm8k@{data / 'gsm8k'}+math@{data / 'math'}"
    overrides = {"math_sft_gt.base_dir": str(text_base), "math_sft_gt.task": task, "math_sft_gt.suite": SUITE,
                 "math_sft_gt.seeds": [0], "math_sft_gt.n_train": 3, "math_sft_gt.n_test": 2, "math_sft_gt.prior_n": 2,
                 "math_sft_gt.steps": 2, "math_sft_gt.batch_size": 2, "math_sft_gt.eval_batch_size": 4}
    res = run_profile("paper", runs_root=tmp_path / "runs", overrides=overrides, only=["math_sft_gt"], progress_bar=False)
    assert [(r["stage"], r["status"]) for r in res] == [("math_sft_gt", "ran")]
    m = load_metrics(tmp_path / "runs" / "paper" / "math_sft_gt")
    assert m["task"] == {"task": "math", "source": f"gsm8k@{data / 'gsm8k'}", "also_test": [f"math@{data / 'math'}"]}
    s = m["per_seed"][0]
    assert s["steps"] == 2 and s["params"]["suite"] == SUITE and s["params"]["lr"] == 1e-5 and s["params"]["batch_size"] == 2
    assert {"math_sft", "math_reasoning", "math_sft@math", "math_reasoning@math", "mmlu_like"} <= set(s["scores"])
    assert s["prior_mean"] == pytest.approx(s["scores"]["mmlu_like"])
    assert 0.0 <= s["scores"]["mmlu_like"] <= 1.0
    assert (tmp_path / "runs" / "paper" / "math_sft_gt" / "seed0" / "model" / "config.json").exists()
