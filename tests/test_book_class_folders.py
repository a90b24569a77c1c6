"""The book on the user's own data: the real chapters, end to end on the smoke profile, on a
class-per-folder set made here from the synthetic crops (six Bethesda-like classes, one name
with spaces, mixed PNG/JPEG/BMP and sizes, no cell outlines), and chapter 5 on the same set
with a masks/ folder per class."""

from __future__ import annotations

import re

import nbformat
import pytest

import book_checks as bc
from cervixlib import book
from cervixlib.facts import CLASSES, PAPER_TABLE2
from conftest import CLASS_FOLDER_NAMES, build_class_folder_set
from test_book import CHAPTERS, REPO, make_project

pytestmark = pytest.mark.slow

#: SIPaKMeD facts that must not appear in what the chapters computed on other data.
SIPAKMED_WORDS = (*CLASSES, "SIPaKMeD-compatible", "4,049", "966 ")
PAPER_NUMBERS = sorted({f"{v:.2f}" for row in PAPER_TABLE2.values() for v in row.values() if isinstance(v, float)})


@pytest.fixture(scope="module")
def folder_book(tmp_path_factory, synth_index):
    base = tmp_path_factory.mktemp("folderbook")
    data = build_class_folder_set(base / "cervix-cells", synth_index, n_classes=6)
    root = make_project(base / "proj", toc=REPO / "_toc.yml", notebooks=REPO / "notebooks",
                        manifest=REPO / "book" / "manifest.yml")
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    try:
        result = book.run_book("smoke", data=str(data), runs_dir=str(root / "runs"))
    finally:
        mp.undo()
    return root, data, result


def _outputs(path) -> str:
    """Everything the chapter's cells computed (its outputs), not the prose written about the paper."""
    nb = nbformat.read(path, as_version=4)
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", ""))
            data = out.get("data", {})
            texts += [str(data.get(k, "")) for k in ("text/html", "text/markdown", "text/plain")]
    return "\n".join(texts)


def test_every_chapter_builds_with_no_error(folder_book):
    root, _, result = folder_book
    html = root / "book" / "_build" / "html"
    assert result.html_dir == html
    bc.check_built_site(html, CHAPTERS)
    for name in CHAPTERS:
        nb = nbformat.read(root / "book" / f"{name}.ipynb", as_version=4)
        assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"], name


def test_chapter_4_is_a_note_and_trains_nothing(folder_book):
    root, _, result = folder_book
    page = (root / "book" / "_build" / "html" / "04_multicell_vs_isolated.html").read_text()
    assert "Not applicable to this data" in page and "one subset" in page
    assert not [r for r in result.planned if "isolated" in r]


def test_chapter_6_without_masks_is_a_note_and_trains_no_graph(folder_book):
    root, _, result = folder_book
    page = (root / "book" / "_build" / "html" / "06_cell_graphs.html").read_text()
    assert "Not applicable to this data" in page and "&lt;class&gt;/masks/&lt;stem&gt;.png" in page
    assert not [r for r in result.planned if "cell_graph" in r]


def test_the_front_page_says_which_claims_are_not_testable_and_why(folder_book):
    root, _, _ = folder_book
    text = _outputs(root / "book" / "00_claims.ipynb")
    assert text.count("not testable on this data") >= 3  # claims 4, 5 and 6 (no masks: no cell graphs)
    assert "no cell outlines" in text and "one subset of images" in text and "make a graph of" in text
    assert re.search(r"Of the 6 claims checked on cervix-cells", text)


def test_the_chapters_use_the_sets_classes_and_no_sipakmed_fact(folder_book):
    root, data, _ = folder_book
    for name in CHAPTERS:
        text = _outputs(root / "book" / f"{name}.ipynb")
        shown = text.replace("Metaplastic cells", "")  # the set's own sixth class, not SIPaKMeD's
        found = [w for w in SIPAKMED_WORDS if w in shown] + [n for n in PAPER_NUMBERS if n in shown]
        assert not found, (name, found)
        assert str(data) not in text, name  # the path stays off the page
    first = _outputs(root / "book" / "01_data_exploration.ipynb")
    assert all(c in first for c in CLASS_FOLDER_NAMES)  # its own six classes, spaces and all


def test_with_masks_chapter_5_measures_localisation(tmp_path, synth_index):
    data = build_class_folder_set(tmp_path / "masked-cells", synth_index, n_classes=5, masks=True)
    root = make_project(tmp_path / "proj", toc=REPO / "_toc.yml", notebooks=REPO / "notebooks",
                        manifest=REPO / "book" / "manifest.yml")
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    try:
        book.run_book("smoke", data=str(data), runs_dir=str(root / "runs"), only=["05"], build=False,
                      params={"models": ["densenet121", "rcan_densenet121"]})
    finally:
        mp.undo()
    text = _outputs(root / "book" / "05_explainability.ipynb").lower()
    assert "pointing game" in text and "in-cell share" in text and "no cell outlines" not in text
