"""The explanation package's shape, as a reader meets it: the public API is the table of
docs/ARCHITECTURE.md, the architecture map lists the package's files, each measure chapter 5 shows has
one definition, and no module of the library outgrows 500 lines."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import cervixlib.explain as explain

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "cervixlib"

#: What chapter 5 shows (notebooks/05_explainability.ipynb and the study it runs).
CHAPTER5_MEASURES = (
    "attribute", "method_maps", "gradcam", "attention_map", "perturbation_curves", "curve_auc", "completeness",
    "pointing_game", "in_cell_share", "area_share", "part_shares", "concentration", "stack_concentration",
    "cascading_randomisation", "randomise_weights", "spearman_per_image", "baseline_sensitivity", "ig_convergence",
    "explanation_study", "bootstrap_mean", "paired_bootstrap", "percentile_bootstrap",
)


def _documented_api_names() -> set[str]:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    section = text.split("#### The explanation API", 1)[1].split("\n- ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line]
    return {name for row in rows for name in re.findall(r"`(\w+)`", row.split("|")[2])}


def test_the_public_api_is_the_documented_table():
    assert set(explain.__all__) == _documented_api_names()
    assert len(explain.__all__) == len(set(explain.__all__)) <= 30
    for name in explain.__all__:
        assert getattr(explain, name) is not None


def test_the_package_face_defines_nothing():
    tree = ast.parse((SRC / "explain" / "__init__.py").read_text())
    assert not [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]


def test_the_architecture_map_lists_the_explain_files():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    block = text.split("  explain/", 1)[1].split("\n  figures.py", 1)[0]
    listed = set(re.findall(r"^    (\w+\.py)", block, flags=re.M))
    assert listed == {p.name for p in (SRC / "explain").glob("*.py")}


def test_each_measure_has_one_definition():
    defs: dict[str, list[str]] = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                defs.setdefault(node.name, []).append(str(path.relative_to(SRC)))
    for name in CHAPTER5_MEASURES:
        assert len(defs.get(name, [])) == 1, (name, defs.get(name))
    for gone in ("in_cell_study", "InCellStudy", "randomization_similarity", "SanityResult", "in_cell_shares"):
        assert gone not in defs, (gone, defs[gone])


def test_no_module_is_over_500_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long
