"""Cell masks drawn from SIPaKMeD boundary polygons, at any image size.

Wang et al. (2021), "Towards Interpretable Attention Networks for Cervical Cancer
Analysis", judge explanations by where attributions fall; the ``.dat`` boundaries of
SIPaKMeD give the cell, nucleus and cytoplasm regions to measure that against. Masks
are rasterised from the polygons at the requested size (not resized from a full-size
mask), so they stay aligned with an image resized to that size.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from cervixlib.data.errors import DataError
from cervixlib.data.index import Item

__all__ = ["cell_mask"]

Part = Literal["cell", "nucleus", "cytoplasm"]


def _scaled(points: np.ndarray, sx: float, sy: float) -> np.ndarray:
    # Pixel centres sit at integer coordinates: map centre to centre when resizing.
    out = points.astype(np.float64)
    out[:, 0] = (out[:, 0] + 0.5) * sx - 0.5
    out[:, 1] = (out[:, 1] + 0.5) * sy - 0.5
    return out


def _fill(mask: np.ndarray, points: np.ndarray) -> None:
    """Set the pixels whose centres lie inside the polygon (even-odd rule), in place.

    A scanline fill, so that mask areas match polygon areas at any size (PIL's
    ``ImageDraw.polygon`` also fills every boundary pixel, which inflates small cells).
    """
    H, W = mask.shape
    xa, ya = points[:, 0], points[:, 1]
    xb, yb = np.roll(xa, -1), np.roll(ya, -1)
    top, bottom = max(0, math.ceil(ya.min())), min(H - 1, math.floor(ya.max()))
    if bottom < top:
        return
    rows = np.arange(top, bottom + 1, dtype=np.float64)[:, None]
    crosses = (ya <= rows) != (yb <= rows)  # half-open rule: a vertex is counted once
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = xa + (rows - ya) * (xb - xa) / (yb - ya)
    xs = np.sort(np.where(crosses, xs, np.inf), axis=1)
    if xs.shape[1] % 2:
        xs = np.concatenate([xs, np.full((len(xs), 1), np.inf)], axis=1)
    starts, stops = xs[:, 0::2], xs[:, 1::2]  # even-odd: inside between pairs of crossings
    valid = np.isfinite(starts) & np.isfinite(stops)
    row_of = np.broadcast_to(np.arange(len(xs))[:, None], starts.shape)[valid]
    a = np.clip(np.ceil(starts[valid]), 0, W).astype(np.int64)
    b = np.clip(np.ceil(stops[valid]), 0, W).astype(np.int64)
    edges = np.zeros((len(xs), W + 1), dtype=np.int32)
    np.add.at(edges, (row_of, a), 1)
    np.add.at(edges, (row_of, b), -1)
    mask[top:bottom + 1] |= np.cumsum(edges[:, :W], axis=1) > 0


def cell_mask(item: Item, size: tuple[int, int] | None = None, part: Part = "cell") -> np.ndarray:
    """Rasterise an item's annotated cells into a boolean mask.

    A pixel belongs to a polygon when its centre lies inside it.

    Args:
        item: an indexed image with cells (``item.cells`` not empty).
        size: ``(width, height)`` of the mask; default the item's own size. The polygons
            are scaled like the whole image is when resized to this size.
        part: ``"cell"`` (cytoplasm and nucleus outlines filled), ``"nucleus"``, or
            ``"cytoplasm"`` (cell minus nucleus).

    Returns:
        bool array (height, width).

    Raises:
        DataError: the item has no boundaries (e.g. a class-per-folder image), or no
            nucleus boundary when ``part="nucleus"``.
    """
    if part not in ("cell", "nucleus", "cytoplasm"):
        raise ValueError(f"part must be 'cell', 'nucleus' or 'cytoplasm', got {part!r}")
    if not item.cells:
        raise DataError(item.path, "no cell boundaries (.dat files) for this image, so no mask can be drawn")
    width, height = size if size is not None else item.size
    if width < 1 or height < 1:
        raise ValueError(f"mask size must be positive, got {(width, height)}")
    sx, sy = width / item.size[0], height / item.size[1]
    nuclei = [c.nucleus for c in item.cells if c.nucleus is not None]
    if part == "nucleus" and not nuclei:
        raise DataError(item.path, "no nucleus boundaries (*nuc*.dat) for this image")
    cells = np.zeros((int(height), int(width)), dtype=bool)
    nucs = np.zeros_like(cells)
    if part != "nucleus":
        for cell in item.cells:
            _fill(cells, _scaled(cell.cytoplasm, sx, sy))
    for nucleus in nuclei:
        _fill(nucs, _scaled(nucleus, sx, sy))
    if part == "nucleus":
        return nucs
    if part == "cytoplasm":
        return cells & ~nucs
    return cells | nucs
