"Scorers with known values, parser robustness (hypothesis), loaders on offline fixtures, and the engine end to end."
import json, math, warnings

import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image

from jigsaw_forget import benchmarks as B
from jigsaw_forget.benchmarks import (AXES, BENCHMARKS, RESULT_COLUMNS, Benchmark, anls, axis_table, configure,
                                      evaluate, evaluate_suite, exact_match, extract_choice, get_benchmark, iou,
                                      mme_category_scores, mme_parse, mme_scores, normalize_answer, ocrbench_match,
                                      parse_bbox, pope_metrics, pope_parse, register, rescale_box, resized_size,
                                      toy_source)
from jigsaw_forget.models import mini_world_model

PAPER = ["refcoco", "refcoco+", "refcocog", "docvqa", "infovqa", "ocrbench", "mme", "mmstar", "gqa", "pope"]


@pytest.fixture(scope="module")
def micro():
    return mini_world_model("micro")


# ---------------------------------------------------------------- IoU and boxes
@pytest.mark.parametrize("a,b,want", [
    ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),        # no overlap
    ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),          # identical
    ([0, 0, 10, 10], [2, 2, 7, 7], 0.25),           # containment
    ([2, 2, 7, 7], [0, 0, 10, 10], 0.25),           # symmetric
    ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),     # half overlap
    ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),         # touching edges
    ([0, 0, 10, 10], [10, 10, 20, 20], 0.0),        # touching corners
])
def test_iou_known(a, b, want):
    assert iou(a, b) == pytest.approx(want)


@pytest.mark.parametrize("bad", [None, [], [1, 2, 3], [1, 2, 3, 4, 5], [5, 5, 5, 9], [5, 5, 1, 9], [0, 0, 9, 0],
                                 [0, 0, math.nan, 4], [0, 0, math.inf, 4], "0,0,1,1", [0, 0, "x", 1], {"a": 1}, 7])
def test_iou_degenerate(bad):
    assert iou(bad, [0, 0, 10, 10]) == 0.0 and iou([0, 0, 10, 10], bad) == 0.0


@pytest.mark.parametrize("text,want", [
    ('```json\n[\n  {"bbox_2d": [12, 34, 56, 78], "label": "dog"}\n]\n```', [12, 34, 56, 78]),
    ('{"bbox_2d": [1.5, 2, 3, 4.25]}', [1.5, 2, 3, 4.25]),
    ('[{"bbox_2d": [5, 6, 7, 8]}, {"bbox_2d": [1, 2, 3, 4]}]', [5, 6, 7, 8]),
    ("noise [1, 2] then [10, 20, 30, 40] and [1, 1, 1, 1]", [10, 20, 30, 40]),
    ("[10,20,30,40]", [10, 20, 30, 40]),
    ("(10,20),(30,40)", [10, 20, 30, 40]),
    ('{"bbox_2d": [10, 20, 30, 40', None),           # truncated JSON, no closed list
    ("[1, 2, 3]", None), ("", None), (None, None), (3.5, None), ("нет ✓ 框", None),
])
def test_parse_bbox(text, want):
    assert parse_bbox(text) == want


def test_rescale_box():
    assert rescale_box([14, 28, 28, 56], (28, 56), (100, 200)) == [50, 100, 100, 200]
    assert rescale_box([1, 2, 3, 4], None, (5, 5)) == [1, 2, 3, 4]
    assert rescale_box([1, 2, 3, 4], (0, 0), (5, 5)) == [1, 2, 3, 4]
    assert rescale_box(None, (1, 1), (2, 2)) is None


def test_resized_size_matches_processor(micro):
    _, processor = micro
    for w, h in [(200, 150), (64, 48), (30, 500)]:
        grid = processor.image_processor(images=[Image.new("RGB", (w, h))], return_tensors="pt")["image_grid_thw"][0]
        assert resized_size(processor, w, h) == (int(grid[2]) * 14, int(grid[1]) * 14)


