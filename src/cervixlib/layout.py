"""How a dataset root is laid out, told from folder names alone: SIPaKMeD or a class-per-folder set.

SIPaKMeD (Plissiti et al., ICIP 2018), the dataset of Wang et al. (2021), keeps each
class in an ``im_<Class>`` folder, with its multi-cell images (subset ``"multi"``) and a
``CROPPED`` folder of isolated cells (``"isolated"``). Any other cytology set can be
brought as ``ROOT/<class>/*.png``: its images are not known to be fields or single cells
and form one subset, ``"images"``. Each layout has its subsets and a default one, the
first: ``"multi"`` for SIPaKMeD (the paper's headline task), ``"images"`` otherwise.

This is the one place those rules live. It sits below both :mod:`cervixlib.config`
(which gives a run on a root its default subset) and :mod:`cervixlib.data` (which
indexes the root), so it imports neither, nor torch: only :mod:`cervixlib.facts`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal, get_args

from cervixlib.facts import CLASSES

__all__ = [
    "CELLS",
    "root_has_cells",
    "root_needs",
    "CLASS_FOLDERS",
    "CLASS_KEYS",
    "LAYOUTS",
    "SUBSETS",
    "Layout",
    "Subset",
    "class_key",
    "data_label",
    "default_subset",
    "layout_subsets",
    "natural_key",
    "root_subsets",
    "sipakmed_classes",
    "sipakmed_roots",
]

#: Subset names: SIPaKMeD's multi-cell images and isolated cells, and the images of a
#: class-per-folder set (not known to be single cells).
Subset = Literal["multi", "isolated", "images"]
SUBSETS: tuple[str, ...] = get_args(Subset)
#: Layout names: SIPaKMeD (``im_X/``), the redistribution that nests each class twice
#: (``im_X/im_X/``), and a class-per-folder set.
Layout = Literal["sipakmed", "sipakmed-nested", "class-folders"]
LAYOUTS: tuple[str, ...] = get_args(Layout)
CLASS_FOLDERS: Layout = "class-folders"
_LAYOUT_SUBSETS: dict[str, tuple[Subset, ...]] = {
    "sipakmed": ("multi", "isolated"), "sipakmed-nested": ("multi", "isolated"), CLASS_FOLDERS: ("images",)}


def layout_subsets(layout: str) -> tuple[Subset, ...]:
    """The subsets a layout has, its default first: ``("multi", "isolated")`` or ``("images",)``."""
    try:
        return _LAYOUT_SUBSETS[layout]
    except KeyError:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}") from None


def data_label(folder: str, layout: str) -> str:
    """A real dataset in a few words, by its folder's name, never its path (pages are
    published): ``"SIPaKMeD (folder)"``, or ``"folder (class-per-folder set)"``."""
    return f"{folder} (class-per-folder set)" if layout == CLASS_FOLDERS else f"SIPaKMeD ({folder})"


def class_key(name: str) -> str:
    """Class-name key: lower case, letters and digits only (``"Superficial_intermediate"``)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


#: ``{class_key(name): name}`` of the SIPaKMeD classes, to match folder names loosely.
CLASS_KEYS: dict[str, str] = {class_key(c): c for c in CLASSES}


def natural_key(name: str) -> tuple:
    """Sort key that orders ``"2"`` before ``"10"`` (numbers compared as numbers)."""
    return tuple(int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name))


def sipakmed_classes(base: Path) -> dict[str, Path]:
    """``{class name: folder}`` for the ``im_<Class>`` folders directly in ``base``
    (names matched case- and punctuation-insensitively; the first of two wins)."""
    found: dict[str, Path] = {}
    try:
        children = [p for p in base.iterdir() if p.is_dir()]
    except OSError:
        return {}
    for child in sorted(children, key=lambda p: natural_key(p.name)):
        key = class_key(child.name[3:])
        if child.name.lower().startswith("im_") and key in CLASS_KEYS:
            found.setdefault(CLASS_KEYS[key], child)
    return found


def sipakmed_roots(root: Path) -> list[tuple[Path, dict[str, Path]]]:
    """The folders that look like a SIPaKMeD root, each with its class folders, most classes first.

    ``root`` itself when it holds ``im_<Class>`` folders (then only it), else those of its
    children that do. Empty for a class-per-folder set. More than one with the same number
    of classes is ambiguous; :func:`cervixlib.data.load_index` refuses it. Reads folder
    names only; an unreadable ``root`` raises OSError.
    """
    found = sipakmed_classes(root)
    if found:
        return [(root, found)]
    candidates = []
    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        sub = sipakmed_classes(child)
        if sub:
            candidates.append((child, sub))
    return sorted(candidates, key=lambda c: -len(c[1]))


def root_subsets(root: str | os.PathLike[str] | None) -> tuple[Subset, ...]:
    """The subsets of the data at ``root``, its default first: SIPaKMeD's ``("multi",
    "isolated")`` for a SIPaKMeD tree and for the embedded set (``root=None``),
    ``("images",)`` for a class-per-folder set.

    Reads folder names only, so configurations and the run plan can call it cheaply. A root
    that does not exist or cannot be told apart counts as SIPaKMeD;
    :func:`cervixlib.data.load_index` then reports why.
    """
    if root is None:
        return layout_subsets("sipakmed")
    path = Path(root).expanduser()
    try:
        sipakmed = not path.is_dir() or bool(sipakmed_roots(path))
    except OSError:
        sipakmed = True
    return layout_subsets("sipakmed" if sipakmed else CLASS_FOLDERS)


#: What a chapter names in the manifest's ``subsets:`` when it needs the cells of each image
#: (chapter 6's graphs): SIPaKMeD's ``.dat`` outlines, or a class-per-folder set's mask files.
CELLS = "cells"


def root_has_cells(root: str | os.PathLike[str] | None) -> bool:
    """Whether the images at ``root`` come with their cells: a SIPaKMeD tree and the embedded set
    (``None``) do (``.dat`` outlines); a class-per-folder set does when a class folder holds a
    ``masks`` folder. Folder names only, like :func:`root_subsets`."""
    if root is None or root_subsets(root) != layout_subsets(CLASS_FOLDERS):
        return True
    try:
        return any(sub.is_dir() and sub.name.lower() == "masks"
                   for d in Path(root).expanduser().iterdir() if d.is_dir() for sub in d.iterdir())
    except OSError:
        return False


def root_needs(root: str | os.PathLike[str] | None) -> tuple[str, ...]:
    """What the data at ``root`` offers the chapters: its subsets (:func:`root_subsets`), and
    :data:`CELLS` where its images come with their cells (:func:`root_has_cells`)."""
    return root_subsets(root) + ((CELLS,) if root_has_cells(root) else ())


def default_subset(root: str | os.PathLike[str]) -> Subset:
    """The subset a run uses when none is named: ``"multi"`` for a SIPaKMeD tree (the
    paper's headline task), ``"images"`` for a class-per-folder set (its only one);
    the first of :func:`root_subsets`."""
    return root_subsets(root)[0]
