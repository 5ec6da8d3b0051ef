"""The docs site without Quarto: nbdev's processed notebooks (`_proc/`, what `nbdev-docs` hands to Quarto) → static
HTML in `_docs/` that opens from the disk (`_docs/index.html`), with no network and no JavaScript.

`make docs` runs `nbdev-docs` where Quarto is installed and this script otherwise. It keeps what the Quarto site has
— one page per notebook at the same file name (`output-file`), the `show_doc` API sections under the anchors that
`_modidx` links to, a sidebar of the library notebooks and the experiments — and adds to each experiment page the
figures of the default run that it saves (`save_figure(..., figures_dir, "name")`), copied from `figures/`.
Build tooling, not library code: it lives beside the Makefile's other commands, not in `jigsaw_forget`.

    .venv/bin/python tools/docs_site.py [--out _docs] [--force]
"""
from __future__ import annotations

import argparse, html, os, re, shutil
from pathlib import Path

import nbformat, yaml

ROOT = Path(__file__).resolve().parents[1]
_DIRECTIVE = re.compile(r"^#\|\s*([\w-]+)\s*:\s*(.*?)\s*$")
_FIGURE = re.compile(r"""save_figure\([^,]+,\s*figures_dir,\s*(f?)["']([^"']+)["']""")


def front_matter(nb) -> dict:
    "Pop the raw `---` front-matter cell nbdev's processors put first (title, description, output-file)."
    if nb.cells and nb.cells[0].cell_type == "raw" and (m := re.match(r"\s*---\n(.*?)\n---", nb.cells[0].source, re.S)):
        nb.cells.pop(0)
        return yaml.safe_load(m[1]) or {}
    return {}


def apply_directives(nb) -> None:
    "Do what Quarto does with `#| include/echo/output: false` (the directive lines themselves are not shown)."
    cells = []
    for c in nb.cells:
        c.metadata.pop("execution", None)   # nbdev's timing record, not valid nbformat
        if c.cell_type == "code":
            lines, opts = c.source.splitlines(), {}
            while lines and (m := _DIRECTIVE.match(lines[0])): opts[m[1]] = m[2].lower(); lines.pop(0)
            c.source = "\n".join(lines)
            if opts.get("include") == "false": continue
            if opts.get("echo") == "false" or not c.source.strip(): c.metadata["transient"] = {"remove_source": True}
            if opts.get("output") == "false": c.outputs = []
        cells.append(c)
    nb.cells = cells


def saved_figures(nb, figures: Path) -> list[Path]:
    "The committed figures this experiment saves: names from its `save_figure` calls (f-string fields match anything)."
    found = []
    for c in nb.cells:
        for fstr, name in _FIGURE.findall(c.source if c.cell_type == "code" else ""):
            pattern = re.sub(r"\{[^}]*\}", "*", name) if fstr else name
            found += sorted(p for p in figures.glob(pattern + ".png") if p not in found)
    return found


def _rel(target: str, page: str) -> str:
    return os.path.relpath(target, os.path.dirname(page) or ".").replace(os.sep, "/")


def _nav(pages: list[dict], page: str) -> str:
    "The sidebar: home, then the library notebooks, then the experiments; the current page marked."
    out = []
    for section, group in (("Library", [p for p in pages if "/" not in p["out"] and p["out"] != "index.html"]),
                           ("Experiments", [p for p in pages if p["out"].startswith("experiments/")])):
        items = "".join(f'<li><a href="{_rel(p["out"], page)}"{" class=active" if p["out"] == page else ""}>'
                        f'{html.escape(p["title"])}</a></li>' for p in group)
        out.append(f"<h2>{section}</h2><ul>{items}</ul>")
    return "".join(out)


def _pandoc_ids(body: str) -> str:
    "Heading ids as Quarto (pandoc) makes them — `Benchmark` → `benchmark`, the anchors `_modidx` links to."
    ids = {}
    def slug(m):
        new = re.sub(r"[^\w.-]", "", html.unescape(m[2]).lower().replace(" ", "-")).lstrip("0123456789-._") or "section"
        ids[m[2]] = html.escape(new)
        return f'{m[1]}id="{ids[m[2]]}"'
    body = re.sub(r'(<h[1-6][^>]*?)id="([^"]*)"', slug, body)
    return re.sub(r'href="#([^"]*)"', lambda m: f'href="#{ids.get(m[1], m[1])}"', body)


def _fix_links(body: str, page: str, site_url: str, nb_pages: dict[str, str]) -> str:
    "Links into the published site and to notebooks (`x.ipynb`) → relative links to this site's pages."
    def fix(m):
        href = html.unescape(m[2])
        url, _, frag = href.partition("#")
        if site_url and url.startswith(site_url + "/"): url = _rel(url[len(site_url) + 1:] or "index.html", page)
        elif url.endswith(".ipynb") and "://" not in url:
            src = os.path.normpath(os.path.join(os.path.dirname(page), url)).replace(os.sep, "/")
            if src in nb_pages: url = _rel(nb_pages[src], page)
        return f'{m[1]}="{html.escape(url + ("#" + frag if frag else ""))}"'
    return re.sub(r'(href)="([^"]*)"', fix, body)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} – {site}</title><link rel="stylesheet" href="{root}site.css"></head>
