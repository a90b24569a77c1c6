"""The notebooks' parameter defaults live in one place: each chapter's own parameters in
book/manifest.yml, the shared ones in cervixlib.study.Study, chapter 5's sizes in the profile
(cervixlib.config.ExplainSizes, None in the cell). Every parameters cell must agree with them,
so that JupyterLab (the cell's defaults), papermill (`-p profile paper`) and `cervix book`
(the manifest) run the same analysis."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from cervixlib import book
from cervixlib.config import PROFILES, ExplainSizes, get_profile
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
    shared.update({f.name: None for f in dataclasses.fields(ExplainSizes)})  # None: the profile's
    unknown = set(declared) - set(chapter) - set(shared)
    assert not unknown, f"{spec.name}: parameters with no default in one place: {sorted(unknown)}"
    for name, value in declared.items():
        expected = chapter[name] if name in chapter else shared[name]
        assert value == expected, f"{spec.name}: {name} = {value!r}, the manifest/Study say {expected!r}"


def _sizes_line(nb) -> ast.stmt:
    """The statement of chapter 5 that resolves its sizes (``sizes = study.explain_sizes(...)``)."""
    for cell in nb.cells:
        if cell.cell_type == "code" and "explain_sizes(" in cell.source:
            tree = ast.parse(cell.source)
            return next(node for node in tree.body if isinstance(node, ast.Assign)
                        and "explain_sizes" in ast.unparse(node.value))
    raise AssertionError("chapter 5 has no explain_sizes(...) call")


@pytest.mark.parametrize("profile", list(PROFILES))
def test_chapter5_sizes_are_the_profiles_however_the_notebook_is_started(profile):
    """papermill with ``-p profile PROFILE`` (and JupyterLab with ``profile = ...`` typed in the
    cell) and ``cervix book --profile PROFILE`` (the manifest's parameters) give chapter 5 the
    same sizes: the profile's."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    src = REPO / "notebooks" / "05_explainability.ipynb"
    spec = next(s for s in MANIFEST.notebooks if s.name == "05_explainability")
    line = _sizes_line(nbformat.read(src, as_version=4))
    routes = {"papermill -p profile": {"profile": profile},
              "cervix book": {**spec.parameters_for(profile), "profile": profile}}
    got = {}
    for route, params in routes.items():
        nb = parameterize_notebook(load_notebook_node(str(src)), params)
        ns: dict = {}
        for cell in nb.cells:  # the parameters cell, then what papermill injected
            tags = cell.metadata.get("tags", [])
            if "parameters" in tags or "injected-parameters" in tags:
                exec(cell.source, ns)
        ns["study"] = Study(profile=ns["profile"])
        exec(compile(ast.Module([line], []), "05_explainability", "exec"), ns)
        got[route] = ns["sizes"]
    assert got["papermill -p profile"] == got["cervix book"] == get_profile(profile).explain, got
    # a parameter that is set wins over the profile
    assert Study(profile=profile).explain_sizes(perturbation_steps=3).perturbation_steps == 3
