"""The notebooks' parameter defaults live in one place: each chapter's own parameters in
book/manifest.yml, the shared ones in cervixlib.study.Study. Every parameters cell must
agree with them, so that JupyterLab (the cell's defaults) and `cervix book --profile
default` (the manifest) run the same analysis."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from cervixlib import book
from cervixlib.study import Study

REPO = Path(__file__).resolve().parents[1]
MANIFEST = book.load_manifest(REPO / "book" / "manifest.yml")
#: The one deliberate difference: notebooks run in notebooks/, the run store is beside it.
NOTEBOOK_RUNS_DIR = "../runs"


@pytest.mark.parametrize("spec", MANIFEST.notebooks, ids=lambda s: s.name)
def test_each_parameters_cell_agrees_with_the_manifest_and_the_study(spec):
    # papermill reports each default as its source text
    declared = {k: ast.literal_eval(v) for k, v in
                book.notebook_parameters(REPO / "notebooks" / f"{spec.name}.ipynb").items()}
    chapter = spec.parameters_for("default")
    shared = {f.name: f.default for f in dataclasses.fields(Study) if not f.name.startswith("_")}
    shared["runs_dir"] = NOTEBOOK_RUNS_DIR
    unknown = set(declared) - set(chapter) - set(shared)
    assert not unknown, f"{spec.name}: parameters with no default in one place: {sorted(unknown)}"
    for name, value in declared.items():
        expected = chapter[name] if name in chapter else shared[name]
        assert value == expected, f"{spec.name}: {name} = {value!r}, the manifest/Study say {expected!r}"
