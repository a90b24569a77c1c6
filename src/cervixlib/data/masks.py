"""Cell masks at any image size: drawn from SIPaKMeD boundary polygons, or read from a
class-per-folder set's mask files.

Wang et al. (2021), "Towards Interpretable Attention Networks for Cervical Cancer
Analysis", judge explanations by where attributions fall; the ``.dat`` boundaries of
SIPaKMeD give the cell, nucleus and cytoplasm regions to measure that against. Masks
are rasterised from the polygons at the requested size (not resized from a full-size
mask), so they stay aligned with an image resized to that size. A mask file
(``<class>/masks/<stem>.png``, :attr:`Item.mask_path`) is resized to the requested size
with nearest-neighbour sampling, the image's geometry with no new values; its cells,
for measures per cell (:func:`cell_components`), are its connected components.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from cervixlib.data.errors import DataError
from cervixlib.data.index import Item
from cervixlib.data.io import read_mask

__all__ = ["cell_components", "cell_mask"]

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


def _resized(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A bool (H, W) mask at ``size`` = (width, height), nearest neighbour (PIL's)."""
    if mask.shape[::-1] == tuple(size):
        return mask
    img = Image.fromarray(mask.astype(np.uint8) * 255).resize(tuple(size), Image.Resampling.NEAREST)
    return np.asarray(img) > 0


def _nucleus_missing(item: Item) -> DataError:
    if item.mask_path is not None:
        expected = item.mask_path.with_name(f"{item.path.stem}_nucleus.png")
        return DataError(expected, f"no such nucleus mask for image {item.path.name}")
    return DataError(item.path, "no nucleus boundaries (*nuc*.dat) for this image")


def _check(item: Item, size: tuple[int, int] | None, part: str) -> tuple[int, int]:
    if part not in ("cell", "nucleus", "cytoplasm"):
        raise ValueError(f"part must be 'cell', 'nucleus' or 'cytoplasm', got {part!r}")
    if not item.has_mask:
        raise DataError(item.path, "no cell boundaries (.dat files) or mask file (masks/<stem>.png) for "
                                   "this image, so no mask can be drawn")
    width, height = size if size is not None else item.size
    if width < 1 or height < 1:
        raise ValueError(f"mask size must be positive, got {(width, height)}")
    if part == "nucleus" and not item.has_nucleus:
        raise _nucleus_missing(item)
    return int(width), int(height)


def cell_mask(item: Item, size: tuple[int, int] | None = None, part: Part = "cell") -> np.ndarray:
    """An item's cells as a boolean mask, from its boundaries or its mask files.

    From boundaries, a pixel belongs to a polygon when its centre lies inside it. From
    mask files, the cell mask is the cell file's non-zero pixels together with the
    nucleus file's, each resized to ``size`` by nearest neighbour.

    Args:
        item: an indexed image with cells (``item.has_mask``: boundaries in ``item.cells``
            or a mask file ``item.mask_path``).
        size: ``(width, height)`` of the mask; default the item's own size. The polygons
            (or mask files) are scaled like the whole image is when resized to this size.
        part: ``"cell"`` (cytoplasm and nucleus filled), ``"nucleus"``, or
            ``"cytoplasm"`` (cell minus nucleus; the cell when there is no nucleus).

    Returns:
        bool array (height, width).

    Raises:
        DataError: the item has neither boundaries nor a mask file, or no nucleus
            boundary (or nucleus mask file, named) when ``part="nucleus"``.
    """
    width, height = _check(item, size, part)
    if item.mask_path is not None:
        cells = _resized(read_mask(item.mask_path), (width, height))
        nucs = (_resized(read_mask(item.nucleus_mask_path), (width, height))
                if item.nucleus_mask_path is not None else np.zeros_like(cells))
    else:
        sx, sy = width / item.size[0], height / item.size[1]
        cells = np.zeros((height, width), dtype=bool)
        nucs = np.zeros_like(cells)
        if part != "nucleus":
            for cell in item.cells:
                _fill(cells, _scaled(cell.cytoplasm, sx, sy))
        for cell in item.cells:
            if cell.nucleus is not None:
                _fill(nucs, _scaled(cell.nucleus, sx, sy))
    if part == "nucleus":
        return nucs
    if part == "cytoplasm":
        return cells & ~nucs
    return cells | nucs


def _components(path: Path, nucleus: Path | None, size: tuple[int, int]) -> np.ndarray:
    """Labels (H, W) at ``size`` of the 8-connected components of a mask file's cells
    (with its nucleus file), 0 outside; components that vanish at ``size`` are dropped."""
    from scipy import ndimage

    full = read_mask(path)
    nuc = read_mask(nucleus) if nucleus is not None else None
    if nuc is not None and nuc.shape != full.shape:  # two resolutions: label at the output's
        full = _resized(full, size) | _resized(nuc, size)
    elif nuc is not None:
        full = full | nuc
    labels, _ = ndimage.label(full, structure=np.ones((3, 3), dtype=bool))
    if labels.shape[::-1] != tuple(size):
        labels = np.asarray(Image.fromarray(labels.astype(np.int32)).resize(tuple(size), Image.Resampling.NEAREST))
    present = np.unique(labels)  # renumber the components left 1..K (0 stays outside)
    return np.searchsorted(present, labels) + int(present[0] != 0)


def cell_components(item: Item, size: tuple[int, int] | None = None, part: Part = "cell") -> np.ndarray:
    """One bool mask per cell of ``item``, ``(K, H, W)`` at ``size`` = (width, height).

    The cells are the item's boundary polygons, each drawn alone with :func:`cell_mask`,
    or, for a mask file, the 8-connected components of its cell mask (touching cells are
    one component), found at the file's resolution and resized with it, so cells that
    touch only after downsizing stay apart and a cell too small to keep a pixel at
    ``size`` is left out. Either way the union of the K masks is ``cell_mask(item, size,
    "cell")``. ``part`` cuts each cell down to its nucleus or cytoplasm (a cell without a
    nucleus then has an empty nucleus mask); K may be 0 for an empty mask file.

    Raises:
        DataError: as :func:`cell_mask` (no boundaries or mask file; no nucleus at all
            for ``part="nucleus"``).
    """
    width, height = _check(item, size, part)
    if item.mask_path is None:
        def one(cell):
            if part == "nucleus" and cell.nucleus is None:
                return np.zeros((height, width), dtype=bool)
            return cell_mask(replace(item, cells=(cell,)), (width, height), part)
        return np.stack([one(c) for c in item.cells])
    labels = _components(item.mask_path, item.nucleus_mask_path, (width, height))
    cells = labels[None] == np.arange(1, int(labels.max()) + 1)[:, None, None]
    if part == "cell":
        return cells
    nucleus = cell_mask(item, (width, height), "nucleus") if item.has_nucleus else np.zeros((height, width), bool)
    return cells & (nucleus if part == "nucleus" else ~nucleus)