# ---------------------------------------------------------------- ANLS, OCRBench
def test_anls():
    assert anls("Yes", ["yes"]) == 1.0
    assert anls("  The \n Cat ", "the cat") == 1.0                     # case / whitespace insensitive
    assert anls("1995", ["1996"]) == pytest.approx(0.75)
    assert anls("abcdef", ["uvwxyz"]) == 0.0                           # below threshold
    assert anls("abcd", ["abxy"]) == pytest.approx(0.5)                # at the threshold: official code keeps it
    assert anls("abcd", ["axyz"]) == 0.0
    assert anls("red car", ["blue", "red cars", "car"]) == pytest.approx(1 - 1 / 8)   # best over answers
    assert anls("x", []) == 0.0 and anls(None, ["x"]) == 0.0 and anls("", [""]) == 0.0
    assert anls("abc", ["abc"], threshold=0.9) == 1.0 and anls("abcd", ["abce"], threshold=0.9) == 0.0


def test_levenshtein():
    assert B.levenshtein("kitten", "sitting") == 3
    assert B.levenshtein("", "abc") == 3 and B.levenshtein("abc", "abc") == 0


def test_ocrbench_rule():
    assert ocrbench_match("The sign says STOP.", ["stop"]) == 1.0          # substring, lower-cased
    assert ocrbench_match("st op", ["stop"]) == 0.0
    assert ocrbench_match("no", ["yes", "no"]) == 1.0                       # any answer
    hme = B.HME_CATEGORY
    assert ocrbench_match("x ^ { 2 }\n+ 1", ["x^{2}+1"], category=hme) == 1.0   # whitespace removed for HME
    assert ocrbench_match("x ^ { 2 }", ["x^{2}"], dataset="HME100k") == 1.0
    assert ocrbench_match("x ^ { 2 }", ["x^{2}"]) == 0.0                    # not for other categories
    assert ocrbench_match("anything", [""]) == 0.0 and ocrbench_match(None, ["a"]) == 0.0
    s = B.ocrbench_scores([dict(prediction="a STOP", answers=["stop"], category="Regular Text Recognition"),
                           dict(prediction="go", answers=["stop"], category="Regular Text Recognition"),
                           dict(prediction="\\frac{1}{2}", answers=["\\frac {1} {2}"], category=hme)])
    assert s["score"] == 2.0 and s["accuracy"] == pytest.approx(2 / 3) and s[f"score/{hme}"] == 1.0


# ---------------------------------------------------------------- POPE
def test_pope_parse():
    assert [pope_parse(t) for t in ["Yes", "No", "no.", "No, there is not.", "There is no cat.", "Yes. No.",
                                    "It is not present", "", None, 12, "I don't know"]] == \
        ["yes", "no", "no", "no", "no", "yes", "no", "yes", "yes", "yes", "yes"]


def test_pope_metrics_confusion():
    # TP=3, FP=1, TN=4, FN=2
    preds = ["Yes"] * 3 + ["Yes, there is."] + ["No"] * 4 + ["No."] * 2
    labels = ["yes"] * 3 + ["no"] + ["no"] * 4 + ["yes"] * 2
    m = pope_metrics(preds, labels)
    p, r = 3 / 4, 3 / 5
    assert m == pytest.approx(dict(accuracy=0.7, precision=p, recall=r, f1=2 * p * r / (p + r), yes_ratio=0.4))
    assert pope_metrics([], []) == dict(accuracy=0.0, precision=0.0, recall=0.0, f1=0.0, yes_ratio=0.0)
    assert pope_metrics(["no"] * 3, ["yes"] * 3)["f1"] == 0.0
    with pytest.raises(ValueError):
        pope_metrics(["yes"], ["yes", "no"])


# ---------------------------------------------------------------- MME, MMStar, GQA
def test_mme_parse():
    assert [mme_parse(t) for t in ["Yes", "no.", "Y", "n", "Yes, it is", "Not at all", "Maybe", "", None]] == \
        ["yes", "no", "yes", "no", "yes", "no", "other", "other", "other"]


def test_mme_acc_plus():
    rows = [dict(category="color", question_id="1.jpg", answer="Yes", prediction="Yes"),
            dict(category="color", question_id="1.jpg", answer="No", prediction="No"),        # image 1: both right
            dict(category="color", question_id="2.jpg", answer="Yes", prediction="No"),
            dict(category="color", question_id="2.jpg", answer="No", prediction="No")]        # image 2: one right
    assert mme_category_scores(rows)["color"] == dict(acc=75.0, acc_plus=50.0, score=125.0)
    rows += [dict(category="text_translation", question_id="t.png", answer="Yes", prediction="Yes"),
             dict(category="text_translation", question_id="t.png", answer="No", prediction="No"),
             dict(category="mystery", question_id="m.png", answer="Yes", prediction="Yes")]  # in neither sum
    s = mme_scores(rows)
    assert (s["perception"], s["cognition"], s["total"]) == (125.0, 200.0, 325.0)
    assert s["color"] == 125.0 and s["mystery"] == 200.0


