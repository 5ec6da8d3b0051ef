"""The smoke profile end to end through the runner: every stage at a few steps, one seed (the notebooks write
metrics.json; the tests read it). The study's notebooks run here with their defaults but for counts, schedules and
the links between stages (tests/test_lab.py checks that), from their own folder as JupyterLab runs them."""
import json

import pytest

from jigsaw_forget.runner import load_metrics, run_profile

STAGES = ["pretrain_base", "prior_eval_base", "zero_shot", "sft_gt", "grpo", "sft_rollouts", "self_sft", "regime_map",
          "forgetting_table", "frontier",
          "rollout_perplexity", "learning_dynamics", "lr_ablation", "corrected_rollouts", "forgetting_law", "grpo_norestart",
          "restart_ablation", "claims", "pretrain_text_base",
          "math_sft_gt", "math_grpo", "math_sft_rollouts", "math_forgetting_table", "math_rollout_perplexity", "math_learning_dynamics",
          "math_forgetting_law", "math_claims", "text_real_base"]
TEXT_PRIOR = {"text_fact", "text_arith", "text_copy"}


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    results = run_profile("smoke", runs_root=root, progress_bar=False, jobs=2)   # as `make reproduce` runs it: two lanes
    return root, results


@pytest.mark.slow
def test_smoke_profile_end_to_end(smoke_runs):
    root, results = smoke_runs
    assert [r["stage"] for r in results] == STAGES
    assert all(r["status"] == "ran" for r in results)
    pre = load_metrics(root / "smoke/pretrain_base")
    assert pre["_stage"]["param_hash"] and pre["n_parameters"] > 1e5 and pre["steps"] == 8
    from jigsaw_forget.world import world_tasks, load_world_config
    assert set(pre["held_out"]) == {f"mini_{t}" for t in world_tasks(load_world_config(root / "smoke/pretrain_base/model"))}
    assert {"mini_pope_adversarial", "mini_form"} <= set(pre["held_out"])   # the smoke base learns the current world
    vis = pre["vision_pretraining"]                  # the tower's dense pretraining ran, and the tokens kept their scale
    assert vis["steps"] == 3 and vis["rescaled_by"] > 0 and set(vis["variance_share_after"]) == {"shape", "colour", "cell"}
    assert (root / "smoke/pretrain_base/vision_log.csv").exists()
    assert set(pre["word_embedding_cosine"]) == {"colour words", "shape words", "field keys"}
    assert (root / "smoke/pretrain_base/model/model.safetensors").exists()
    assert (root / "smoke/pretrain_base/model/world_config.json").exists()
    ev = load_metrics(root / "smoke/prior_eval_base")
    assert set(ev["scores"]) == set(pre["held_out"])
    assert all(0 <= s["plain_format"] <= 1 for b, s in ev["scores"].items() if "plain_format" in s)
    zs = load_metrics(root / "smoke/zero_shot")
    assert zs["trained_base"] is True and zs["n_test"] == 4 and 0 <= zs["format_reward"] <= 1
    assert (root / "smoke/figures/zero_shot_examples.png").exists()
    assert (root / "smoke/figures/pretrain_curves.png").exists()


@pytest.mark.slow
def test_smoke_base_suites_share_no_item_with_training(smoke_runs):
    "The smoke profile's freshly pretrained base (tests/test_heldout.py): its streams regenerated in full, its suites drawn,\n\n"\
    "no shared item."
    import numpy as np
    from test_heldout import suite_digests
    from jigsaw_forget.world import load_training_streams, stream_digests, training_digests, _spec_world
    root, _ = smoke_runs
    pre, model_dir = load_metrics(root / "smoke/pretrain_base"), root / "smoke/pretrain_base/model"
    streams = load_training_streams(model_dir)
    assert [(s["n"], s["seed"]) for s in streams] == [(pre["steps"] * pre["batch_size"], 0)] and pre["preset"] == "micro"
    full = set(np.concatenate([stream_digests(s["n"], s["seed"], _spec_world(s)) for s in streams]).tolist())
    assert full == training_digests(model_dir)
    assert not any(d in full for v in suite_digests(model_dir, 20).values() for d in v)


