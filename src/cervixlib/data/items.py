"""What an index is made of: the class names, the subset names, one image (:class:`Item`)
and its annotated cells (:class:`Cell`).

SIPaKMeD (Plissiti et al., ICIP 2018), the dataset of Wang et al. (2021), has two
subsets: multi-cell images (``"multi"``) and isolated cells cut from them
(``"isolated"``). A class-per-folder set brought by the user has one, ``"images"``:
its images are not known to be either, so they are named neutrally. Its images may
bring their cells as mask files instead of boundaries (``<class>/masks/<stem>.png``,
:attr:`Item.mask_path`; see :mod:`cervixlib.data.index`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cervixlib.config import SUBSETS, Subset
from cervixlib.facts import CLASSES

__all__ = ["CLASSES", "SUBSETS", "Subset", "Cell", "Item"]


@dataclass(frozen=True, eq=False)
class Cell:
    """One annotated cell: boundary polygons as float32 (N, 2) x,y arrays in the pixel
    coordinates of the item they belong to (a crop's own coordinates for a crop)."""

    cytoplasm: np.ndarray
    nucleus: np.ndarray | None = None


@dataclass(frozen=True)
class Item:
    """One image: its file, class label, split group and annotated cells.

    ``group`` is ``"<class>/<source image number>"``: a crop and the multi-cell image it
    was cut from share it, so group-aware splits keep them together. ``size`` is
    ``(width, height)`` from the file header.

    Cells come either as boundary polygons (``cells``, SIPaKMeD's ``.dat`` files) or,
    in a class-per-folder set, as mask files: ``mask_path`` (non-zero = inside a cell,
    any size of the image's aspect ratio) and optionally ``nucleus_mask_path``
    (non-zero = nucleus). An item has at most one of the two kinds.
    """

    path: Path
    label: int
    group: str
    cells: tuple[Cell, ...]
    size: tuple[int, int]
    mask_path: Path | None = None
    nucleus_mask_path: Path | None = None

    @property
    def has_mask(self) -> bool:
        """True when a cell mask can be drawn: boundaries (``cells``) or a mask file."""
        return bool(self.cells) or self.mask_path is not None

    @property
    def has_nucleus(self) -> bool:
        """True when a nucleus mask can be drawn: a nucleus boundary or a nucleus mask file."""
        if self.mask_path is not None:
            return self.nucleus_mask_path is not None
        return any(c.nucleus is not None for c in self.cells)