@pytest.mark.parametrize("text,want", [
    ("B", "B"), ("B.", "B"), ("(B)", "B"), ("(b)", "B"), ("b", "B"), ("C: a blue car", "C"),
    ("Answer: B", "B"), ("Answer: (C)", "C"), ("the answer is b", "B"), ("The correct answer is D.", "D"),
    ("option a", "A"), ("I choose (A) because", "A"), ("It must be C, obviously.", "C"),
    ("a dog", None), ("The answer is a dog", None), ("A or B", None), ("E", None), ("", None), (None, None),
])
def test_extract_choice(text, want):
    assert extract_choice(text) == want


def test_gqa_normalisation():
    assert normalize_answer(" The Table. ") == "table"
    assert normalize_answer("An apple, a pear!") == "apple pear"
    assert exact_match("Yes.", "yes") == 1.0 and exact_match("a man", "man") == 1.0
    assert exact_match("left side", "left") == 0.0 and exact_match("", "") == 0.0
    assert B.exact_match_scores([dict(prediction="red", answer="Red"), dict(prediction="blue", answer="red")]) == \
        {"accuracy": 0.5}


# ---------------------------------------------------------------- robustness (hypothesis)
garbage = st.one_of(st.none(), st.text(max_size=300), st.integers(), st.floats(), st.binary(max_size=50),
                    st.lists(st.integers(), max_size=6), st.text(alphabet="[]{}(),.:0123456789-eE bbox_2d\"", max_size=200))


@settings(max_examples=150, deadline=None)
@given(garbage, garbage)
def test_parsers_and_scorers_never_raise(x, y):
    box = parse_bbox(x)
    assert box is None or (len(box) == 4 and all(math.isfinite(v) for v in box))
    assert 0.0 <= iou(box, parse_bbox(y)) <= 1.0 and 0.0 <= iou(x, y) <= 1.0
    assert 0.0 <= anls(x, [y]) <= 1.0 and 0.0 <= anls(x, y) <= 1.0
    assert ocrbench_match(x, [y]) in (0.0, 1.0) and ocrbench_match(x, y, category=B.HME_CATEGORY) in (0.0, 1.0)
    assert pope_parse(x) in ("yes", "no") and mme_parse(x) in ("yes", "no", "other")
    assert extract_choice(x) in (None, "A", "B", "C", "D")
    assert exact_match(x, y) in (0.0, 1.0) and isinstance(normalize_answer(x), str)
    assert rescale_box(x, y, (1, 1)) is None or len(rescale_box(x, y, (1, 1))) == 4
    m = pope_metrics([x, y], [y, x])
    assert all(0.0 <= v <= 1.0 for v in m.values())
    s = mme_scores([dict(category="count", question_id="i", answer=y, prediction=x)])
    assert 0.0 <= s["total"] <= 200.0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=40), st.sampled_from(["yes", "no"])), min_size=1, max_size=20))
def test_pope_metrics_in_range(pairs):
    m = pope_metrics([p for p, _ in pairs], [l for _, l in pairs])
    assert all(0.0 <= v <= 1.0 for v in m.values())
    assert m["accuracy"] == pytest.approx(sum(pope_parse(p) == l for p, l in pairs) / len(pairs))


def test_huge_strings_are_cheap():
    big = "x" * 1_000_000 + "[1, 2, 3, 4]"
    assert parse_bbox(big) == [1, 2, 3, 4]
    assert anls(big, ["xx"]) == 0.0 and extract_choice(big) is None and pope_parse(big) == "yes"
    assert ocrbench_match(big, ["xxx"]) == 1.0


