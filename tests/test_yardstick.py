"""The evaluation engine scored against known answers.

`jigsaw_forget.benchmarks.generate` (the engine imports `models.generate` by name) is replaced by stubs with its
signature that answer each prompt from a table built from the rows themselves:
- the oracle answers every row with its own target (the ideal output) → every benchmark family scores its maximum;
- a constant answer → values worked out by hand from the toy rows;
- the oracle's outputs reversed within each batch (answers landing on the wrong rows) → the scores drop;
- per-item JSONL lines carry the score of their own id, also when a row of the batch fails or the engine falls back
  to one-at-a-time generation.
No model runs here: the processor only sizes images (grounding rescales boxes to the processor's resized image).
"""
import json

import pytest

from jigsaw_forget import benchmarks as B
from jigsaw_forget.benchmarks import (MINI_SUITE, evaluate, get_benchmark, load_image, mme_scores, prompt_text,
                                      toy_source)
from jigsaw_forget.models import mini_world_model

PAPER = ["refcoco", "refcoco+", "refcocog", "docvqa", "infovqa", "ocrbench", "mme", "mmstar", "gqa", "pope"]
N_TOY, N_MINI, N_JIGSAW = 4, 6, 4


@pytest.fixture(scope="module")
def processor():
    return mini_world_model("micro")[1]


# ---------------------------------------------------------------- the stubs
def _key(messages, images):
    "What a stub sees of one prompt: its text and its images' pixels."
    return prompt_text(messages), tuple(load_image(im).tobytes() for im in images)


def ideal_output(name: str, row: dict) -> str:
    "The output a perfect model gives for `row` of benchmark `name` (after `build_prompt` has run on the row)."
    if name.startswith("refcoco"):              # the box in the processor's resized image, as Qwen2.5-VL answers
        (ow, oh), (rw, rh) = row["image_wh"], row["resized_wh"]
        x1, y1, x2, y2 = row["box"]
        return json.dumps({"bbox_2d": [x1 * rw / ow, y1 * rh / oh, x2 * rw / ow, y2 * rh / oh]})
    if name in ("docvqa", "infovqa", "ocrbench"): return row["answers"][0]
    if name in ("mme", "mmstar", "gqa", "pope"): return row["answer"]
    if name == "jigsaw": return f"<think>patch by patch</think><answer>{row['answer']}</answer>"
    if name.startswith("mini_"):                  # the world's own completion (any think text)
        return f"<think>look</think><answer>{row['answer']}</answer>" if row["reasoning"] else row["answer"]
    raise KeyError(name)


class Oracle:
    "A `models.generate` stand-in answering each prompt with `answer(row)` of the row it was built from."
    def __init__(self, name, rows, processor, answer=None, permute=None):
        self.table, self.calls = {}, []
        self.permute = permute
        b = get_benchmark(name)
        for r in rows:
            r = dict(r)
            try: msgs, ims = b.build_prompt(r, processor)
            except Exception: continue                       # rows the engine reports as failed
            out = (answer or (lambda row: ideal_output(name, row)))(r)
            k = _key(msgs, ims)
            assert self.table.setdefault(k, out) == out, "two rows with one prompt but different answers"

    def __call__(self, model, processor, prompts, images=None, max_new_tokens=64, batch_size=16, do_sample=False,
                 temperature=1.0, num_return_sequences=1, progress=False, **gen_kwargs):
        images = images if images is not None else [[]] * len(prompts)
        self.calls.append(len(prompts))
        outs = [self.table[_key(p, i)] for p, i in zip(prompts, images)]
        return self.permute(outs) if self.permute else outs


def rows_of(name: str, broken=None):
    "Small offline rows of a benchmark (toy hub sources, the mini-world's held-out rows, mini-world puzzles)."
    b = get_benchmark(name)
    if name in PAPER: return list(b.load(source=toy_source(name, N_TOY if broken is None else N_TOY + 2, broken=broken)))
    return list(b.load(limit=N_JIGSAW if name == "jigsaw" else N_MINI))


