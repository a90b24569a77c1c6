"""The real five chapters, end to end on the smoke profile: papermill, the build, the site, a browser.

This is the CI proof of the analysis book: everything a reader gets from `make book`,
on smoke-sized synthetic data generated inside the test (fresh data home, fresh run
store), so nothing cached on the machine can hide a failure.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import pytest

from cervixlib import book
import book_checks as bc
from test_book import CHAPTERS, REPO, make_project

pytestmark = pytest.mark.slow

MIN_FIGURES = {"00_claims": 0, "01_data_exploration": 5, "02_baselines": 2, "03_attention_models": 3,
               "04_multicell_vs_isolated": 1, "05_explainability": 3, "06_cell_graphs": 2}


@pytest.fixture(scope="module")
def real_book(tmp_path_factory):
    """The repository's chapters, manifest and toc in a scratch project, after `run_book("smoke")`."""
    base = tmp_path_factory.mktemp("realbook")
    root = make_project(base / "proj", toc=REPO / "_toc.yml", notebooks=REPO / "notebooks",
                        manifest=REPO / "book" / "manifest.yml")
    mp = pytest.MonkeyPatch()
    mp.setenv("CERVIX_DATA_HOME", str(base / "data-home"))
    mp.chdir(root)
    try:
        t = time.perf_counter()
        result = book.run_book("smoke", runs_dir=str(root / "runs"))
        seconds = time.perf_counter() - t
    finally:
        mp.undo()
    print(f"smoke book, five chapters, fresh data and runs: {seconds:.0f} s")
    return root, result


def test_source_notebooks_are_clean_and_parametrised():
    for name in CHAPTERS:
        bc.check_source_notebook(REPO / "notebooks" / f"{name}.ipynb")


def test_all_five_chapters_execute_and_build(real_book):
    root, result = real_book
    assert [p.name for p in result.executed] == [f"{c}.ipynb" for c in CHAPTERS]
    html = root / "book" / "_build" / "html"
    summary = bc.check_built_site(html, CHAPTERS, min_figures=MIN_FIGURES)
    assert set(summary) >= set(CHAPTERS)


def test_every_chapter_says_it_ran_on_synthetic_data(real_book):
    html = real_book[0] / "book" / "_build" / "html"
    for name in CHAPTERS:
        page = (html / f"{name}.html").read_text()
        assert "these are not SIPaKMeD results" in page, name


def test_no_page_prints_the_datas_path(real_book):
    """The pages name the data (name, counts, fingerprint); the path on the build machine
    stays in the downloadable notebook only."""
    root, _ = real_book
    data_home = str(root.parent / "data-home")
    html = root / "book" / "_build" / "html"
    for name in CHAPTERS:
        page = (html / f"{name}.html").read_text()
        assert data_home not in page and "data-home" not in page, name
        assert "fingerprint" in page, name


def test_no_page_shows_a_progress_bar(real_book):
    # The fixture's data home is empty, so the embedded set is generated during the build:
    # by cervix book before any kernel starts, not by the first chapter onto its page.
    root, result = real_book
    for path in result.executed:
        for n, cell in enumerate(nbformat.read(root / "book" / path.name, as_version=4).cells):
            for out in cell.get("outputs", []):
                text = str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", ""))
                assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {}), (path.name, n)
                assert "%|" not in text, (path.name, n, text[:80])  # tqdm's text bar


def test_each_training_cell_finds_its_runs_in_one_line_off_the_page(real_book):
    # cervix book trained the plan first: every chapter's training cell (issue 30) finds its runs
    # in the store, says so in one line and is removed from the page
    import re

    root, result = real_book
    seen = []
    for path in result.executed:
        nb = nbformat.read(root / "book" / path.name, as_version=4)
        for cell in (c for c in nb.cells if "train_chapter(study, " in c.source):
            assert "remove-cell" in cell.metadata.get("tags", []), path.name
            text = [str(o.get("text", "")).strip() for o in cell.outputs]
            if "if not note:" in cell.source and not text:
                continue  # chapter 6 on images without cells: nothing to train
            assert len(text) == 1 and re.fullmatch(r"(\d+) runs? needed: \1 in the store", text[0]), (path.name, text)
            seen.append(path.stem)
    assert {"00_claims", "02_baselines", "03_attention_models", "04_multicell_vs_isolated"} <= set(seen), seen


