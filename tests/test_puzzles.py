"Properties and edge cases of `jigsaw_forget.puzzles` (the notebook holds the worked examples)."
import io
import warnings

import datasets
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image

from jigsaw_forget.puzzles import (
    LAYOUTS, PUZZLE_FEATURES, build_puzzle_dataset, check_disjoint, coco_images, crop_to_grid, folder_images,
    hf_images, make_puzzle, mini_world_images, puzzle_images, reassemble, safe_reassemble, slice_grid,
)


def noise_image(w: int, h: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    "Random pixels, so every patch is (almost surely) distinct."
    a = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(a).convert(mode)


grids = st.tuples(st.integers(1, 4), st.integers(1, 4))


@settings(max_examples=200, deadline=None)
@given(grid=grids, extra=st.tuples(st.integers(0, 9), st.integers(0, 9)), patch=st.tuples(st.integers(1, 5), st.integers(1, 5)),
       seed=st.integers(0, 2**32 - 1))
def test_reassemble_inverts_make_puzzle(grid, extra, patch, seed):
    rows, cols = grid
    w, h = cols * patch[0] + extra[0], rows * patch[1] + extra[1]
    img = noise_image(w, h, seed % 1000)
    pz = make_puzzle(img, rows, cols, seed=seed)
    assert (pz.rows, pz.cols, len(pz.patches)) == (rows, cols, rows * cols)
    assert sorted(pz.answer) == list(range(rows * cols))
    cropped = crop_to_grid(img, rows, cols)
    assert cropped.size == (w - w % cols, h - h % rows)
    assert reassemble(pz.patches, pz.answer, rows, cols).tobytes() == cropped.tobytes()
    assert pz.image.tobytes() == cropped.tobytes()
    # the shown patches are the canonical ones permuted: shown[answer[k]] == canonical[k]
    canonical = slice_grid(img, rows, cols)
    assert all(pz.patches[pz.answer[k]].tobytes() == canonical[k].tobytes() for k in range(rows * cols))
    if rows * cols > 1: assert pz.answer != list(range(rows * cols))
    assert make_puzzle(img, rows, cols, seed=seed).answer == pz.answer


@settings(max_examples=200, deadline=None)
@given(n=st.integers(2, 16), seed=st.integers(0, 10**9))
def test_shuffle_never_identity(n, seed):
    pz = make_puzzle(noise_image(n, 1), 1, n, seed=seed)
    assert pz.answer != list(range(n))


def test_seeds_differ():
    img = noise_image(30, 30)
    assert len({tuple(make_puzzle(img, seed=s).answer) for s in range(20)}) > 10


def test_square_default_grid():
    pz = make_puzzle(noise_image(12, 12), 2, 2, seed=0)
    assert reassemble(pz.patches, pz.answer).tobytes() == pz.image.tobytes()
    with pytest.raises(ValueError, match="do not fill"):
        reassemble(make_puzzle(noise_image(12, 12), 2, 3).patches, list(range(6)))
    assert reassemble(make_puzzle(noise_image(12, 12), 2, 3).patches, make_puzzle(noise_image(12, 12), 2, 3).answer, rows=2).size == (12, 12)


def test_crop_from_bottom_right_keeps_pixels():
    a = np.arange(11 * 8 * 3, dtype=np.uint8).reshape(8, 11, 3)
    img = Image.fromarray(a)
    c = crop_to_grid(img, 3, 3)
    assert c.size == (9, 6)
    np.testing.assert_array_equal(np.asarray(c), a[:6, :9])


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "1", "CMYK", "I", "F"])
def test_mode_conversion(mode):
    img = noise_image(9, 9, mode=mode)
    assert crop_to_grid(img, 3, 3).mode == "RGB"
    pz = make_puzzle(img, 3, 3)
    assert {p.mode for p in pz.patches} == {"RGB"}
    assert pz.composite().mode == "RGB"


def test_palette_with_transparency():
    img = noise_image(6, 6).convert("P")
    img.info["transparency"] = 0
    assert crop_to_grid(img, 2, 2).mode == "RGB"