def run(monkeypatch, processor, name, rows, stub, tmp_path=None, batch_size=16):
    monkeypatch.setattr(B, "generate", stub)
    path = tmp_path / f"{name}.jsonl" if tmp_path is not None else None
    df = evaluate(None, processor, name, rows=rows, batch_size=batch_size, predictions_path=path, progress=False)
    metrics = dict(zip(df.metric, df.value))
    lines = [json.loads(l) for l in path.read_text().splitlines()] if path else None
    return metrics, lines


def maximum(name: str, rows: list[dict]) -> dict[str, float]:
    "The best value of each metric a benchmark reports, derived from its rows."
    if name.startswith("refcoco"): return {"accuracy": 1.0, "miou": 1.0}
    if name in ("docvqa", "infovqa"): return {"anls": 1.0, "n_scored": float(len(rows))}
    if name == "ocrbench": return {"accuracy": 1.0, "score": float(len(rows))}
    if name == "mme":                             # acc 100 + acc+ 100 in each category present
        return {"total": 200.0 * len({r["category"] for r in rows})}
    if name in ("mmstar", "gqa"): return {"accuracy": 1.0}
    if name == "pope": return {"f1": 1.0, "accuracy": 1.0, "precision": 1.0, "recall": 1.0}
    if name == "jigsaw": return {"accuracy": 1.0, "hit": 1.0, "format_reward": 1.0, "permutation_rate": 1.0}
    head = get_benchmark(name).headline
    out = {head: 1.0}
    for style, flag in (("reasoning", True), ("plain", False)):
        if any(r["reasoning"] is flag for r in rows): out |= {f"{style}_format": 1.0, f"{style}_score": 1.0}
    return out


ALL = PAPER + ["jigsaw"] + MINI_SUITE


def test_every_mini_suite_is_covered():
    from jigsaw_forget.world import world_tasks
    assert MINI_SUITE == [f"mini_{t}" for t in world_tasks()] and len(MINI_SUITE) >= 10
    assert {get_benchmark(n).axis for n in ALL} >= {"grounding", "ocr", "general_vqa", "hallucination", "lists", "jigsaw"}


# ---------------------------------------------------------------- (a) perfect answers score the maximum
@pytest.mark.parametrize("name", ALL)
def test_own_targets_score_the_maximum(monkeypatch, processor, tmp_path, name):
    rows = rows_of(name)
    if name in ("pope", "mini_pope", "mini_pope_adversarial"):      # F1 of 'yes' needs both labels present
        assert {str(r.get("answer", r.get("target"))).lower() for r in rows} == {"yes", "no"}
    oracle = Oracle(name, rows, processor)
    metrics, lines = run(monkeypatch, processor, name, rows, oracle, tmp_path, batch_size=3)
    want = maximum(name, rows)
    assert {k: metrics[k] for k in want} == pytest.approx(want, abs=1e-9)
    assert metrics["n_failed"] == 0 and max(oracle.calls) <= 3
    assert len(lines) == len(rows) and [l["id"] for l in lines] == [r["id"] for r in rows]
    assert all(l["score"] == pytest.approx(1.0) for l in lines)


# ---------------------------------------------------------------- (b) a constant answer, worked out by hand
def const(text):
    return lambda row: text


