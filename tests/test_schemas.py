"""The ten paper benchmarks' loaders against the real hub schemas.

`tests/fixtures/schemas/<name>.json` records, for each benchmark, the hub dataset it reads (id, config, split,
revision), every column with its feature type as the dataset card declares it, and where that came from. Here each
loader runs on a tiny `datasets.Dataset` built with exactly those features (dummy values, tiny images), and its rows
must prompt (one RGB image, the question in the text) and score (the row's own answer scores the maximum). A loader
that reads a column the real dataset lacks fails here, where the toy sources of the module (written alongside the
loaders) could not catch it; the toy sources themselves must use the real column names and types.
"""
import json
from pathlib import Path

import datasets
import pytest
from datasets import Features, Image as Img, Sequence, Value
from PIL import Image

from jigsaw_forget.benchmarks import MME_PERCEPTION, get_benchmark, toy_source
from jigsaw_forget.models import mini_world_model

FIX = Path(__file__).parent / "fixtures" / "schemas"
PAPER = ["refcoco", "refcoco+", "refcocog", "docvqa", "infovqa", "ocrbench", "mme", "mmstar", "gqa", "pope"]
N = 4


def fixture(name):
    return json.loads((FIX / f"{name.replace('+', 'plus')}.json").read_text())


def feature(spec):
    "A `datasets` feature from the card's notation: {'dtype': t}, {'sequence': t}, {'struct': {name: spec}}."
    if "dtype" in spec: return Img() if spec["dtype"] == "image" else Value(spec["dtype"])
    if "sequence" in spec: return Sequence(feature({"dtype": spec["sequence"]}))
    if "struct" in spec: return {k: feature(v) for k, v in spec["struct"].items()}
    raise ValueError(spec)


def features(spec: dict) -> Features:
    return Features({k: feature(v) for k, v in spec.items()})


def dummy(spec, i):
    "A dummy value of a feature spec for row i."
    if "struct" in spec: return {k: dummy(v, i) for k, v in spec["struct"].items()}
    if "sequence" in spec: return [dummy({"dtype": spec["sequence"]}, i)] * 2
    t = spec["dtype"]
    if t == "image": return Image.new("RGB", (40 + 8 * i, 30), (30 * i, 100, 200))
    if t == "string": return f"s{i}"
    if t == "bool": return bool(i % 2)
    if t.startswith(("int", "uint")): return i
    if t.startswith("float"): return float(i)
    raise ValueError(spec)


# values with meaning: what the benchmark reads beyond "some string"
MEANING = {
    "refcoco": lambda i: dict(answer=[f"the left cup {i}", f"cup number {i}"], bbox=[2.0 + i, 3.0, 10.0, 8.0]),
    "docvqa": lambda i: dict(question=f"What is the date {i}?", answers=[f"1 may 19{i}0", f"may 19{i}0"]),
    "infovqa": lambda i: dict(question=f"How many people {i}?", answers=[f"{i}5 million"]),
    "ocrbench": lambda i: dict(question="what is written in the image?", answer=[f"word{i}"],
                               question_type="Regular Text Recognition"),
    "mme": lambda i: dict(question_id=f"count/{i // 2:04d}.png", answer=["Yes", "No"][i % 2], category="count",
                          question=f"Are there {i} cups in the image? Please answer yes or no."),
    "mmstar": lambda i: dict(question=f"Which colour {i}? Options: A: red, B: green, C: blue, D: grey",
                             answer="ABCD"[i % 4], category="coarse perception"),
    "gqa": lambda i: dict(imageId=f"n{i // 2}", question=f"Which colour is thing {i}?", answer=["red", "blue"][i % 2]),
    "pope": lambda i: dict(question=f"Is there a cup {i} in the image?", answer=["yes", "no"][i % 2],
                           category=["adversarial", "popular", "random"][i % 3]),
}


