"""Cell morphometry from .dat polygons, against independent references."""

from __future__ import annotations

import numpy as np
import pytest

from cervixlib.data import cell_mask, load_index
from cervixlib.data.stats import cell_statistics, cells_per_image, class_medians, polygon_area, table1_rows


def test_polygon_area_of_known_shapes():
    assert polygon_area(np.array([[0, 0], [4, 0], [4, 3], [0, 3]])) == pytest.approx(12)
    assert polygon_area(np.array([[0, 0], [4, 0], [0, 3]])[::-1]) == pytest.approx(6)  # orientation-free
    t = np.linspace(0, 2 * np.pi, 2000, endpoint=False)
    assert polygon_area(np.c_[10 * np.cos(t), 10 * np.sin(t)]) == pytest.approx(np.pi * 100, rel=1e-4)


def test_cell_areas_agree_with_rasterised_masks(synth_root):
    index = load_index(synth_root)
    items = [it for it in index.isolated if len(it.cells) == 1][:10]
    rows = cell_statistics(items, index.classes)
    for item, row in zip(items, rows):
        pixels = cell_mask(item, part="cell").sum()
        assert row["cell_area"] == pytest.approx(pixels, rel=0.1, abs=15)
        nuc = cell_mask(item, part="nucleus").sum()
        assert row["nucleus_area"] == pytest.approx(nuc, rel=0.15, abs=15)
        assert row["nc_ratio"] == pytest.approx(row["nucleus_area"] / (row["cell_area"] - row["nucleus_area"]))


def test_table1_and_cells_per_image(synth_root):
    index = load_index(synth_root)
    rows = table1_rows(index)
    assert [r["class"] for r in rows[:-1]] == list(index.classes)
    assert rows[-1]["multi-cell images"] == len(index.multi)
    assert rows[-1]["isolated cells"] == len(index.isolated)
    assert rows[-1]["SIPaKMeD multi-cell"] == 966 and rows[-1]["SIPaKMeD isolated"] == 4049
    notes = {r["class"]: r["note"] for r in rows if r["note"]}
    assert notes == {"Superficial-Intermediate": "the paper's Table I prints 813 isolated cells",
                     "total": "the paper's Table I prints 4,031 isolated cells"}
    sup = next(r for r in rows if r["class"] == "Superficial-Intermediate")
    assert sup["SIPaKMeD isolated"] == 831
    per_image = cells_per_image(index.multi, index.classes)
    assert sum(r["cells"] for r in per_image) == sum(len(it.cells) for it in index.multi)


def test_synthetic_cells_follow_the_cytology_cues(synth_root):
    """Parabasal cells have a higher N/C ratio than superficial-intermediate ones (DATA.md)."""
    index = load_index(synth_root)
    rows = cell_statistics(index.isolated, index.classes)
    nc = {c: np.nanmedian([r["nc_ratio"] for r in rows if r["class"] == c]) for c in index.classes}
    assert nc["Parabasal"] > 2 * nc["Superficial-Intermediate"]


def test_class_medians_are_the_medians_of_each_class():
    cells = [{"class": "a", "cell_area": a, "nc_ratio": r} for a, r in [(1.0, 0.1), (3.0, float("nan")), (8.0, 0.3)]]
    cells.append({"class": "b", "cell_area": 5.0, "nc_ratio": 0.5})
    per_image = [{"class": "a", "cells": 2}, {"class": "a", "cells": 4}, {"class": "a", "cells": 9}]
    a, b, c = class_medians(cells, per_image, ["a", "b", "c"])
    assert a == {"class": "a", "cells": 3, "median cell area": 3.0, "median N/C": pytest.approx(0.2),
                 "median cells per image": 4.0}
    assert b["median cells per image"] is None and b["median N/C"] == 0.5
    assert c == {"class": "c", "cells": 0, "median cell area": None, "median N/C": None,
                 "median cells per image": None}