def test_constant_answers_paper_benchmarks(monkeypatch, processor):
    # toy rows (see `toy_source`): 4 rows each, images 64×48 px, which the micro processor resizes to 56×56
    got = {}
    for name, text in [("refcoco", '{"bbox_2d": [0, 0, 56, 56]}'),     # the whole image
                       ("docvqa", "value 0"), ("ocrbench", "word1 word2"), ("mme", "Yes"), ("mmstar", "B"),
                       ("gqa", "red"), ("pope", "yes")]:
        rows = rows_of(name)
        got[name], _ = run(monkeypatch, processor, name, rows, Oracle(name, rows, processor, answer=const(text)))
    # refcoco: gt boxes are 20×16 px inside the 64×48 image; IoU with the whole image = 320/3072 for all 8 expressions
    assert got["refcoco"]["accuracy"] == 0.0 and got["refcoco"]["miou"] == pytest.approx(320 / 3072)
    # docvqa: answers ["value i", "val i"]; row 0 exact, rows 1-3 one edit in 7 characters
    assert got["docvqa"]["anls"] == pytest.approx((1 + 3 * (1 - 1 / 7)) / 4)
    # ocrbench: answers word0..word3, substring rule → rows 1 and 2 hit
    assert (got["ocrbench"]["score"], got["ocrbench"]["accuracy"]) == (2.0, 0.5)
    # mme: 2 images × (Yes, No): acc 50, acc+ 0 → total 50
    assert got["mme"]["total"] == 50.0 and got["mme"]["count"] == 50.0
    # mmstar: answers A, B, C, D
    assert got["mmstar"]["accuracy"] == 0.25
    # gqa: answers red, blue, red, blue
    assert got["gqa"]["accuracy"] == 0.5
    # pope: labels yes, no, yes, no; always 'yes' → precision 1/2, recall 1, f1 2/3
    assert {k: got["pope"][k] for k in ("accuracy", "precision", "recall", "f1", "yes_ratio")} == \
        pytest.approx(dict(accuracy=0.5, precision=0.5, recall=1.0, f1=2 / 3, yes_ratio=1.0))


def test_constant_answers_jigsaw_and_mini(monkeypatch, processor):
    rows = rows_of("jigsaw")
    m, _ = run(monkeypatch, processor, "jigsaw", rows,
               Oracle("jigsaw", rows, processor, answer=const("<think>x</think><answer>[0, 1, 2, 3]</answer>")))
    ident = [0, 1, 2, 3]
    assert m["accuracy"] == pytest.approx(sum(r["answer"] == ident for r in rows) / len(rows))
    assert m["hit"] == pytest.approx(sum(sum(a == b for a, b in zip(r["answer"], ident)) / 4 for r in rows) / len(rows))
    assert m["format_reward"] == 1.0 and m["permutation_rate"] == 1.0

    rows = rows_of("mini_pope")
    m, _ = run(monkeypatch, processor, "mini_pope", rows, Oracle("mini_pope", rows, processor, answer=const("yes")))
    p = sum(r["target"] == "yes" for r in rows) / len(rows)
    assert 0 < p < 1 and m["accuracy"] == pytest.approx(p) and m["f1"] == pytest.approx(2 * p / (1 + p))
    assert m["plain_format"] == 1.0 and m["reasoning_format"] == 0.0          # 'yes' has no <think>/<answer>

    rows = rows_of("mini_cells")                                                 # list task: every prompt reasons
    first = rows[0]["answer"]
    m, _ = run(monkeypatch, processor, "mini_cells", rows,
               Oracle("mini_cells", rows, processor, answer=const(f"<think>x</think><answer>{first}</answer>")))
    assert m["accuracy"] == pytest.approx(sum(r["target"] == rows[0]["target"] for r in rows) / len(rows))
    assert m["reasoning_format"] == 1.0


# ---------------------------------------------------------------- (c) answers on the wrong rows score less
@pytest.mark.parametrize("name", ALL)
def test_reversed_batches_score_less(monkeypatch, processor, name):
    rows = rows_of(name)
    ideal = [ideal_output(name, {**r, **_prompted(name, r, processor)}) for r in rows]
    assert len(set(ideal)) > 1                   # otherwise no permutation could be seen
    head = get_benchmark(name).headline
    best = maximum(name, rows)[head]
    m, _ = run(monkeypatch, processor, name, rows, Oracle(name, rows, processor, permute=lambda o: o[::-1]),
               batch_size=len(rows))
    assert m[head] < best


def _prompted(name, row, processor):
    r = dict(row); get_benchmark(name).build_prompt(r, processor)
    return r


