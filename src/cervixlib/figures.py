"""Figure functions: each returns a figure (plotly ``Figure`` or matplotlib ``(fig, axes)``).

The centrepiece is the layout of Fig. 2 of Wang et al. (2021), "Towards Interpretable
Attention Networks for Cervical Cancer Analysis": for each image, the original, the
gradient overlaid on it, the Integrated-Gradients map overlaid on it, the gradient,
and the IG map. We draw it twice from the same pixels: as a plotly figure for the
book and notebooks, and as a matplotlib figure for PNG export (no browser needed).
Rows carry a note, normally the IG convergence delta, so that no map is shown without
its completeness error.

Maps are shown as ``sum_c |A_c|`` divided by its 99th percentile and clipped (as the
authors' released code displays IG), so that a few extreme pixels do not wash it out.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image

from cervixlib.colors import CLASS_PALETTE, PALETTE, class_colors
from cervixlib.facts import class_abbreviations
from cervixlib.reductions import attribution_mass
from cervixlib.run_figures import accuracy_intervals, add_class_key, confusion_matrices, learning_curves

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from matplotlib.axes import Axes

    from cervixlib.data import DatasetIndex
    from cervixlib.explain.attributions import Attribution

__all__ = [
    "accuracy_intervals",
    "attention_overlays",
    "box_by_class",
    "channel_weights",
    "confusion_matrices",
    "learning_curves",
    "sample_grid",
    "FIG2_COLUMNS",
    "FIG2_PANEL_PX",
    "CLASS_PALETTE",
    "PALETTE",
    "Fig2Row",
    "attribution_heatmap",
    "class_colors",
    "colorize",
    "fig2_matplotlib",
    "fig2_plotly",
    "fig2_rows",
    "image_data_uri",
    "overlay",
    "png_data_uri",
    "to_rgb",
]

FIG2_COLUMNS = ("Original", "Gradient overlay", "IG overlay", "Gradient", "IG")
#: Height of a Fig. 2 panel (px) that :func:`fig2_plotly` lays its rows out for: five
#: panels and their gaps fill a full-width cell of the book at 1280 px.
FIG2_PANEL_PX = 175
HEAT_CMAP = "inferno"

ArrayLike = np.ndarray | torch.Tensor


# ------------------------------------------------------------------ pixels
def to_rgb(image: ArrayLike) -> np.ndarray:
    """An image as ``(H, W, 3)`` float in [0, 1]: from ``(3, H, W)`` or ``(H, W, 3)``,
    float in [0, 1] or uint8. Normalised tensors must be passed through
    :func:`cervixlib.data.denormalize` first."""
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise ValueError(f"image must be (3, H, W) or (H, W, 3), got shape {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    return np.clip(arr.astype(np.float32), 0.0, 1.0)


def attribution_heatmap(
    attr: ArrayLike,
    *,
    reduce: str = "abs",
    clip_percentile: float = 99.0,
) -> np.ndarray:
    """A map ``(C, H, W)`` or ``(H, W)`` as ``(H, W)`` float in [0, 1].

    Channels are reduced to a non-negative mass by
    :func:`cervixlib.explain.attributions.attribution_mass` (``abs``: ``sum_c |A_c|``;
    ``abs_sum``: ``|sum_c A_c|``; ``positive``: ``max(sum_c A_c, 0)``; an ``(H, W)`` map
    counts as one channel). The map is then divided by its ``clip_percentile``-th
    percentile (numpy's linear interpolation) and clipped to [0, 1]: the released code
    clips its IG maps at the 99th percentile for display. This is not Captum's
    ``visualize_image_attr``, which clips at the value where the cumulative sum of the
    sorted values reaches ``100 - outlier_perc`` percent of the total. A map whose
    percentile is zero is scaled by its maximum; an all-zero map stays zero.
    """

    t = attr.detach().float().cpu() if isinstance(attr, torch.Tensor) else torch.as_tensor(np.asarray(attr, np.float32))
    if t.ndim == 2:
        t = t[None]
    elif t.ndim != 3:
        raise ValueError(f"attribution must be (C, H, W) or (H, W), got shape {tuple(t.shape)}")
    a = attribution_mass(t, reduce).numpy()  # type: ignore[arg-type]
    scale = float(np.percentile(a, clip_percentile)) if a.size else 0.0
    if scale <= 0:
        scale = float(a.max())
    if scale <= 0 or not np.isfinite(scale):
        return np.zeros_like(a, dtype=np.float32)
    return np.clip(a / scale, 0.0, 1.0).astype(np.float32)


def colorize(heat: np.ndarray, cmap: str = HEAT_CMAP) -> np.ndarray:
    """``(H, W)`` in [0, 1] -> ``(H, W, 3)`` float RGB through a matplotlib colormap."""
    return colormaps[cmap](np.clip(heat, 0, 1))[..., :3].astype(np.float32)


def overlay(image: ArrayLike, heat: np.ndarray, *, alpha: float = 0.75, cmap: str = HEAT_CMAP) -> np.ndarray:
    """Blend a heat map over an image: strong pixels take the colormap's colour,
    weak ones keep the image, so the map reads against the cells beneath it."""
    rgb = to_rgb(image)
    if rgb.shape[:2] != heat.shape:
        raise ValueError(f"image {rgb.shape[:2]} and heat map {heat.shape} differ in size")
    w = (alpha * np.clip(heat, 0, 1))[..., None]
    return ((1 - w) * rgb + w * colorize(heat, cmap)).astype(np.float32)


def png_data_uri(rgb: np.ndarray) -> str:
    """``(H, W, 3)`` float in [0, 1] as a base64 PNG data URI (lossless, compact in static HTML)."""
    return image_data_uri(rgb, "png")


def image_data_uri(rgb: np.ndarray, fmt: Literal["png", "jpeg"] = "png", quality: int = 90) -> str:
    """``(H, W, 3)`` float in [0, 1] as a base64 data URI: PNG (lossless) or JPEG, which
    is several times smaller for noisy maps, for figures with many frames."""
    arr = (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    if fmt == "png":
        Image.fromarray(arr).save(buf, format="PNG", optimize=True)
    elif fmt == "jpeg":
        Image.fromarray(arr).save(buf, format="JPEG", quality=int(quality), optimize=True)
    else:
        raise ValueError(f"fmt must be 'png' or 'jpeg', got {fmt!r}")
    return f"data:image/{fmt};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# ------------------------------------------------------------------ Fig. 2
@dataclass(frozen=True)
class Fig2Row:
    """One row of the Fig. 2 layout: an image, its gradient and (optionally) its IG map.

    ``image`` is RGB (see :func:`to_rgb`); ``gradient`` and ``ig`` are attributions
    ``(C, H, W)`` or ``(H, W)`` at the image's size; ``note`` is printed under the
    label (for example the IG convergence delta).
    """

    image: ArrayLike
    gradient: ArrayLike
    ig: ArrayLike | None = None
    label: str = ""
    note: str = ""

    def panels(self, clip_percentile: float = 99.0) -> list[np.ndarray]:
        """The row's panels as RGB arrays, in :data:`FIG2_COLUMNS` order."""
        rgb = to_rgb(self.image)
        g = attribution_heatmap(self.gradient, clip_percentile=clip_percentile)
        if self.ig is None:
            return [rgb, overlay(rgb, g), colorize(g)]
        h = attribution_heatmap(self.ig, clip_percentile=clip_percentile)
        return [rgb, overlay(rgb, g), overlay(rgb, h), colorize(g), colorize(h)]

    def columns(self) -> tuple[str, ...]:
        return FIG2_COLUMNS if self.ig is not None else (FIG2_COLUMNS[0], FIG2_COLUMNS[1], FIG2_COLUMNS[3])


def fig2_rows(
    images: ArrayLike,
    gradient: Attribution,
    ig: Attribution | None = None,
    *,
    label: str = "",
    class_names: Sequence[str] | None = None,
    true_labels: Sequence[int] | None = None,
) -> list[Fig2Row]:
    """Rows for :func:`fig2_plotly` / :func:`fig2_matplotlib` from :func:`cervixlib.explain.attribute`
    results. ``images`` are RGB ``(N, 3, H, W)`` in [0, 1] (denormalised). The note
    names the true class (``true_labels``, where given), the explained class (the
    attributions' target: the predicted class when none was asked for) and the IG
    completeness error."""
    def name(t: int) -> str:
        return class_names[t] if class_names is not None else f"class {t}"

    rows = []
    for i in range(len(gradient)):
        t = int(gradient.target[i])
        note = f"explained: {name(t)}"
        if true_labels is not None:
            note = f"true: {name(int(true_labels[i]))}, predicted and explained: {name(t)}"
        if ig is not None:
            note += (f"; IG {ig.n_steps} steps, {ig.baseline} baseline: "
                     f"delta {float(ig.delta[i]):+.3g} ({100 * float(ig.relative_delta[i]):.2g}% of F(x)-F(b))")
        rows.append(Fig2Row(images[i], gradient.attributions[i],
                            None if ig is None else ig.attributions[i], label=label, note=note))
    return rows


def _as_rows(rows: Fig2Row | Sequence[Fig2Row]) -> list[Fig2Row]:
    rows = [rows] if isinstance(rows, Fig2Row) else list(rows)
    if not rows:
        raise ValueError("no rows to draw")
    ncols = {len(r.columns()) for r in rows}
    if len(ncols) != 1:
        raise ValueError("rows must all have IG maps or all lack them")
    return rows


def fig2_plotly(
    rows: Fig2Row | Sequence[Fig2Row],
    *,
    title: str | None = None,
    panel_px: int = FIG2_PANEL_PX,
    width: int | None = None,
    clip_percentile: float = 99.0,
) -> go.Figure:
    """The Fig. 2 layout as a plotly figure: one row per :class:`Fig2Row`, five columns
    (three without IG). Panels are embedded as PNGs, so the figure stays small in HTML.

    With ``width=None`` (the default) the figure has no fixed width: plotly sizes it to
    the column it is shown in (the book's and JupyterLab's figures are responsive), so
    all five columns stay in view; its height is set for panels of ``panel_px`` pixels,
    about their size in the book's full-width cell at 1280 px (pixels stay square, so
    in a narrower column the panels shrink and leave some space between the rows).
    ``width`` fixes the width in pixels instead (``panel_px * columns + 20`` fits the
    panels exactly)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = _as_rows(rows)
    columns = rows[0].columns()
    R, C = len(rows), len(columns)
    fig = make_subplots(rows=R, cols=C, column_titles=list(columns),
                        horizontal_spacing=0.01, vertical_spacing=0.06 if R > 1 else 0.02)
    for r, row in enumerate(rows, start=1):
        for c, panel in enumerate(row.panels(clip_percentile), start=1):
            H, W = panel.shape[:2]
            fig.add_trace(go.Image(source=png_data_uri(panel), hoverinfo="skip"), row=r, col=c)
            fig.update_xaxes(range=[0, W], visible=False, row=r, col=c)
            fig.update_yaxes(range=[H, 0], visible=False, row=r, col=c)
        text = "<br>".join(s for s in (f"<b>{row.label}</b>" if row.label else "", row.note) if s)
        if text:
            ref = (r - 1) * C + 1
            fig.add_annotation(text=text, xref=f"x{'' if ref == 1 else ref} domain",
                               yref=f"y{'' if ref == 1 else ref} domain", x=0, y=-0.02,
                               xanchor="left", yanchor="top", showarrow=False, align="left",
                               font=dict(size=11))
    fig.update_layout(
        title=title, width=width, autosize=width is None,
        height=int(panel_px * R * 1.18) + (60 if title else 40),
        # the bottom margin holds the last row's label and note
        margin=dict(l=10, r=10, t=60 if title else 30, b=45 if rows[-1].label or rows[-1].note else 10),
        plot_bgcolor="white",
    )
    return fig


def fig2_matplotlib(
    rows: Fig2Row | Sequence[Fig2Row],
    *,
    title: str | None = None,
    panel_inches: float = 2.2,
    clip_percentile: float = 99.0,
    dpi: int = 150,
) -> tuple[Figure, np.ndarray]:
    """The Fig. 2 layout as a static matplotlib figure, for PNG/PDF export.

    Returns ``(fig, axes)`` with ``axes`` of shape ``(rows, columns)``; the figure is
    not attached to pyplot, so nothing is drawn as a side effect (``fig.savefig(path)``).
    """
    rows = _as_rows(rows)
    columns = rows[0].columns()
    R, C = len(rows), len(columns)
    fig = Figure(figsize=(panel_inches * C, panel_inches * R * 1.15 + (0.4 if title else 0.1)), dpi=dpi)
    axes = np.asarray(fig.subplots(R, C, squeeze=False))
    for r, row in enumerate(rows):
        for c, panel in enumerate(row.panels(clip_percentile)):
            ax: Axes = axes[r, c]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize=10)
        text = "\n".join(s for s in (row.label, row.note) if s)
        if text:
            axes[r, 0].text(0.0, -0.04, text, transform=axes[r, 0].transAxes, ha="left", va="top",
                            fontsize=7, wrap=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.9 if title else 0.94, bottom=0.06,
                        wspace=0.03, hspace=0.25)
    return fig, axes


# ------------------------------------------------------------------ the study's other figures
# Fig. 1 (sample images), morphometry and attention maps, all plotly, all returning the
# figure; the figures of trained runs (training curves, confusion matrices, intervals) are
# in cervixlib.run_figures, the colours of models and classes in cervixlib.colors.


def sample_grid(index: DatasetIndex, subset: str, *, per_class: int = 3, seed: int = 0,
                thumb_px: int = 160, title: str | None = None) -> go.Figure:
    """Fig. 1: ``per_class`` random images of each class (rows) of ``subset``, as thumbnails.
    The class names beside the rows wrap at spaces after 18 characters, to fit a row's height."""
    import textwrap

    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from cervixlib.data import read_image

    items = index.subset(subset)
    rng = np.random.default_rng(seed)
    labels = [textwrap.wrap(c, 18, break_on_hyphens=False, break_long_words=False) or [c] for c in index.classes]
    fig = make_subplots(rows=len(index.classes), cols=per_class, horizontal_spacing=0.01,
                        vertical_spacing=0.02, row_titles=["<br>".join(lines) for lines in labels])
    for k in range(len(index.classes)):
        members = [it for it in items if it.label == k]
        picks = rng.choice(len(members), size=min(per_class, len(members)), replace=False) if members else []
        for col, i in enumerate(picks, start=1):
            image = read_image(members[i].path)
            image.thumbnail((thumb_px, thumb_px))
            rgb = np.asarray(image, dtype=np.float32) / 255
            fig.add_trace(go.Image(source=png_data_uri(rgb), hovertemplate=f"{members[i].path.name}<extra></extra>"),
                          row=k + 1, col=col)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=11)
    fig.update_layout(title=title, height=130 * len(index.classes) + 60, width=170 * per_class + 200,
                      margin=dict(l=10, r=170, t=50, b=10))
    return fig