def hub_source(name):
    "A tiny dataset in the recorded schema of `name` (GQA: instructions and images)."
    fx = fixture(name)
    meaning = MEANING[name.rstrip("+g") if name.startswith("refcoco") else name]
    rows = [{**{c: dummy(s, i) for c, s in fx["features"].items()}, **meaning(i)} for i in range(N)]
    ds = datasets.Dataset.from_list(rows, features=features(fx["features"]))
    if name != "gqa": return ds
    im = fx["images"]
    images = datasets.Dataset.from_list([{"id": f"n{j}", "image": dummy({"dtype": "image"}, j)} for j in range(N // 2)],
                                        features=features(im["features"]))
    return {"instructions": ds, "images": images}


def ideal(name, row):
    if name.startswith("refcoco"):
        (ow, oh), (rw, rh) = row["image_wh"], row["resized_wh"]
        x1, y1, x2, y2 = row["box"]
        return json.dumps({"bbox_2d": [x1 * rw / ow, y1 * rh / oh, x2 * rw / ow, y2 * rh / oh]})
    if name in ("docvqa", "infovqa", "ocrbench"): return row["answers"][0]
    return row["answer"]


@pytest.fixture(scope="module")
def processor():
    return mini_world_model("micro")[1]


def test_every_paper_benchmark_has_a_fixture():
    assert sorted(p.stem for p in FIX.glob("*.json")) == sorted(n.replace("+", "plus") for n in PAPER)
    for name in PAPER:
        fx = fixture(name)
        assert fx["benchmark"] == name and fx["source"] and fx["revision"] and "image" in str(fx["features"]) + str(fx.get("images"))


@pytest.mark.parametrize("name", PAPER)
def test_loader_reads_the_recorded_dataset(name):
    "The loader's hub id, config and split are the ones the fixture records."
    fx, load = fixture(name), get_benchmark(name).load
    assert (load.dataset_id, load.config, load.split) == (fx["dataset_id"], fx["config"], fx["split"])
    assert fx["split"] in fx["splits"]
    if name == "gqa":
        assert (load.images_config, load.images_split) == (fx["images"]["config"], fx["images"]["split"])


@pytest.mark.parametrize("name", PAPER)
def test_loader_on_the_real_schema(name, processor):
    b = get_benchmark(name)
    rows = list(b.load(source=hub_source(name)))
    assert len(rows) == (2 * N if name.startswith("refcoco") else N)          # RefCOCO: one row per expression
    assert len({r["id"] for r in rows}) == len(rows)
    id_col = b.load.id_column                          # ids come from the recorded id column, not row positions
    assert id_col is None or id_col in fixture(name)["features"]
    if id_col: assert rows[-1]["id"].startswith(str(dummy(fixture(name)["features"][id_col], N - 1)))
    items = []
    for r in rows:
        r = dict(r)
        msgs, images = b.build_prompt(r, processor)
        assert [c["type"] for c in msgs[0]["content"]] == ["image", "text"]
        assert len(images) == 1 and images[0].mode == "RGB"
        text = msgs[0]["content"][1]["text"]
        asked = r["expression"] if name.startswith("refcoco") else r["question"]
        assert asked and asked.strip() in text
        assert r[b.target] not in (None, [], "")
        pred = b.parse(ideal(name, r), r)
        items.append({k: v for k, v in r.items() if k != "image"} | {"prediction": pred})
    m = b.score(items)
    best = {"refcoco": 1.0, "refcoco+": 1.0, "refcocog": 1.0, "docvqa": 1.0, "infovqa": 1.0, "ocrbench": 1.0,
            "mme": 200.0, "mmstar": 1.0, "gqa": 1.0, "pope": 1.0}[name]
    assert m[b.headline] == pytest.approx(best)
    assert all(b.item_score(it) == pytest.approx(1.0) for it in items)


def test_mme_categories_are_mme_s():
    assert "count" in MME_PERCEPTION                    # the fixture rows' category is summed into perception


def test_a_column_the_real_dataset_lacks_is_loud():
    from jigsaw_forget.benchmarks import configure
    src = hub_source("pope")
    with pytest.raises(KeyError, match="lack"):
        list(configure("pope", id_column="qid").load(source=src))
    with pytest.raises(KeyError, match="lack"):
        list(configure("docvqa", required=("image", "question", "question_text")).load(source=hub_source("docvqa")))


@pytest.mark.parametrize("name", PAPER)
def test_toy_sources_use_real_columns_and_types(name):
    "The module's offline toy sources (used by the notebook and other tests) stay a sub-schema of the real one."
    fx = fixture(name)
    toy = toy_source(name)
    pairs = [(toy, fx["features"])] if name != "gqa" else [(toy[0], fx["features"]), (toy[1], fx["images"]["features"])]
    for ds, spec in pairs:
        real = features(spec)
        assert set(ds.features) <= set(real), f"{name}: toy columns not in the real dataset: {set(ds.features) - set(real)}"
        for col, feat in ds.features.items():
            assert feat == real[col], f"{name}.{col}: toy {feat} vs real {real[col]}"
