"""Generation and training pinned.

- `models.generate`: greedy batched generation equals one-at-a-time generation on prompts of different lengths and
  image counts (0, 1 and 4 images); `num_return_sequences` keeps outputs grouped per prompt, in prompt order; the
  tokenizer's padding side is restored after the call, also when the call fails.
- `train.run_sft` (TRL's SFTTrainer): in a batch collated by the trainer itself (its own dataloader and collator),
  the labelled tokens (labels != -100) decode exactly to the completion plus the end-of-turn token, prompt and image
  tokens are ignored; one training step changes the weights.
Generation uses the committed tiny base (a random model answers every prompt alike, which would hide misalignment).
"""
import random

import datasets
import pytest
import torch

from jigsaw_forget.benchmarks import mini_rows
from jigsaw_forget.models import generate, load_model, mini_world_model
from jigsaw_forget.train import run_sft, sft_args
from jigsaw_forget.world import WorldConfig, example_content, example_messages, make_example

BASE = "bases/tiny/model"
NEW = 12            # new tokens per answer


@pytest.fixture(scope="module")
def base():
    return load_model(BASE)


def _prompt(row):
    images = row["images"]
    return [{"role": "user", "content": example_content(row["question"], images, row["image_label"])}], list(images)


@pytest.fixture(scope="module")
def prompts():
    "Prompts of different lengths and image counts: plain and reasoning questions, 1 image, 4 images, no image."
    rows = mini_rows("ocr", 2) + mini_rows("order_images", 1) + mini_rows("grounding", 2)[1:]
    ps = [_prompt(r) for r in rows]
    text_only = [{"role": "user", "content": [{"type": "text", "text": "What is written in the image?"}]}]
    ps.insert(3, (text_only, []))
    return [p for p, _ in ps], [i for _, i in ps]


@pytest.fixture(scope="module")
def single(base, prompts):
    model, processor = base
    return [generate(model, processor, [p], [i], max_new_tokens=NEW)[0] for p, i in zip(*prompts)]


def test_prompts_differ_in_length_and_images(base, prompts):
    _, processor = base
    msgs, images = prompts
    assert sorted({len(i) for i in images}) == [0, 1, 4]
    texts = [processor.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in msgs]
    assert len({len(t) for t in texts}) == len(texts)


def test_batched_greedy_equals_one_at_a_time(base, prompts, single):
    model, processor = base
    assert len(set(single)) >= 4 and all(single)           # the base answers the prompts differently
    tok = processor.tokenizer
    old, tok.padding_side = tok.padding_side, "right"      # as training leaves it: generate must pad left itself
    try:
        assert generate(model, processor, *prompts, max_new_tokens=NEW, batch_size=len(single)) == single
        assert generate(model, processor, *prompts, max_new_tokens=NEW, batch_size=2) == single
    finally:
        tok.padding_side = old


def test_num_return_sequences_keeps_prompt_order(base, prompts, single):
    model, processor = base
    k = 2
    # sampling at a vanishing temperature picks the greedy token, so each prompt's k samples equal its greedy output
    out = generate(model, processor, *prompts, max_new_tokens=NEW, batch_size=4, do_sample=True, temperature=1e-5,
                   num_return_sequences=k)
    assert len(out) == k * len(single)
    assert [out[i * k:(i + 1) * k] for i in range(len(single))] == [[s] * k for s in single]


def test_padding_side_restored(base, prompts):
    model, processor = base
    tok = processor.tokenizer
    old = tok.padding_side
    try:
        for side in ("right", "left"):
            tok.padding_side = side
            generate(model, processor, prompts[0][:2], prompts[1][:2], max_new_tokens=2)
            assert tok.padding_side == side
            tok.padding_side = side
            with pytest.raises(Exception):                   # a malformed prompt fails in the chat template
                generate(model, processor, [None], None, max_new_tokens=2)
            assert tok.padding_side == side
            with pytest.raises(Exception):                   # an image placeholder without its image fails later
                generate(model, processor, [[{"role": "user", "content": [{"type": "image"}]}]], None, max_new_tokens=2)
            assert tok.padding_side == side
    finally:
        tok.padding_side = old


# ---------------------------------------------------------------- SFT
@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    "One SFT step of a micro model on three world examples (1 image plain, 1 image reasoning, 4 images reasoning)."
    cfg = WorldConfig()
    exs = [make_example("ocr", random.Random(1), cfg, reasoning=False),
           make_example("grounding", random.Random(2), cfg, reasoning=True),
           make_example("order_images", random.Random(3), cfg)]
    ds = datasets.Dataset.from_list([example_messages(e) for e in exs])
    model, processor = mini_world_model("micro")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = sft_args(tmp_path_factory.mktemp("sft"), max_steps=1, batch_size=len(exs), lr=1e-3)
    trainer, log = run_sft(model, processor, ds, args)
    return exs, model, processor, before, trainer, log


def test_sft_labels_are_completion_and_end_of_turn(sft_run):
    exs, model, processor, _, trainer, _ = sft_run
    tok = processor.tokenizer
    batch = next(iter(trainer.get_train_dataloader()))               # the trainer's own dataset path and collator
    ids, labels, mask = batch["input_ids"].cpu(), batch["labels"].cpu(), batch["attention_mask"].cpu()
    assert ids.shape[0] == len(exs)
    image_id = model.config.image_token_id
    assert (labels[ids == image_id] == -100).all() and (ids == image_id).sum() > 0   # image tokens never learned
    assert (labels[mask == 0] == -100).all()                                         # nor padding
    seen = set()
    for row_ids, row_labels, row_mask in zip(ids, labels, mask):
        kept = row_mask.bool()
        lab = row_labels[kept]
        learned = lab != -100
        n = int(learned.sum())
        assert n > 0 and learned[-n:].all() and not learned[:-n].any()   # one span at the end: the answer turn
        prompt = tok.decode(row_ids[kept][:-n])
        ex = next(e for e in exs if e.question in prompt)
        seen.add(ex.task)
        assert prompt.startswith("<|im_start|>system") and prompt.endswith("<|im_start|>assistant\n")
        # the completion, then Qwen's end-of-turn token (and the template's newline after it)
        assert tok.decode(lab[learned]) == ex.completion + "<|im_end|>\n"
    assert seen == {e.task for e in exs}


def test_one_sft_step_changes_the_weights(sft_run):
    _, model, _, before, trainer, log = sft_run
    assert trainer.state.global_step == 1 and torch.isfinite(torch.tensor(log["loss"].tolist())).all()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert "model.language_model.embed_tokens.weight" in changed or "lm_head.weight" in changed
    assert any(".visual." in f".{n}" for n in changed) and any("layers.0." in n for n in changed)
    assert all(torch.isfinite(p).all() for p in model.parameters())