# ---------------------------------------------------------------- per-item lines carry their own id's score
@pytest.mark.parametrize("name,wrong", [("refcoco", '{"bbox_2d": [0, 0, 1, 1]}'), ("docvqa", "qqqqqqqqqqqq"),
                                        ("ocrbench", "qqq"), ("mmstar", "Z"), ("gqa", "qqq"), ("pope", None),
                                        ("mme", "Maybe"), ("jigsaw", "qqq"), ("mini_grounding", "qqq"),
                                        ("mini_ocr", "qqqqqqqqqqqq"), ("mini_vqa", "qqq"), ("mini_order", "qqq")])
def test_jsonl_scores_belong_to_their_ids(monkeypatch, processor, tmp_path, name, wrong):
    "Rows 1, 4, … get a wrong answer, the others their own target: each line's score is its own row's."
    rows = rows_of(name)
    good = {r["id"] for i, r in enumerate(rows) if i % 3 != 1}
    def answer(row):
        if row["id"] in good: return ideal_output(name, row)
        return wrong if wrong is not None else {"yes": "no", "no": "yes"}[row["answer"]]   # POPE: the other label
    m, lines = run(monkeypatch, processor, name, rows, Oracle(name, rows, processor, answer=answer), tmp_path,
                   batch_size=4)
    assert [l["id"] for l in lines] == [r["id"] for r in rows]
    target = get_benchmark(name).target
    for l, r in zip(lines, rows):
        assert l["score"] == (1.0 if r["id"] in good else 0.0), l["id"]
        assert l["output"] == answer(_prompted(name, r, processor))
        assert l["target"] == json.loads(json.dumps(B._jsonable(r[target])))
    head = get_benchmark(name).headline
    assert m[head] < maximum(name, rows)[head]


def test_alignment_survives_failed_rows_and_fallback(monkeypatch, processor, tmp_path):
    # a row whose image is corrupt drops out of the batch: the others must keep their own answers
    rows = rows_of("pope", broken=2)
    m, lines = run(monkeypatch, processor, "pope", rows, Oracle("pope", rows, processor), tmp_path, batch_size=6)
    assert m["n_failed"] == 1 and m["f1"] == 1.0 and m["accuracy"] == 1.0
    assert [l["id"] for l in lines] == [r["id"] for r in rows]
    assert [l["score"] for l in lines] == [1.0, 1.0, None, 1.0, 1.0, 1.0] and "error" in lines[2]
    # a batch that fails to generate is retried one prompt at a time: answers stay on their rows
    rows = rows_of("mmstar")
    oracle = Oracle("mmstar", rows, processor)
    def flaky(model, processor, prompts, images=None, **kw):
        if len(prompts) > 1: raise RuntimeError("batch refused")
        return oracle(model, processor, prompts, images, **kw)
    m, lines = run(monkeypatch, processor, "mmstar", rows, flaky, tmp_path, batch_size=4)
    assert m["accuracy"] == 1.0 and m["n_failed"] == 0 and oracle.calls == [1, 1, 1, 1]
    assert [l["score"] for l in lines] == [1.0] * 4


def test_short_output_lists_do_not_shift_or_drop_rows(monkeypatch, processor, tmp_path):
    # a generate that loses the last output of a batch: the engine must not zip the rest onto the wrong rows (or drop
    # rows silently); it retries the batch one prompt at a time
    rows = rows_of("gqa")
    oracle = Oracle("gqa", rows, processor)
    def lossy(model, processor, prompts, images=None, **kw):
        outs = oracle(model, processor, prompts, images, **kw)
        return outs[:-1] if len(outs) > 1 else outs
    m, lines = run(monkeypatch, processor, "gqa", rows, lossy, tmp_path, batch_size=4)
    assert m["accuracy"] == 1.0 and m["n_failed"] == 0
    assert [l["id"] for l in lines] == [r["id"] for r in rows] and [l["score"] for l in lines] == [1.0] * 4
