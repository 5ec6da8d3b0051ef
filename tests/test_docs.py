"""The docs site, offline: nbdev's doc processors run on every notebook (what `nbdev-docs` feeds to Quarto, which
cannot be installed here) and each exported function gets its rendered API doc; the site config is in place."""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def proc():
    import os
    from nbdev.serve import proc_nbs
    old = os.getcwd(); os.chdir(ROOT)
    try: return proc_nbs(n_workers=0, force=True)
    finally: os.chdir(old)


def test_site_config_present():
    for f in ("nbs/_quarto.yml", "nbs/nbdev.yml", "nbs/styles.css", "nbs/index.ipynb"):
        assert (ROOT / f).exists(), f
    assert "_docs" in (ROOT / "nbs/nbdev.yml").read_text()


def test_doc_pages_render_api_docs(proc):
    import re
    import jigsaw_forget._modidx as modidx
    syms = modidx.d["syms"]
    for nb in sorted((ROOT / "nbs").glob("[0-9]*.ipynb")):
        page = Path(proc) / nb.name
        assert page.exists(), f"no doc page for {nb.name}"
        text = json.dumps(json.loads(page.read_text()))
        mod = "jigsaw_forget." + re.search(r"#\| default_exp (\w+)", nb.read_text()).group(1)
        names = [k[len(mod) + 1:] for k in syms.get(mod, {})]
        public = [n for n in names if "." not in n and not n.startswith("_")]
        assert public, f"{nb.name} exports nothing"
        for name in public:
            assert f"show_doc({name})" in text, f"{name} has no API doc on the page of {nb.name}"
    for nb in (ROOT / "nbs/experiments").glob("*.ipynb"):
        assert (Path(proc) / "experiments" / nb.name).exists()
