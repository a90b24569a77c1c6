"""Walking a dataset tree for :func:`cervixlib.data.index.load_index`: find the layout,
read every image header and ``.dat`` file, and collect every problem on the way.

Nothing here stops at the first bad file: a :class:`Reader` records each one (a bad
image or boundary file, which ``skip_bad`` may leave out) or each structural problem
(an empty or unreadable class folder, which no option can skip), so that
``load_index`` reports them all at once. Oddities that do not stop indexing (a
boundary file without its image, an unknown folder beside the class folders, a
symbolic link that loops back to a folder above it) become warnings.

A class-per-folder set's mask files (``<class>/masks/<stem>.png``) are bad files like
images: one that cannot be read, has another aspect ratio than its image, or has no
image is recorded in ``bad``; ``skip_bad`` then leaves the mask off, not the image.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from cervixlib.data.errors import DataError
from cervixlib.data.io import IMAGE_EXTENSIONS, ImageInfo, os_problem, probe_image, read_dat, read_image
from cervixlib.data.items import CLASSES, Cell, Item
from cervixlib.layout import CLASS_KEYS, class_key, natural_key, sipakmed_roots

__all__: list[str] = []  # private to cervixlib.data.index

_MULTI_DAT = re.compile(r"^(?P<image>.+?)_(?P<part>cyt|nuc)(?P<cell>\d+)\.dat$", re.IGNORECASE)
_CROP_DAT = re.compile(r"^(?P<image>.+)_(?P<part>cyt|nuc)\.dat$", re.IGNORECASE)
_CROP_STEM = re.compile(r"^(?P<source>\d+)_(?P<cell>\d+)$")


def _image_number(stem: str) -> str:
    """``"007"`` -> ``"7"`` so that ``007.bmp`` and crop ``007_01.bmp`` share a group."""
    return str(int(stem)) if stem.isdigit() else stem


class Reader:
    """Reads files for the index and records every problem instead of raising.

    ``bad``: bad files (``skip_bad`` leaves them out); ``fatal``: structural problems
    that make the set unusable whatever the options; ``warnings``: oddities only.
    """

    def __init__(self, verify: bool) -> None:
        self.verify = verify
        self.bad: list[tuple[Path, str]] = []
        self.fatal: list[tuple[Path, str]] = []
        self.warnings: list[tuple[Path, str]] = []

    def image(self, path: Path) -> ImageInfo | None:
        try:
            info = probe_image(path)
            if self.verify:
                read_image(path)
            return info
        except DataError as exc:
            self.bad.append((exc.path, exc.problem))
            return None

    def dat(self, path: Path) -> np.ndarray | None:
        try:
            return read_dat(path)
        except DataError as exc:
            self.bad.append((exc.path, exc.problem))
            return None

    def fail(self, path: Path, problem: str) -> None:
        self.fatal.append((path, problem))

    def warn(self, path: Path, problem: str) -> None:
        self.warnings.append((path, problem))

    def scan(self, folder: Path) -> tuple[list[Path], list[Path], list[Path]]:
        """:func:`_scan`, recording an unreadable folder as a structural problem."""
        try:
            return _scan(folder, self.warn)
        except DataError as exc:
            self.fail(exc.path, exc.problem)
            return [], [], []


def _loops_back(path: Path, folder: Path) -> bool:
    """True for a symbolic link in ``folder`` that points at ``folder`` or a folder above it."""
    if not path.is_symlink():
        return False
    try:
        target, here = path.resolve(), folder.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a loop on Python < 3.13
        return True
    return target == here or target in here.parents


def _scan(folder: Path, warn=None) -> tuple[list[Path], list[Path], list[Path]]:
    """Images, ``.dat`` files and sub-folders directly in ``folder``, naturally sorted.

    Hidden entries are ignored; a folder link that loops back to ``folder`` or above is
    left out (and passed to ``warn(path, problem)`` when given), so no walk can cycle.
    """
    images, dats, dirs = [], [], []
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        raise DataError(folder, f"cannot list folder: {os_problem(folder, exc).problem}") from None
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        try:
            is_dir = entry.is_dir()
        except OSError:  # a link loop: treated as a file, whose reading then says so
            is_dir = False
        if is_dir:
            if _loops_back(path, folder):
                if warn is not None:
                    warn(path, "symbolic link to this folder or one above it (a loop); ignored")
                continue
            dirs.append(path)
        elif path.suffix.lower() in IMAGE_EXTENSIONS:
            images.append(path)
        elif path.suffix.lower() == ".dat":
            dats.append(path)
    key = lambda p: natural_key(p.name)  # noqa: E731
    return sorted(images, key=key), sorted(dats, key=key), sorted(dirs, key=key)


def _outside(points: np.ndarray, size: tuple[int, int]) -> bool:
    tol = 2.0 + 0.01 * max(size)
    lo, hi = points.min(axis=0), points.max(axis=0)
    return bool(lo[0] < -tol or lo[1] < -tol or hi[0] > size[0] - 1 + tol or hi[1] > size[1] - 1 + tol)


def _make_cells(reader: Reader, parts: dict[str, dict[str, Path]], image: Path,
                size: tuple[int, int]) -> tuple[Cell, ...]:
    """Cells from ``{cell id: {"cyt": path, "nuc": path}}`` (sorted by cell id)."""
    cells = []
    for cell_id in sorted(parts, key=natural_key):
        files = parts[cell_id]
        cyt = reader.dat(files["cyt"]) if "cyt" in files else None
        nuc = reader.dat(files["nuc"]) if "nuc" in files else None
        if cyt is None:
            if "cyt" not in files and nuc is not None:
                reader.warn(files["nuc"], "nucleus boundary without a cytoplasm boundary; "
                                          "this cell is left out of the masks")
            continue  # a bad cytoplasm file is already in `bad`
        for poly, part in ((cyt, "cyt"), (nuc, "nuc")):
            if poly is not None and _outside(poly, size):
                reader.warn(files[part], f"boundary reaches outside its image {image.name} "
                                         f"({size[0]}x{size[1]})")
        for arr in (cyt, nuc):
            if arr is not None:
                arr.flags.writeable = False
        cells.append(Cell(cytoplasm=cyt, nucleus=nuc))
    return tuple(cells)


def _index_crops(reader: Reader, cropped: Path, label: int, name: str) -> tuple[list[Item], int]:
    """The isolated cells in a ``CROPPED`` folder, and how many image files it holds."""
    crop_images, crop_dats, crop_dirs = reader.scan(cropped)
    for d in crop_dirs:
        reader.warn(d, "folder inside CROPPED; ignored (its images are not indexed)")
    crop_parts: dict[str, dict[str, Path]] = {}
    for dat in crop_dats:
        m = _CROP_DAT.match(dat.name)
        if m is None:
            reader.warn(dat, "boundary file name not of the form NNN_MM_cyt.dat / NNN_MM_nuc.dat; ignored")
            continue
        crop_parts.setdefault(m["image"], {})[m["part"].lower()] = dat
    isolated = []
    for path in crop_images:
        info = reader.image(path)
        if info is None:
            continue
        m = _CROP_STEM.match(path.stem)
        source = _image_number(m["source"]) if m else path.stem
        parts = {"1": crop_parts[path.stem]} if path.stem in crop_parts else {}
        cells = _make_cells(reader, parts, path, info.size)
        isolated.append(Item(path, label, f"{name}/{source}", cells, info.size))
    crop_stems = {p.stem for p in crop_images}
    for stem, parts in crop_parts.items():
        if stem not in crop_stems:
            reader.warn(next(iter(parts.values())), f"boundary file for crop {stem!r}, which is not in the folder")
    return isolated, len(crop_images)


def index_sipakmed_class(reader: Reader, class_dir: Path, label: int, name: str
                         ) -> tuple[list[Item], list[Item]]:
    """The multi-cell images and isolated cells of one ``im_<Class>`` folder."""
    images, dats, dirs = reader.scan(class_dir)
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
    for d in dirs:
        if d.name.lower() != "cropped":
            reader.warn(d, "unknown folder in a class folder (only CROPPED is read); ignored")
    isolated: list[Item] = []
    n_crop_files = 0
    if not cropped:
        if images:
            reader.warn(class_dir, "no CROPPED folder: this class has no isolated cells")
    else:
        isolated, n_crop_files = _index_crops(reader, cropped[0], label, name)
        if not n_crop_files and images:
            reader.warn(cropped[0], "CROPPED folder holds no images: this class has no isolated cells")
    if not images and not n_crop_files and class_dir not in {p for p, _ in reader.fatal}:
        reader.fail(class_dir, f"empty class folder: no images of class {name} "
                               f"(expected NNN.bmp and CROPPED/NNN_MM.bmp)")
    return multi, isolated


def find_sipakmed(root: Path) -> tuple[Path, dict[str, Path]] | None:
    """The SIPaKMeD base folder (``root`` or one child) and its class folders, or None
    (:func:`cervixlib.layout.sipakmed_roots`).

    Reads folder names only. Raises DataError when two children both look like roots.
    """
    candidates = sipakmed_roots(root)
    if not candidates:
        return None
    if len(candidates) > 1 and len(candidates[0][1]) == len(candidates[1][1]):
        raise DataError(root, f"several SIPaKMeD roots inside ({candidates[0][0].name}, "
                              f"{candidates[1][0].name}); point to one of them")
    return candidates[0]


def _nested(class_dir: Path) -> Path | None:
    """``im_X/im_X`` (the twice-nested redistribution), matched case-insensitively."""
    try:
        children = list(class_dir.iterdir())
    except OSError:
        return None  # reported when the folder itself is scanned
    for child in children:
        if child.is_dir() and child.name.lower() == class_dir.name.lower():
            return child
    return None


def index_sipakmed(reader: Reader, base: Path, found: dict[str, Path]) -> tuple[str, list[Item], list[Item]]:
    """Layout name, multi-cell images and isolated cells of a SIPaKMeD base folder."""
    missing = [c for c in CLASSES if c not in found]
    if missing:
        reader.fail(base / f"im_{missing[0]}",
                    f"missing class folder for {', '.join(missing)}; a SIPaKMeD root holds "
                    f"all five: {', '.join('im_' + c for c in CLASSES)} (a mix of im_<Class> and other "
                    f"folders is neither layout; {LAYOUTS_TEXT})")
    known = set(found.values())
    _, _, dirs = reader.scan(base)
    for d in dirs:
        if d in known:
            continue
        key = class_key(d.name[3:])
        if d.name.lower().startswith("im_") and key in CLASS_KEYS:
            reader.warn(d, f"a second folder of class {CLASS_KEYS[key]} besides "
                           f"{found[CLASS_KEYS[key]].name}; ignored")
        else:
            reader.warn(d, "not a SIPaKMeD class folder (im_Dyskeratotic, ...); ignored")
    multi: list[Item] = []
    isolated: list[Item] = []
    any_nested = False
    for label, name in enumerate(CLASSES):
        if name not in found:
            continue
        class_dir = found[name]
        inner = _nested(class_dir)
        if inner is not None:
            class_dir, any_nested = inner, True
        m, i = index_sipakmed_class(reader, class_dir, label, name)
        multi += m
        isolated += i
    return ("sipakmed-nested" if any_nested else "sipakmed"), multi, isolated


#: The mask folder of a class-per-folder set's class folder (matched case-insensitively),
#: and the stem suffix of a nucleus mask in it.
MASKS_FOLDER = "masks"
NUCLEUS_SUFFIX = "_nucleus"


def _aspect_differs(image: tuple[int, int], mask: tuple[int, int]) -> bool:
    """True when two sizes differ in shape by more than rounding to whole pixels allows
    (``w*H - h*W`` can be off by half the larger perimeter when either was rounded)."""
    (W, H), (w, h) = image, mask
    return abs(w * H - h * W) > 0.5 * max(W + H, w + h)


def _class_masks(reader: Reader, folder: Path, subdirs: list[Path], images: list[Path]
                 ) -> tuple[dict[str, Path], dict[str, Path]]:
    """``({image stem: cell mask}, {image stem: nucleus mask})`` from ``folder/masks/``.

    ``<stem>.png`` is the cell mask of the image ``<stem>.*``; failing that,
    ``<stem>_nucleus.png`` is its nucleus mask. Any other PNG there is a mask without
    an image (a bad file); other files and folders in it are warned about and ignored.
    """
    cell: dict[str, Path] = {}
    nucleus: dict[str, Path] = {}
    found = [d for d in subdirs if d.name.lower() == MASKS_FOLDER]
    if not found:
        return cell, nucleus
    masks, _, inner = reader.scan(found[0])
    for d in inner:
        reader.warn(d, "folder inside a masks folder; ignored (masks are <class>/masks/<stem>.png)")
    stems = {p.stem for p in images}
    for path in masks:
        if path.suffix.lower() != ".png":
            reader.warn(path, "mask not saved as PNG; ignored (masks are <class>/masks/<stem>.png)")
            continue
        stem = path.stem
        if stem in stems:
            target, key = cell, stem
        elif stem[-len(NUCLEUS_SUFFIX):].lower() == NUCLEUS_SUFFIX and stem[:-len(NUCLEUS_SUFFIX)] in stems:
            target, key = nucleus, stem[:-len(NUCLEUS_SUFFIX)]
        else:
            reader.bad.append((path, f"mask without an image: no {stem}.<ext> in {folder.name}/ "
                                     f"(masks are <class>/masks/<stem>.png, <stem>{NUCLEUS_SUFFIX}.png)"))
            continue
        if key in target:
            reader.warn(path, f"a second mask for image {key!r} besides {target[key].name}; ignored")
            continue
        target[key] = path
    for key, path in nucleus.items():
        if key not in cell:
            reader.bad.append((path, f"nucleus mask without the cell mask {key}.png beside it"))
    return cell, {k: p for k, p in nucleus.items() if k in cell}


def _mask(reader: Reader, mask: Path | None, image: Path, size: tuple[int, int] | None) -> Path | None:
    """``mask`` if it reads and has the shape of its image (``size``, None when the image
    itself is bad), else None with the problem recorded."""
    if mask is None:
        return None
    info = reader.image(mask)
    if info is None or size is None:
        return None
    if _aspect_differs(size, info.size):
        reader.bad.append((mask, f"mask is {info.size[0]}x{info.size[1]} but its image {image.name} is "
                                 f"{size[0]}x{size[1]}: another aspect ratio (a mask may be any size of "
                                 f"its image's shape)"))
        return None
    return mask


#: The layouts the data layer reads, for a message about a tree it cannot read.
LAYOUTS_TEXT = ("supported layouts: SIPaKMeD (ROOT/im_<Class>/, once or twice nested) or one folder per class "
                "with its images directly inside (ROOT/<class>/<image>)")


def index_class_folders(reader: Reader, root: Path) -> tuple[tuple[str, ...], list[Item]]:
    """Class names and images of a class-per-folder set (``ROOT/<class>/*.png``, ...),
    with their mask files (``ROOT/<class>/masks/<stem>.png``) where present."""
    _, _, dirs = _scan(root, reader.warn)
    for d in dirs:
        if d.name.lower() == MASKS_FOLDER:
            reader.fail(d, "a masks folder beside the class folders: masks go inside each class folder "
                           "(<class>/masks/<stem>.png)")
    dirs = [d for d in dirs if d.name.lower() != MASKS_FOLDER]
    folders = [(d, *reader.scan(d)) for d in dirs]
    if not any(images for _, images, _, _ in folders) and not reader.fatal:
        raise DataError(root, "no SIPaKMeD class folders (im_Dyskeratotic, ...) and no class-per-folder "
                              "images (<class>/*.bmp|png|jpg|jpeg|tif|tiff) found")
    names: dict[str, Path] = {}
    for d, images, _, subdirs in folders:
        if not images:
            if d not in {p for p, _ in reader.fatal}:
                reader.fail(d, "empty class folder: no images (.bmp, .png, .jpg, .jpeg, .tif, .tiff) "
                               "directly inside" + (f" (sub-folders are not searched; {LAYOUTS_TEXT})"
                                                    if subdirs else ""))
            continue
        key = class_key(d.name[3:] if d.name.lower().startswith("im_") else d.name)
        name = CLASS_KEYS.get(key, d.name)
        if name in names:
            reader.fail(d, f"two folders name class {name!r}: {names[name].name} and {d.name}")
            continue
        names[name] = d
    classes = tuple(sorted(names))
    items = []
    by_dir = {d: (images, subdirs) for d, images, _, subdirs in folders}
    for label, name in enumerate(classes):
        images, subdirs = by_dir[names[name]]
        cell, nucleus = _class_masks(reader, names[name], subdirs, images)
        for path in images:
            info = reader.image(path)
            size = info.size if info is not None else None
            mask = _mask(reader, cell.get(path.stem), path, size)
            nuc = _mask(reader, nucleus.get(path.stem), path, size)
            if info is not None:
                items.append(Item(path, label, f"{name}/{path.stem}", (), info.size,
                                  mask_path=mask, nucleus_mask_path=nuc if mask is not None else None))
    return classes, items
