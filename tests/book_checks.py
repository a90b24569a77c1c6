"""Reusable checks of the analysis book, for the fixture book and the real one.

Each check raises AssertionError with a message naming the file and the problem:
- :func:`check_source_notebook`: a notebook as stored in git (clean, one parameters cell);
- :func:`check_cell_tags`: the plumbing cells are hidden from the page by cell tags;
- :func:`check_executed_parameters`: papermill injected the expected parameters;
- :func:`check_built_site`: the HTML has the chapters, every plotly figure, no error
  output, and loads nothing from another host;
- :func:`check_in_browser`: headless Chromium draws every figure, the slider and the
  widgets with the network cut off, requests nothing outside the site, and saves
  full-page screenshots;
- :func:`check_jupyterlab`: JupyterLab serves the notebooks and starts a kernel;
- :func:`check_page_text`: what a reviewer finds in a page's text: a sentence twice, a code
  name as a header, "nan", a zero-width interval, "1 images".
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat
from bs4 import BeautifulSoup

__all__ = [
    "CHROMIUM_HINT",
    "CONTENT_PX_AT_1280",
    "FULL_WIDTH_PX_AT_1280",
    "HIDDEN_SOURCE_TAGS",
    "REMOVED_SOURCE_TAGS",
    "check_built_site",
    "check_cell_tags",
    "check_executed_parameters",
    "check_in_browser",
    "check_jupyterlab",
    "check_page_text",
    "check_source_notebook",
    "find_chromium",
    "plotly_layouts",
    "visible_soup",
]

CHROMIUM_HINT = ("headless Chromium not found: install Debian's package with "
                 "`sudo apt-get install -y chromium` (or set CHROMIUM=/path/to/chrome)")

# URLs that may appear in inline scripts: sphinx-thebe's constant for its launch
# button (thebe is off in _config.yml, so no page shows the button or loads it).
ALLOWED_INLINE_URLS = ("https://unpkg.com/thebe@",)
# Elements and attributes through which a page loads something by itself
# (<a href> only navigates when clicked, so links such as arXiv's are allowed).
_LOADING_ATTRS = {
    "script": "src", "link": "href", "img": "src", "iframe": "src", "source": "src",
    "video": "src", "audio": "src", "embed": "src", "object": "data", "track": "src",
}
_ERROR_TEXT = re.compile(r"Traceback \(most recent call last\)|\b\w*(Error|Exception)\b")


def stop_process(proc: subprocess.Popen, *, timeout: float) -> None:
    """Terminate ``proc`` and wait for it; kill it if it outlives ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _is_external(url: str) -> bool:
    return bool(re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*:)?//", url.strip())) and not url.strip().startswith("file:")


# ----------------------------------------------------------------------------- notebooks
def check_source_notebook(path: str | os.PathLike[str]) -> None:
    """A notebook as committed: valid, no outputs, no execution counts, no widget
    state, exactly one cell tagged ``parameters``, no later cell that assigns to one of its
    names (a parameter means one thing through the whole chapter), and a ``python3`` kernelspec."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    problems = []
    for i, cell in enumerate(nb.cells, 1):
        if cell.cell_type == "code":
            if cell.get("outputs"):
                problems.append(f"cell {i} has outputs")
            if cell.get("execution_count") is not None:
                problems.append(f"cell {i} has execution count {cell.execution_count}")
    tagged = [i for i, c in enumerate(nb.cells, 1) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        problems.append(f"{len(tagged)} cells tagged 'parameters' (cells {tagged}), expected 1")
    elif nb.cells[tagged[0] - 1].cell_type != "code":
        problems.append(f"the parameters cell {tagged[0]} is not a code cell")
    if len(tagged) == 1:
        params = _assigned(nb.cells[tagged[0] - 1].source)
        for i, cell in enumerate(nb.cells, 1):
            if cell.cell_type == "code" and i != tagged[0]:
                overwritten = sorted(_assigned(cell.source) & params)
                if overwritten:
                    problems.append(f"cell {i} assigns to the parameter(s) {', '.join(overwritten)}")
    if "widgets" in nb.metadata:
        problems.append("widget state saved in the metadata")
    if "papermill" in nb.metadata:
        problems.append("papermill metadata (an executed copy?)")
    if nb.metadata.get("kernelspec", {}).get("name") != "python3":
        problems.append(f"kernelspec {nb.metadata.get('kernelspec', {}).get('name')!r}, expected 'python3'")
    assert not problems, f"{path}: " + "; ".join(problems)


def _assigned(source: str) -> set[str]:
    """The names a cell's code binds: assignments, loop and comprehension targets, ``with ... as``."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    targets: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets += node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For, ast.comprehension)):
            targets.append(node.target)
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            targets.append(node.optional_vars)
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}


