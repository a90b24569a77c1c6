"""Find and index a SIPaKMeD dataset, or any class-per-folder image collection.

SIPaKMeD (Plissiti et al., ICIP 2018) is the dataset of Wang et al. (2021), "Towards
Interpretable Attention Networks for Cervical Cancer Analysis". Its layout (see
``docs`` and the project's DATA.md)::

    ROOT/im_<Class>/NNN.bmp                 multi-cell image NNN
    ROOT/im_<Class>/NNN_cytMM.dat           cytoplasm boundary of cell MM in image NNN
    ROOT/im_<Class>/NNN_nucMM.dat           its nucleus boundary
    ROOT/im_<Class>/CROPPED/NNN_MM.bmp      isolated cell MM cut from image NNN
    ROOT/im_<Class>/CROPPED/NNN_MM_cyt.dat  its boundaries, in the crop's coordinates
    ROOT/im_<Class>/CROPPED/NNN_MM_nuc.dat

A common redistribution nests each class twice (``im_X/im_X/...``), and the root may
be one level above the ``im_*`` folders; all of these are found (``layout`` is
``"sipakmed"`` or ``"sipakmed-nested"``). Class folder names match case- and
punctuation-insensitively.

Other cytology sets can be brought as ``ROOT/<class>/*.bmp|png|jpg|jpeg|tif|tiff``
(``layout = "class-folders"``). Such images carry no boundaries and are not known to
be multi-cell fields, so they form the ``isolated`` subset, without cells, and
``multi`` stays empty; cell masks are then unavailable.

Indexing reads image headers and the small ``.dat`` files only (no pixel decoding of
intact files), so a full-size set indexes in seconds; see :mod:`cervixlib.data.io`
for which damage is found here and which only when an image is read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cervixlib.data.errors import DataError
from cervixlib.data.io import IMAGE_EXTENSIONS, ImageInfo, probe_image, read_dat, read_image

__all__ = ["CLASSES", "SYNTHETIC_MARKER", "Cell", "Item", "DatasetIndex", "load_index"]

_log = logging.getLogger(__name__)

#: The five SIPaKMeD classes, in label order (label = position).
CLASSES: tuple[str, ...] = ("Dyskeratotic", "Koilocytotic", "Metaplastic", "Parabasal",
                            "Superficial-Intermediate")
#: File in a dataset root that marks it as generated (see :mod:`cervixlib.data.synth`).
SYNTHETIC_MARKER = "SYNTHETIC.json"

Subset = Literal["multi", "isolated"]
_SUBSETS = ("multi", "isolated")
_MULTI_DAT = re.compile(r"^(?P<image>.+?)_(?P<part>cyt|nuc)(?P<cell>\d+)\.dat$", re.IGNORECASE)
_CROP_DAT = re.compile(r"^(?P<image>.+)_(?P<part>cyt|nuc)\.dat$", re.IGNORECASE)
_CROP_STEM = re.compile(r"^(?P<source>\d+)_(?P<cell>\d+)$")


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
    """

    path: Path
    label: int
    group: str
    cells: tuple[Cell, ...]
    size: tuple[int, int]