@pytest.mark.parametrize("size,grid", [((2, 9), (3, 3)), ((9, 2), (3, 3)), ((5, 5), (1, 6)), ((0, 0), (1, 1))])
def test_too_small_names_the_image(size, grid):
    with pytest.raises(ValueError, match="cat_042.jpg"):
        make_puzzle(Image.new("RGB", size), *grid, name="cat_042.jpg")


@pytest.mark.parametrize("bad", [[0, 1, 2], [0] * 4, [0, 1, 2, 4], [0, 1, 2, -1], ["0", 1, 2, 3], [0.0, 1, 2, 3], None, "0123", [True, False, 2, 3]])
def test_bad_answers(bad):
    pz = make_puzzle(noise_image(8, 8), 2, 2)
    with pytest.raises(ValueError):
        reassemble(pz.patches, bad)
    assert safe_reassemble(pz.patches, bad) is None


def test_numpy_answer_accepted():
    pz = make_puzzle(noise_image(8, 8), 2, 2)
    assert reassemble(pz.patches, np.array(pz.answer)).tobytes() == pz.image.tobytes()


def test_layouts():
    pz = make_puzzle(noise_image(12, 9), 3, 3, seed=4)
    assert [p.tobytes() for p in puzzle_images(pz, "sequence")] == [p.tobytes() for p in pz.patches]
    (comp,) = puzzle_images(pz, "composite")
    # the composite is the shown sequence laid out row-major: slicing it gives back the shown patches
    assert [p.tobytes() for p in slice_grid(comp, 3, 3)] == [p.tobytes() for p in pz.patches]
    assert pz.composite(gap=2).size == (12 + 4, 9 + 4)
    with pytest.raises(ValueError, match="layout"):
        puzzle_images(pz, "mosaic")


def test_folder_images_skips_and_warns_once(tmp_path):
    (tmp_path / "d").mkdir()
    noise_image(8, 8).save(tmp_path / "a.png")
    noise_image(8, 8).save(tmp_path / "d" / "b.jpg")
    (tmp_path / "readme.txt").write_text("hello")
    good = io.BytesIO(); noise_image(32, 32).save(good, format="JPEG")
    (tmp_path / "d" / "corrupt.jpg").write_bytes(good.getvalue()[:200])  # truncated JPEG
    (tmp_path / "blob.bin").write_bytes(b"\x00" * 10)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        got = list(folder_images(tmp_path))
    assert [s for s, _ in got] == ["a.png", "d/b.jpg"]
    assert all(isinstance(im, Image.Image) and im.size == (8, 8) for _, im in got)
    assert len(w) == 1
    msg = str(w[0].message)
    assert "skipped 3 unreadable files" in msg and "readme.txt" in msg and "d/corrupt.jpg" in msg and "blob.bin" in msg


