"""Descriptive statistics of a dataset: Table I counts, cell morphometry from ``.dat``
polygons, and what the files themselves say (sizes, formats, duplicates, odd files).

Wang et al. (2021) describe SIPaKMeD by its class counts (their Table I); the cell
boundaries that come with it also give what cytologists look at first: cell size, the
nucleus-to-cytoplasm (N/C) ratio, and how many annotated cells an image holds. These
are computed here from the polygons alone, in pixels of the image they belong to.

A class-per-folder set (Herlev, CRIC Cervix, a user's own crops) has no boundaries, so
its chapter 1 describes the files instead: image sizes and formats per class
(:func:`image_size_rows`), files with identical bytes (:func:`duplicate_files`, which a
split can put on both sides: :func:`copies_in_training`), and the files the index left
out, warned about or did not read (:func:`file_problem_rows`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cervixlib.data.errors import DataError
from cervixlib.data.index import SYNTHETIC_MARKER, DatasetIndex, Item
from cervixlib.data.io import IMAGE_EXTENSIONS, probe_image
from cervixlib.facts import ISOLATED_COUNTS, MULTI_COUNTS, PAPER_TABLE1_ISOLATED
from cervixlib.layout import CLASS_FOLDERS, natural_key

__all__ = ["polygon_area", "cell_statistics", "cells_per_image", "class_medians", "table1_rows",
           "has_cell_boundaries", "image_size_rows", "duplicate_files", "duplicate_rows", "copies_in_training",
           "file_problem_rows"]


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


def has_cell_boundaries(index: DatasetIndex) -> bool:
    """True when some image of ``index`` comes with cell boundaries (``.dat`` polygons),
    so that cell area and N/C ratio can be measured (never for a class-per-folder set)."""
    return any(it.cells for it in _all_items(index))


def _all_items(index: DatasetIndex) -> list[Item]:
    return [*index.multi, *index.isolated, *index.images]


# ------------------------------------------------------------------ the files themselves
def _spread(values: Sequence[int]) -> str:
    """``"min / median / max"`` of whole pixel counts (the median may end in .5)."""
    return f"{min(values)} / {float(np.median(values)):g} / {max(values)}"


def _tally(names: Sequence[str]) -> str:
    """``"JPEG 5, PNG 4"``: each name with its count, most frequent first."""
    return ", ".join(f"{name} {n}" for name, n in sorted(Counter(names).items(), key=lambda kv: (-kv[1], kv[0])))


def _header(path: Path) -> tuple[str, str]:
    """The file's format and pixel mode from its header (``"unreadable"`` twice if it no longer reads)."""
    try:
        info = probe_image(path)
    except DataError:
        return "unreadable", "unreadable"
    return info.format, info.mode


def image_size_rows(items: Sequence[Item], class_names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per class, then ``total``: images, width and height in pixels as
    ``"min / median / max"`` (the sizes the index read from the file headers), and the
    file formats and pixel modes the headers give, each with its count (``"JPEG 5, PNG 4"``).

    A class without images gets a row with 0 images and empty cells. Reads each file's
    header again for its format and mode (no pixels are decoded).
    """
    headers = [_header(it.path) for it in items]
    rows = []
    for label, name in [*enumerate(class_names), (None, "total")]:
        mine = [k for k, it in enumerate(items) if label is None or it.label == label]
        row: dict[str, Any] = {"class": name, "images": len(mine)}
        if mine:
            row.update({"width px": _spread([items[k].size[0] for k in mine]),
                        "height px": _spread([items[k].size[1] for k in mine]),
                        "formats": _tally([headers[k][0] for k in mine]),
                        "pixel modes": _tally([headers[k][1] for k in mine])})
        rows.append(row)
    return rows


def _digest(path: Path, limit: int | None = None) -> str:
    """SHA-256 of the file's bytes (of its first ``limit`` bytes when given)."""
    h = hashlib.sha256()
    left = limit
    with open(path, "rb") as f:
        while left is None or left > 0:
            chunk = f.read(1 << 20 if left is None else min(1 << 20, left))
            if not chunk:
                break
            h.update(chunk)
            if left is not None:
                left -= len(chunk)
    return h.hexdigest()


def _same(groups: dict[Any, list[int]], key) -> dict[Any, list[int]]:
    """Split each group of indices by ``key(index)``, keeping only the sub-groups of two or more."""
    out: dict[Any, list[int]] = {}
    for g, members in groups.items():
        for k in members:
            out.setdefault((g, key(k)), []).append(k)
    return {g: m for g, m in out.items() if len(m) > 1}


def duplicate_files(items: Sequence[Item]) -> list[list[int]]:
    """Sets of files with identical bytes: indices into ``items``, one sorted list per set
    of two or more, the sets in the order of their first member.

    Files are compared by size, then by the SHA-256 of their first 64 KiB, then of all
    their bytes, so only files that could be copies are read in full. A file that cannot
    be read is left out of the comparison.
    """
    def size(k: int) -> int:
        try:
            return items[k].path.stat().st_size
        except OSError:
            return -1 - k  # unreadable: never equal to another

    def safe(fn):
        def digest(k: int) -> str:
            try:
                return fn(items[k].path)
            except OSError:
                return f"unreadable {k}"
        return digest

    groups = _same({None: list(range(len(items)))}, size)
    groups = _same(groups, safe(lambda p: _digest(p, 1 << 16)))
    groups = _same(groups, safe(_digest))
    return sorted((sorted(m) for m in groups.values()), key=lambda m: m[0])


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with forward slashes (the name alone outside ``root``):
    pages name files, never the build machine's paths."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def duplicate_rows(items: Sequence[Item], duplicates: Sequence[Sequence[int]], class_names: Sequence[str],
                   root: Path) -> list[dict[str, Any]]:
    """One row per set of :func:`duplicate_files`: how many copies, their classes (two
    classes for one picture is a labelling conflict), the files relative to ``root``, and their size."""
    rows = []
    for members in duplicates:
        classes = sorted({class_names[items[k].label] for k in members})
        rows.append({"copies": len(members), "classes": ", ".join(classes),
                     "files": ", ".join(_relative(items[k].path, root) for k in members),
                     "bytes": items[members[0]].path.stat().st_size})
    return rows


