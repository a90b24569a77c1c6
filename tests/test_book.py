"""The book machinery (cervixlib.book, cervixlib.display, _config.yml, _toc.yml, book/), end to end.

A fixture book of two tiny notebooks (tests/fixtures/book) is laid out like the
repository (root _config.yml and _toc.yml, book/ with links to them) and goes
through papermill and a real `jupyter-book build`; the built site is then checked
statically, in headless Chromium with no network, and the notebooks in JupyterLab.
The check functions live in tests/book_checks.py so that the same checks run on
the real five chapters.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import yaml

import book_checks as bc
from cervixlib import book, display
from cervixlib.book import BookError

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "book"
#: The book's notebooks in execution order (book/manifest.yml): the front page, which reads
#: the fold runs of chapters 3 and 4, last.
CHAPTERS = ["01_data_exploration", "02_baselines", "03_attention_models",
            "04_multicell_vs_isolated", "05_explainability", "06_cell_graphs", "00_claims"]
#: ... and in reading order (_toc.yml): the front page is the root, then the intro page.
READING_ORDER = ["00_claims", "intro", *CHAPTERS[:-1]]
FIXTURE_CHAPTERS = ["01_figures", "05_explainability"]
JUPYTER_BOOK = Path(sys.executable).parent / "jupyter-book"


def make_project(root: Path, *, toc: Path = FIXTURE / "_toc.yml", notebooks: Path = FIXTURE / "notebooks",
                 manifest: Path = FIXTURE / "manifest.yml", intro: Path | None = None) -> Path:
    """The repository's book layout at ``root``: its _config.yml and vendored files
    around ``notebooks``, ``toc``, ``manifest`` and ``intro`` (the fixture's by default;
    pass the repository's to run the real chapters outside the working tree). The
    intro defaults to the repository's with the repository's toc (it links the
    chapters), else to the fixture's."""
    if intro is None:
        intro = REPO / "book" / "intro.md" if toc.resolve() == (REPO / "_toc.yml").resolve() else FIXTURE / "intro.md"
    (root / "book").mkdir(parents=True)
    shutil.copy(REPO / "_config.yml", root / "_config.yml")
    shutil.copy(toc, root / "_toc.yml")
    shutil.copytree(notebooks, root / "notebooks")
    shutil.copy(manifest, root / "book" / "manifest.yml")
    shutil.copy(intro, root / "book" / "intro.md")
    shutil.copytree(REPO / "book" / "_vendor", root / "book" / "_vendor")
    for name in ("_config.yml", "_toc.yml"):  # as in the repository: relative links
        os.symlink(os.readlink(REPO / "book" / name), root / "book" / name)
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The fixture project after `run_book("smoke")`: (project root, result)."""
    root = make_project(tmp_path_factory.mktemp("bookproj") / "proj")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        t = time.perf_counter()
        result = book.run_book("smoke")
        result.seconds["wall"] = time.perf_counter() - t
    finally:
        os.chdir(cwd)
    return root, result


def copy_project(built_root: Path, dest: Path) -> Path:
    shutil.copytree(built_root, dest, symlinks=True)
    return dest


# ----------------------------------------------------------------------------- repository files
def test_repository_layout_and_manifest():
    assert (REPO / "book" / "_config.yml").is_symlink() and (REPO / "book" / "_toc.yml").is_symlink()
    assert (REPO / "book" / "_config.yml").resolve() == (REPO / "_config.yml").resolve()
    assert (REPO / "book" / "_toc.yml").resolve() == (REPO / "_toc.yml").resolve()
    man = book.load_manifest(REPO / "book" / "manifest.yml")
    assert man.names == CHAPTERS
    assert book.toc_documents(REPO / "_toc.yml") == READING_ORDER
    assert book.toc_chapters(REPO / "_toc.yml") == READING_ORDER[1:]
    assert book.toc_notebooks(REPO / "book" / "_toc.yml") == ["00_claims", *CHAPTERS[:-1]]  # intro.md: a page
    assert yaml.safe_load((REPO / "_toc.yml").read_text())["root"] == "00_claims"
    for nb_path in sorted((REPO / "notebooks").glob("*.ipynb")):  # the lead's notebooks, as they land
        assert nb_path.stem in man.names, f"{nb_path} is not in book/manifest.yml"
        bc.check_source_notebook(nb_path)


def test_config_is_what_jupyter_book_reads():
    from jupyter_book.config import get_final_config

    raw = yaml.safe_load((REPO / "_config.yml").read_text())
    assert raw["execute"]["execute_notebooks"] == "off"  # the string, not YAML's False
    conf, _ = get_final_config(user_yaml=REPO / "_config.yml", sourcedir=REPO / "book",
                               cli_config={"latex_individualpages": False})
    assert conf["nb_execution_mode"] == "off"
    assert conf["nb_execution_allow_errors"] is False
    assert "cervixlib.book.sphinx_ext" in conf["extensions"]
    assert conf["cervix_warnings_as_errors"] is True and conf["cervix_offline"] is True
    for pattern in (".venv", "venv", "**/.venv", "_build", "**/_build", "build", "_vendor"):
        assert pattern in conf["exclude_patterns"], pattern
    assert conf["external_toc_exclude_missing"] is True
    # no CDN: widget manager and MathJax are local paths under _static
    assert list(conf["nb_ipywidgets_js"]) == ["vendor/html-manager/embed.js"]
    assert not any("://" in k for k in conf["nb_ipywidgets_js"])
    assert conf["mathjax_path"] == "vendor/mathjax/tex-svg.js"
    assert conf["html_theme_options"]["launch_buttons"]["thebe"] is False
    assert "myst.domains" in conf["suppress_warnings"]


def test_vendored_files_match_their_record():
    vendor = REPO / "book" / "_vendor"
    rows = [ln.split("  ") for ln in (vendor / "SOURCES.txt").read_text().splitlines() if "  " in ln]
    assert rows, "SOURCES.txt lists no files"
    for path, digest, *_ in rows:
        assert (vendor / path).is_file(), path
        if digest != "-":
            assert hashlib.sha256((vendor / path).read_bytes()).hexdigest() == digest, f"{path} changed"
    listed = {r[0] for r in rows}
    on_disk = {p.relative_to(vendor).as_posix() for p in vendor.rglob("*") if p.is_file()} - {"SOURCES.txt"}
    assert on_disk == listed, f"unrecorded or missing vendored files: {on_disk ^ listed}"
    assert "Redistribution and use in source and binary forms" in (vendor / "html-manager" / "LICENSE.txt").read_text()
    assert "Apache License" in (vendor / "mathjax" / "LICENSE.txt").read_text()


# ----------------------------------------------------------------------------- manifest
@pytest.mark.parametrize("text, problem", [
    ("notebooks: [{name: a, colour: red}]", "unknown key"),
    ("notebooks: [{name: a, parameters: {profile: smoke}}]", "set by `cervix book`"),
    ("notebooks: [{name: a}, {name: a}]", "listed twice"),
    ("notebooks: [{name: a, profiles: {fast: {}}}]", "unknown profile 'fast'"),
    ("notebooks: [{name: a.ipynb}]", "without .ipynb"),
    ("notebooks: []", "non-empty list"),
    ("chapters: []", "one top-level key 'notebooks'"),
    ("notebooks: [{name: a}\n  bad: [", "not valid YAML"),
])
def test_bad_manifest_is_one_line_naming_the_file(tmp_path, text, problem):
    path = tmp_path / "manifest.yml"
    path.write_text(text)
    with pytest.raises(BookError) as exc:
        book.load_manifest(path)
    msg = str(exc.value)
    assert str(path) in msg and problem in msg and "\n" not in msg


def test_manifest_select_and_profile_overrides():
    man = book.load_manifest(FIXTURE / "manifest.yml")
    assert [s.name for s in man.select(["05"])] == ["05_explainability"]
    assert [s.name for s in man.select(["05_explainability.ipynb", "01_figures"])] == FIXTURE_CHAPTERS
    with pytest.raises(BookError, match="matches none"):
        man.select(["07"])
    with pytest.raises(BookError, match="ambiguous"):
        man.select(["0"])
    spec = man.select(["01"])[0]
    assert spec.parameters_for("default")["models"] == ["resnet50", "densenet121"]
    assert spec.parameters_for("smoke")["subset"] == "isolated"
    assert "subset" not in spec.parameters_for("paper")


def test_toc_and_manifest_must_agree(tmp_path):
    root = make_project(tmp_path / "p")
    (root / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: 01_figures\n")
    with pytest.raises(BookError, match="must list the same notebooks: not in the toc: 05_explainability"):
        book.run_book("smoke", notebooks_dir=root / "notebooks", book_dir=root / "book", build=False)
    (root / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: 01_figures\n"
                                   "  - file: 05_explainability\n  - file: 06_extra\n")
    with pytest.raises(BookError, match="not in the manifest: 06_extra"):
        book.run_book("smoke", notebooks_dir=root / "notebooks", book_dir=root / "book", build=False)


def test_toc_order_is_for_reading_and_the_manifest_order_for_execution(tmp_path):
    # the toc may put a notebook first that the manifest executes last (the front page)
    root = make_project(tmp_path / "p")
    (root / "_toc.yml").write_text("format: jb-book\nroot: 05_explainability\nchapters:\n  - file: intro\n"
                                   "  - file: 01_figures\n")
    man = book.load_manifest(root / "book" / "manifest.yml")
    assert book.toc_notebooks(root / "book" / "_toc.yml") == ["05_explainability", "01_figures"]
    from cervixlib.book.manifest import _parse_toc_against

    _parse_toc_against(man, root / "book" / "_toc.yml")  # same notebooks, another order: accepted
    assert man.names == FIXTURE_CHAPTERS  # executed in the manifest's order


def test_unknown_parameter_is_refused_before_running(tmp_path):
    root = make_project(tmp_path / "p")
    with pytest.raises(BookError, match="modles"):
        book.run_book("smoke", notebooks_dir=root / "notebooks", book_dir=root / "book",
                      params={"modles": ["x"]}, build=False)
    assert not list((root / "book").glob("*.ipynb"))


# ----------------------------------------------------------------------------- figures
def test_figure_mimebundle_is_html_without_plotlyjs_plus_json():
    import plotly.graph_objects as go
    import plotly.io as pio

    fig = go.Figure(go.Scatter(y=[1, 3, 2]))
    bundle = display.figure_mimebundle(fig)
    html = bundle["text/html"]
    assert 'class="plotly-graph-div"' in html and "Plotly.newPlot(" in html
    assert "<script src" not in html and "cdn" not in html.lower()  # plotly.js comes from the page
    assert len(html) < 20_000  # not the 4.8 MB plotly.js
    assert bundle[display.PLOTLY_MIMETYPE]["data"][0]["y"] == [1, 3, 2]
    assert bundle[display.PLOTLY_MIMETYPE]["config"]["displaylogo"] is False
    framed = go.Figure(go.Scatter(y=[1]), frames=[go.Frame(data=[go.Scatter(y=[k])], name=str(k)) for k in (2, 3)])
    framed_html = display.figure_mimebundle(framed)["text/html"]
    assert "Plotly.addFrames(" in framed_html and "Plotly.animate(" not in framed_html  # opens on frame one
    old = pio.renderers.default
    try:
        display.use_book_renderer()
        assert set(fig._repr_mimebundle_()) >= {"text/html", display.PLOTLY_MIMETYPE}
    finally:
        pio.renderers.default = old


def test_display_module_does_not_import_the_build():
    # notebooks import cervixlib.display; in a fresh interpreter it must load none of the
    # build's machinery (papermill, nbclient, jupyter_client, Sphinx) nor cervixlib.book
    build = ["papermill", "nbclient", "jupyter_client", "sphinx", "cervixlib.book"]
    code = ("import json, sys\nimport cervixlib.display\n"
            f"print(json.dumps([m for m in {build!r} if m in sys.modules]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_html_table_escapes_and_formats():
    text = display.html_table([{"model": "<b>", "acc": 0.91234}, {"model": "x", "n": 3}], caption="A & B")
    assert text.startswith('<table class="table"><caption>A &amp; B</caption>')
    assert "<th>model</th><th>acc</th><th>n</th>" in text
    assert "<td>&lt;b&gt;</td><td>0.912</td><td></td>" in text and "<td>x</td><td></td><td>3</td>" in text
    assert display.html_table([]) == "<p><em>(no rows)</em></p>"


def test_book_package_layout_and_library_digest():
    from cervixlib.book import execute, sphinx_ext
    from cervixlib.book.errors import BookError as Error

    assert all(hasattr(book, name) for name in book.__all__)
    assert book.BookError is Error and issubclass(book.CellTimeout, Error)
    assert sphinx_ext.PLOTLY_MIMETYPE == display.PLOTLY_MIMETYPE
    # a change anywhere in cervixlib, not only in cervixlib.book, re-executes the book
    root, files = execute._library_files()
    names = {p.relative_to(root).as_posix() for p in files}
    assert {"study.py", "display.py", "book/execute.py", "book/kernel.py", "data/index.py"} <= names


def test_source_fixture_notebooks_are_clean(tmp_path):
    for path in sorted((FIXTURE / "notebooks").glob("*.ipynb")):
        bc.check_source_notebook(path)
    dirty = nbformat.read(FIXTURE / "notebooks" / "01_figures.ipynb", as_version=4)
    dirty.cells[2].execution_count = 3
    dirty.cells.append(nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}))
    nbformat.write(dirty, tmp_path / "dirty.ipynb")
    with pytest.raises(AssertionError, match="execution count 3.*2 cells tagged"):
        bc.check_source_notebook(tmp_path / "dirty.ipynb")


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_fixture_book_builds_and_passes_site_checks(built):
    root, result = built
    assert [p.name for p in result.executed] == [f"{c}.ipynb" for c in FIXTURE_CHAPTERS]
    html = root / "book" / "_build" / "html"
    assert result.html_dir == html.resolve() or result.html_dir == html
    assert not (root / "_build").exists()  # _build lands in book/, next to book/_config.yml
    summary = bc.check_built_site(html, FIXTURE_CHAPTERS, min_figures={"01_figures": 1, "05_explainability": 1})
    assert summary["01_figures"] == {"figures": 1, "widgets": 1}
    assert summary["05_explainability"] == {"figures": 1, "widgets": 1}
    import plotly

    assert (html / "_static" / "vendor" / "plotly.min.js").read_bytes() == \
        (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_bytes()
    assert len(list((html / "_images").glob("*.png"))) == 1  # the matplotlib figure, shown once
    print(f"fixture book: {result.seconds}")


@pytest.mark.slow
def test_parameters_reach_the_notebook_and_kernel_is_the_venv(built):
    root, _ = built
    out = root / "book" / "01_figures.ipynb"
    bc.check_executed_parameters(out, {"profile": "smoke", "data_root": None, "runs_dir": "../runs",
                                       "models": ["resnet50", "densenet121"], "subset": "isolated"})
    nb = nbformat.read(out, as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "profile=smoke models=['resnet50', 'densenet121'] subset=isolated" in text
    assert f"prefix={sys.prefix}" in text  # papermill's kernel is this venv's python
    assert nb.metadata["cervix"]["profile"] == "smoke"


@pytest.mark.slow
def test_override_reruns_one_chapter_and_unchanged_ones_are_reused(built, tmp_path):
    root = copy_project(built[0], tmp_path / "p")
    nbs, bk = root / "notebooks", root / "book"
    res = book.run_book("smoke", notebooks_dir=nbs, book_dir=bk, only=["01"],
                        params={"models": ["densenet121"]}, build=False)
    assert [p.name for p in res.executed] == ["01_figures.ipynb"]
    bc.check_executed_parameters(bk / "01_figures.ipynb", {"models": ["densenet121"], "profile": "smoke"})
    text = json.dumps(nbformat.read(bk / "01_figures.ipynb", as_version=4).cells[3].outputs)
    assert "models=['densenet121']" in text
    again = book.run_book("smoke", notebooks_dir=nbs, book_dir=bk, only=["01"],
                          params={"models": ["densenet121"]}, build=False)
    assert again.executed == [] and [p.name for p in again.reused] == ["01_figures.ipynb"]
    # another profile for one chapter only: the build refuses to mix them
    nb = nbformat.read(bk / "05_explainability.ipynb", as_version=4)
    nb.metadata["cervix"]["profile"] = "paper"
    nbformat.write(nb, bk / "05_explainability.ipynb")
    with pytest.raises(BookError, match="different settings"):
        book.run_book("smoke", notebooks_dir=nbs, book_dir=bk, only=["01"],
                      params={"models": ["densenet121"]})


@pytest.mark.slow
def test_failing_notebook_stops_with_one_line_naming_notebook_and_cell(built, tmp_path, monkeypatch, capsys):
    from cervixlib.cli import build_parser

    root = copy_project(built[0], tmp_path / "p")
    src = root / "notebooks" / "05_explainability.ipynb"
    nb = nbformat.read(src, as_version=4)
    nb.cells.insert(2, nbformat.v4.new_code_cell("x = 1\nraise ValueError(f'boom {x}')"))
    nbformat.write(nb, src)
    monkeypatch.chdir(root)
    args = build_parser().parse_args(["book", "--profile", "smoke", "--only", "05"])
    assert args.func(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("cervix book: error: notebooks/05_explainability.ipynb: cell 3 ('x = 1') failed: "
                             "ValueError: boom 1"), err[0]
    assert not (root / "book" / "05_explainability.ipynb").exists()  # no stale chapter left



def test_bad_data_is_refused_before_any_notebook_runs(tmp_path, monkeypatch, build_tree):
    root = make_project(tmp_path / "p")
    data = tmp_path / "sipakmed"
    build_tree(data)
    bad = [data / "im_Dyskeratotic" / "001.bmp", data / "im_Parabasal" / "002_nuc01.dat"]
    bad[0].write_bytes(b"")
    bad[1].write_text("nan,1\n2,3\n4,5\n")
    monkeypatch.chdir(root)
    t = time.perf_counter()
    with pytest.raises(BookError) as err:
        book.run_book("smoke", data=data, build=False)
    assert time.perf_counter() - t < 20  # no kernel was started
    message = str(err.value)
    assert message.splitlines()[0].endswith("2 bad files, listed below; fix or remove them, or leave them "
                                            "out with --skip-bad (skip_bad=True)")
    assert all(f"{path}: " in message for path in bad)
    assert not list((root / "book").glob("*.ipynb"))


def _insert_cell(root: Path, source: str) -> None:
    src = root / "notebooks" / "01_figures.ipynb"
    nb = nbformat.read(src, as_version=4)
    nb.cells.insert(2, nbformat.v4.new_code_cell(source))
    nbformat.write(nb, src)


def test_a_stalled_cell_is_retried_once_then_the_notebook_runs(built, tmp_path, monkeypatch, caplog):
    # The first execution sleeps past the limit (as a cell does whose finished reply never
    # reaches nbclient); the retry finds the flag file and runs through. The limit holds for
    # every cell of the chapter, so it leaves room for a loaded machine's slow imports.
    root = copy_project(built[0], tmp_path / "p")
    _insert_cell(root, "import os, time\nif not os.path.exists('stalled-once'):\n"
                       "    open('stalled-once', 'w').close()\n    time.sleep(600)")
    monkeypatch.chdir(root)
    t = time.perf_counter()
    result = book.run_book("smoke", only=["01"], build=False, force=True, cell_timeout=12)
    assert time.perf_counter() - t < 120
    assert [p.name for p in result.executed] == ["01_figures.ipynb"]
    assert (root / "notebooks" / "stalled-once").exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("longer than the 12 s limit" in w and "once more" in w for w in warnings), warnings


def test_a_cell_over_the_limit_twice_fails_with_one_line(built, tmp_path, monkeypatch):
    root = copy_project(built[0], tmp_path / "p")
    _insert_cell(root, "import time\ntime.sleep(60)")
    monkeypatch.chdir(root)
    with pytest.raises(book.CellTimeout) as err:
        book.run_book("smoke", only=["01"], build=False, force=True, cell_timeout=3)
    message = str(err.value)
    assert "\n" not in message
    assert message == ("notebooks/01_figures.ipynb: a cell ran longer than the 3 s limit "
                       "(cervix book --cell-timeout)")
    assert not (root / "book" / "01_figures.ipynb").exists()  # no stale chapter left


def test_profiles_bound_a_cell_except_the_paper_protocol():
    from cervixlib.config import PROFILES

    assert PROFILES["smoke"].cell_timeout == 300 and PROFILES["default"].cell_timeout == 900
    assert PROFILES["paper"].cell_timeout is None  # 50 epochs on 224 px may take a day on a CPU


@pytest.mark.slow
def test_plotly_default_renderer_is_refused(tmp_path):
    src = tmp_path / "nb.ipynb"
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("profile = 'smoke'\ndata_root = None\nruns_dir = 'runs'",
                                  metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import plotly.graph_objects as go\ngo.Figure(go.Bar(y=[1, 2]))"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, src)
    with pytest.raises(BookError, match=r"cell 2 .*only as application/vnd.plotly.v1\+json.*show\(fig\)"):
        book.execute_notebook(src, tmp_path / "out.ipynb", {"profile": "smoke"})
    assert not (tmp_path / "out.ipynb").exists()


@pytest.mark.slow
def test_plain_jupyter_book_build_as_the_readme_says(built, tmp_path):
    """`jupyter-book build book/` from the root, no flags: same site, warnings fail it."""
    root = copy_project(built[0], tmp_path / "p")
    shutil.rmtree(root / "book" / "_build")
    proc = subprocess.run([str(JUPYTER_BOOK), "build", "book/"], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    html = root / "book" / "_build" / "html"
    bc.check_built_site(html, FIXTURE_CHAPTERS, min_figures={"05_explainability": 1})
    assert not (root / "_build").exists()

    # a figure shown with plotly's default renderer, and a script from a CDN: both fail
    out = root / "book" / "05_explainability.ipynb"
    nb = nbformat.read(out, as_version=4)
    slider_cell = next(c for c in nb.cells if c.get("id") == "slider")
    slider_cell.outputs[0]["data"].pop("text/html")
    nbformat.write(nb, out)
    conf = root / "_config.yml"
    conf.write_text(conf.read_text().replace(
        "    html_show_sourcelink: false\n",
        "    html_show_sourcelink: false\n    html_js_files: ['https://cdn.example.org/x.js']\n"))
    proc = subprocess.run([str(JUPYTER_BOOK), "build", "book/"], cwd=root, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log
    assert "05_explainability" in log and "cannot render (application/vnd.plotly.v1+json)" in log, log
    assert "loads https://cdn.example.org/x.js from another host" in log, log


@pytest.mark.slow
def test_browser_draws_figures_and_slider_offline(built):
    if bc.find_chromium() is None:
        pytest.skip(bc.CHROMIUM_HINT)
    html = built[0] / "book" / "_build" / "html"
    shots = html.parent / "screenshots"
    state = bc.check_in_browser(html, ["index.html", "01_figures.html", "05_explainability.html"], shots,
                                sliders={"05_explainability.html": 1})
    five = state["05_explainability.html"]
    assert five["sliders"] == 1 and five["widgets_drawn"] == 1
    assert len(five["plots"]) == 2  # the static slider, and the figure inside the Output widget
    assert state["01_figures.html"]["widgets_drawn"] == 1 and state["01_figures.html"]["math"] >= 1
    for name in ("index", "01_figures", "05_explainability"):
        assert (shots / f"{name}.png").stat().st_size > 20_000


@pytest.mark.slow
def test_jupyterlab_serves_notebooks_and_starts_a_kernel(built):
    kernel = bc.check_jupyterlab(built[0], "notebooks", expected=[f"{c}.ipynb" for c in FIXTURE_CHAPTERS])
    assert kernel["name"] == "python3" and kernel["sys_prefix"] == sys.prefix


@pytest.mark.slow
def test_site_checks_catch_errors_cdn_scripts_and_undrawn_figures(built, tmp_path):
    """The checks above can fail: a traceback, a CDN script, a figure that cannot draw."""
    html = shutil.copytree(built[0] / "book" / "_build" / "html", tmp_path / "html")
    page = html / "05_explainability.html"
    text = page.read_text()
    text = text.replace("</head>", '<script src="https://cdn.jsdelivr.net/npm/x.js"></script></head>', 1)
    text = text.replace('<div class="cell_output docutils container">',
                        '<div class="cell_output docutils container"><div class="output traceback">'
                        'Traceback (most recent call last): ValueError</div>', 1)
    page.write_text(text)
    with pytest.raises(AssertionError) as exc:
        bc.check_built_site(html, FIXTURE_CHAPTERS)
    assert "loads from another host" in str(exc.value) and "error output" in str(exc.value)

    if bc.find_chromium() is None:
        pytest.skip(bc.CHROMIUM_HINT)
    (html / "broken.html").write_text(
        '<html><head><script src="https://cdn.plot.ly/plotly-2.0.0.min.js"></script></head><body>'
        '<div id="f" class="plotly-graph-div" style="height:300px"></div>'
        '<script>Plotly.newPlot("f", [{"y": [1, 2]}], {});</script></body></html>')
    with pytest.raises(AssertionError) as exc:
        bc.check_in_browser(html, ["broken.html"], tmp_path / "shots")
    msg = str(exc.value)
    assert "requests outside the site: ['https://cdn.plot.ly/plotly-2.0.0.min.js']" in msg, msg
    assert "Plotly is not defined" in msg and "did not draw" in msg, msg


# ----------------------------------------------------------------------------- for reading
def test_injected_parameters_cell_is_tagged_for_removal_once():
    from cervixlib.book.execute import hide_injected_parameters

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("profile = 'default'", metadata={"tags": ["parameters", "remove-cell"]}),
        nbformat.v4.new_code_cell("# Parameters\nprofile = 'smoke'", metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("print(profile)")])
    assert hide_injected_parameters(nb) == 1
    assert [c.metadata.get("tags") for c in nb.cells] == [
        ["parameters", "remove-cell"], ["injected-parameters", "remove-cell"], []]
    assert hide_injected_parameters(nb) == 0  # already tagged: unchanged


def test_fig2_has_no_fixed_width_so_all_five_columns_fit_the_column():
    import numpy as np

    from cervixlib.figures import FIG2_PANEL_PX, Fig2Row, fig2_plotly

    rng = np.random.default_rng(0)
    rows = [Fig2Row(rng.random((3, 16, 16)), rng.random((3, 16, 16)), rng.random((3, 16, 16)),
                    label=f"model {k}", note="target: A") for k in range(2)]
    fig = fig2_plotly(rows, title="Fig. 2")
    assert fig.layout.width is None and fig.layout.autosize is True
    assert fig.layout.height == int(FIG2_PANEL_PX * 2 * 1.18) + 60
    # as the book shows it: a div as wide as its column, a responsive figure, no width in the layout
    html = display.figure_mimebundle(fig)["text/html"]
    assert "width:100%" in html.replace(" ", "") and '"responsive": true' in html
    layout = next(iter(bc.plotly_layouts(bc.BeautifulSoup(html, "html.parser")).values()))
    assert "width" not in layout
    # five panels of FIG2_PANEL_PX and their gaps fill a full-width cell at 1280 px, not more
    assert 5 * FIG2_PANEL_PX <= bc.FULL_WIDTH_PX_AT_1280 - 20
    fixed = fig2_plotly(rows, width=600)
    assert fixed.layout.width == 600 and fixed.layout.autosize is False


def test_html_table_reads_as_words():
    """Headers are words, models go by the paper's names, a missing number reads "none", and a
    table whose values have no interval says why once, in its caption, not in every cell."""
    from cervixlib.comparison import corrected_resampled_t
    from cervixlib.metrics import Interval

    text = display.html_table([{"p_value": float("nan"), "model a": "rcan_densenet121", "model": "a_b",
                                "share": Interval(0.5, float("nan"), float("nan"))}], caption="Shares.")
    soup = bc.BeautifulSoup(text, "html.parser")
    assert [th.get_text() for th in soup.find_all("th")] == ["p value", "model a", "model", "share"]
    assert [td.get_text() for td in soup.find_all("td")] == ["none", "RCAN-DenseNet-121", "a_b", "0.500"]
    assert soup.caption.get_text() == "Shares; no interval: fewer than 10 images." and "nan" not in text
    mixed = display.html_table([{"d": corrected_resampled_t([0.1, 0.2], n_train=10, n_test=5)},
                                {"d": Interval(0.5, float("nan"), float("nan"))}])
    assert "A value without brackets has no interval" in mixed and "[" in mixed


def test_repository_link_is_configurable_and_never_jupyter_books_own():
    from types import SimpleNamespace

    from jupyter_book.config import get_final_config

    from cervixlib.book import sphinx_ext

    conf, _ = get_final_config(user_yaml=REPO / "_config.yml", sourcedir=REPO / "book",
                               cli_config={"latex_individualpages": False})
    url = conf["html_theme_options"].get("repository_url", "")
    assert "executablebooks" not in url  # Jupyter Book's default when `repository:` is left out
    config = SimpleNamespace(html_theme_options={"repository_url": ""}, myst_substitutions={})
    sphinx_ext._link_repository(config)
    assert config.myst_substitutions["repository"] == sphinx_ext.NO_REPOSITORY_TEXT
    assert "use_repository_button" not in config.html_theme_options
    config = SimpleNamespace(html_theme_options={"repository_url": "https://example.org/cervixlib"},
                             myst_substitutions=None)
    sphinx_ext._link_repository(config)
    assert config.html_theme_options["use_repository_button"] is True
    assert config.myst_substitutions["repository"].endswith("[https://example.org/cervixlib](https://example.org/cervixlib)")


def test_how_to_read_page_says_what_a_reader_needs():
    text = (REPO / "book" / "intro.md").read_text()
    assert text.startswith("# How to read this book\n")
    for chapter in CHAPTERS:
        assert f"{{doc}}`{chapter}`" in text, chapter
    for needed in (".venv/bin/jupyter lab notebooks/", ".venv/bin/papermill notebooks/", "--cwd notebooks",
                   "{{ repository }}", "`.ipynb`", "download", "not SIPaKMeD results", "{{ profiles }}",
                   "(profiles)=", "https://github.com/suikei-wang/Towards-Interpretable-Attention-Networks-for-Cervical-"
                              "Cancer-Analysis", "https://arxiv.org/abs/2106.00557"):
        assert needed in text, needed
    assert "binder" not in text.lower() and "colab" not in text.lower()  # nothing that needs a network


def test_reading_checks_catch_shown_plumbing_wide_figures_and_a_missing_download(tmp_path):
    """The site checks for reading can fail: a shown parameters cell and import, a
    fixed-width figure, no download button, an intro that does not link the chapters."""
    html = tmp_path / "html"
    (html / "_static" / "cervix").mkdir(parents=True)
    (html / "_static" / "cervix" / "book.css").write_text("")
    (html / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=intro.html" />')
    head = '<head><link rel="stylesheet" href="_static/cervix/book.css" /></head>'
    (html / "intro.html").write_text(f"<html>{head}<body><p>{{{{ repository }}}}</p></body></html>")
    wide = ('<div id="f1" class="plotly-graph-div"></div><script>Plotly.newPlot("f1", [{"y": [1]}], '
            '{"width": 990, "height": 300}, {"responsive": true})</script>')
    (html / "ch.html").write_text(
        f"<html>{head}<body><div class=\"cell tag_parameters\"><div class=\"cell_input\"><pre># Parameters (papermill "
        "injects overrides after this cell).</pre></div></div><div class=\"cell\"><div class=\"cell_input\"><pre>"
        "from cervixlib import figures\nshow(x)</pre></div></div>"
        "<div class=\"cell tag_hide-input\"><details class=\"hide above-input\"><summary>Show code cell source</summary>"
        "<div class=\"cell_input\"><pre>import numpy as np</pre></div></details></div>"
        f"<div class=\"cell\"><div class=\"cell_output\"><div class=\"output text_html\">{wide}</div></div></div>"
        "</body></html>")
    with pytest.raises(AssertionError) as exc:
        bc.check_built_site(html, ["ch"])
    msg = str(exc.value)
    for problem in ("ch.html: shows the parameters cell ('Parameters (papermill injects')",
                    "ch.html: shows the parameters cell (tag it 'remove-cell')",
                    "ch.html: shows a code cell with imports ('from cervixlib import figures')",
                    "plotly figure f1 is 990 px wide, wider than the content column (676 px at 1280 px)",
                    "ch.html: no download button for _sources/ch.ipynb",
                    "intro.html: does not link the chapters ['ch']",
                    "intro.html: an unresolved substitution"):
        assert problem in msg, (problem, msg)
    assert "import numpy" not in msg  # behind a collapsed hide-input toggle: not shown