@pytest.mark.slow
def test_smoke_fine_tuning_chain(smoke_runs):
    "SFT-GT, GRPO (restarts, mid checkpoint), rollouts, rollout-SFT and Table 1 each wrote what the next one reads."
    import numpy as np, pandas as pd
    root, _ = smoke_runs
    sft, grpo, roll, table = (load_metrics(root / f"smoke/{s}") for s in ("sft_gt", "grpo", "sft_rollouts", "forgetting_table"))
    s0 = sft["per_seed"][0]
    assert s0["steps"] == 2 and [h["step"] for h in s0["perplexity"]] == [0, 1, 2]       # Fig. 3 tracking every step
    assert [h["step"] for h in s0["accuracy_curve"]] == [0, 1, 2]                          # test accuracy against steps (C1)
    assert {"jigsaw_sft", "jigsaw_reasoning", "mini_grounding", "mini_grounding:format"} <= set(s0["scores"])
    g0 = grpo["per_seed"][0]
    assert g0["steps"] == 3 and g0["restarts"] == [2] and g0["mid"]["step"] == 2       # 8 prompts, 2 per step: restart every 2 steps
    assert (root / "smoke/grpo/seed0/model_step2/model.safetensors").exists()
    r0 = roll["per_seed"][0]
    assert r0["rollouts"]["kept"] > 0 and r0["steps"] == 2 and r0["params"]["grpo_model"].endswith("grpo/seed0/model")
    t1 = pd.read_csv(root / "smoke/forgetting_table/table1.csv")
    assert list(t1.columns[:5]) == ["model", "seed", "steps", "jigsaw_accuracy", "jigsaw_hit"]
    assert t1.model.tolist() == ["base", "SFT-GT", "GRPO (step 2)", "GRPO", "SFT-GRPO-Rollout"]
    assert t1.loc[t1.model == "GRPO", "mini_ocr"].item() == g0["scores"]["mini_ocr"]           # the table quotes the stage
    assert set(table["claims"]) == {"C1", "C2", "C3"} and "sft_gt_steps_to_grpo_accuracy" in table
    assert (root / "smoke/figures/table1.png").exists() and "± " in (root / "smoke/forgetting_table/table1.md").read_text()


@pytest.mark.slow
def test_smoke_text_base_pretrains(smoke_runs):
    "The text domain's base: a Qwen2ForCausalLM pretrained by the package (4 steps here), saved with its tokenizer."
    root, _ = smoke_runs
    m = load_metrics(root / "smoke/pretrain_text_base")
    assert m and (root / "smoke/pretrain_text_base/model/model.safetensors").exists()
    import json
    assert json.loads((root / "smoke/pretrain_text_base/model/config.json").read_text())["architectures"] == ["Qwen2ForCausalLM"]