<body><nav class="sidebar"><a class="site" href="{root}index.html">{site}</a>{nav}</nav>
<main><header><h1 class="title">{title}</h1><div class="description">{description}</div></header>
{body}</main></body></html>
"""

CSS = """body{margin:0;display:flex;font:15px/1.5 system-ui,sans-serif;color:#222}
.sidebar{flex:0 0 230px;padding:1rem;border-right:1px solid #ddd;background:#f8f9fa;min-height:100vh}
.sidebar .site{font-weight:bold;font-size:1.15rem;text-decoration:none}.sidebar h2{font-size:.85rem;text-transform:uppercase;color:#666;margin:1.2rem 0 .3rem}
.sidebar ul{list-style:none;padding:0;margin:0}.sidebar li a{display:block;padding:.15rem 0;text-decoration:none}
.sidebar a.active{font-weight:bold}main{flex:1;min-width:0;max-width:1000px;padding:1rem 2rem}
header .description{color:#555;font-size:1.05rem}pre,code{font-size:13px}pre{overflow-x:auto;padding:.5rem;background:#f6f8fa}
.input_area{margin:.5rem 0}.output_area pre{background:none}img{max-width:100%}table{border-collapse:collapse}
td,th{border:1px solid #ddd;padding:.2rem .5rem}.anchor-link{visibility:hidden;text-decoration:none;margin-left:.3rem}
h2:hover .anchor-link,h3:hover .anchor-link{visibility:visible}figure{margin:1rem 0}figcaption{color:#666;font-size:.9rem}
"""


def build(out: str | os.PathLike = "_docs", proc: str | os.PathLike | None = None, force: bool = False) -> Path:
    "Build the offline site into `out` (relative to the repo root) from nbdev's processed notebooks; return its folder."
    from nbconvert import HTMLExporter
    from nbconvert.filters import markdown2html
    from pygments.formatters import HtmlFormatter
    from nbdev.config import get_config
    old = os.getcwd(); os.chdir(ROOT)   # nbdev finds its config (and writes `_proc/`) from the cwd
    try:
        cfg = get_config()
        if proc is None:
            from nbdev.serve import proc_nbs
            proc = proc_nbs(n_workers=0, force=force)
        site_url = f"{cfg.doc_host}{cfg.doc_baseurl}".rstrip("/")
        site = cfg.get("title") or cfg.lib_name
    finally: os.chdir(old)
    proc, out = Path(proc), ROOT / out
    if out.exists(): shutil.rmtree(out)
    (out / "figures").mkdir(parents=True)

    pages = []
    for f in sorted(proc.rglob("*.ipynb"), key=lambda p: (len(p.relative_to(proc).parts), p.name != "index.ipynb", p.name)):
        rel = f.relative_to(proc)
        if any(part.startswith((".", "_")) for part in rel.parts): continue
        nb = nbformat.read(f, as_version=4)
        fm = front_matter(nb)
        page = (rel.parent / fm.get("output-file", rel.stem + ".html")).as_posix()
        pages.append(dict(src=rel.as_posix(), out=page, nb=nb, title=str(fm.get("title") or rel.stem),
                          description=str(fm.get("description") or "")))
    nb_pages = {p["src"]: p["out"] for p in pages}

    exporter = HTMLExporter(template_name="basic", exclude_input_prompt=True, exclude_output_prompt=True)
    for p in pages:
        nb, page = p["nb"], p["out"]
        apply_directives(nb)
        body, _ = exporter.from_notebook_node(nb)
        if page.startswith("experiments/"):
            figs = saved_figures(nb, ROOT / "figures")
            for fig in figs: shutil.copy2(fig, out / "figures" / fig.name)
            items = "".join(f'<figure><img src="{_rel("figures/" + g.name, page)}" alt="{g.stem}">'
                            f"<figcaption>{g.name}</figcaption></figure>" for g in figs)
            body += ('<h2 id="figures-of-the-default-run">Figures of the default run</h2>'
                     "<p>Saved by this notebook in the default profile's run (<code>make reproduce</code>), committed in "
                     "<code>figures/</code>.</p>" + (items or "<p>None committed yet.</p>"))
        body = _fix_links(_pandoc_ids(body), page, site_url, nb_pages)
        root = "../" * page.count("/")
        (out / page).parent.mkdir(parents=True, exist_ok=True)
        (out / page).write_text(PAGE.format(title=html.escape(p["title"]), site=html.escape(site), root=root,
                                            description=markdown2html(p["description"]), nav=_nav(pages, page), body=body),
                                encoding="utf-8")
    (out / "site.css").write_text(CSS + HtmlFormatter().get_style_defs(".highlight"), encoding="utf-8")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="Build the docs site into _docs/ without Quarto.")
    ap.add_argument("--out", default="_docs", help="output folder, relative to the repo root (default: _docs)")
    ap.add_argument("--force", action="store_true", help="re-process every notebook (nbdev caches _proc/ by mtime)")
    a = ap.parse_args()
    site = build(a.out, force=a.force)
    import atexit, gc
    atexit.register(gc.freeze)   # nbdev's execution shells each gc.collect at exit (16 s in all): freeze the heap first
    print(f"docs site (offline, no Quarto) in {site.relative_to(ROOT)}/: open {site.relative_to(ROOT)}/index.html")
