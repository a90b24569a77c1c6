"""Which cells matter: a graph model's shares of each cell, beside a CNN's.

Wang et al. (2021) read RCAN's attention as falling "on a specific group of cells" (their
claim 4) and leave "relations between cells" to future work. For a cell-graph model
(:mod:`cervixlib.models.cell_graph`) every cell gets two shares of an image's decision:

- the **attention** of the readout (:meth:`CellGraphNet.cell_weights`), a softmax over the cells;
- **Integrated Gradients over the node features** (Captum's ``IntegratedGradients``, from
  a baseline of all-zero features on the same graph): ``sum_f |IG_{cell, f}|``, normalised
  over the cells. Completeness, ``sum IG = F(x) - F(baseline)``, is returned to be shown.

A CNN's share of each cell is the part of its IG map's in-cell mass inside that cell
(:func:`cell_shares_of_map`), as chapter 5 measures it; the concentration measure is chapter
5's: the fewest cells holding 80% (:func:`cervixlib.explain.localisation.cells_holding`, the
core of its ``concentration``, re-exported here).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cervixlib.data.items import Item
from cervixlib.explain.localisation import cells_holding
from cervixlib.graphs.build import CellGraph
from cervixlib.graphs.dataset import graph_batch, one_thread, to_data

__all__ = ["GraphExplanation", "cell_shares_of_map", "cells_holding", "cnn_cell_shares", "explain_graphs",
           "graph_ig", "same_top_cell", "share_rows"]

_log = logging.getLogger(__name__)


def cell_shares_of_map(map_: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Each cell's part of a non-negative map's in-cell mass: (H, W) map, (K, H, W) bool cells
    -> (K,) summing to 1 (a pixel in two cells counts for both, as in chapter 5); NaN without mass."""
    a = np.asarray(map_, dtype=np.float64)
    m = np.asarray(cells, dtype=bool)
    if m.ndim != 3 or m.shape[1:] != a.shape:
        raise ValueError(f"cells must be (K, H, W) matching the map {a.shape}, got {m.shape}")
    per = (m * a[None]).reshape(len(m), -1).sum(1)
    return per / per.sum() if per.sum() > 0 else np.full(len(m), np.nan)


def graph_ig(model: nn.Module, graph: CellGraph, *, target: int | None = None, n_steps: int = 32,
             baseline: Tensor | None = None) -> tuple[np.ndarray, float, float]:
    """Integrated Gradients over one graph's node features (Captum).

    Args:
        model: a cell-graph model (logits), used in eval mode on its device.
        graph: one :class:`CellGraph` with K >= 1 cells.
        target: the explained class (default: the predicted one).
        n_steps: Captum's steps (Gauss-Legendre).
        baseline: (K, F) features of the reference graph (default zeros: the same cells and
            edges, carrying no measurement).
    Returns:
        ``(attributions (K, F), delta, output_diff)``: Captum's convergence delta
        ``sum IG - (F(x) - F(b))`` and ``F(x) - F(b)`` for the target logit.
    """
    from captum.attr import IntegratedGradients
    from torch_geometric.data import Batch

    device = next(model.parameters()).device
    data = to_data(graph).to(device)
    x = data.x.float()
    K = x.shape[0]
    if K == 0:
        raise ValueError(f"{graph.path}: no cell, nothing to attribute")
    copies: dict[int, Any] = {}

    def forward(xs: Tensor) -> Tensor:  # (S, K, F) -> (S, C): S copies of the graph, one batch
        S = xs.shape[0]
        if S not in copies:
            copies[S] = Batch.from_data_list([data] * S).to(device)
        return model(copies[S], xs.reshape(S * K, -1))

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if target is None:
                target = int(forward(x[None]).argmax(1))
        b = torch.zeros_like(x) if baseline is None else baseline.to(device).float()
        attr, delta = IntegratedGradients(forward).attribute(x[None], baselines=b[None], target=target,
                                                             n_steps=n_steps, return_convergence_delta=True)
        with torch.no_grad():
            diff = float(forward(x[None])[0, target] - forward(b[None])[0, target])
    finally:
        model.train(was_training)
    return attr[0].detach().cpu().numpy(), float(delta[0]), diff


@dataclass
class GraphExplanation:
    """Per image (in order): ``attention`` and ``ig`` shares (K,) of each cell, the IG
    ``delta`` and ``output_diff``, the true ``label`` and the explained (predicted) ``target``;
    ``images``: the file names; ``graphs``: the graphs explained (K >= 1 each); ``indices``: their
    positions in the list given to :func:`explain_graphs`."""

    images: list[str]
    graphs: list[CellGraph]
    label: np.ndarray
    target: np.ndarray
    attention: list[np.ndarray]
    ig: list[np.ndarray]
    delta: np.ndarray
    output_diff: np.ndarray
    indices: list[int] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)