@pytest.mark.slow
def test_smoke_text_study(smoke_runs):
    "The study's stage notebooks with `task: math` on the micro text base: scores keyed math_*, the text world's prior suite,\n\n"\
    "Table 1 with its base row and the method rows, the analyses and the claims read from the same keys; no jigsaw anywhere."
    import pandas as pd
    root, _ = smoke_runs
    pre = load_metrics(root / "smoke/pretrain_text_base")      # the rule written before every text base's run, in code:
    assert not all(pre["targets_met"].values()) and not (root / "smoke/published_text_base").exists()   # missed -> not published
    sft, grpo, roll, table = (load_metrics(root / f"smoke/math_{s}") for s in ("sft_gt", "grpo", "sft_rollouts", "forgetting_table"))
    for m in (sft, grpo, roll):
        assert m["task"]["task"] == "math"
        s0 = m["per_seed"][0]
        assert {k for k in s0["scores"] if ":" not in k} == {"math_sft", "math_reasoning"} | TEXT_PRIOR, s0["scores"]
        assert {f"{b}:format" for b in TEXT_PRIOR} <= set(s0["scores"]) and 0 <= s0["prior_mean"] <= 1
        assert s0["prior_mean"] == pytest.approx(sum(s0["scores"][b] for b in TEXT_PRIOR) / 3)   # the task's own scores left out
        assert [p["step"] for p in s0["curve"]] == [0, 1, 2] and s0["curve"][0]["forward_kl"] == pytest.approx(0, abs=1e-4)
    s0, g0, r0 = sft["per_seed"][0], grpo["per_seed"][0], roll["per_seed"][0]
    assert s0["steps"] == 2 and [h["step"] for h in s0["perplexity"]] == [0, 1, 2] and "ppl/math" in s0["perplexity"][0]
    assert g0["steps"] == 2 and g0["mid"]["step"] == 1 and "math_reasoning" in g0["mid"]["scores"]
    assert r0["steps"] == 2 and r0["rollouts"]["corrected"] > 0 and r0["params"]["correct"] is True
    assert (root / "smoke/math_sft_gt/seed0/model/text_world_config.json").exists()            # the base's world travels
    t1 = pd.read_csv(root / "smoke/math_forgetting_table/table1.csv")
    assert list(t1.columns[:4]) == ["model", "seed", "steps", "math_accuracy"] and TEXT_PRIOR <= set(t1.columns)
    assert not [c for c in t1.columns if "jigsaw" in c]
    assert t1.model.tolist() == ["base", "SFT-GT", "GRPO (step 1)", "GRPO", "SFT-GRPO-Rollout"]   # one base row, the methods' rows
    assert set(table["math_accuracy"]) == {"base", "SFT-GT", "GRPO", "SFT-GRPO-Rollout"} and set(table["claims"]) == {"C1", "C2", "C3"}
    rp, ld = load_metrics(root / "smoke/math_rollout_perplexity"), load_metrics(root / "smoke/math_learning_dynamics")
    assert rp["per_seed"][0]["seed"] == 0 and rp["median_ppl"]["ground truth"] > 0
    assert ld["n_gt_rows"] == 2 and ld["n_prior_rows"] == 3 and ld["first_order"]                 # one row per text prior benchmark
    claims = json.loads((root / "smoke/math_claims/claims.json").read_text())
    assert sorted(claims) == ["A1", "A2"] + [f"C{i}" for i in range(1, 10)]
    assert claims["C3"]["evidence"]["accuracy"]["GRPO"]["0"] == g0["scores"]["math_reasoning"]
    assert "not_measured" not in claims["C4"]["evidence"] and "no grounding" in claims["C2"]["evidence"]["why"]
    law = load_metrics(root / "smoke/math_forgetting_law")      # the text checkpoints: SFT-GT, GRPO mid and final, rollout-SFT
    assert law["task"]["task"] == "math" and law["n_checkpoints"] == 4
    assert {c["task_accuracy"] for c in law["checkpoints"]} <= {0.0, 0.5, 1.0} and "jigsaw_accuracy" not in law["checkpoints"][0]
    assert claims["C9"]["evidence"]["n_checkpoints"] == law["correlation"]["forward_kl"]["n"] == 4
    assert (root / "smoke/figures/math/table1.png").exists() and (root / "smoke/figures/math/forgetting_law.png").exists()


@pytest.mark.slow
def test_smoke_matched_accuracy_curves_self_sft_and_map(smoke_runs):
    "Each fine-tuning stage scored its run on the step grid (step 0 the base, forward KL 0 there); Self-SFT ran its rounds; the map read the curves."
    root, _ = smoke_runs
    for stage, steps, prompt in (("sft_gt", [0, 1, 2], "jigsaw_sft"), ("grpo", [0, 1, 2, 3], "jigsaw_reasoning"), ("sft_rollouts", [0, 1, 2], "jigsaw_reasoning")):
        c = load_metrics(root / f"smoke/{stage}")["per_seed"][0]["curve"]
        assert [p["step"] for p in c] == steps, (stage, c)
        assert abs(c[0]["forward_kl"]) < 1e-4 and all(p["accuracy"] == p["scores"][prompt] for p in c)
        assert all(0 <= p["prior_mean"] <= 1 for p in c)
    g0 = load_metrics(root / "smoke/grpo")["per_seed"][0]
    assert g0["curve"][-1]["scores"]["mini_ocr"] == g0["scores"]["mini_ocr"]         # the last point is the final model, on the same items
    ss = load_metrics(root / "smoke/self_sft")
    s0 = ss["per_seed"][0]
    assert ss["method"] == "Self-SFT" and [r["round"] for r in s0["rounds"]] == [1, 2][:len(s0["rounds"])] and s0["rounds"][0]["kept"] > 0
    assert [p["step"] for p in s0["curve"]][0] == 0 and s0["curve"][-1]["step"] == s0["steps"]
    rm = load_metrics(root / "smoke/regime_map")
    assert [r["regime"] for r in rm["summary"]] == ["mini"] and 0 <= rm["base_hit"]["mini"]["hit"] <= 1
    assert (root / "smoke/figures/regime_map.png").exists()
    tm = load_metrics(root / "smoke/forgetting_table")
    # smoke's 2-3 steps reach no level, so the matched table is (in practice) empty here; its reading is tested in 09a_claims
    assert tm["levels"] == [0.5, 0.7, 0.85] and all(r["method"] in {"SFT-GT", "GRPO", "SFT-GRPO-Rollout"} for r in tm["matched_accuracy"])