def copies_in_training(items: Sequence[Item], split: Any, duplicates: Sequence[Sequence[int]],
                       part: str = "test") -> int:
    """How many items of ``split.<part>`` have a byte-identical copy (``duplicates``, from
    :func:`duplicate_files` on the same ``items``) among ``split.train``: a model is then
    tested on a picture it was trained on."""
    copy_set = {k: i for i, members in enumerate(duplicates) for k in members}
    trained = {copy_set[int(k)] for k in split.train if int(k) in copy_set}
    return int(sum(copy_set.get(int(k), -1) in trained for k in getattr(split, part)))


def _unread(index: DatasetIndex, known: set[Path], flagged: list[Path]) -> list[tuple[Path, str]]:
    """Files under a class-per-folder root that the index did not read (hidden ones aside)."""
    found = []
    for folder, dirs, files in os.walk(index.root):
        here = Path(folder)
        dirs[:] = sorted((d for d in dirs if not d.startswith(".") and here / d not in flagged), key=natural_key)
        depth = len(here.relative_to(index.root).parts)
        for name in sorted(files, key=natural_key):
            path = here / name
            if name.startswith(".") or path in known or (depth == 0 and name == SYNTHETIC_MARKER):
                continue
            if depth == 0:
                why = "a file beside the class folders; not read (a class is a folder of images)"
            elif depth > 1:
                why = (f"in the sub-folder {'/'.join(path.relative_to(index.root).parts[1:-1])}/ of a class "
                       "folder; not read (sub-folders are not searched)")
            elif path.suffix.lower() not in IMAGE_EXTENSIONS:
                why = (f"not an image file ({path.suffix or 'no extension'}); not read (images are "
                       f"{', '.join(sorted(IMAGE_EXTENSIONS))})")
            else:
                why = "not read by the index"
            found.append((path, why))
    return found


def file_problem_rows(index: DatasetIndex, *, limit: int | None = 30) -> list[dict[str, Any]]:
    """The files a reader should know about, one row each (paths relative to the root):

    ``left out``: bad files :func:`~cervixlib.data.load_index` skipped (``skip_bad``);
    ``warning``: the oddities it warned about (``cervix info`` lists both); ``not read``:
    on a class-per-folder set, files under the root that no image of the index is (a file
    beside the class folders, a non-image file, anything in a class folder's sub-folder).
    Hidden files (a leading dot) are ignored, as the index ignores them. At most ``limit``
    rows (None: all); a last row says how many more there are.
    """
    flagged = [p for p, _ in [*index.skipped, *index.warnings]]
    rows = [{"file": _relative(p, index.root), "what": what, "why": why}
            for what, entries in (("left out", index.skipped), ("warning", index.warnings)) for p, why in entries]
    if index.layout == CLASS_FOLDERS:
        # every file an item names: its image, and any other file it carries (a mask)
        known = {p for it in _all_items(index) for p in (getattr(it, f.name) for f in dataclasses.fields(it))
                 if isinstance(p, Path)}
        rows += [{"file": _relative(p, index.root), "what": "not read", "why": why}
                 for p, why in _unread(index, known | set(flagged), flagged)]
    if limit is not None and len(rows) > limit:
        more = len(rows) - limit
        rows = [*rows[:limit], {"file": f"... and {more} more", "what": "", "why": ""}]
    return rows
