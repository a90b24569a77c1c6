"""Figures of trained runs: learning curves, confusion matrices, test accuracy with intervals.

Chapters 2 to 4 of the book draw these for the networks of Wang et al. (2021), "Towards
Interpretable Attention Networks for Cervical Cancer Analysis", on whatever data the book
runs on: classes appear by their short names (:func:`cervixlib.facts.class_abbreviations`),
with the full names in the hover text and under the figure, and the paper's Table II
accuracies are marked only on SIPaKMeD (:mod:`cervixlib.published`). Each
function returns a plotly ``Figure``; :mod:`cervixlib.figures` re-exports them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from cervixlib.colors import PALETTE
from cervixlib.facts import SUBSET_WORDS, class_abbreviations, class_key_text, model_title
from cervixlib.published import paper_numbers

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from cervixlib.runs import Run

__all__ = ["accuracy_intervals", "add_class_key", "confusion_matrices", "learning_curves"]


def learning_curves(runs: Mapping[str, Run]) -> go.Figure:
    """Loss and accuracy per epoch (train dashed, validation solid); the tested epoch is ringed."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"))
    for k, (name, run) in enumerate(runs.items()):
        color = PALETTE[k % len(PALETTE)]
        epochs = [h["epoch"] for h in run.history]
        for col, key in ((1, "loss"), (2, "accuracy")):
            for part, dash in (("train", "dash"), ("val", "solid")):
                fig.add_trace(go.Scatter(x=epochs, y=[h[f"{part}_{key}"] for h in run.history], mode="lines+markers",
                                         line=dict(color=color, dash=dash), name=f"{name} {part}",
                                         legendgroup=name, showlegend=col == 1), row=1, col=col)
        best = run.metrics.get("best_epoch")
        if best:
            h = run.history[best - 1]
            fig.add_trace(go.Scatter(x=[best], y=[h["val_accuracy"]], mode="markers", showlegend=False,
                                     marker=dict(size=14, color="rgba(0,0,0,0)", line=dict(color=color, width=2)),
                                     hovertemplate=f"{name}: tested epoch {best}<extra></extra>"), row=1, col=2)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(height=380, margin=dict(t=50, b=40))
    return fig


def add_class_key(fig: go.Figure, short: Mapping[str, str], *, below: int = 48, width: int = 110) -> int:
    """Write :func:`class_key_text` under a figure's plots (from ``below`` pixels under the
    plot area, left-aligned) when a short name differs from its class's name. Returns the
    bottom margin in pixels that the key needs (0: no key), for the caller's layout."""
    if all(s == c for c, s in short.items()):
        return 0
    key = class_key_text(short, width=width)
    fig.add_annotation(text=key, xref="paper", yref="paper", x=0, y=0, yshift=-below, xanchor="left",
                       yanchor="top", showarrow=False, align="left", font=dict(size=11))
    return below + 16 * (key.count("<br>") + 1) + 8


def confusion_matrices(runs: Mapping[str, Run]) -> go.Figure:
    """Test-split confusion matrices side by side: counts as text, colour by row (recall).

    Axes carry the classes' short names (:func:`cervixlib.facts.class_abbreviations`); the
    hover text and a line under the figure give the full names, so six or seven classes
    with long names stay readable. The figure takes its column's width; its height grows
    with the number of classes.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(runs), subplot_titles=list(runs), horizontal_spacing=0.08)
    short: dict[str, str] = {}
    for col, run in enumerate(runs.values(), start=1):
        m = run.metrics["test"]
        classes = list(m["class_names"])
        cm = np.asarray(m["confusion_matrix"], dtype=float)
        rate = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        short = class_abbreviations(classes)
        # full names on the axes (the hover text shows them), short names as their tick labels
        fig.add_trace(go.Heatmap(z=rate, x=classes, y=classes, text=cm.astype(int), texttemplate="%{text}",
                                 colorscale="Blues", zmin=0, zmax=1, showscale=col == len(runs),
                                 hovertemplate="true: %{y}<br>predicted: %{x}<br>"
                                               "%{text} images (%{z:.0%} of the row)<extra></extra>"),
                      row=1, col=col)
        ticks = dict(tickmode="array", tickvals=classes, ticktext=list(short.values()), row=1, col=col)
        fig.update_xaxes(**ticks)
        fig.update_yaxes(autorange="reversed", **ticks)
    fig.update_xaxes(title_text="predicted", tickangle=0)
    fig.update_yaxes(title_text="true", col=1)
    bottom = max(50, add_class_key(fig, short))
    fig.update_layout(height=110 + 36 * len(short) + bottom, margin=dict(t=50, b=bottom, l=60, r=20))
    return fig


def accuracy_intervals(runs: Sequence[Run], *, title: str | None = None) -> go.Figure:
    """Test accuracy with its 95% bootstrap interval per run; on SIPaKMeD, the paper's
    Table II value as a cross (on other data the paper has none)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for k, subset in enumerate(sorted({r.config.data.subset for r in runs})):
        group = [r for r in runs if r.config.data.subset == subset]
        acc = [r.metrics["test"]["accuracy"] for r in group]
        x = [model_title(r.config.model) for r in group]
        color = PALETTE[k % len(PALETTE)]
        fig.add_trace(go.Scatter(
            x=x, y=[100 * a["value"] for a in acc], mode="markers", name=f"ours, {SUBSET_WORDS.get(subset, subset)}",
            marker=dict(size=10, color=color),
            error_y=dict(type="data", symmetric=False, array=[100 * (a["high"] - a["value"]) for a in acc],
                         arrayminus=[100 * (a["value"] - a["low"]) for a in acc])))
        paper = [paper_numbers(r).get(f"{subset}_acc") for r in group]
        if any(p is not None for p in paper):
            fig.add_trace(go.Scatter(x=x, y=paper, mode="markers", name=f"paper, {SUBSET_WORDS.get(subset, subset)}",
                                     marker=dict(symbol="x", size=10, color=color)))
    fig.update_layout(title=title, yaxis_title="test accuracy (%)", height=400, margin=dict(t=60, b=40))
    return fig