@pytest.mark.slow
def test_smoke_frontier(smoke_runs):
    "The frontier stage puts every fine-tuned model (GRPO twice: mid and final) and the base on one plot, matched against SFT-GT."
    import numpy as np, pandas as pd
    from jigsaw_forget.study import prior_mean
    root, _ = smoke_runs
    fr = pd.read_csv(root / "smoke/frontier/frontier.csv")
    assert sorted(fr.method) == ["GRPO", "GRPO", "SFT-GRPO-Rollout", "SFT-GT", "SFT-GT"]          # the base counts as SFT-GT's step 0
    g0 = load_metrics(root / "smoke/grpo")["per_seed"][0]
    final = fr[(fr.method == "GRPO") & (fr.steps == g0["steps"])].iloc[0]
    assert abs(final.prior_mean - prior_mean(g0["scores"])) < 1e-9 and final.jigsaw_accuracy == g0["scores"]["jigsaw_reasoning"]
    m = load_metrics(root / "smoke/frontier")
    assert abs(m["base_prior_mean"] - fr.loc[fr.label == "base", "prior_mean"].item()) < 1e-9 and isinstance(m["c2_any"], bool)
    assert (root / "smoke/figures/frontier.png").exists()


@pytest.mark.slow
def test_smoke_claims(smoke_runs):
    "The claims report checks C1-C9 with the library's rule: one seed is never enough for a verdict; each quotes its stage."
    import json
    root, _ = smoke_runs
    claims = json.loads((root / "smoke/claims/claims.json").read_text())
    assert sorted(claims) == ["A1", "A2"] + [f"C{i}" for i in range(1, 10)]
    assert all(c["verdict"] in ("replicated", "not replicated", "inconclusive") and c["claim"] for c in claims.values())
    # the arms: Self-SFT's stage ran (A2 read from its curve, one seed: inconclusive); no LoRA stage in smoke (A1 not measured)
    assert claims["A2"]["verdict"] == "inconclusive" and "0" in claims["A2"]["evidence"]["matched_prior_gain"]
    assert "no LoRA" in claims.pop("A1")["evidence"]["not_measured"]
    assert claims["C1"]["evidence"]["n"] == 1 and claims["C1"]["verdict"] == "inconclusive"
    g0 = load_metrics(root / "smoke/grpo")["per_seed"][0]
    assert claims["C1"]["evidence"]["grpo_steps"]["0"] == g0["steps"]
    assert not [k for k, c in claims.items() if c["evidence"].get("not_measured")]    # every analysis ran
    g1 = load_metrics(root / "smoke/grpo_norestart")["per_seed"][0]
    assert g1["restarts"] == [] and g0["restarts"] == [2] and claims["C7"]["verdict"] == "inconclusive"
    law = load_metrics(root / "smoke/forgetting_law")      # SFT-GT, GRPO mid and final, rollout-SFT: every checkpoint of the study
    assert law["n_checkpoints"] == 4 and all(abs(c["forward_kl"]) < 1e6 for c in law["checkpoints"])
    assert claims["C9"]["evidence"]["n_checkpoints"] == law["correlation"]["forward_kl"]["n"] == 4
    assert (root / "smoke/figures/grpo_restart.png").stat().st_size > 1000
    rp = load_metrics(root / "smoke/rollout_perplexity")                         # C4 quotes the rollout-perplexity stage
    assert claims["C4"]["evidence"]["mean"] == rp["per_seed"][0]["median_gap_difference"]
    import numpy as np, pandas as pd
    perq = pd.read_csv(root / "smoke/rollout_perplexity/per_question.csv")
    assert len(perq) == 4 and (perq.gt_ppl > 0).all() and np.allclose(perq.gap_gt, perq.gt_ppl - perq.base_q1_sft)
    assert (root / "smoke/figures/rollout_perplexity_gaps.png").exists()
    assert (root / "smoke/figures/claims.png").exists() and (root / "smoke/figures/claims_forest.png").exists()
    assert set(claims["C5"]["evidence"]["parts"]) == {"grows_under_sft_gt", "flat_under_grpo"}     # C5 judges its whole sentence
    assert set(claims["C2"]["evidence"]["parts"]) == {"matched_drop", "forgets_most_on_grounding"}  # and C2


