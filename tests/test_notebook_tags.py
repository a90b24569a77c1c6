"""Every notebook in notebooks/ follows the book's cell-tag convention
(book_checks.check_cell_tags): the parameters cell, the setup cells and the imports
are off the rendered page, and stay in the notebook a reader downloads."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

import book_checks as bc

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks_to_check():
    assert len(NOTEBOOKS) >= 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_follows_the_cell_tag_convention(path):
    bc.check_cell_tags(path)


def _notebook(tmp_path: Path, *cells: tuple[str, list[str]]) -> Path:
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# A chapter\n\nfrom cervixlib import prose"),
        *(nbformat.v4.new_code_cell(src, metadata={"tags": tags} if tags else {}) for src, tags in cells)])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


PARAMS = ('profile = "default"\nruns_dir = "../runs"', ["parameters", "remove-cell"])
SETUP = ("from cervixlib.study import Study\n\nstudy = Study(profile=profile)\nshow_statement(study)",
         ["remove-input"])


def test_a_tagged_notebook_passes(tmp_path):
    bc.check_cell_tags(_notebook(tmp_path, PARAMS, SETUP,
                                 ("import numpy as np\nx: int = 1\nx += 1", ["remove-cell"]),
                                 ("%matplotlib inline\nfrom cervixlib import figures\nshow(figures.f(x))",
                                  ["hide-input"]),
                                 ("show(figures.g(x))", []),  # no import: may show its code
                                 ("x = (", [])))  # not Python: not judged


@pytest.mark.parametrize("cell, message", [
    (('profile = "default"', ["parameters"]), r"cell 2 \('profile = \"default\"'\): the parameters cell lacks "
                                              "the tag 'remove-cell'"),
    (("import numpy as np\nfrom cervixlib import figures", []), r"cell 3 \('import numpy as np'\) only imports "
                                                                "and sets up: tag it 'remove-cell'"),
    ((SETUP[0], ["hide-input"]), r"cell 3 \('from cervixlib.study import Study'\) only imports and sets up"),
    (("runs = study.runs(models)\nshow_statement(study)", []), "only imports and sets up"),
    (("from cervixlib.report import rows\ndisplay(rows())", []), r"cell 3 .* imports: tag it 'hide-input'"),
    (("if x:\n    import torch\n    print(torch.__version__)", []), "imports: tag it 'hide-input'"),
])
def test_an_untagged_plumbing_cell_is_refused(tmp_path, cell, message):
    cells = [PARAMS, cell] if "parameters" not in cell[1] else [cell]
    with pytest.raises(AssertionError, match=message):
        bc.check_cell_tags(_notebook(tmp_path, *cells))
