"""Figures of cell graphs: the cells, nodes and edges over the image, and each cell's share.

For the future work of Wang et al. (2021), a multi-cell image as "a multi-attributed
spatial graph of its constituent cells": :func:`graph_figure` draws a few images with
their outlines, the graph's edges and its nodes (sized and coloured by a share when one
is given); :func:`static_graph_slider` puts a slider over test images (plotly frames,
static HTML, as chapter 5's IG slider) with the graph's attention beside a CNN's share
of the same cells; :func:`graph_attention_explorer` is the live JupyterLab version
(ipywidgets). Every function returns its figure or widget; nothing is drawn as a side effect.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cervixlib.data.items import Item
from cervixlib.graphs.build import CellGraph

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["graph_attention_explorer", "graph_figure", "graph_traces", "static_graph_slider"]

_PANEL_SIDE = 320  # px of an image's embedded copy (the figure scales it)
_EDGE, _OUTLINE = "rgba(255,255,255,0.9)", "rgba(30,30,30,0.55)"


def _image(item: Item) -> Any:
    import plotly.graph_objects as go

    from cervixlib.data.io import read_image
    from cervixlib.figures import image_data_uri

    W, H = item.size
    f = min(1.0, _PANEL_SIDE / max(W, H))
    w, h = max(1, round(W * f)), max(1, round(H * f))
    rgb = np.asarray(read_image(item.path).resize((w, h)), dtype=np.float32) / 255.0
    return go.Image(source=image_data_uri(rgb, "jpeg"), dx=W / w, dy=H / h, x0=W / w / 2 - 0.5,
                    y0=H / h / 2 - 0.5, hoverinfo="skip")


def _lines(segments: Sequence[np.ndarray]) -> tuple[list[float | None], list[float | None]]:
    xs: list[float | None] = []
    ys: list[float | None] = []
    for s in segments:
        xs += [*map(float, s[:, 0]), None]
        ys += [*map(float, s[:, 1]), None]
    return xs, ys


def graph_traces(item: Item, graph: CellGraph, shares: np.ndarray | None = None, *,
                 name: str = "share", showscale: bool = False) -> list[Any]:
    """The traces of one panel: image, cell outlines (polygons only), edges, nodes (marker size
    and colour by ``shares`` (K,) when given, with the share in the hover)."""
    import plotly.graph_objects as go

    outlines = [np.vstack([c.cytoplasm, c.cytoplasm[:1]]) for c in item.cells] if item.mask_path is None else []
    ox, oy = _lines(outlines)
    e = graph.edge_index[:, : graph.edge_index.shape[1] // 2]  # each undirected edge once
    ex, ey = _lines([graph.centroids[[i, j]] for i, j in e.T])
    c = graph.centroids
    s = (np.full(graph.n_cells, 1.0 / max(graph.n_cells, 1)) if shares is None
         else np.nan_to_num(np.asarray(shares, dtype=np.float64)))
    hover = [f"cell {k + 1}" + (f"<br>{name}: {s[k]:.0%}" if shares is not None else "") for k in range(graph.n_cells)]
    return [
        _image(item),
        go.Scatter(x=ox, y=oy, mode="lines", line=dict(color=_OUTLINE, width=1), hoverinfo="skip", showlegend=False),
        go.Scatter(x=ex, y=ey, mode="lines", line=dict(color=_EDGE, width=2), hoverinfo="skip", showlegend=False),
        go.Scatter(x=c[:, 0], y=c[:, 1], mode="markers", text=hover, hoverinfo="text", showlegend=False,
                   marker=dict(size=8 + 30 * np.sqrt(s), color=s, cmin=0, cmax=1, colorscale="Viridis",
                               line=dict(color="white", width=1.5), showscale=showscale,
                               colorbar=dict(title=dict(text=name), len=0.8) if showscale else None)),
    ]


def _panels(n: int, titles: Sequence[str], height: int, title: str | None) -> go.Figure:
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=n, subplot_titles=list(titles), horizontal_spacing=0.03)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=70, b=10), title=title)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor=None)
    for k in range(n):
        fig.update_yaxes(scaleanchor=f"x{k + 1 if k else ''}", row=1, col=k + 1)
    return fig


def graph_figure(items: Sequence[Item], graphs: Sequence[CellGraph], shares: Sequence[np.ndarray] | None = None,
                 *, titles: Sequence[str] | None = None, title: str | None = None, name: str = "share",
                 height: int = 360) -> go.Figure:
    """A few images side by side, each with its cell outlines, edges and nodes (shares optional)."""
    if len(items) != len(graphs) or (shares is not None and len(shares) != len(graphs)):
        raise ValueError(f"{len(items)} items, {len(graphs)} graphs and {len(shares or [])} share lists")
    titles = titles or [f"{it.path.name}: {g.n_cells} cells, {g.n_edges} edges" for it, g in zip(items, graphs)]
    fig = _panels(len(items), titles, height, title)
    for k, (it, g) in enumerate(zip(items, graphs)):
        for tr in graph_traces(it, g, None if shares is None else shares[k], name=name,
                               showscale=shares is not None and k == len(items) - 1):
            fig.add_trace(tr, row=1, col=k + 1)
    return fig


def static_graph_slider(items: Sequence[Item], graphs: Sequence[CellGraph], shares: dict[str, Sequence[np.ndarray]],
                        *, labels: Sequence[str] | None = None, title: str | None = None,
                        height: int = 430) -> go.Figure:
    """A slider over images (one plotly frame each, so it works in static HTML): one panel per
    way of sharing (``{"graph attention": [(K,) per image], "RCAN-DenseNet-121 |IG|": ...}``),
    nodes sized and coloured by each cell's share. ``labels``: a caption per image."""
    import plotly.graph_objects as go

    names = list(shares)
    if not items or any(len(v) != len(items) for v in shares.values()) or len(graphs) != len(items):
        raise ValueError("need one graph and one share list per image, and at least one image")
    labels = list(labels) if labels is not None else [it.path.name for it in items]
    fig = _panels(len(names), names, height, title)
    for k, n in enumerate(names):
        for tr in graph_traces(items[0], graphs[0], shares[n][0], name="share", showscale=k == len(names) - 1):
            fig.add_trace(tr, row=1, col=k + 1)
    frames, steps = [], []
    anim = dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0))
    for i, (it, g) in enumerate(zip(items, graphs)):
        data = [tr for n in names for tr in graph_traces(it, g, shares[n][i], name="share")]
        for tr in data[3::4]:  # keep the one colour bar of the first frame
            tr.marker.showscale = False
        fig_name = f"image {i + 1}"
        frames.append(go.Frame(name=fig_name, data=data, traces=list(range(len(data))),
                               layout=dict(title=dict(text=f"{title + ': ' if title else ''}{labels[i]}"))))
        steps.append(dict(method="animate", label=str(i + 1), args=[[fig_name], anim]))
    fig.frames = frames
    fig.update_layout(title=f"{title + ': ' if title else ''}{labels[0]}", margin=dict(b=80),
                      sliders=[dict(active=0, steps=steps, currentvalue=dict(prefix="test image "),
                                    pad=dict(t=10), y=-0.02, yanchor="top")])
    return fig


def graph_attention_explorer(items: Sequence[Item], graphs: Sequence[CellGraph],
                             shares: dict[str, Sequence[np.ndarray]], *,
                             labels: Sequence[str] | None = None, title: str | None = None) -> Any:
    """The live version for JupyterLab: a dropdown over the images redraws the panels of
    :func:`static_graph_slider` for the chosen one. Returns the ipywidgets box."""
    import ipywidgets as widgets
    from IPython.display import clear_output, display

    labels = list(labels) if labels is not None else [it.path.name for it in items]
    choose = widgets.Dropdown(options=[(lab, i) for i, lab in enumerate(labels)], description="image")
    out = widgets.Output()

    def draw(change: Any = None) -> None:
        i = int(choose.value)
        one = {n: [v[i]] for n, v in shares.items()}
        fig = graph_figure([items[i]] * len(one), [graphs[i]] * len(one), [v[0] for v in one.values()],
                           titles=list(one), title=f"{title + ': ' if title else ''}{labels[i]}")
        with out:
            clear_output(wait=True)
            display(fig)

    choose.observe(draw, names="value")
    draw()
    return widgets.VBox([choose, out], layout=widgets.Layout(width="100%"))