@pytest.mark.slow
def test_smoke_ablations(smoke_runs):
    "Table 2 scores both SFTs at every checkpoint against Table 1's base, C6 is judged from it; corrected rollouts are all right."
    import json
    import pandas as pd
    from jigsaw_forget.study import prior_mean
    root, _ = smoke_runs
    la = load_metrics(root / "smoke/lr_ablation")
    t2 = pd.read_csv(root / "smoke/lr_ablation/table2.csv")
    assert t2.model.tolist() == ["base", "SFT-GT (1)", "SFT-GT (2)", "SFT-GRPO-Rollout (1)", "SFT-GRPO-Rollout (2)"]
    base = pd.read_csv(root / "smoke/forgetting_table/table1.csv").iloc[0]
    assert abs(t2.loc[0, "prior_mean"] - base.prior_mean) < 1e-12 and t2.loc[0, "mini_ocr"] == base.mini_ocr   # the base row is Table 1's
    gt = next(m for m in la["per_seed"] if m["method"] == "SFT-GT")
    study_lr = load_metrics(root / "smoke/sft_gt")["per_seed"][0]["params"]["lr"]
    assert gt["params"]["batch_size"] == 8 and gt["params"]["lr"] > study_lr and [h["step"] for h in gt["perplexity"]] == [0, 1, 2]
    last = gt["checkpoints"][-1]
    assert abs(la["retention"]["SFT-GT"]["0"] - prior_mean(last["scores"]) / la["base_prior_mean"]) < 1e-12
    assert (root / "smoke/figures/lr_ablation.png").exists()
    c6 = json.loads((root / "smoke/claims/claims.json").read_text())["C6"]
    assert c6["verdict"] == "inconclusive" and c6["evidence"]["retention"] == la["retention"]        # one seed: no verdict
    cr = load_metrics(root / "smoke/corrected_rollouts")
    r0 = cr["per_seed"][0]["rollouts"]
    assert r0["samples"] == 8 and r0["corrected"] == 8 - round(r0["sample_accuracy"] * 8) and r0["kept"] >= 4   # every puzzle trains
    import datasets
    from jigsaw_forget.tasks import JigsawTask
    ds = datasets.load_from_disk(str(root / "smoke/corrected_rollouts/seed0/rollouts"))
    task = JigsawTask(**{k: v for k, v in cr["task"].items() if k != "task"})
    assert len(ds) == r0["kept"] and all(task.is_correct(c, r) for c, r in zip(ds["completion"], ds))
    assert set(cr["comparison"]) == {"SFT on corrected rollouts", "SFT-GT", "SFT-GRPO-Rollout"}
    assert (root / "smoke/figures/corrected_rollouts.png").exists()


@pytest.mark.slow
def test_smoke_rerun_skips_and_override_reruns_only_downstream(smoke_runs):
    root, _ = smoke_runs
    again = run_profile("smoke", runs_root=root, progress_bar=False)
    assert {r["status"] for r in again} == {"skipped"}
    plan = run_profile("smoke", runs_root=root, dry_run=True, overrides={"zero_shot.n_test": 2})
    assert {r["stage"]: r["status"] for r in plan} == {s: "would run" if s == "zero_shot" else "would skip" for s in STAGES}


@pytest.mark.slow
def test_pretraining_continues_from_an_earlier_stage(smoke_runs, tmp_path):
    "A later pretraining stage (`init_from`) keeps the earlier model's tokenizer, trains its weights on the chosen world\n\n"\
    "version, and counts the earlier stage's training time in the base's."
    from safetensors.torch import load_file
    from jigsaw_forget.world import load_world_config
    from jigsaw_forget.models import load_model
    from test_experiments import _pretrain
    root, _ = smoke_runs
    first = root / "smoke/pretrain_base"
    _pretrain(tmp_path, run_dir=str(tmp_path / "more"), init_from=str(first / "model"), world_version=5, steps=2, batch_size=4,
              eval_n=2, figures_dir=str(tmp_path / "fig"))
    m, m0 = load_metrics(tmp_path / "more"), load_metrics(first)
    assert m["source"].startswith("continued from") and m["init_from"] == str(first / "model") and m["world_version"] == 5
    assert m["train_seconds"] == pytest.approx(m0["train_seconds"] + m["stage_seconds"])
    assert load_world_config(tmp_path / "more/model").version == 5
    tok0, tok1 = (load_model(d)[1].tokenizer for d in (first / "model", tmp_path / "more/model"))
    text = 'Locate the red circle. <think>patch 2</think><answer>[3, 0, 1, 2]</answer> {"bbox_2d": [4, 32, 24, 52]}'
    assert tok0.get_vocab() == tok1.get_vocab() and tok0(text).input_ids == tok1(text).input_ids
    w0, w1 = load_file(first / "model/model.safetensors"), load_file(tmp_path / "more/model/model.safetensors")
    assert w0.keys() == w1.keys() and any(not (w0[k] == w1[k]).all() for k in w0)