def explain_graphs(model: nn.Module, graphs: Sequence[CellGraph], *, n_steps: int = 32) -> GraphExplanation:
    """The readout attention and IG shares of every cell of ``graphs`` with at least one cell
    (empty graphs are left out of the explanation and logged in one line: no cell to share)."""
    with one_thread():
        return _explain_graphs(model, graphs, n_steps)


def _explain_graphs(model: nn.Module, graphs: Sequence[CellGraph], n_steps: int) -> GraphExplanation:
    empty = [g.path.name for g in graphs if g.n_cells == 0]
    if empty:
        _log.info("no cell to explain in %d image(s): %s", len(empty), ", ".join(empty[:5]))
    indices = [i for i, g in enumerate(graphs) if g.n_cells > 0]
    graphs = [graphs[i] for i in indices]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        batch = graph_batch(graphs).to(device)
        with torch.no_grad():
            target = model(batch).argmax(1).cpu().numpy() if graphs else np.zeros(0, dtype=np.int64)
            weights = model.cell_weights(batch).cpu().numpy() if graphs else np.zeros(0)
    finally:
        model.train(was_training)
    bounds = np.cumsum([0] + [g.n_cells for g in graphs])
    attention = [weights[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    ig, deltas, diffs = [], [], []
    for g, t in zip(graphs, target):
        attr, delta, diff = graph_ig(model, g, target=int(t), n_steps=n_steps)
        mass = np.abs(attr).sum(1)
        ig.append(mass / mass.sum() if mass.sum() > 0 else np.full(len(mass), np.nan))
        deltas.append(delta)
        diffs.append(diff)
    return GraphExplanation([g.path.name for g in graphs], graphs, np.array([g.label for g in graphs]),
                            np.asarray(target), attention, ig, np.asarray(deltas), np.asarray(diffs), indices,
                            {"n_steps": n_steps, "baseline": "zero node features"})


def cnn_cell_shares(model: nn.Module, items: Sequence[Item], *, image_size: int, n_steps: int = 32,
                    targets: Sequence[int] | None = None) -> list[np.ndarray]:
    """A CNN's share of each annotated cell: |IG| (black baseline, chapter 5's) summed over the
    channels, each cell's part of the in-cell mass, at the run's ``image_size`` (K,) per item;
    all NaN where the cells vanish at that size or hold no mass."""
    from cervixlib.data.masks import cell_components
    from cervixlib.explain import attribute
    from cervixlib.explain.evaluation import study_images
    from cervixlib.reductions import attribution_mass

    X = study_images(list(items), image_size)
    a = attribute(model, X, method="ig", n_steps=n_steps, baseline="black",
                  target=None if targets is None else torch.as_tensor(list(targets)))
    maps = attribution_mass(a.attributions, "abs").detach().cpu().numpy()
    return [cell_shares_of_map(maps[i], cell_components(item, (image_size, image_size)))
            for i, item in enumerate(items)]


def share_rows(named: dict[str, list[np.ndarray]], *, level: float = 0.8, seed: int = 0) -> list[dict[str, Any]]:
    """One row per way of sharing (``{"graph attention": [shares per image], ...}``): images,
    mean cells per image, the fewest cells holding ``level`` as a count and as a fraction of
    the image's cells, each a mean with its 95% bootstrap interval."""
    from cervixlib.metrics import bootstrap_mean

    rows = []
    for name, shares in named.items():
        held = np.array([cells_holding(s, level=level) for s in shares]).reshape(-1, 2)
        ok = np.isfinite(held[:, 0])
        rows.append({"cells shared by": name, "images": int(ok.sum()),
                     "cells an image": float(np.mean([len(s) for s, k in zip(shares, ok) if k])) if ok.any()
                     else float("nan"),
                     f"cells holding {level:.0%}": bootstrap_mean(held[:, 0], seed=seed),
                     "as a fraction of the cells": bootstrap_mean(held[:, 1], seed=seed)})
    return rows


def same_top_cell(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per image: 1 where the two ways of sharing put their largest share on the same cell, 0
    where not, NaN where either is undefined or the counts differ; and what chance gives (1/K).
    ``(agree (N,), chance (N,))``: their paired difference says whether two models point at
    the same cell more often than two blind pointers would."""
    agree, chance = [], []
    for x, y in zip(a, b):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if len(x) != len(y) or len(x) == 0 or not (np.isfinite(x).all() and np.isfinite(y).all()):
            agree.append(np.nan)
            chance.append(np.nan)
            continue
        agree.append(float(np.argmax(x) == np.argmax(y)))
        chance.append(1.0 / len(x))
    return np.asarray(agree), np.asarray(chance)