def _norm(name: str) -> str:
    """Class-name key: lower case, letters and digits only ("Superficial_intermediate")."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


_CLASS_KEYS = {_norm(c): c for c in CLASSES}


def _natural_key(name: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name))


def _image_number(stem: str) -> str:
    """``"007"`` -> ``"7"`` so that ``007.bmp`` and crop ``007_01.bmp`` share a group."""
    return str(int(stem)) if stem.isdigit() else stem


@dataclass
class DatasetIndex:
    """Everything found under a dataset root.

    Attributes:
        root: the folder the classes were found in.
        layout: ``"sipakmed"``, ``"sipakmed-nested"`` (``im_X/im_X``) or ``"class-folders"``.
        synthetic: True when the root holds a ``SYNTHETIC.json`` marker.
        classes: class names; an item's ``label`` indexes this tuple.
        multi: multi-cell images (empty for ``class-folders``).
        isolated: isolated-cell images (for ``class-folders``: every image).
        skipped: ``(path, problem)`` of each bad file left out with ``skip_bad=True``.
        warnings: ``(path, problem)`` of oddities that did not stop indexing (a boundary
            file without an image, a missing ``CROPPED`` folder, polygons outside the image).
        synthetic_info: the marker's content when ``synthetic``.
    """

    root: Path
    layout: str
    synthetic: bool
    classes: tuple[str, ...]
    multi: list[Item]
    isolated: list[Item]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[tuple[Path, str]] = field(default_factory=list)
    synthetic_info: dict[str, Any] | None = None

    def subset(self, name: Subset) -> list[Item]:
        """The items of one subset; DataError when it lacks a class (nothing to train on)."""
        if name not in _SUBSETS:
            raise ValueError(f"subset must be 'multi' or 'isolated', got {name!r}")
        items = self.multi if name == "multi" else self.isolated
        if not items:
            hint = " (a class-per-folder set puts every image in 'isolated')" \
                if self.layout == "class-folders" else ""
            raise DataError(self.root, f"no {name} images in this dataset{hint}")
        missing = [c for c, n in self.class_counts(name).items() if n == 0]
        if missing:
            raise DataError(self.root, f"subset {name!r} has no images of class "
                                       f"{', '.join(missing)}; every class needs at least one")
        return list(items)

    def class_counts(self, name: Subset) -> dict[str, int]:
        """Images per class in one subset."""
        items = self.multi if name == "multi" else self.isolated
        counts = np.bincount([it.label for it in items], minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}

    def fingerprint(self) -> str:
        """Stable 16-hex-digit hash of the layout, classes and, per item, its path
        relative to the root, byte size, pixel size, label and number of cells.

        Cheap (one ``stat`` per file, no pixel reads) and independent of where the root
        lives, so a run can record which data it saw and notice when that changes.
        """
        digest = hashlib.sha256(f"{self.layout}\n{'|'.join(self.classes)}\n".encode())
        for subset_name, items in (("multi", self.multi), ("isolated", self.isolated)):
            for it in items:
                try:
                    rel = it.path.relative_to(self.root).as_posix()
                except ValueError:
                    rel = it.path.as_posix()
                try:
                    nbytes = it.path.stat().st_size
                except OSError:
                    nbytes = -1
                line = f"{subset_name}\t{rel}\t{nbytes}\t{it.size[0]}x{it.size[1]}\t{it.label}\t{len(it.cells)}\n"
                digest.update(line.encode())
        return digest.hexdigest()[:16]

    def describe(self) -> str:
        """The ``cervix info`` report: images per class and subset, layout, synthetic or
        not, fingerprint, and every skipped file and warning."""
        lines = [f"Dataset      {self.root}", f"Layout       {self.layout}"]
        if self.synthetic:
            info = self.synthetic_info or {}
            size = info.get("image_size")
            size_text = f", image size {size[0]}x{size[1]}" if isinstance(size, list) and len(size) == 2 else ""
            lines.append(f"Synthetic    YES - generated by {info.get('generator', 'an unknown generator')} "
                         f"v{info.get('version', '?')}, seed {info.get('seed', '?')}, "
                         f"scale {info.get('scale', '?')}{size_text}; not real SIPaKMeD images")
        else:
            lines.append("Synthetic    no")
        lines.append(f"Fingerprint  {self.fingerprint()}")
        multi, iso = self.class_counts("multi"), self.class_counts("isolated")
        with_cells = np.bincount([it.label for it in self.isolated if it.cells], minlength=len(self.classes))
        width = max(12, *(len(c) for c in self.classes))
        lines += ["", f"{'class':<{width}}  {'multi-cell':>10}  {'isolated':>8}  {'with masks':>10}"]
        for k, c in enumerate(self.classes):
            lines.append(f"{c:<{width}}  {multi[c]:>10}  {iso[c]:>8}  {int(with_cells[k]):>10}")
        lines.append(f"{'total':<{width}}  {sum(multi.values()):>10}  {sum(iso.values()):>8}  "
                     f"{int(with_cells.sum()):>10}")
        lines.append("")
        if not self.skipped and not self.warnings:
            lines.append("Problems     none")
        if self.skipped:
            lines.append(f"Skipped      {len(self.skipped)} bad file(s):")
            lines += [f"  {p}: {why}" for p, why in self.skipped]
        if self.warnings:
            lines.append(f"Warnings     {len(self.warnings)}:")
            lines += [f"  {p}: {why}" for p, why in self.warnings]
        return "\n".join(lines)


class _Reader:
    """Reads files for the index, raising or (with ``skip_bad``) recording problems."""

    def __init__(self, skip_bad: bool, verify: bool) -> None:
        self.skip_bad = skip_bad
        self.verify = verify
        self.skipped: list[tuple[Path, str]] = []
        self.warnings: list[tuple[Path, str]] = []

    def _fail(self, exc: DataError) -> None:
        if not self.skip_bad:
            raise exc
        self.skipped.append((exc.path, exc.problem))

    def image(self, path: Path) -> ImageInfo | None:
        try:
            info = probe_image(path)
            if self.verify:
                read_image(path)
            return info
        except DataError as exc:
            self._fail(exc)
            return None

    def dat(self, path: Path) -> np.ndarray | None:
        try:
            return read_dat(path)
        except DataError as exc:
            self._fail(exc)
            return None

    def warn(self, path: Path, problem: str) -> None:
        self.warnings.append((path, problem))


def _scan(folder: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """Images, ``.dat`` files and sub-folders directly in ``folder``, naturally sorted."""
    images, dats, dirs = [], [], []
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        raise DataError(folder, f"cannot list folder ({exc.strerror or exc})") from None
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        if entry.is_dir():
            dirs.append(path)
        elif path.suffix.lower() in IMAGE_EXTENSIONS:
            images.append(path)
        elif path.suffix.lower() == ".dat":
            dats.append(path)
    key = lambda p: _natural_key(p.name)  # noqa: E731
    return sorted(images, key=key), sorted(dats, key=key), sorted(dirs, key=key)


def _outside(points: np.ndarray, size: tuple[int, int]) -> bool:
    tol = 2.0 + 0.01 * max(size)
    lo, hi = points.min(axis=0), points.max(axis=0)
    return bool(lo[0] < -tol or lo[1] < -tol or hi[0] > size[0] - 1 + tol or hi[1] > size[1] - 1 + tol)


def _make_cells(reader: _Reader, parts: dict[str, dict[str, Path]], image: Path,
                size: tuple[int, int]) -> tuple[Cell, ...]:
    """Cells from ``{cell id: {"cyt": path, "nuc": path}}`` (sorted by cell id)."""
    cells = []
    for cell_id in sorted(parts, key=_natural_key):
        files = parts[cell_id]
        cyt = reader.dat(files["cyt"]) if "cyt" in files else None
        nuc = reader.dat(files["nuc"]) if "nuc" in files else None
        if cyt is None:
            if "cyt" not in files and nuc is not None:
                reader.warn(files["nuc"], "nucleus boundary without a cytoplasm boundary; "
                                          "this cell is left out of the masks")
            continue  # a bad cytoplasm file is already in `skipped`
        for poly, part in ((cyt, "cyt"), (nuc, "nuc")):
            if poly is not None and _outside(poly, size):
                reader.warn(files[part], f"boundary reaches outside its image {image.name} "
                                         f"({size[0]}x{size[1]})")
        for arr in (cyt, nuc):
            if arr is not None:
                arr.flags.writeable = False
        cells.append(Cell(cytoplasm=cyt, nucleus=nuc))
    return tuple(cells)


def _index_sipakmed_class(reader: _Reader, class_dir: Path, label: int, name: str
                          ) -> tuple[list[Item], list[Item]]:
    images, dats, dirs = _scan(class_dir)
    annotations: dict[str, dict[str, dict[str, Path]]] = {}
    for dat in dats:
        m = _MULTI_DAT.match(dat.name)
        if m is None:
            reader.warn(dat, "boundary file name not of the form NNN_cytMM.dat / NNN_nucMM.dat; ignored")
            continue
        annotations.setdefault(m["image"], {}).setdefault(m["cell"], {})[m["part"].lower()] = dat
    multi = []
    stems = {p.stem for p in images}
    for path in images:
        info = reader.image(path)
        if info is None:
            continue
        cells = _make_cells(reader, annotations.get(path.stem, {}), path, info.size)
        multi.append(Item(path, label, f"{name}/{_image_number(path.stem)}", cells, info.size))
    for stem, parts in annotations.items():
        if stem not in stems:
            first = next(iter(next(iter(parts.values())).values()))
            reader.warn(first, f"boundary files for image {stem!r}, which is not in the folder")

    cropped = [d for d in dirs if d.name.lower() == "cropped"]
    isolated: list[Item] = []
    crop_images: list[Path] = []
    if not cropped:
        if images:
            reader.warn(class_dir, "no CROPPED folder: this class has no isolated cells")
    else:
        crop_images, crop_dats, _ = _scan(cropped[0])
        crop_parts: dict[str, dict[str, Path]] = {}
        for dat in crop_dats:
            m = _CROP_DAT.match(dat.name)
            if m is None:
                reader.warn(dat, "boundary file name not of the form NNN_MM_cyt.dat / NNN_MM_nuc.dat; ignored")
                continue
            crop_parts.setdefault(m["image"], {})[m["part"].lower()] = dat
        crop_stems = {p.stem for p in crop_images}
        for path in crop_images:
            info = reader.image(path)
            if info is None:
                continue
            m = _CROP_STEM.match(path.stem)
            source = _image_number(m["source"]) if m else path.stem
            parts = {"1": crop_parts[path.stem]} if path.stem in crop_parts else {}
            cells = _make_cells(reader, parts, path, info.size)
            isolated.append(Item(path, label, f"{name}/{source}", cells, info.size))
        for stem, parts in crop_parts.items():
            if stem not in crop_stems:
                reader.warn(next(iter(parts.values())), f"boundary file for crop {stem!r}, which is not in the folder")
        if not crop_images and images:
            reader.warn(cropped[0], "CROPPED folder holds no images: this class has no isolated cells")
    if not images and not crop_images:
        raise DataError(class_dir, f"empty class folder: no images of class {name} "
                                   f"(expected NNN.bmp and CROPPED/NNN_MM.bmp)")
    return multi, isolated


def _sipakmed_classes(base: Path) -> dict[str, Path]:
    """``{class name: folder}`` for the ``im_<Class>`` folders directly in ``base``."""
    found = {}
    try:
        children = [p for p in base.iterdir() if p.is_dir()]
    except OSError:
        return {}
    for child in children:
        if child.name.lower().startswith("im_") and _norm(child.name[3:]) in _CLASS_KEYS:
            found[_CLASS_KEYS[_norm(child.name[3:])]] = child
    return found


def _find_sipakmed(root: Path) -> tuple[Path, dict[str, Path]] | None:
    found = _sipakmed_classes(root)
    if found:
        return root, found
    candidates = []
    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        sub = _sipakmed_classes(child)
        if sub:
            candidates.append((len(sub), child, sub))
    if not candidates:
        return None
    candidates.sort(key=lambda t: -t[0])
    if len(candidates) > 1 and candidates[0][0] == candidates[1][0]:
        raise DataError(root, f"several SIPaKMeD roots inside ({candidates[0][1].name}, "
                              f"{candidates[1][1].name}); point to one of them")
    return candidates[0][1], candidates[0][2]


def _nested(class_dir: Path) -> Path | None:
    """``im_X/im_X`` (the twice-nested redistribution), matched case-insensitively."""
    for child in class_dir.iterdir():
        if child.is_dir() and child.name.lower() == class_dir.name.lower():
            return child
    return None


def _index_sipakmed(reader: _Reader, base: Path, found: dict[str, Path]
                    ) -> tuple[str, list[Item], list[Item]]:
    missing = [c for c in CLASSES if c not in found]
    if missing:
        raise DataError(base / f"im_{missing[0]}",
                        f"missing class folder for {', '.join(missing)}; a SIPaKMeD root holds "
                        f"all five: {', '.join('im_' + c for c in CLASSES)}")
    multi: list[Item] = []
    isolated: list[Item] = []
    any_nested = False
    for label, name in enumerate(CLASSES):
        class_dir = found[name]
        inner = _nested(class_dir)
        if inner is not None:
            class_dir, any_nested = inner, True
        m, i = _index_sipakmed_class(reader, class_dir, label, name)
        multi += m
        isolated += i
    return ("sipakmed-nested" if any_nested else "sipakmed"), multi, isolated


def _index_class_folders(reader: _Reader, root: Path) -> tuple[tuple[str, ...], list[Item]]:
    _, _, dirs = _scan(root)
    folders = []
    for d in dirs:
        images, _, subdirs = _scan(d)
        folders.append((d, images, subdirs))
    if not any(images for _, images, _ in folders):
        raise DataError(root, "no SIPaKMeD class folders (im_Dyskeratotic, ...) and no class-per-folder "
                              "images (<class>/*.bmp|png|jpg|jpeg|tif|tiff) found")
    for d, images, subdirs in folders:
        if not images:
            raise DataError(d, "empty class folder: no images (.bmp, .png, .jpg, .jpeg, .tif, .tiff) "
                               "directly inside" + (" (sub-folders are not searched)" if subdirs else ""))
    names = {}
    for d, _, _ in folders:
        key = _norm(d.name[3:] if d.name.lower().startswith("im_") else d.name)
        name = _CLASS_KEYS.get(key, d.name)
        if name in names:
            raise DataError(d, f"two folders name class {name!r}: {names[name].name} and {d.name}")
        names[name] = d
    classes = tuple(sorted(names))
    items = []
    by_dir = {d: images for d, images, _ in folders}
    for label, name in enumerate(classes):
        for path in by_dir[names[name]]:
            info = reader.image(path)
            if info is not None:
                items.append(Item(path, label, f"{name}/{path.stem}", (), info.size))
    return classes, items


def _read_marker(reader: _Reader, folders: Iterable[Path]) -> tuple[bool, dict[str, Any] | None]:
    for folder in folders:
        marker = folder / SYNTHETIC_MARKER
        if marker.is_file():
            try:
                info = json.loads(marker.read_text(encoding="utf-8"))
                if not isinstance(info, dict):
                    raise ValueError("not a JSON object")
                return True, info
            except (ValueError, OSError) as exc:
                reader.warn(marker, f"synthetic marker is unreadable ({exc}); treating the set as synthetic")
                return True, None
    return False, None


def load_index(root: str | os.PathLike[str], *, skip_bad: bool = False, verify: bool = False) -> DatasetIndex:
    """Index a SIPaKMeD root (either nesting, or one level above) or a class-per-folder set.

    Args:
        root: the dataset folder.
        skip_bad: leave bad files out and list them in ``index.skipped`` (and the log)
            instead of raising at the first. Missing or empty class folders always raise.
        verify: decode every image fully now (slow) instead of only checking headers,
            so that damage visible only to a decoder is found at indexing time too.

    Raises:
        DataError: one line naming the file and the problem.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(root, "no such folder")
    if not root.is_dir():
        raise DataError(root, "not a folder; give the dataset's root folder")
    reader = _Reader(skip_bad=skip_bad, verify=verify)
    found = _find_sipakmed(root)
    if found is not None:
        base, class_dirs = found
        layout, multi, isolated = _index_sipakmed(reader, base, class_dirs)
        classes = CLASSES
    else:
        base = root
        layout, multi = "class-folders", []
        classes, isolated = _index_class_folders(reader, root)
    synthetic, info = _read_marker(reader, dict.fromkeys([base, root]))
    index = DatasetIndex(root=base, layout=layout, synthetic=synthetic, classes=classes, multi=multi,
                         isolated=isolated, skipped=reader.skipped, warnings=reader.warnings,
                         synthetic_info=info)
    if index.skipped:
        _log.warning("skipped %d bad file(s) under %s:\n%s", len(index.skipped), base,
                     "\n".join(f"  {p}: {why}" for p, why in index.skipped))
    for path, why in index.warnings:
        _log.info("%s: %s", path, why)
    return index
