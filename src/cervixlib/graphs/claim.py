"""The paper's future work as a sixth line of the front page, decided by the same rule.

Wang et al. (2021) leave one question open: "relations between cells in multi-cell images
can be analyzed through" graph representations. Asked of the runs: does the cell-graph
model with its edges (``cell_graph_gat``) beat the same model without them
(``cell_graph_gat_no_edges``, each cell read alone) on the same grouped folds? That is
claim 5's question ("multi-cell images carry information that isolated cells lack") asked
cell by cell. The comparison and the verdict are :mod:`cervixlib.claims`' (corrected
resampled t-test over folds, the paired bootstrap over images beside it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from cervixlib.claims import Claim, compare_fold_runs, fold_evidence
from cervixlib.facts import MODEL_TITLES, model_title
from cervixlib.graphs import GRAPH_MODELS

if TYPE_CHECKING:
    from cervixlib.runs import Run

__all__ = ["CLAIM6", "GRAPH_MODEL_NAMES", "graph_claim", "model_title"]

CLAIM6 = "Relations between cells carry information that the cells alone lack (the paper's future work)"
#: How pages name the graph models (:data:`cervixlib.facts.MODEL_TITLES`).
GRAPH_MODEL_NAMES: dict[str, str] = {m: MODEL_TITLES[m] for m in GRAPH_MODELS}
_CHAPTER = "06_cell_graphs.ipynb"


def graph_claim(fold_runs: Mapping[str, Sequence[Run]], *, synthetic: bool, with_edges: str = "cell_graph_gat",
                without: str = "cell_graph_gat_no_edges", not_testable: str = "", n_resamples: int = 2000,
                seed: int = 0) -> Claim | None:
    """Claim 6 from ``{model: [run per fold]}`` on multi-cell images (None when a model is missing).

    ``not_testable``: why the data cannot test it (no cell outlines or masks); then the claim is
    listed with that reason and no verdict.
    """
    if not_testable:
        return Claim(6, CLAIM6, (), (_CHAPTER,), synthetic, paper_text="future work: no number",
                     not_testable=not_testable)
    if with_edges not in fold_runs or without not in fold_runs:
        return None
    cmp = compare_fold_runs(fold_runs[with_edges], fold_runs[without], n_resamples=n_resamples, seed=seed)
    label = f"multi-cell images, {model_title(with_edges)} − the same without edges"
    evidence = fold_evidence(label, cmp, 1, None)
    return Claim(6, CLAIM6, (evidence,), (_CHAPTER,), synthetic, paper_text="future work: no number",
                 context="A graph of each image's annotated cells, read with and without the edges between "
                         "neighbouring cells, on the same folds as the four CNNs.")
