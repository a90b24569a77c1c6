"""Tables and sentences of chapter 6 (cells in context, the future work of Wang et al. 2021).

Rows for :func:`cervixlib.display.html_table`: how big the graphs are, each model's accuracy
pooled over the folds with its interval, the paired fold comparisons under the front page's
rule, and whether a graph model and a CNN put their largest share on the same cell. Every
sentence that states a result is computed from the numbers it states.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cervixlib.graphs.build import CellGraph

if TYPE_CHECKING:
    from cervixlib.data.items import Item
    from cervixlib.runs import Run

__all__ = ["cells_note", "graph_fold_rows", "graph_size_rows", "pick_examples", "pooled_accuracy_rows",
           "top_cell_rows"]


def cells_note(items: Sequence[Item]) -> str:
    """``""`` when some image has cells to make a graph of (``.dat`` outlines or a mask file);
    else the paragraph that says why this chapter cannot run on the data, and what it needs."""
    if any(it.has_mask for it in items):
        return ""
    return ("This chapter builds a graph of each image's annotated cells, and none of this set's "
            f"{len(items)} images has any: no SIPaKMeD `.dat` outlines and no mask files. Give each class "
            "folder a `masks/` folder with one `<image stem>.png` per image (non-zero inside the cells; "
            "each connected region becomes one cell), as the README's 'Your own data' describes, and "
            "`cervix book` builds this chapter; the graph models are trained only on data with cells.")


def graph_size_rows(graphs: Sequence[CellGraph], class_names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per class, and one for all: images, cells an image (median, range), edges an image
    (median), and the share of cells with no neighbour within the cut."""
    rows = []
    for label, name in [*enumerate(class_names), (None, "all classes")]:
        gs = [g for g in graphs if label is None or g.label == label]
        if not gs:
            continue
        cells = np.array([g.n_cells for g in gs])
        degree = np.concatenate([np.bincount(g.edge_index[0], minlength=g.n_cells) for g in gs])
        rows.append({"class": name, "images": len(gs), "cells an image, median": float(np.median(cells)),
                     "range": f"{cells.min()}–{cells.max()}",
                     "edges an image, median": float(np.median([g.n_edges for g in gs])),
                     "cells without a neighbour (%)": round(100 * float((degree == 0).mean()), 1)
                     if degree.size else float("nan")})
    return rows


def pick_examples(graphs: Sequence[CellGraph], n: int) -> list[int]:
    """``n`` images to draw: the ones with most edges, different classes first (indices into ``graphs``)."""
    order = sorted(range(len(graphs)), key=lambda i: (-graphs[i].n_edges, -graphs[i].n_cells, i))
    chosen, seen = [], set()
    for i in order:
        if graphs[i].label not in seen and len(chosen) < n:
            chosen.append(i)
            seen.add(graphs[i].label)
    chosen += [i for i in order if i not in chosen][: max(0, n - len(chosen))]
    return chosen


def pooled_accuracy_rows(fold_runs: Mapping[str, Sequence[Run]], *, title: Any = None,
                         seed: int = 0) -> list[dict[str, Any]]:
    """One row per model: every image tested once across the folds, the pooled accuracy with its
    95% percentile-bootstrap interval over images, and the folds' mean ± sd."""
    from cervixlib.claims import fold_accuracies
    from cervixlib.comparison import fold_mean_sd
    from cervixlib.graphs.claim import model_title
    from cervixlib.metrics import bootstrap_ci

    title = title or model_title
    rows = []
    for model, runs in fold_runs.items():
        y = np.concatenate([r.y_true for r in runs])
        p = np.concatenate([r.y_pred for r in runs])
        ci = bootstrap_ci(y, p, "accuracy", seed=seed)
        mean, sd = fold_mean_sd(100 * fold_accuracies(runs))
        rows.append({"model": title(model), "test images (all folds)": len(y),
                     "accuracy % [95% bootstrap]": f"{100 * ci.value:.1f} [{100 * ci.low:.1f}, {100 * ci.high:.1f}]",
                     "folds": len(runs), "fold mean ± sd %": f"{mean:.1f} ± {sd:.1f}"})
    return rows


def graph_fold_rows(fold_runs: Mapping[str, Sequence[Run]], pairs: Sequence[tuple[str, str]], *,
                    n_resamples: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """One row per pair ``(a, b)``: the mean paired accuracy difference a − b over the folds (points)
    with the corrected resampled t interval, the verdict on "a beats b" by the front page's rule,
    and the paired bootstrap over images beside it."""
    from cervixlib.claims import compare_fold_runs, verdict
    from cervixlib.graphs.claim import model_title

    rows = []
    for a, b in pairs:
        if a not in fold_runs or b not in fold_runs:
            continue
        cmp = compare_fold_runs(fold_runs[a], fold_runs[b], n_resamples=n_resamples, seed=seed)
        t, boot = cmp.t.scaled(100), cmp.bootstrap.scaled(100)
        rows.append({"a": model_title(a), "b": model_title(b), "folds": t.n,
                     "a − b, points [95% corrected t]": t.text(),
                     f"a − b, points [95% bootstrap, {boot.n} images]": boot.text(), "a beats b": verdict(t, 1)})
    return rows


def top_cell_rows(pairs: Mapping[str, tuple[Sequence[np.ndarray], Sequence[np.ndarray]]], *,
                  seed: int = 0) -> list[dict[str, Any]]:
    """Per pair of ways of sharing (``{"graph attention vs RCAN |IG|": (shares_a, shares_b)}``): on how
    many images they put their largest share on the same cell, against chance (1/K per image),
    the paired difference with its bootstrap interval, and the verdict on "more often than chance"."""
    from cervixlib.claims import verdict
    from cervixlib.comparison import paired_bootstrap
    from cervixlib.graphs.explain import same_top_cell

    rows = []
    for name, (a, b) in pairs.items():
        agree, chance = same_top_cell(a, b)
        ok = np.isfinite(agree)
        if not ok.any():
            continue
        d = paired_bootstrap(agree, chance, seed=seed).scaled(100)
        rows.append({"shares compared": name, "images": int(ok.sum()),
                     "same top cell (%)": round(100 * float(agree[ok].mean()), 1),
                     "chance (%)": round(100 * float(chance[ok].mean()), 1),
                     "difference, points [95% bootstrap]": d.text(), "more often than chance": verdict(d, 1)})
    return rows