#: Tags with which Jupyter Book leaves a cell's source off the page (``hide-*``: behind a
#: "Show code cell source" toggle). The source stays in the downloadable notebook.
HIDDEN_SOURCE_TAGS = frozenset({"remove-cell", "remove-input", "hide-cell", "hide-input"})
#: Tags with which a setup cell's source is not on the page at all.
REMOVED_SOURCE_TAGS = frozenset({"remove-cell", "remove-input"})


def _statements(source: str) -> list[ast.stmt] | None:
    """Top-level statements of a code cell (IPython magics turned into calls), or None
    when the cell is not Python."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return ast.parse(TransformerManager().transform_cell(source)).body
    except SyntaxError:
        return None


def _is_setup_statement(stmt: ast.stmt) -> bool:
    """An import, an assignment, or a bare ``show_statement(study)`` call."""
    if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.AugAssign)):
        return True
    if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
        return False
    func = stmt.value.func
    return (func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else "") \
        == "show_statement"


def check_cell_tags(path: str | os.PathLike[str]) -> None:
    """The book's cell-tag convention, on a source notebook (the page shows prose,
    figures and tables; the plumbing stays in the notebook, off the page):

    1. the ``parameters`` cell also carries ``remove-cell``;
    2. a *setup* cell, one whose top-level statements are all imports, assignments
       or a ``show_statement(study)`` call, carries ``remove-cell`` (it shows
       nothing a reader needs) or ``remove-input`` (its output is needed: the
       dataset statement);
    3. any other code cell with an import statement keeps its source off the page:
       one of :data:`HIDDEN_SOURCE_TAGS`.
    """
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    problems = []
    for i, cell in enumerate(nb.cells, 1):
        if cell.cell_type != "code":
            continue
        tags = set(cell.get("metadata", {}).get("tags", []))
        first = next((ln.strip() for ln in cell.source.splitlines() if ln.strip()), "")
        where = f"cell {i} ({first[:50]!r})"
        if "parameters" in tags:
            if "remove-cell" not in tags:
                problems.append(f"{where}: the parameters cell lacks the tag 'remove-cell'")
            continue
        body = _statements(cell.source)
        if not body:
            continue
        if all(_is_setup_statement(s) for s in body):
            if not tags & REMOVED_SOURCE_TAGS:
                problems.append(f"{where} only imports and sets up: tag it 'remove-cell' "
                                "(or 'remove-input' if the reader needs its output)")
        elif any(isinstance(n, (ast.Import, ast.ImportFrom)) for s in body for n in ast.walk(s)):
            if not tags & HIDDEN_SOURCE_TAGS:
                problems.append(f"{where} imports: tag it 'hide-input' so the page shows its "
                                "output and leaves the code a click away")
    assert not problems, f"{path}: " + "; ".join(problems)


def check_executed_parameters(path: str | os.PathLike[str], expected: Mapping[str, Any]) -> None:
    """The executed notebook ran with ``expected`` parameters: papermill recorded them
    and its injected cell (right after the ``parameters`` cell) assigns them; both
    cells are tagged ``remove-cell``, so the page does not show them."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    recorded = nb.metadata.get("papermill", {}).get("parameters", {})
    for key, value in expected.items():
        assert recorded.get(key) == value, f"{path}: papermill recorded {key}={recorded.get(key)!r}, expected {value!r}"
    tags = [c.get("metadata", {}).get("tags", []) for c in nb.cells]
    i = next(i for i, t in enumerate(tags) if "parameters" in t)
    assert i + 1 < len(nb.cells) and "injected-parameters" in tags[i + 1], \
        f"{path}: no injected-parameters cell right after the parameters cell"
    assert "remove-cell" in tags[i] and "remove-cell" in tags[i + 1], \
        f"{path}: the parameters cell (tags {tags[i]}) or papermill's injected cell (tags {tags[i + 1]}) " \
        "would show on the page: both need 'remove-cell'"
    injected = nb.cells[i + 1].source
    for key in expected:
        assert re.search(rf"^{re.escape(key)} = ", injected, re.M), f"{path}: injected cell does not set {key}"


