"""Tiny `datasets` in the real hub schemas of the ten paper benchmarks, built from `tests/fixtures/schemas/<name>.json`.

Each fixture records, for one benchmark, the hub dataset it reads (id, config, split, revision) and every column with
its feature type as the dataset card declares it. `hub_source(name, n)` builds `n` rows with exactly those features
(dummy values, tiny images, meaningful values where the benchmark reads them). Used by `test_schemas.py` (each loader
on the real schema) and `test_paper_profile.py` (the `paper` profile run offline on local copies).
"""
import json
from pathlib import Path

import datasets
from datasets import Features, Image as Img, Sequence, Value
from PIL import Image

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


def hub_source(name, n: int = N):
    "A tiny dataset of `n` rows in the recorded schema of `name` (GQA: instructions and images)."
    fx = fixture(name)
    meaning = MEANING[name.rstrip("+g") if name.startswith("refcoco") else name]
    rows = [{**{c: dummy(s, i) for c, s in fx["features"].items()}, **meaning(i)} for i in range(n)]
    ds = datasets.Dataset.from_list(rows, features=features(fx["features"]))
    if name != "gqa": return ds
    im = fx["images"]
    images = datasets.Dataset.from_list([{"id": f"n{j}", "image": dummy({"dtype": "image"}, j)} for j in range((n + 1) // 2)],
                                        features=features(im["features"]))
    return {"instructions": ds, "images": images}


def save_local_benchmarks(root, n: int = N) -> Path:
    "`<root>/<name>` for each paper benchmark: its `hub_source` saved with `save_to_disk` (GQA: a `DatasetDict`),\n"\
    "the layout `benchmarks.paper_benchmarks(root)` reads."
    root = Path(root)
    for name in PAPER:
        src = hub_source(name, n)
        (datasets.DatasetDict(src) if isinstance(src, dict) else src).save_to_disk(str(root / name))
    return root