# ---------------------------------------------------------------- registry and loaders
def test_registry():
    assert sorted(PAPER) == sorted(n for n in BENCHMARKS if n in PAPER)
    axes = {n: get_benchmark(n).axis for n in PAPER}
    assert axes["refcoco"] == "grounding" and axes["ocrbench"] == "ocr" and axes["mme"] == "general_vqa"
    assert axes["pope"] == "hallucination" and set(axes.values()) <= set(AXES)
    with pytest.raises(KeyError, match="registered"):
        get_benchmark("mmbench")
    with pytest.raises(ValueError, match="axis"):
        Benchmark("x", "vision", None, None, None, None)
    b = configure("docvqa", split="test", max_new_tokens=7)
    assert (b.load.split, b.max_new_tokens) == ("test", 7) and get_benchmark("docvqa").load.split == "validation"
    with pytest.raises(TypeError):
        configure(replace_load(get_benchmark("gqa")), split="x")
    custom = register(Benchmark("custom-test", "jigsaw", lambda source=None, limit=None: [], None, None, None))
    try:
        assert get_benchmark("custom-test") is custom
    finally:
        BENCHMARKS.pop("custom-test")


def replace_load(b):
    from dataclasses import replace
    return replace(b, load=lambda source=None, limit=None: [])


@pytest.mark.parametrize("name", PAPER)
def test_loaders_on_fixtures(name, micro):
    _, processor = micro
    b = get_benchmark(name)
    rows = list(b.load(source=toy_source(name, 4)))
    assert len(rows) == (8 if name.startswith("refcoco") else 4)
    assert len({r["id"] for r in rows}) == len(rows) and all(b.target in r for r in rows)
    assert len(list(b.load(source=toy_source(name, 4), limit=3))) == 3
    msgs, images = b.build_prompt(dict(rows[0]), processor)
    assert msgs[0]["role"] == "user" and [c["type"] for c in msgs[0]["content"]] == ["image", "text"]
    assert len(images) == 1 and isinstance(images[0], Image.Image) and images[0].mode == "RGB"


def test_fixture_schemas():
    ds = toy_source("refcoco", 2)
    assert {"question_id", "image", "answer", "bbox"} <= set(ds.column_names)
    r = next(iter(get_benchmark("refcoco").load(source=ds)))
    assert r["box"] == [4.0, 6.0, 24.0, 22.0] and r["expression"] == "shape 0"          # xywh -> xyxy
    assert {"dataset", "question", "question_type", "answer", "image"} == set(toy_source("ocrbench").column_names)
    assert {"question_id", "image", "question", "answer", "category"} == set(toy_source("mme").column_names)
    q, imgs = toy_source("gqa", 3)
    assert {"id", "imageId", "question", "answer"} <= set(q.column_names) and set(imgs.column_names) == {"id", "image"}
    rows = list(get_benchmark("gqa").load(source={"instructions": q, "images": imgs}))
    assert [r["imageId"] for r in rows] == ["n0", "n0", "n1"] and all(r["image"] is not None for r in rows)


def test_schema_mismatch_is_loud():
    ds = toy_source("pope").rename_column("question", "query")
    with pytest.raises(KeyError, match="columns found"):
        list(get_benchmark("pope").load(source=ds))
    rows = list(configure("pope", columns={"question": "query"}).load(source=ds))      # fixed by mapping
    assert rows[0]["question"].startswith("Is there")


def test_prompts():
    r = next(iter(get_benchmark("mme").load(source=toy_source("mme"))))
    text = get_benchmark("mme").build_prompt(r, None)[0][0]["content"][1]["text"]
    assert text.endswith("Please answer yes or no.") and text.count("Please answer yes or no.") == 1
    r = next(iter(get_benchmark("pope").load(source=toy_source("pope"))))
    assert get_benchmark("pope").build_prompt(r, None)[0][0]["content"][1]["text"] == \
        "Is there a shape 0 in the image? Please answer yes or no."
    r = next(iter(get_benchmark("docvqa").load(source=toy_source("docvqa"))))
    assert get_benchmark("docvqa").build_prompt(r, None)[0][0]["content"][1]["text"] == \
        "What is field 0?\nAnswer the question using a single word or phrase."


def test_grounding_parse_rescales(micro):
    _, processor = micro
    b = get_benchmark("refcoco")
    row = next(iter(b.load(source=toy_source("refcoco"))))
    b.build_prompt(row, processor)
    (rw, rh), (ow, oh) = row["resized_wh"], row["image_wh"]
    pred = b.parse(f'```json\n[{{"bbox_2d": [0, 0, {rw}, {rh}], "label": "x"}}]\n```', row)
    assert pred == pytest.approx([0, 0, ow, oh])
    assert b.score([{**row, "prediction": pred, "box": [0, 0, ow, oh]}]) == {"accuracy": 1.0, "miou": 1.0}