# ----------------------------------------------------------------------------- static site
def _local_target(html_dir: Path, page: Path, url: str) -> Path:
    url = url.split("#", 1)[0].split("?", 1)[0]
    return (page.parent / url).resolve() if not url.startswith("/") else (html_dir / url.lstrip("/")).resolve()


#: Width (CSS px) of a cell's output box in sphinx-book-theme's content column, in a
#: 1280 px wide window with the navigation sidebar shown, and of the output box of a cell
#: tagged ``full-width`` (136% of the column), measured in headless Chromium.
CONTENT_PX_AT_1280 = 676
FULL_WIDTH_PX_AT_1280 = 919
#: The book's own stylesheet (cervixlib.book.sphinx_ext.BOOK_CSS), on every page.
BOOK_CSS = "_static/cervix/book.css"
#: Text of the parameters cells: never on a page.
PLUMBING_TEXT = ("Parameters (papermill injects", "# Parameters")
_IMPORT_LINE = re.compile(r"^[ \t]*(?:from[ \t]+[\w.]+[ \t]+)?import[ \t]+\w.*$", re.M)


def visible_soup(soup: BeautifulSoup) -> BeautifulSoup:
    """A copy of ``soup`` without what a reader does not see: scripts, styles, and the
    inside of collapsed toggles (``<details>`` but its ``<summary>``, as Jupyter Book
    renders ``hide-input``)."""
    soup = BeautifulSoup(str(soup), "html.parser")
    for el in soup.find_all(["script", "style", "noscript", "template"]):
        el.decompose()
    for el in soup.find_all("details"):
        if el.get("open") is None:
            for child in list(el.children):
                if getattr(child, "name", None) != "summary":
                    child.extract()
    return soup


_SNAKE = re.compile(r"\b[a-z0-9]+_[a-z0-9_]+\b")
_NAN = re.compile(r"\bnan\b|\bNaN\b")
#: ``[-7.4, -7.4]``: an interval whose two ends are one number.
_ZERO_WIDTH = re.compile(r"\[\s*([+\-−]?\d+(?:\.\d+)?)\s*,\s*([+\-−]?\d+(?:\.\d+)?)\s*\]")
_ONE_PLURAL = re.compile(r"(?<![\d.,])\b1 (images|folds|cells|runs|steps|seeds|epochs|models|claims|classes)\b")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(" ".join(text.split())) if s.strip()]


