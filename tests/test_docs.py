"""The docs site. nbdev's doc processors run on every notebook (what `nbdev-docs` feeds to Quarto); without Quarto,
`tools/docs_site.py` turns them into the offline site `make docs` builds, and a headless Chromium reads every page of
it: no console errors, every image loaded, every internal link (and anchor) resolves, each module's API page lists each
exported name under the anchor `_modidx` links to. Screenshots go to runs/docs-screens/. The Quarto config stays what
nbdev generates, so users with Quarto get the same site from `nbdev-docs`."""
import json
import re
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from conftest import console_errors

ROOT = Path(__file__).resolve().parents[1]
SCREENS = ROOT / "runs/docs-screens"


@pytest.fixture(scope="module")
def proc():
    import os
    from nbdev.serve import proc_nbs
    old = os.getcwd(); os.chdir(ROOT)
    try: return proc_nbs(n_workers=0, force=True)
    finally:
        os.chdir(old)
        # each of nbdev's ~30 execution shells (IPython) runs a full gc.collect at exit: 0.5 s apiece with torch loaded,
        # 16 s in all. Exit hooks run last-registered first: freezing the heap first makes those collections cheap.
        import atexit, gc
        atexit.register(gc.freeze)


@pytest.fixture(scope="module")
def site(proc, tmp_path_factory):
    sys.path.insert(0, str(ROOT / "tools"))
    try: import docs_site
    finally: sys.path.remove(str(ROOT / "tools"))
    return docs_site.build(tmp_path_factory.mktemp("site") / "_docs", proc=proc)


def public_api():
    "Module → {exported public name: its page#anchor}, from nbdev's `_modidx` (what the site links to)."
    import jigsaw_forget._modidx as modidx
    return {mod: {k[len(mod) + 1:]: link for k, (link, _) in syms.items()
                  if "." not in k[len(mod) + 1:] and not k[len(mod) + 1:].startswith("_")}
            for mod, syms in modidx.d["syms"].items()}


def test_site_config_present():
    for f in ("nbs/_quarto.yml", "nbs/nbdev.yml", "nbs/styles.css", "nbs/index.ipynb"):
        assert (ROOT / f).exists(), f
    assert "_docs" in (ROOT / "nbs/nbdev.yml").read_text()


def test_quarto_config_is_what_nbdev_docs_writes(monkeypatch):
    "`nbdev-docs` regenerates nbdev.yml from pyproject.toml (and _quarto.yml if missing): the committed ones must match."
    import nbdev.quarto as q
    from nbdev.config import get_config
    monkeypatch.chdir(ROOT)
    cfg = get_config()
    vals = {k: cfg[k] for k in ["title", "description", "branch", "git_url", "doc_host", "doc_baseurl"]}
    assert (ROOT / "nbs/nbdev.yml").read_text() == q._nbdev_yml.format(**vals, doc_path=cfg.doc_path.name)
    quarto = (ROOT / "nbs/_quarto.yml").read_text()
    assert "metadata-files: [nbdev.yml, sidebar.yml]" in quarto and "type: website" in quarto
    assert not cfg.custom_sidebar   # nbdev-docs writes sidebar.yml: library notebooks, then the experiments folder


def test_doc_pages_render_api_docs(proc):
    api = public_api()
    for nb in sorted((ROOT / "nbs").glob("[0-9]*.ipynb")):
        page = Path(proc) / nb.name
        assert page.exists(), f"no doc page for {nb.name}"
        text = json.dumps(json.loads(page.read_text()))
        mod = "jigsaw_forget." + re.search(r"#\| default_exp (\w+)", nb.read_text()).group(1)
        assert api.get(mod), f"{nb.name} exports nothing"
        for name in api[mod]:
            assert f"show_doc({name})" in text, f"{name} has no API doc on the page of {nb.name}"
    for nb in (ROOT / "nbs/experiments").glob("*.ipynb"):
        assert (Path(proc) / "experiments" / nb.name).exists()


PAGE_JS = """return {
  images: [...document.images].map(i => ({src: i.src, ok: i.complete && i.naturalWidth > 0})),
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  ids: [...document.querySelectorAll('[id]')].map(e => e.id),
  headings: Object.fromEntries([...document.querySelectorAll('h2[id],h3[id],h4[id]')].map(h => [h.id, h.textContent])),
  nav: [...document.querySelectorAll('nav.sidebar a')].map(a => a.textContent),
  title: document.title}"""


def test_offline_site_in_a_browser(site, browser):
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    expected = {"index.html"} | {link.split("#")[0] for mod in public_api().values() for link in mod.values()}
    expected |= {f"experiments/{re.sub(r'^[0-9]+_', '', p.stem)}.html" for p in (ROOT / "nbs/experiments").glob("*.ipynb")}
    assert set(pages) == expected, "one page per notebook, named as on the Quarto site"
    SCREENS.mkdir(parents=True, exist_ok=True)
    seen, problems = {}, []
    console_errors(browser)                                   # drain anything from before
    for page in pages:
        browser.get((site / page).as_uri())
        info = browser.execute_script(PAGE_JS)
        seen[page] = info
        problems += [f"{page}: console error: {m}" for m in console_errors(browser)]
        problems += [f"{page}: image not loaded: {i['src'][:120]}" for i in info["images"] if not i["ok"]]
        if page in ("index.html", "rewards.html"):
            browser.save_screenshot(str(SCREENS / page.replace(".html", ".png")))
    for page, info in seen.items():
        for href in info["links"]:
            url = urlparse(href)
            if url.scheme != "file": continue                 # the web (paper, repositories): not checked offline
            target = Path(unquote(url.path))
            if not target.is_relative_to(site) or not target.exists():
                problems.append(f"{page}: link to a missing file: {href}"); continue
            rel = target.relative_to(site).as_posix()
            if url.fragment and rel in seen and unquote(url.fragment) not in seen[rel]["ids"]:
                problems.append(f"{page}: link to a missing anchor: {href}")
    assert not problems, "\n".join(problems)

    nav = seen["index.html"]["nav"]                           # the sidebar: library notebooks, then the experiments
    assert {"Rewards", "Runner", "Zero-shot jigsaw", "Prior-knowledge evaluation"} <= set(nav)
    for mod, names in public_api().items():                   # each exported name under the anchor _modidx links to
        for name, link in names.items():
            page, _, anchor = link.partition("#")
            assert name in seen[page]["headings"].get(anchor, ""), f"{mod}.{name}: no API section at {link}"
    figures = {Path(urlparse(i["src"]).path).name for p in pages if p.startswith("experiments/") for i in seen[p]["images"]}
    assert figures == {p.name for p in (ROOT / "figures").glob("*.png")}, "each committed figure on its experiment page"
    for shot in ("index.png", "rewards.png"):
        assert (SCREENS / shot).stat().st_size > 10_000
