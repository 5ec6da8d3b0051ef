"""The study's experiments as a Lab user runs them: each notebook from its own folder with its defaults (shrunk), in
the order their default run folders chain (runs/manual/sft_gt → grpo → sft_rollouts → the table → the analyses),
here kept apart from runs/manual by one shared root. Its own file so that pytest's workers run it beside test_lab.py's
browser checks (`make test`: `-n 2 --dist loadfile`)."""
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The study's stages read each other's run folders (their defaults chain runs/manual/sft_gt, grpo, sft_rollouts into the
# table), so they run in that order, each from its own folder, shrunk; every other default as is.
CHAIN = {"10_sft_gt": {"steps": 1, "n_test": 2, "prior_n": 1},
         "11_grpo": {"steps": 2, "mid_step": 1, "n_test": 2, "prior_n": 1},
         "12_sft_rollouts": {"steps": 1, "n_prompts": 16, "num_generations": 8, "n_test": 2, "prior_n": 1},
         "20_forgetting_table": {"n_test": 2, "prior_n": 1},
         "21_frontier": {"n_test": 2, "prior_n": 1},
         "30_rollout_perplexity": {"n_questions": 2, "k": 2},
         "41_grpo_restart": {},
         "32_forgetting_law": {"n_prompts": 2, "k": 1, "n_boot": 20},
         "31_learning_dynamics": {"n_u": 1, "n_v": 1, "n_prompts": 2, "num_generations": 2, "n_check": 1, "lrs": [1e-6],
                                  "max_new_tokens": 16, "benchmarks": ["mini_pope"], "n_boot": 100},
         "40_lr_ablation": {"steps": 2, "score_every": 1, "n_test": 2, "prior_n": 1, "track_n": 2},
         "42_corrected_rollouts": {"n_prompts": 2, "num_generations": 2, "steps": 1, "n_test": 2, "prior_n": 1},
         "50_claims": {}}


def test_study_chain_defaults_run_in_order(tmp_path):
    "SFT-GT, GRPO, rollout-SFT and Table 1 as a Lab user runs them: in order, from their folder, default paths kept apart\n\n"\
    "from runs/manual by one shared root (each default `runs/manual/<x>` becomes `<tmp>/<x>`)."
    import papermill as pm
    from jigsaw_forget.runner import load_metrics
    dirs = {k: str(tmp_path / k) for k in ("sft_gt", "grpo", "sft_rollouts", "forgetting_table", "frontier", "rollout_perplexity",
                                                 "restart_ablation", "forgetting_law", "learning_dynamics", "lr_ablation",
                                                 "corrected_rollouts", "claims")}
    links = {"12_sft_rollouts": {"grpo_dir": dirs["grpo"]},
             "20_forgetting_table": {"sft_gt_dir": dirs["sft_gt"], "grpo_dir": dirs["grpo"], "sft_rollouts_dir": dirs["sft_rollouts"]},
             "21_frontier": {"stage_dirs": [dirs["sft_gt"], dirs["grpo"], dirs["sft_rollouts"]]},
             "30_rollout_perplexity": {"grpo_dir": dirs["grpo"]},
             "41_grpo_restart": {"with_dir": dirs["grpo"], "without_dir": str(tmp_path / "grpo_norestart")},
             "32_forgetting_law": {"stage_dirs": [dirs["sft_gt"], dirs["grpo"], dirs["sft_rollouts"]],
                                   "base_metrics_dir": dirs["forgetting_table"]},
             "31_learning_dynamics": {"grpo_dir": dirs["grpo"]},
             "40_lr_ablation": {"rollouts_dir": dirs["sft_rollouts"], "base_metrics_dir": dirs["forgetting_table"]},
             "42_corrected_rollouts": {"grpo_dir": dirs["grpo"], "sft_gt_dir": dirs["sft_gt"], "sft_rollouts_dir": dirs["sft_rollouts"],
                                       "base_metrics_dir": dirs["forgetting_table"]},
             "50_claims": {"sft_gt_dir": dirs["sft_gt"], "grpo_dir": dirs["grpo"], "sft_rollouts_dir": dirs["sft_rollouts"],
                           "table_dir": dirs["forgetting_table"], "rollout_ppl_dir": dirs["rollout_perplexity"],
                           "forgetting_law_dir": dirs["forgetting_law"], "dynamics_dir": dirs["learning_dynamics"],
                           "lr_ablation_dir": dirs["lr_ablation"]}}
    for name, run in zip(CHAIN, dirs.values()):
        if name == "41_grpo_restart":      # its "without restart" arm: the chain's GRPO run, recorded as run without one
            import json, shutil
            nr = shutil.copytree(dirs["grpo"], tmp_path / "grpo_norestart")
            m = json.loads((nr / "metrics.json").read_text())
            for s in m["per_seed"]: s["params"]["restart_every_epochs"] = 0.0
            (nr / "metrics.json").write_text(json.dumps(m))
        nb = ROOT / f"nbs/experiments/{name}.ipynb"
        params = dict(CHAIN[name], **links.get(name, {}), run_dir=run, figures_dir=str(tmp_path / "figures"))
        pm.execute_notebook(str(nb), str(tmp_path / f"{name}.ipynb"), parameters=params, cwd=str(nb.parent),
                            kernel_name="python3", progress_bar=False)
        assert load_metrics(run), name
    assert (tmp_path / "forgetting_table/table1.csv").exists() and (tmp_path / "figures/table1.png").stat().st_size > 1000
    assert (tmp_path / "claims/claims.json").exists() and (tmp_path / "figures/claims.png").stat().st_size > 1000
    assert (tmp_path / "frontier/frontier.csv").exists() and (tmp_path / "figures/frontier.png").stat().st_size > 1000
    assert (tmp_path / "figures/grpo_restart.png").stat().st_size > 1000
    assert (tmp_path / "lr_ablation/table2.csv").exists() and (tmp_path / "figures/lr_ablation.png").stat().st_size > 1000
    assert (tmp_path / "figures/corrected_rollouts.png").stat().st_size > 1000
    c6 = json.loads((tmp_path / "claims/claims.json").read_text())["C6"]
    assert "not_measured" not in c6["evidence"] and c6["verdict"] == "inconclusive"      # measured, on one seed
    law = load_metrics(dirs["forgetting_law"])          # SFT-GT, GRPO mid and final, rollout-SFT: every checkpoint of the chain
    assert law["n_checkpoints"] == 4 and all(abs(c["forward_kl"]) < 1e6 for c in law["checkpoints"])