def check_page_text(page: str | os.PathLike[str]) -> list[str]:
    """What a reviewer of a medical-imaging paper finds in minutes in a built page's visible
    text (code cells left out): a generated sentence of six words or more twice, a table
    header that is a code name (``test_n``), ``nan``, an interval whose two ends are the same
    number, a plural after 1 ("1 images"). Returns one line per fault, naming the page."""
    page = Path(page)
    soup = visible_soup(BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser"))
    for el in soup.select("div.cell_input, pre, code, nav, header, footer, div.bd-sidebar-primary, "
                          "div.bd-sidebar-secondary, div.prev-next-area, div.header-article-main"):
        el.decompose()
    main = soup.find("main") or soup
    problems = []
    for th in main.find_all("th"):
        if _SNAKE.search(th.get_text(" ")):
            problems.append(f"{page.name}: a table header is a code name: {th.get_text(' ').strip()!r}")
    text = " ".join(main.get_text(" ").split())
    for m in _NAN.finditer(text):
        problems.append(f"{page.name}: 'nan' in the text: ...{text[max(0, m.start() - 60):m.end() + 20]}...")
    for m in _ZERO_WIDTH.finditer(text):
        if float(m.group(1).replace("−", "-")) == float(m.group(2).replace("−", "-")):
            problems.append(f"{page.name}: a zero-width interval {m.group(0)}: "
                            f"...{text[max(0, m.start() - 80):m.end()]}")
    for m in _ONE_PLURAL.finditer(text):
        problems.append(f"{page.name}: {m.group(0)!r}: ...{text[max(0, m.start() - 60):m.end() + 20]}...")
    seen: dict[str, int] = {}
    for block in main.find_all(["p", "li", "caption"]):
        if block.find(["p", "li"]):
            continue  # its own paragraphs are counted
        for sentence in _sentences(block.get_text(" ")):
            if len(sentence.split()) >= 6:
                seen[sentence] = seen.get(sentence, 0) + 1
    problems += [f"{page.name}: a sentence appears {n} times: {s[:160]!r}" for s, n in seen.items() if n > 1]
    return problems


def plotly_layouts(soup: BeautifulSoup) -> dict[str, dict[str, Any]]:
    """``{div id: layout}`` of each ``Plotly.newPlot(id, data, layout, config)`` call."""
    decoder = json.JSONDecoder()
    layouts: dict[str, dict[str, Any]] = {}
    for script in soup.find_all("script", src=False):
        text = script.get_text()
        for m in re.finditer(r"Plotly\.newPlot\(\s*", text):
            try:
                pos, args = m.end(), []
                for _ in range(3):  # id, data, layout
                    value, end = decoder.raw_decode(text, pos)
                    args.append(value)
                    pos = re.compile(r"\s*,\s*").match(text, end).end()
            except (ValueError, AttributeError):
                continue
            if isinstance(args[0], str) and isinstance(args[2], dict):
                layouts[args[0]] = args[2]
    return layouts


def _check_reading(html_dir: Path, page: Path, soup: BeautifulSoup, chapters: Sequence[str]) -> list[str]:
    """What a reader of ``page`` would stumble on: plumbing cells shown, a figure wider
    than the column, a chapter without its download button, a root page that does not
    link the chapters."""
    where, problems = page.name, []
    if soup.find("meta", attrs={"http-equiv": re.compile("^refresh$", re.I)}):
        return problems  # Jupyter Book's index.html: a redirect to the root page
    css = [link.get("href", "").split("?")[0] for link in soup.find_all("link", rel="stylesheet")]
    if not any(href.endswith(BOOK_CSS) for href in css):
        problems.append(f"{where}: does not load {BOOK_CSS} (wide outputs would push the page)")
    shown = visible_soup(soup)
    text = shown.get_text(" ")
    for snippet in PLUMBING_TEXT:
        if snippet in text:
            problems.append(f"{where}: shows the parameters cell ({snippet!r})")
    for tag in ("parameters", "injected-parameters"):
        if soup.select(f"div.cell.tag_{tag}"):
            problems.append(f"{where}: shows the {tag} cell (tag it 'remove-cell')")
    for cell_input in shown.select("div.cell_input"):
        code = cell_input.get_text()
        m = _IMPORT_LINE.search(code)
        if m:
            problems.append(f"{where}: shows a code cell with imports ({m.group(0).strip()!r}); "
                            "tag it 'remove-cell', 'remove-input' or 'hide-input'")
    for fid, layout in plotly_layouts(soup).items():
        width = layout.get("width")
        div = soup.find(id=fid)
        full = div is not None and any("tag_full-width" in (c.get("class") or [])
                                       for c in div.find_parents("div"))
        limit = FULL_WIDTH_PX_AT_1280 if full else CONTENT_PX_AT_1280
        if isinstance(width, (int, float)) and width > limit:
            problems.append(f"{where}: plotly figure {fid} is {width:g} px wide, wider than the "
                            f"{'full-width cell' if full else 'content column'} ({limit} px at 1280 px); "
                            "autosize it (layout width None) or tag its cell 'full-width'")
    if page.stem in chapters:
        target = f"_sources/{page.stem}.ipynb"
        links = [a for a in soup.find_all("a", href=True) if a["href"].split("?")[0].endswith(target)]
        if not links:
            problems.append(f"{where}: no download button for {target}")
        elif not (html_dir / target).is_file():
            problems.append(f"{where}: the download button links {target}, which is not in the site")
        else:
            nb = nbformat.read(html_dir / target, as_version=4)
            tags = [t for c in nb.cells for t in c.get("metadata", {}).get("tags", [])]
            if "parameters" not in tags:
                problems.append(f"{where}: the downloadable {target} has no parameters cell")
    if page.name == "intro.html":
        hrefs = {a["href"].split("#")[0] for a in shown.find_all("a", href=True)}
        missing = [ch for ch in chapters if f"{ch}.html" not in hrefs]
        if missing:
            problems.append(f"{where}: does not link the chapters {missing}")
        if "{{" in text:
            problems.append(f"{where}: an unresolved substitution: {text[text.index('{{'):][:40]!r}")
    return problems


def check_built_site(html_dir: str | os.PathLike[str], chapters: Sequence[str], *,
                     min_figures: Mapping[str, int] | None = None) -> dict[str, dict[str, int]]:
    """Check a built book and return ``{page: {"figures": n, "widgets": m}}``.

    - ``index.html`` and ``<chapter>.html`` for every chapter exist;
    - no page shows an error (traceback outputs, or stderr naming an Error/Exception);
    - every ``plotly-graph-div`` has its ``Plotly.newPlot`` call and the page loads
      the local plotly.js; every widget view has its saved state and the local
      widget manager; ``min_figures[chapter]`` figures at least;
    - every script, stylesheet, image or frame a page loads is a file of the site,
      inline scripts name no other host (but :data:`ALLOWED_INLINE_URLS`), and no
      stylesheet under ``_static`` imports fonts or styles from another host;
    - for reading: no page shows the parameters or injected-parameters cell or a code
      cell with imports (collapsed ``hide-input`` toggles do not count), no plotly
      figure has a fixed width above the content column (or above a ``full-width``
      cell), every chapter has the download button for its ``.ipynb`` (a file of the
      site that keeps its parameters cell), and ``intro.html`` links every chapter.
    """
    html_dir = Path(html_dir)
    assert (html_dir / "index.html").is_file(), f"{html_dir}: no index.html"
    problems: list[str] = []
    summary: dict[str, dict[str, int]] = {}
    pages = sorted(p for p in html_dir.glob("*.html") if p.name not in {"genindex.html", "search.html"})
    for ch in chapters:
        if not (html_dir / f"{ch}.html").is_file():
            problems.append(f"chapter {ch}: {html_dir / (ch + '.html')} missing")
    for page in pages:
        soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
        where = page.name
        # resources the page loads by itself
        for tag, attr in _LOADING_ATTRS.items():
            for el in soup.find_all(tag):
                url = el.get(attr)
                if not url or url.startswith(("data:", "#")):
                    continue
                if _is_external(url):
                    problems.append(f"{where}: <{tag} {attr}={url!r}> loads from another host")
                elif tag in {"script", "link", "img"} and el.get("rel") != ["canonical"]:
                    target = _local_target(html_dir, page, url)
                    if not target.exists():
                        problems.append(f"{where}: <{tag} {attr}={url!r}> is not in the site")
        for script in soup.find_all("script", src=False):
            if script.get("type", "text/javascript") not in {"text/javascript", "module", "application/javascript"}:
                continue  # JSON data (widget state), thebe config
            for url in re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"'<>)]*", script.get_text()):
                if not url.startswith(ALLOWED_INLINE_URLS):
                    problems.append(f"{where}: inline script names {url}")
        # errors
        for out in soup.select("div.cell_output div.output"):
            classes = out.get("class", [])
            text = out.get_text(" ", strip=True)
            if "traceback" in classes or "error" in classes:
                problems.append(f"{where}: error output: {text[:120]!r}")
            elif "stderr" in classes and _ERROR_TEXT.search(text):
                problems.append(f"{where}: stderr output reports an error: {text[:120]!r}")
        if "Traceback (most recent call last)" in soup.get_text():
            problems.append(f"{where}: a traceback is shown")
        # figures
        scripts_src = [s.get("src", "").split("?", 1)[0] for s in soup.find_all("script", src=True)]
        divs = soup.select("div.plotly-graph-div")
        inline = "\n".join(s.get_text() for s in soup.find_all("script", src=False))
        for div in divs:
            fid = div.get("id")
            if not fid or not re.search(r"Plotly\.newPlot\(\s*\"" + re.escape(fid) + '"', inline):
                problems.append(f"{where}: plotly div {fid!r} has no Plotly.newPlot call")
        if divs and not any(s.endswith("vendor/plotly.min.js") for s in scripts_src):
            problems.append(f"{where}: has plotly figures but does not load _static/vendor/plotly.min.js")
        # widgets
        views = soup.find_all("script", type="application/vnd.jupyter.widget-view+json")
        if views:
            states = soup.find_all("script", type="application/vnd.jupyter.widget-state+json")
            state = json.loads(states[0].get_text()).get("state", {}) if states else {}
            for v in views:
                mid = json.loads(v.get_text()).get("model_id")
                if mid not in state:
                    problems.append(f"{where}: widget view {mid} has no saved widget state")
            if not any(s.endswith("html-manager/embed.js") for s in scripts_src):
                problems.append(f"{where}: has widgets but does not load the local html-manager embed.js")
        problems.extend(_check_reading(html_dir, page, soup, chapters))
        summary[page.stem] = {"figures": len(divs), "widgets": len(views)}
    for ch, n in (min_figures or {}).items():
        got = summary.get(ch, {}).get("figures", 0)
        if got < n:
            problems.append(f"{ch}.html: {got} plotly figure(s), expected at least {n}")
    for css in (html_dir / "_static").rglob("*.css"):
        text = css.read_text(encoding="utf-8", errors="replace")
        for m in re.finditer(r"(?:url\(\s*['\"]?|@import\s+['\"])((?:https?:)?//[^'\")\s]+)", text):
            problems.append(f"{css.relative_to(html_dir)}: loads {m.group(1)}")
    assert not problems, f"{html_dir}: " + "\n".join(problems)
    return summary


