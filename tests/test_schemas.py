"""The ten paper benchmarks' loaders against the real hub schemas.

`tests/fixtures/schemas/<name>.json` records, for each benchmark, the hub dataset it reads (id, config, split,
revision), every column with its feature type as the dataset card declares it, and where that came from. Here each
loader runs on a tiny `datasets.Dataset` built with exactly those features (dummy values, tiny images), and its rows
must prompt (one RGB image, the question in the text) and score (the row's own answer scores the maximum). A loader
that reads a column the real dataset lacks fails here, where the toy sources of the module (written alongside the
loaders) could not catch it; the toy sources themselves must use the real column names and types. The datasets are
built in `hub_schemas.py` (shared with `test_paper_profile.py`).
"""
import json

import pytest

from hub_schemas import FIX, N, PAPER, dummy, features, fixture, hub_source
from jigsaw_forget.benchmarks import MME_PERCEPTION, get_benchmark, toy_source
from jigsaw_forget.models import mini_world_model


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
