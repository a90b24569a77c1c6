"""Descriptive statistics of a dataset: Table I counts and cell morphometry from ``.dat`` polygons.

Wang et al. (2021) describe SIPaKMeD by its class counts (their Table I); the cell
boundaries that come with it also give what cytologists look at first: cell size, the
nucleus-to-cytoplasm (N/C) ratio, and how many annotated cells an image holds. These
are computed here from the polygons alone, in pixels of the image they belong to.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from cervixlib.data.index import DatasetIndex, Item
from cervixlib.facts import ISOLATED_COUNTS, MULTI_COUNTS, PAPER_TABLE1_ISOLATED

__all__ = ["polygon_area", "cell_statistics", "cells_per_image", "class_medians", "table1_rows"]


def polygon_area(polygon: np.ndarray) -> float:
    """Area enclosed by a simple polygon ``(N, 2)`` of x, y points (shoelace formula)."""
    x, y = np.asarray(polygon, dtype=np.float64).T
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def cell_statistics(items: Sequence[Item], class_names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per annotated cell: class, group, cell area, nucleus area and N/C ratio (pixels²).

    The cytoplasm polygon outlines the whole cell, so the N/C ratio is
    nucleus area / (cell area - nucleus area), the cytologists' definition.
    """
    rows = []
    for item in items:
        for k, cell in enumerate(item.cells):
            cell_area = polygon_area(cell.cytoplasm)
            nuc_area = polygon_area(cell.nucleus) if cell.nucleus is not None else float("nan")
            cyto = cell_area - nuc_area
            rows.append({
                "class": class_names[item.label], "group": item.group, "cell": k + 1,
                "cell_area": cell_area, "nucleus_area": nuc_area,
                "nc_ratio": nuc_area / cyto if cyto > 0 else float("nan"),
            })
    return rows


def cells_per_image(items: Sequence[Item], class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Number of annotated cells in each image, with its class."""
    return [{"class": class_names[it.label], "group": it.group, "cells": len(it.cells)} for it in items]


def _paper_note(ours: int | None, printed: int | None) -> str:
    if ours is None or printed is None or ours == printed:
        return ""
    return f"the paper's Table I prints {printed:,} isolated cells"


def table1_rows(index: DatasetIndex) -> list[dict[str, Any]]:
    """Images per class in both subsets, beside SIPaKMeD's counts (the paper's Table I).

    The SIPaKMeD columns give the download's counts (966 multi-cell images, 4,049
    isolated cells); the ``note`` column says where Wang et al.'s Table I prints another
    number (813 Superficial-Intermediate cells, total 4,031: a typo, see
    :data:`cervixlib.facts.PAPER_TABLE1_ISOLATED`), and is empty elsewhere.
    A class-per-folder set has neither subset: its rows give its ``images`` per class.
    """
    if index.layout == "class-folders":
        counts = index.class_counts("images")
        return [*({"class": c, "images": n} for c, n in counts.items()),
                {"class": "total", "images": sum(counts.values())}]
    multi = Counter(index.classes[it.label] for it in index.multi)
    isolated = Counter(index.classes[it.label] for it in index.isolated)
    rows = [{"class": c, "multi-cell images": multi[c], "isolated cells": isolated[c],
             "SIPaKMeD multi-cell": MULTI_COUNTS.get(c), "SIPaKMeD isolated": ISOLATED_COUNTS.get(c),
             "note": _paper_note(ISOLATED_COUNTS.get(c), PAPER_TABLE1_ISOLATED.get(c))}
            for c in index.classes]
    rows.append({"class": "total", "multi-cell images": sum(multi.values()),
                 "isolated cells": sum(isolated.values()),
                 "SIPaKMeD multi-cell": sum(MULTI_COUNTS.values()),
                 "SIPaKMeD isolated": sum(ISOLATED_COUNTS.values()),
                 "note": _paper_note(sum(ISOLATED_COUNTS.values()), sum(PAPER_TABLE1_ISOLATED.values()))})
    return rows


def class_medians(cells: Sequence[dict[str, Any]], per_image: Sequence[dict[str, Any]],
                  class_names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per class: cells, median cell area, median N/C ratio (NaNs ignored) and
    median annotated cells per image, from :func:`cell_statistics` and :func:`cells_per_image`."""
    rows = []
    for name in class_names:
        mine = [r for r in cells if r["class"] == name]
        counts = [r["cells"] for r in per_image if r["class"] == name]
        rows.append({"class": name, "cells": len(mine),
                     "median cell area": float(np.nanmedian([r["cell_area"] for r in mine])) if mine else None,
                     "median N/C": float(np.nanmedian([r["nc_ratio"] for r in mine])) if mine else None,
                     "median cells per image": float(np.median(counts)) if counts else None})
    return rows