# ----------------------------------------------------------------------------- browser
def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary ($CHROMIUM first), or None."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class _DevTools:
    """A minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, ws_url: str) -> None:
        import websocket  # websocket-client, a jupyter_server dependency

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, method: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if any(e.get("method") == method for e in self.events):
            return
        while time.monotonic() < deadline:
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            msg = json.loads(self.ws.recv())
            self.events.append(msg)
            if msg.get("method") == method:
                return
        raise TimeoutError(method)

    def evaluate(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"page script failed: {res['exceptionDetails'].get('text')}")
        return res.get("result", {}).get("value")

    def close(self) -> None:
        self.ws.close()


_PAGE_STATE_JS = """(() => {
  const views = [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')];
  // a figure fits when it is not wider than the output box that holds it (which would
  // scroll) and ends inside the window
  const plots = [...document.querySelectorAll('div.plotly-graph-div')].map(d => {
      const r = d.getBoundingClientRect();
      const box = d.closest('div.output') || d.parentElement;
      const b = box.getBoundingClientRect();
      return {id: d.id, svg: d.querySelectorAll('svg.main-svg').length > 0, height: r.height,
              width: r.width, right: r.right, box_width: box.clientWidth,
              box_scrolls: r.width > box.clientWidth + 1 || r.right > b.left + box.clientWidth + 1,
              full_width: !!d.closest('div.cell.tag_full-width')}; });
  return {
    plotly: typeof window.Plotly !== 'undefined',
    plots: plots,
    sliders: document.querySelectorAll('div.plotly-graph-div g.slider-container').length,
    widget_views: views.length,
    // the html-manager draws each saved view into the element that holds its script
    widgets_drawn: views.filter(s => {
        const w = s.parentElement && s.parentElement.querySelector('.jupyter-widgets');
        return w && w.getBoundingClientRect().height > 0; }).length,
    widget_errors: document.querySelectorAll('.jupyter-widgets-error-widget, .widget-error').length,
    math: document.querySelectorAll('mjx-container').length,
    ready: document.readyState,
    window_width: window.innerWidth,
    page_scrolls: document.documentElement.scrollWidth > window.innerWidth + 1,
    column_width: (document.querySelector('article.bd-article') || document.body).clientWidth,
    // HTML outputs (tables) wider than their box: they scroll inside it, the page does not
    scrolling_outputs: [...document.querySelectorAll('div.cell_output div.output.text_html')]
        .filter(o => o.scrollWidth > o.clientWidth + 1 && !o.querySelector('div.plotly-graph-div')).length,
  };
})()"""


def check_in_browser(html_dir: str | os.PathLike[str], pages: Sequence[str], out_dir: str | os.PathLike[str],
                     *, sliders: Mapping[str, int] | None = None, timeout: float = 45.0,
                     chromium: str | None = None) -> dict[str, dict[str, Any]]:
    """Open ``pages`` (file names under ``html_dir``) in headless Chromium, offline.

    Host names do not resolve (``--host-resolver-rules``), so only the site's own
    files can load. For each page: every plotly div must contain an ``svg``, every
    saved widget view must render, ``sliders[page]`` plotly sliders at least must
    exist, no script may throw, and the page may request nothing but ``file:`` and
    ``data:`` URLs. In the 1280 px window, every figure must fit its box (nothing
    scrolled out of view) and the page must not scroll sideways; wide tables may
    scroll inside their own box (counted in ``scrolling_outputs``). A full-page screenshot goes to ``out_dir/<page>.png``. Returns
    the state read from each page.
    """
    exe = chromium or find_chromium()
    if exe is None:
        raise FileNotFoundError(CHROMIUM_HINT)
    html_dir, out_dir = Path(html_dir).resolve(), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    profile = Path(tempfile.mkdtemp(prefix="cervix-chromium-"))
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-extensions", "--no-first-run", "--no-default-browser-check",
           "--host-resolver-rules=MAP * ~NOTFOUND", "--window-size=1280,900",
           f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.is_file() or not port_file.read_text().strip():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{exe} did not start (exit {proc.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            target = next(t for t in json.load(resp) if t.get("type") == "page")
        dt = _DevTools(target["webSocketDebuggerUrl"])
        try:
            for method in ("Page.enable", "Network.enable", "Runtime.enable"):
                dt.call(method)
            for name in pages:
                page = html_dir / name
                assert page.is_file(), f"{page}: missing"
                # Jupyter Book's index.html only redirects to the first page: open that
                redirect = re.search(r'http-equiv="Refresh" content="0; url=([^"]+)"',
                                     page.read_text(encoding="utf-8"), re.I)
                if redirect:
                    page = html_dir / redirect.group(1)
                    assert page.is_file(), f"{name} redirects to {page}, which is missing"
                dt.events.clear()
                dt.call("Page.navigate", url=page.as_uri())
                dt.wait_event("Page.loadEventFired", timeout)
                deadline = time.monotonic() + timeout
                while True:  # figures draw at parse time, widgets after the load event
                    state = dt.evaluate(_PAGE_STATE_JS)
                    # without plotly.js after the load event, no figure will ever draw
                    plots_done = not state["plotly"] or all(p["svg"] for p in state["plots"])
                    done = plots_done and \
                        (state["widget_views"] == 0 or state["widgets_drawn"] >= state["widget_views"])
                    if done or time.monotonic() > deadline:
                        break
                    time.sleep(0.25)
                shot = dt.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
                (out_dir / f"{Path(name).stem}.png").write_bytes(base64.b64decode(shot["data"]))
                dt.call("Runtime.evaluate", expression="0")  # flush pending events
                urls = [e["params"]["request"]["url"] for e in dt.events
                        if e.get("method") == "Network.requestWillBeSent"]
                state["requests"] = urls
                state["exceptions"] = [e["params"]["exceptionDetails"].get("exception", {}).get("description")
                                       or e["params"]["exceptionDetails"].get("text")
                                       for e in dt.events if e.get("method") == "Runtime.exceptionThrown"]
                results[name] = state
                external = [u for u in urls if not u.startswith(("file:", "data:", "blob:", "about:"))]
                if external:
                    problems.append(f"{name}: requests outside the site: {external[:5]}")
                if state["exceptions"]:
                    problems.append(f"{name}: script errors: {state['exceptions'][:3]}")
                if state["plots"] and not state["plotly"]:
                    problems.append(f"{name}: plotly.js did not load")
                for p in state["plots"]:
                    if not p["svg"] or p["height"] < 50:
                        problems.append(f"{name}: plotly figure {p['id']} did not draw "
                                        f"(svg={p['svg']}, height={p['height']:.0f}px)")
                    elif p["box_scrolls"] or p["right"] > state["window_width"] + 1:
                        problems.append(f"{name}: plotly figure {p['id']} ({p['width']:.0f} px) does not fit "
                                        f"its {p['box_width']:.0f} px box in a {state['window_width']} px "
                                        "window: part of it is scrolled out of view")
                if state["page_scrolls"]:
                    problems.append(f"{name}: the page is wider than the {state['window_width']} px window")
                if state["widget_views"] and state["widgets_drawn"] < state["widget_views"]:
                    problems.append(f"{name}: {state['widget_views']} widget view(s), "
                                    f"{state['widgets_drawn']} drawn")
                if state["widget_errors"]:
                    problems.append(f"{name}: {state['widget_errors']} widget(s) failed to render")
                want = (sliders or {}).get(name, 0)
                if state["sliders"] < want:
                    problems.append(f"{name}: {state['sliders']} plotly slider(s), expected {want}")
        finally:
            dt.close()
    finally:
        stop_process(proc, timeout=10)
        shutil.rmtree(profile, ignore_errors=True)
    assert not problems, "\n".join(problems)
    return results


# ----------------------------------------------------------------------------- JupyterLab
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_in_kernel(ws_url: str, code: str, timeout: float) -> str:
    """Execute ``code`` over a kernel's websocket (Jupyter's JSON protocol); return stdout."""
    import uuid

    import websocket

    ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
    try:
        msg_id, session = uuid.uuid4().hex, uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
                       "session": session, "date": "", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False},
        }))
        out, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                raise AssertionError(f"kernel error: {msg['content']['ename']}: {msg['content']['evalue']}")
            elif kind == "execute_reply":
                assert msg["content"]["status"] == "ok", msg["content"]
                # stdout may trail the reply: wait for the kernel to go idle
            elif kind == "status" and msg["content"]["execution_state"] == "idle" and out:
                return "".join(out)
        raise AssertionError(f"no output from the kernel within {timeout:.0f} s")
    finally:
        ws.close()


def check_jupyterlab(root_dir: str | os.PathLike[str], notebooks: str = "notebooks",
                     expected: Sequence[str] = (), *, kernel: str = "python3",
                     timeout: float = 90.0) -> dict[str, Any]:
    """Start ``jupyter lab`` on loopback with a random token in ``root_dir``; check
    that it serves the Lab page and lists and opens the ``expected`` notebooks under
    ``notebooks`` (GET /api/contents), that a ``kernel`` kernel starts (POST
    /api/kernels) and runs a cell over its websocket, and that it is deleted; then
    stop the server. Returns the kernel model, with ``sys_prefix`` of the kernel."""
    port, token = _free_port(), secrets.token_hex(16)
    runtime = Path(tempfile.mkdtemp(prefix="cervix-jlab-"))
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(runtime / "runtime"),
           "JUPYTER_CONFIG_DIR": str(runtime / "config"), "JUPYTER_NO_CONFIG": "1"}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--ServerApp.token={token}", f"--ServerApp.root_dir={Path(root_dir).resolve()}",
           "--ServerApp.port_retries=0", "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--ServerApp.open_browser=False"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI run as root
        cmd.append("--allow-root")
    log = (runtime / "server.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"

    def api(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Authorization": f"token {token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                raw = resp.read()
                is_json = resp.headers.get_content_type() == "application/json"
                return resp.status, (json.loads(raw) if raw and is_json else raw.decode(errors="replace"))
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"jupyter lab exited with {proc.returncode}: "
                                     f"{(runtime / 'server.log').read_text()[-2000:]}")
            try:
                if api("GET", "/api/status")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"jupyter lab did not answer on {base} within {timeout:.0f} s")
            time.sleep(0.5)
        status, lab = api("GET", "/lab")
        assert status == 200 and "<title>JupyterLab</title>" in lab, f"GET /lab: {status}"
        status, listing = api("GET", f"/api/contents/{notebooks}")
        assert status == 200, f"GET /api/contents/{notebooks}: {status} {listing}"
        names = {item["name"] for item in listing["content"] if item["type"] == "notebook"}
        missing = [n for n in expected if n not in names]
        assert not missing, f"JupyterLab does not list {missing} in {notebooks}/ (it lists {sorted(names)})"
        for n in expected[:1]:
            status, model = api("GET", f"/api/contents/{notebooks}/{n}?content=1")
            assert status == 200 and model["type"] == "notebook", f"GET {n}: {status}"
        status, km = api("POST", "/api/kernels", {"name": kernel})
        assert status in (200, 201), f"POST /api/kernels: {status} {km}"
        assert km.get("execution_state") in {"starting", "idle", "busy"}, f"kernel state: {km}"
        # run a cell through the kernel's websocket, as the JupyterLab frontend does
        prefix = _run_in_kernel(f"ws://127.0.0.1:{port}/api/kernels/{km['id']}/channels?token={token}",
                                "import sys; print(sys.prefix)", timeout=max(5.0, deadline - time.monotonic()))
        seen = api("GET", f"/api/kernels/{km['id']}")[1]
        assert seen.get("execution_state") in {"idle", "busy"}, f"kernel state after a cell: {seen}"
        seen["sys_prefix"] = prefix.strip()
        status, _ = api("DELETE", f"/api/kernels/{km['id']}")
        assert status == 204, f"DELETE kernel: {status}"
        assert api("GET", "/api/kernels")[1] == [], "a kernel is still running"
        return seen
    finally:
        stop_process(proc, timeout=20)
        log.close()
        shutil.rmtree(runtime, ignore_errors=True)