def test_front_page_gives_a_computed_verdict_for_each_claim(real_book):
    from cervixlib.claims import VERDICTS

    html = real_book[0] / "book" / "_build" / "html"
    page = (html / "00_claims.html").read_text()
    assert "on the synthetic set (not SIPaKMeD)" in page
    assert sum(page.count(f"{v} on the synthetic set") for v in VERDICTS) >= 5
    for chapter in ("03_attention_models", "04_multicell_vs_isolated", "05_explainability"):
        assert f'href="{chapter}.html' in page, chapter  # the evidence links resolve to the chapters


def test_tables_carry_the_papers_numbers_and_intervals(real_book):
    html = real_book[0] / "book" / "_build" / "html"
    page = (html / "03_attention_models.html").read_text()
    for paper_value in ("85.15", "89.11", "84.16", "91.09"):
        assert paper_value in page
    assert "McNemar" in page and "[" in page
    assert "95.11" in (html / "04_multicell_vs_isolated.html").read_text()


def test_pages_read_as_a_reviewer_would_want(real_book):
    """No page of the smoke book repeats a sentence, heads a column with a code name, prints
    "nan", gives an interval whose ends are one number or says "1 images"."""
    html = real_book[0] / "book" / "_build" / "html"
    problems = [p for name in CHAPTERS for p in bc.check_page_text(html / f"{name}.html")]
    problems += bc.check_page_text(html / "intro.html")
    assert not problems, "\n".join(problems)


def test_parameter_override_reaches_the_notebook(real_book, tmp_path):
    root = real_book[0]
    res = book.run_book("smoke", notebooks_dir=root / "notebooks", book_dir=root / "book",
                        runs_dir=str(root / "runs"), only=["02"], params={"models": ["resnet50"]}, build=False)
    out = root / "book" / "02_baselines.ipynb"
    assert [p.name for p in res.executed] == ["02_baselines.ipynb"]
    bc.check_executed_parameters(out, {"models": ["resnet50"], "profile": "smoke"})
    nb = nbformat.read(out, as_version=4)
    outputs = str([c.get("outputs") for c in nb.cells if c.cell_type == "code"])
    assert "resnet50-multi" in outputs and "densenet121-multi" not in outputs


def test_browser_draws_every_figure_and_the_slider(real_book):
    if bc.find_chromium() is None:
        pytest.skip(bc.CHROMIUM_HINT)
    html = real_book[0] / "book" / "_build" / "html"
    shots = Path(os.environ.get("CERVIX_SCREENSHOTS", html.parent / "screenshots"))
    pages = ["index.html", *(f"{c}.html" for c in CHAPTERS)]
    state = bc.check_in_browser(html, pages, shots, sliders={"05_explainability.html": 1, "06_cell_graphs.html": 1})
    assert state["05_explainability.html"]["sliders"] >= 1 and state["06_cell_graphs.html"]["sliders"] >= 1
    for name in CHAPTERS:
        assert len(state[f"{name}.html"]["plots"]) >= MIN_FIGURES[name], name
        assert (shots / f"{name}.png").stat().st_size > 20_000


def test_jupyterlab_serves_the_chapters_and_starts_a_kernel():
    import sys

    kernel = bc.check_jupyterlab(REPO, "notebooks", expected=[f"{c}.ipynb" for c in CHAPTERS])
    assert kernel["name"] == "python3" and kernel["sys_prefix"] == sys.prefix


def test_the_run_plan_trains_every_run_and_the_chapters_only_load_them(real_book):
    # cervix book trains the plan (book/manifest.yml's runs:) first; a chapter that asked the
    # store for a run the plan lacked would have trained it in its kernel: none may.
    root, result = real_book
    # smoke: 4 models x 2 subsets x 2 folds, 2 released, 1 leakage; 4 graph models x 2 folds (chapter 6;
    # the one on CNN features reads the isolated-cell DenseNet-121 fold runs, planned before it)
    assert len(result.planned) == 27
    planned = list(result.planned)
    for fold in (1, 2):
        encoder = next(i for i, r in enumerate(planned) if r.startswith(f"densenet121-isolated-f{fold}of2-"))
        graph = next(i for i, r in enumerate(planned) if r.startswith(f"cell_graph_gat_cnn-multi-f{fold}of2-"))
        assert encoder < graph
    assert result.unplanned == []
    assert {p.parent.name for p in (root / "runs").glob("*/config.json")} == set(result.planned)