# ---------------------------------------------------------------- engine
def _spy(model):
    calls = []
    orig = model.generate

    def generate(**kw):
        calls.append({k: kw[k] for k in ("input_ids", "pixel_values", "image_grid_thw") if k in kw})
        return orig(**kw)
    model.generate = generate
    return calls, orig


def test_evaluate_end_to_end(micro, tmp_path):
    model, processor = micro
    calls, orig = _spy(model)
    try:
        df = evaluate(model, processor, "mmstar", source=toy_source("mmstar", 5), batch_size=2, max_new_tokens=3,
                      predictions_path=tmp_path / "out" / "mmstar.jsonl", progress=False)
    finally:
        model.generate = orig
    assert list(df.columns) == RESULT_COLUMNS
    assert df.metric.iloc[0] == "accuracy" and set(df.benchmark) == {"mmstar"} and set(df.axis) == {"general_vqa"}
    assert set(df.n) == {5} and df.set_index("metric").loc["n_failed", "value"] == 0
    assert 0.0 <= df.value.iloc[0] <= 1.0
    # prompts reached the model in batches of <= 2, each with its image
    assert [c["input_ids"].shape[0] for c in calls] == [2, 2, 1]
    assert all("pixel_values" in c and c["image_grid_thw"].shape[0] == c["input_ids"].shape[0] for c in calls)
    lines = [json.loads(l) for l in (tmp_path / "out" / "mmstar.jsonl").read_text().splitlines()]
    assert len(lines) == 5 and [l["id"] for l in lines] == ["0", "1", "2", "3", "4"]
    assert {"id", "prompt", "output", "prediction", "target", "score"} <= set(lines[0])
    assert lines[0]["prompt"].startswith("<image>Which colour?") and lines[0]["target"] == "A"
    assert all(isinstance(l["output"], str) and l["score"] in (0.0, 1.0) for l in lines)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mmstar.jsonl"]              # no temp file left


def test_evaluate_rows_and_broken_image(micro, tmp_path):
    model, processor = micro
    rows = list(get_benchmark("pope").load(source=toy_source("pope", 4, broken=2)))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        df = evaluate(model, processor, get_benchmark("pope"), rows=rows, max_new_tokens=2,
                      predictions_path=tmp_path / "pope.jsonl", progress=False)
    assert df.metric.iloc[0] == "f1" and df.n.iloc[0] == 3
    assert df.set_index("metric").loc["n_failed", "value"] == 1.0
    assert any("failed" in str(x.message) for x in w)
    lines = [json.loads(l) for l in (tmp_path / "pope.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and sum("error" in l for l in lines) == 1
    assert evaluate(model, processor, "pope", rows=rows, limit=1, max_new_tokens=1, progress=False).n.iloc[0] == 1


def test_evaluate_suite_and_axis_table(micro, tmp_path):
    model, processor = micro
    with pytest.raises(KeyError, match="registered"):
        evaluate_suite(model, processor, ["gqa", "no-such-bench"])
    names = ["pope", "refcoco", "gqa"]
    df = evaluate_suite(model, processor, names, out_dir=tmp_path, limit=2, batch_size=2, max_new_tokens=2,
                        progress=False, sources={n: toy_source(n) for n in names})
    assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == ["gqa.jsonl", "pope.jsonl", "refcoco.jsonl"]
    assert list(dict.fromkeys(df.benchmark)) == names and set(df.n) == {2}
    t = axis_table(pd.concat([df.assign(model="base"), df.assign(model="grpo")]))
    assert list(t.columns) == [("grounding", "refcoco"), ("general_vqa", "gqa"), ("hallucination", "pope")]
    assert list(t.index) == ["base", "grpo"]
    pope_f1 = df[(df.benchmark == "pope") & (df.metric == "f1")].value.iloc[0]
    assert t.loc["base", ("hallucination", "pope")] == pope_f1
    assert axis_table(df).shape == (1, 3)


def test_generation_failure_isolated_to_its_row(micro):
    model, processor = micro
    rows = list(get_benchmark("pope").load(source=toy_source("pope", 3)))
    rows[1]["image"] = Image.new("RGB", (600, 2))          # aspect ratio > 200: the processor refuses the batch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = evaluate(model, processor, "pope", rows=rows, batch_size=3, max_new_tokens=1, progress=False)
    assert df.n.iloc[0] == 2 and df.set_index("metric").loc["n_failed", "value"] == 1.0
