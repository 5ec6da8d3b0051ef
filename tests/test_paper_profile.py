"""The `paper` profile end to end, offline: configs/paper.yaml as a GPU user runs it, with overrides that swap only the
model (a local micro Qwen2.5-VL folder for the hub's Qwen2.5-VL-3B-Instruct), the data (a COCO-layout image folder for
COCO 2014, local `save_to_disk` copies of the ten benchmarks for the hub) and shrink counts and lengths. Every other
setting is the paper's: 3x3 puzzles, GRPO with 4 prompts x 4 completions per micro-batch and 4 micro-batches per step,
beta 0.04, the optimiser-and-reference restart every 2 epochs, lr 1e-6, the ten benchmarks scored in full.

A random micro model answers nothing well-formed, so its GRPO model's rollouts would keep nothing and the rollout stage
would stop (with its clear "solved none" error). The micro model is therefore first taught one answer: the right,
well-formed reasoning completion of the first training puzzle (the puzzle every stage draws first), a few hundred Adam
steps on that one prompt. Its other answers stay garbage, which the benchmarks score as such.
"""
import json
import math

import pandas as pd
import pytest
import torch

from hub_schemas import PAPER, save_local_benchmarks
from jigsaw_forget.benchmarks import BENCHMARKS
from jigsaw_forget.models import generate, load_model, mini_world_model
from jigsaw_forget.prompts import reasoning_completion
from jigsaw_forget.puzzles import procedural_image
from jigsaw_forget.runner import load_metrics, load_profile, run_profile
from jigsaw_forget.tasks import JigsawTask

N_TRAIN = 16          # one GRPO step = 4 prompts x grad-accum 4 = 16 prompts: an epoch is one step
N_BENCH = 2           # rows per benchmark (RefCOCO*: two expressions each)
# the profile's training chain up to Table 1 (its analyses run in the smoke profile and the Lab chain; their stages here
# are planned and type-checked by tests/test_experiments.py::test_every_profile_plans)
CHAIN = ["prior_eval_base", "zero_shot", "sft_gt", "grpo", "sft_rollouts", "forgetting_table"]


def coco_folder(root, n_train=N_TRAIN, n_val=2):
    "COCO 2014's layout (`train2014/*.jpg`, `val2014/*.jpg`) with small procedural pictures."
    for split, n, offset in (("train2014", n_train, 0), ("val2014", n_val, 1000)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            procedural_image(offset + i, 112).save(root / split / f"COCO_{split}_{i:012d}.jpg", quality=90)
    return root


def teach(model, processor, row, text, steps=400, lr=1e-2):
    "Adam on one prompt (a cosine schedule to 0) until the model answers `row` with `text`; returns the final loss."
    prompt = processor.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
    images = list(row["images"])
    enc = processor(text=[prompt + text + processor.tokenizer.eos_token], images=images, return_tensors="pt")
    labels = enc["input_ids"].clone()
    labels[:, :processor(text=[prompt], images=images, return_tensors="pt")["input_ids"].shape[1]] = -100
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    for _ in range(steps):
        loss = model(**enc, labels=labels).loss
        opt.zero_grad(); loss.backward(); opt.step(); sched.step()
    model.eval()
    return float(loss)


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("paper")
    coco = coco_folder(tmp / "coco")
    bench = save_local_benchmarks(tmp / "bench", N_BENCH)
    task = JigsawTask(rows=3, cols=3, source=f"coco:{coco}")           # the profile's task (image_size: the default)
    first = task.rl_rows("train", 1, seed=0)[0]
    answer = reasoning_completion(first["answer"])
    model, processor = mini_world_model("micro")
    assert teach(model, processor, first, answer) < 0.05
    micro = tmp / "micro"
    model.save_pretrained(micro); processor.save_pretrained(micro)   # a plain transformers folder, as from the hub
    m, p = load_model(micro)
    assert generate(m, p, [first["prompt"]], [list(first["images"])], max_new_tokens=48) == [answer]
    overrides = {
        # the model and the data
        "model_dir": str(micro), "base_dir": str(micro), "image_source": f"coco:{coco}",
        "suite": f"paper:{bench}", "prior_eval_base.suite": [f"paper:{bench}"],
        # counts and lengths only
        "n_train": N_TRAIN, "n_test": 2, "n_prompts": 2, "max_new_tokens": 48, "max_completion_length": 48,
        "sft_gt.steps": 2, "sft_gt.track_every": 1, "sft_gt.track_n": 2,
        "grpo.steps": 3, "mid_step": 2, "keep_steps": [1], "save_steps": 1,
        "sft_rollouts.steps": 2,
    }
    runs = tmp / "runs"
    results = run_profile("paper", runs_root=runs, overrides=overrides, only=CHAIN, progress_bar=False)
    return dict(results=results, runs=runs / "paper", micro=micro, bench=bench, coco=coco)


@pytest.mark.slow
def test_paper_profile_runs_offline(paper_run):
    runs = paper_run["runs"]
    stages = list(load_profile("paper")["stages"])[:len(CHAIN)]
    assert stages == CHAIN and [r["stage"] for r in paper_run["results"]] == stages
    assert all(r["status"] == "ran" for r in paper_run["results"])
    assert all(load_metrics(runs / s) for s in stages)

    # the base scored on all ten benchmarks, under their registered names, each headline finite
    prior = load_metrics(runs / "prior_eval_base")
    assert prior["benchmarks"] == PAPER
    for name in PAPER:
        assert math.isfinite(prior["scores"][name][BENCHMARKS[name].headline]), name
        assert prior["scores"][name]["n_failed"] == 0, name
    assert prior["model_dir"] == str(paper_run["micro"])

    # GRPO: the paper's batch mapping and restart; 16 prompts per optimiser step over 16 prompts = one epoch per step
    grpo = load_metrics(runs / "grpo")["per_seed"][0]
    p = grpo["params"]
    assert (p["prompts_per_step"], p["num_generations"], p["grad_accum"], p["beta"]) == (4, 4, 4, 0.04)
    assert (p["task"]["rows"], p["task"]["cols"], p["task"]["source"]) == (3, 3, f"coco:{paper_run['coco']}")
    assert p["suite"] == f"paper:{paper_run['bench']}" and p["restart_every_epochs"] == 2.0
    assert grpo["steps"] == 3 and grpo["restarts"] == [2]
    state = json.loads((runs / "grpo" / "seed0" / "trainer" / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["train_batch_size"] == 4 * 4                          # completions per micro-batch: 4 prompts x G=4
    assert list(pd.read_csv(runs / "grpo" / "seed0" / "train_log.csv").epoch) == [1.0, 2.0, 3.0]   # x4 micro-batches
    assert grpo["mid"]["step"] == 2 and set(PAPER) <= set(grpo["mid"]["scores"])

    # the rollout stage sampled the GRPO model (and kept the taught answer to train the base on)
    roll = load_metrics(runs / "sft_rollouts")["per_seed"][0]
    assert roll["params"]["grpo_model"] == str(runs / "grpo" / "seed0" / "model")
    assert roll["rollouts"]["kept"] >= 1 and roll["steps"] == 2

    # Table 1: one column per paper benchmark, one row per model
    t1 = pd.read_csv(runs / "forgetting_table" / "table1.csv")
    assert set(PAPER) <= set(t1.columns)
    assert list(t1.model) == ["base", "SFT-GT", "GRPO (step 2)", "GRPO", "SFT-GRPO-Rollout"]
    assert t1[PAPER].notna().all().all()
