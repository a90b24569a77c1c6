"""Figures of the measured explanations of chapter 5 (plotly figures, returned, not shown).

The deletion and insertion curves of :func:`~cervixlib.explain.perturbation_curves`
(Petsiuk et al. 2018) per model and method, the cascading randomisation of Adebayo et
al. (2018) and the convergence of Integrated Gradients (Sundararajan et al. 2017) with
its number of steps. They live here rather than in :mod:`cervixlib.figures`, which
holds the paper's figures and stays under the modules' size limit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cervixlib.explain.maps import METHOD_LABELS
from cervixlib.facts import model_title
from cervixlib.figures import PALETTE

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from cervixlib.explain.evaluation import ExplanationStudy
    from cervixlib.explain.randomisation import CascadeResult
    from cervixlib.explain.robustness import Convergence

__all__ = ["cascade_figure", "convergence_figure", "perturbation_curves_figure"]



def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    """The mean of the finite values along ``axis``; NaN (without a warning) where there are none."""
    return np.ma.masked_invalid(np.asarray(a, dtype=np.float64)).mean(axis=axis).filled(np.nan)


def _model_panels(panels: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], *, title: str | None,
                  xaxis: dict, yaxis: dict, height: int) -> go.Figure:
    """One panel per model (two columns), one line per method: ``panels[model][method] = (x, y)``."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names, cols = list(panels), min(2, len(panels)) or 1
    rows = -(-len(names) // cols)
    methods = list(dict.fromkeys(m for p in panels.values() for m in p))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[model_title(n) for n in names], shared_yaxes=True)
    for i, name in enumerate(names):
        for m, (x, y) in panels[name].items():
            line = dict(color=PALETTE[methods.index(m) % 8], dash="dash" if m in ("random", "edge") else "solid")
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=METHOD_LABELS.get(m, m), legendgroup=m,
                                     showlegend=m not in [t.legendgroup for t in fig.data], line=line),
                          row=i // cols + 1, col=i % cols + 1)
    fig.update_xaxes(**xaxis)
    fig.update_yaxes(col=1, **yaxis)
    fig.update_layout(title=title, height=height * rows + 120, margin=dict(t=80, b=60))
    return fig


def perturbation_curves_figure(studies: dict[str, ExplanationStudy], *, curve: str = "deletion",
                               title: str | None = None) -> go.Figure:
    """Mean deletion (or insertion) curve of each method over the images, one panel per model; controls dashed."""
    if curve not in ("deletion", "insertion"):
        raise ValueError(f"curve must be 'deletion' or 'insertion', got {curve!r}")
    panels = {name: {m: (c.x, _nanmean(getattr(c, curve)[np.isfinite(s.values[m]["deletion_auc"])], axis=0))
                     for m, c in s.curves.items() if np.isfinite(s.values[m]["deletion_auc"]).any()}
              for name, s in studies.items()}
    xlabel = f"fraction of pixels {'removed' if curve == 'deletion' else 'restored'}"
    return _model_panels(panels, title=title, height=300, xaxis=dict(title_text=xlabel, range=[0, 1]),
                         yaxis=dict(title_text="p(explained class)", range=[0, 1]))


def cascade_figure(cascades: dict[str, CascadeResult], *, title: str | None = None) -> go.Figure:
    """Cascading randomisation: mean Spearman with the trained map per stage randomised (head first), per model."""
    panels = {name: {m: (c.stages, _nanmean(v, axis=1)) for m, v in c.spearman.items()}
              for name, c in cascades.items()}
    return _model_panels(panels, title=title, height=340, xaxis=dict(title_text="randomised down to", tickangle=-45),
                         yaxis=dict(title_text="Spearman vs trained", range=[-0.2, 1]))


def convergence_figure(convergence: dict[str, Convergence], *, title: str | None = None) -> go.Figure:
    """IG's relative completeness error (median over images; bars: min to max) against ``n_steps``, log-log."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for k, (name, c) in enumerate(convergence.items()):
        rel = np.clip(c.relative, 1e-12, None)
        med = np.median(rel, axis=1)
        fig.add_trace(go.Scatter(x=c.steps, y=med, mode="lines+markers", name=model_title(name),
                                 line_color=PALETTE[k % 8],
                                 error_y=dict(type="data", symmetric=False, array=rel.max(1) - med,
                                              arrayminus=med - rel.min(1))))
    fig.update_layout(title=title, height=380, margin=dict(t=60, b=40), xaxis=dict(title="IG steps", type="log"),
                      yaxis=dict(title="|sum IG - (F(x) - F(b))| / |F(x) - F(b)|", type="log"))
    return fig