def test_folder_images_no_warning_when_clean(tmp_path):
    noise_image(8, 8).save(tmp_path / "a.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(list(folder_images(tmp_path))) == 1


def test_coco_layout(tmp_path):
    for split in ["train2014", "val2014"]:
        (tmp_path / split).mkdir()
        for i in range(2): noise_image(10, 10, i).save(tmp_path / split / f"COCO_{split}_{i:012d}.jpg")
    (tmp_path / "train2014" / "notes.txt").write_text("ignored: not a jpg")
    ids = [s for s, _ in coco_images(tmp_path)]
    assert ids == ["train2014/COCO_train2014_000000000000.jpg", "train2014/COCO_train2014_000000000001.jpg"]
    assert len(list(coco_images(tmp_path, "val2014"))) == 2
    with pytest.raises(FileNotFoundError, match="test2015"):
        list(coco_images(tmp_path, "test2015"))


def test_hf_images_forms():
    buf = io.BytesIO(); noise_image(6, 4).save(buf, format="PNG")
    pil = datasets.Dataset.from_dict({"image": [noise_image(5, 5)], "id": [7]},
                                     features=datasets.Features({"image": datasets.Image(), "id": datasets.Value("int64")}))
    assert [(s, im.size) for s, im in hf_images(pil, id_column="id")] == [("7", (5, 5))]
    raw = datasets.Dataset.from_dict({"pic": [{"bytes": buf.getvalue(), "path": None}]})  # struct column, not Image feature
    ((sid, im),) = list(hf_images(raw, "pic"))
    assert im.size == (6, 4) and sid.endswith(":0")
    with pytest.raises((KeyError, ValueError), match=r"photo.*available columns.*image"):
        next(hf_images(pil, "photo"))
    with pytest.raises((KeyError, ValueError), match="uid"):
        next(hf_images(pil, id_column="uid"))


def test_mini_world_disjoint_and_deterministic():
    tr = list(mini_world_images("train", 30, size=24))
    te = list(mini_world_images("test", 30, size=24))
    tr_ids, te_ids = {s for s, _ in tr}, {s for s, _ in te}
    assert not tr_ids & te_ids
    photo = lambda ids: {s.rsplit("-crop", 1)[0] for s in ids if "-crop" in s}
    assert photo(tr_ids) and photo(te_ids) and not photo(tr_ids) & photo(te_ids)
    assert len(tr_ids) == 30
    again = list(mini_world_images("train", 30, size=24))
    assert [(s, i.tobytes()) for s, i in again] == [(s, i.tobytes()) for s, i in tr]
    assert {s for s, _ in mini_world_images("train", 30, size=24, seed=1)} != tr_ids
    assert {im.size for _, im in tr + te} == {(24, 24)} and {im.mode for _, im in tr + te} == {"RGB"}
    with pytest.raises(ValueError, match="split"):
        next(mini_world_images("validation", 1))


def test_build_puzzle_dataset_schema_and_decode():
    src = list(mini_world_images("train", 5, size=30))
    ds = build_puzzle_dataset(src, rows=3, cols=3, n=4, seed=7, chunk=3)
    assert ds.column_names == ["images", "answer", "rows", "cols", "layout", "source_id"]
    f = ds.features
    assert isinstance(f["images"], (datasets.List, datasets.Sequence)) and isinstance(f["images"].feature, datasets.Image)
    assert f["answer"].feature == datasets.Value("int64")
    assert f["rows"] == f["cols"] == datasets.Value("int64") and f["layout"] == f["source_id"] == datasets.Value("string")
    assert f == PUZZLE_FEATURES and len(ds) == 4
    assert ds["source_id"] == [s for s, _ in src[:4]]
    row = ds[2]
    assert all(isinstance(im, Image.Image) for im in row["images"]) and len(row["images"]) == 9
    assert (row["rows"], row["cols"], row["layout"]) == (3, 3, "sequence")
    assert reassemble(row["images"], row["answer"]).tobytes() == crop_to_grid(src[2][1], 3, 3).tobytes()
    comp = build_puzzle_dataset([im for _, im in src], n=2, layout="composite")
    assert comp["source_id"] == ["image-0", "image-1"] and len(comp[0]["images"]) == 1
    assert build_puzzle_dataset(src, n=3, seed=7)["answer"] == ds["answer"][:3]  # same (seed, index) -> same shuffle


def test_build_puzzle_dataset_errors():
    with pytest.raises(ValueError, match="small-one"):
        build_puzzle_dataset([("ok", noise_image(9, 9)), ("small-one", noise_image(2, 9))])
    with pytest.raises(ValueError, match="layout"):
        build_puzzle_dataset([noise_image(9, 9)], layout="tiles")
    assert len(build_puzzle_dataset([])) == 0


def test_check_disjoint():
    a = build_puzzle_dataset([("x", noise_image(9, 9)), ("y", noise_image(9, 9))])
    b = build_puzzle_dataset([("z", noise_image(9, 9))])
    check_disjoint(a, b)
    with pytest.raises(ValueError, match="'y'"):
        check_disjoint(a, build_puzzle_dataset([("y", noise_image(9, 9))]))