def box_by_class(rows: Sequence[dict], value: str, class_names: Sequence[str], *, title: str | None = None,
                 log: bool = False) -> go.Figure:
    """Box plot of ``row[value]`` per ``row['class']`` (morphometry rows of :mod:`cervixlib.data.stats`);
    class names wrap at spaces after 14 characters, so that long ones fit the column."""
    import textwrap

    import plotly.graph_objects as go

    fig = go.Figure()
    for k, name in enumerate(class_names):
        vals = [r[value] for r in rows if r["class"] == name and r[value] == r[value]]
        label = "<br>".join(textwrap.wrap(name, 14, break_on_hyphens=False, break_long_words=False)) or name
        fig.add_trace(go.Box(y=vals, name=label, boxpoints=False, marker_color=PALETTE[k % len(PALETTE)]))
    fig.update_layout(title=title, showlegend=False, height=380, margin=dict(t=50, b=40))
    if log:
        fig.update_yaxes(type="log")
    return fig


def attention_overlays(images: ArrayLike, maps: dict[str, ArrayLike], *, labels: Sequence[str] | None = None,
                       title: str | None = None) -> go.Figure:
    """Each image beside its channel-mean attention mask of every module, overlaid at full size.

    ``labels`` (one per image, e.g. its class) title the rows, wrapped at spaces after 16
    characters so that a long class name stays beside its row."""
    import textwrap

    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    import torch.nn.functional as F

    images = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
    n, (_, h, w) = images.shape[0], images.shape[1:]
    names = list(maps)
    fig = make_subplots(rows=n, cols=1 + len(names), horizontal_spacing=0.01, vertical_spacing=0.02,
                        column_titles=["image", *names])
    for i in range(n):
        rgb = to_rgb(images[i])
        fig.add_trace(go.Image(source=png_data_uri(rgb), hoverinfo="skip"), row=i + 1, col=1)
        for j, name in enumerate(names, start=2):
            m = torch.as_tensor(maps[name][i]).float()
            m = m.mean(0, keepdim=True) if m.ndim == 3 else m[None]
            m = F.interpolate(m[None], size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()
            m = (m - m.min()) / (m.max() - m.min() + 1e-12)
            fig.add_trace(go.Image(source=png_data_uri(overlay(rgb, m, alpha=0.6)), hoverinfo="skip"),
                          row=i + 1, col=j)
    wrapped = [textwrap.wrap(str(t), 16, break_on_hyphens=False, break_long_words=False) or [str(t)]
               for t in (labels if labels is not None else [])]
    for i, lines in enumerate(wrapped):
        fig.update_yaxes(title_text="<br>".join(lines), title_font_size=12, row=i + 1, col=1)
    left = 30 + 15 * max((len(lines) for lines in wrapped), default=2)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_layout(title=title, height=150 * n + 80, width=150 * (1 + len(names)) + 20 + left,
                      margin=dict(l=left, r=10, t=70, b=10))
    return fig


def channel_weights(weights: dict[str, ArrayLike], labels: np.ndarray, class_names: Sequence[str], *,
                    title: str | None = None) -> go.Figure:
    """Mean channel-attention weight per true class (rows) and channel (columns), one panel per unit.

    Channels are ordered by how much their mean weight varies between classes, most first.
    Rows carry the classes' short names (:func:`cervixlib.facts.class_abbreviations` of
    ``class_names``); the hover text and a line under the figure give the full names.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = list(weights)
    fig = make_subplots(rows=len(names), cols=1, subplot_titles=names, vertical_spacing=0.08)
    labels = np.asarray(labels)
    present = [k for k in range(len(class_names)) if np.any(labels == k)]
    short = class_abbreviations(class_names)
    for row, name in enumerate(names, start=1):
        w = np.asarray(torch.as_tensor(weights[name]).float().reshape(len(labels), -1))
        means = np.stack([w[labels == k].mean(0) for k in present])
        order = np.argsort(-means.std(0))
        rows = [class_names[k] for k in present]  # full names (the hover's), short tick labels
        fig.add_trace(go.Heatmap(z=means[:, order], y=rows, colorscale="Viridis", zmin=0, zmax=1,
                                 showscale=row == 1, hovertemplate="%{y}, channel rank %{x}: %{z:.3f}<extra></extra>"),
                      row=row, col=1)
        fig.update_yaxes(tickmode="array", tickvals=rows, ticktext=[short[c] for c in rows], row=row, col=1)
    fig.update_xaxes(title_text="channel (sorted by between-class spread)", row=len(names), col=1)
    bottom = max(40, add_class_key(fig, {class_names[k]: short[class_names[k]] for k in present}, below=60))
    fig.update_layout(title=title, height=max(170, 50 + 24 * len(present)) * len(names) + 40 + bottom,
                      margin=dict(t=70, b=bottom))
    return fig
