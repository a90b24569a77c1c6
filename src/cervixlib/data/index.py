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
be multi-cell fields or single cells: they form a third subset, ``"images"``, without
boundaries, and ``multi`` and ``isolated`` stay empty. Their cells may come as mask
files instead (:attr:`Item.mask_path`, :attr:`Item.nucleus_mask_path`)::

    ROOT/<class>/<stem>.<ext>               an image (any of the extensions above)
    ROOT/<class>/masks/<stem>.png           its cell mask: non-zero = inside a cell
    ROOT/<class>/masks/<stem>_nucleus.png   optionally, its nucleus mask

A mask may be single-channel or RGB and of any size of its image's aspect ratio (it
is resized like the image, nearest neighbour); its connected components are the cells
(:func:`cervixlib.data.cell_components`). An image without a mask file has no mask,
so localisation leaves it out; the set is "with masks" when every image has one. A
mask that cannot be read, has another aspect ratio than its image, or has no image is
a bad file like a bad image; ``skip_bad`` leaves that mask off (the image stays).
Each layout has a default subset (:func:`default_subset`, from :mod:`cervixlib.layout`,
where the layout rules live): ``"multi"`` for SIPaKMeD, ``"images"`` for a
class-per-folder set, so only SIPaKMeD needs a subset named.

Indexing reads image headers and the small ``.dat`` files only (no pixel decoding of
intact files), so a full-size set indexes in seconds; see :mod:`cervixlib.data.io`
for which damage is found here and which only when an image is read. Every bad file
is found in one pass and reported together (:class:`~cervixlib.data.errors.BadFilesError`);
the walk itself lives in :mod:`cervixlib.data._walk`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cervixlib.data import _walk
from cervixlib.data.errors import BadFilesError, DataError, display_path
from cervixlib.data.items import CLASSES, SUBSETS, Cell, Item, Subset
from cervixlib.layout import CLASS_FOLDERS, default_subset, layout_subsets

__all__ = ["CLASSES", "SUBSETS", "SYNTHETIC_MARKER", "Cell", "Item", "DatasetIndex", "default_subset",
           "load_index"]

_log = logging.getLogger(__name__)

#: File in a dataset root that marks it as generated (see :mod:`cervixlib.data.synth`).
SYNTHETIC_MARKER = "SYNTHETIC.json"

@dataclass
class DatasetIndex:
    """Everything found under a dataset root.

    Attributes:
        root: the folder the classes were found in.
        layout: ``"sipakmed"``, ``"sipakmed-nested"`` (``im_X/im_X``) or ``"class-folders"``.
        synthetic: True when the root holds a ``SYNTHETIC.json`` marker.
        classes: class names; an item's ``label`` indexes this tuple.
        multi: SIPaKMeD multi-cell images (empty for ``class-folders``).
        isolated: SIPaKMeD isolated cells (empty for ``class-folders``).
        skipped: ``(path, problem)`` of each bad file left out with ``skip_bad=True``;
            ``len(index.skipped)`` is the number a run should record.
        warnings: ``(path, problem)`` of oddities that did not stop indexing (a boundary
            file without an image, a missing ``CROPPED`` folder, polygons outside the
            image, an unknown folder beside the class folders, a looping folder link).
        synthetic_info: the marker's content when ``synthetic``.
        images: the images of a class-per-folder set, not known to be multi-cell fields
            or single cells, with their mask files where present (empty for SIPaKMeD).
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
    images: list[Item] = field(default_factory=list)

    @property
    def subsets(self) -> tuple[str, ...]:
        """The subsets this layout has: ``("multi", "isolated")`` or ``("images",)``."""
        return layout_subsets(self.layout)

    @property
    def default_subset(self) -> Subset:
        """``"multi"`` for SIPaKMeD, ``"images"`` for a class-per-folder set."""
        return self.subsets[0]

    def _items(self, name: str) -> list[Item]:
        if name not in SUBSETS:
            raise ValueError(f"subset must be one of {', '.join(SUBSETS)}, got {name!r}")
        return {"multi": self.multi, "isolated": self.isolated, "images": self.images}[name]

    def subset(self, name: Subset | None = None) -> list[Item]:
        """The items of one subset (None: :attr:`default_subset`).

        Raises DataError for a subset this layout does not have, an empty subset, or one
        that lacks a class (nothing to train on).
        """
        name = self.default_subset if name is None else name
        items = self._items(name)
        if name not in self.subsets:
            if self.layout == CLASS_FOLDERS:
                why = (f"a class-per-folder set has one subset, 'images' (its images are not known to be "
                       f"multi-cell fields or single cells), not {name!r}; leave --subset out or give 'images'")
            else:
                why = ("subset 'images' belongs to class-per-folder sets; a SIPaKMeD tree has 'multi' "
                       "(multi-cell images) and 'isolated' (isolated cells)")
            raise DataError(self.root, why)
        if not items:
            raise DataError(self.root, f"no {name} images in this dataset")
        missing = [c for c, n in self.class_counts(name).items() if n == 0]
        if missing:
            raise DataError(self.root, f"subset {name!r} has no images of class "
                                       f"{', '.join(missing)}; every class needs at least one")
        return list(items)

    def class_counts(self, name: Subset) -> dict[str, int]:
        """Images per class in one subset (zeros for a subset the layout does not have)."""
        counts = np.bincount([it.label for it in self._items(name)], minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}

    def _relative(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()

    def _mask_files(self, item: Item) -> str:
        """``"\t<mask path>:<content hash>"`` per mask file of ``item`` ("" without)."""
        text = ""
        for path in (item.mask_path, item.nucleus_mask_path):
            if path is not None:
                try:
                    content = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
                except OSError:
                    content = "unreadable"
                text += f"\t{self._relative(path)}:{content}"
        return text

    def fingerprint(self) -> str:
        """Stable 16-hex-digit hash of the layout, classes and, per item, its subset, path
        relative to the root, byte size, pixel size, label, number of cells and, where it
        has them, its mask files' paths and contents.

        Cheap (one ``stat`` per image, no pixel reads; mask files, small binary PNGs, are
        read whole so that any edit to one shows) and independent of where the root
        lives, so a run can record which data it saw and notice when that changes.
        Items without mask files hash as before masks were known.
        """
        digest = hashlib.sha256(f"{self.layout}\n{'|'.join(self.classes)}\n".encode())
        for subset_name in SUBSETS:
            for it in self._items(subset_name):
                try:
                    nbytes = it.path.stat().st_size
                except OSError:
                    nbytes = -1
                line = (f"{subset_name}\t{self._relative(it.path)}\t{nbytes}\t{it.size[0]}x{it.size[1]}\t"
                        f"{it.label}\t{len(it.cells)}{self._mask_files(it)}\n")
                digest.update(line.encode("utf-8", "surrogateescape"))  # non-UTF-8 file names
        return digest.hexdigest()[:16]

    def _count_lines(self) -> list[str]:
        """The per-class table of :meth:`describe`: SIPaKMeD's two subsets, or ``images``."""
        width = max(12, *(len(c) for c in self.classes))
        if self.layout == CLASS_FOLDERS:
            counts = self.class_counts("images")
            masked = np.bincount([it.label for it in self.images if it.mask_path is not None],
                                 minlength=len(self.classes))
            lines = [f"{'class':<{width}}  {'images':>8}  {'with masks':>10}"]
            lines += [f"{c:<{width}}  {counts[c]:>8}  {int(masked[k]):>10}" for k, c in enumerate(self.classes)]
            return lines + [f"{'total':<{width}}  {sum(counts.values()):>8}  {int(masked.sum()):>10}"]
        multi, iso = self.class_counts("multi"), self.class_counts("isolated")
        with_cells = np.bincount([it.label for it in self.isolated if it.cells], minlength=len(self.classes))
        lines = [f"{'class':<{width}}  {'multi-cell':>10}  {'isolated':>8}  {'with masks':>10}"]
        for k, c in enumerate(self.classes):
            lines.append(f"{c:<{width}}  {multi[c]:>10}  {iso[c]:>8}  {int(with_cells[k]):>10}")
        lines.append(f"{'total':<{width}}  {sum(multi.values()):>10}  {sum(iso.values()):>8}  "
                     f"{int(with_cells.sum()):>10}")
        return lines

    def describe(self) -> str:
        """The ``cervix info`` report: images per class and subset, how many have cell
        masks (boundaries, or mask files in a class-per-folder set), layout, synthetic or
        not, fingerprint, and every skipped file and warning (one ``path: problem`` a line)."""
        lines = [f"Dataset      {display_path(self.root)}", f"Layout       {self.layout}"]
        if self.synthetic:
            info = self.synthetic_info or {}
            size = info.get("image_size")
            size_text = f", image size {size[0]}x{size[1]}" if isinstance(size, list) and len(size) == 2 else ""
            lines.append(f"Synthetic    YES - generated by {info.get('generator', 'an unknown generator')} "
                         f"v{info.get('version', '?')}, seed {info.get('seed', '?')}, "
                         f"scale {info.get('scale', '?')}{size_text}; not real SIPaKMeD images")
        else:
            lines.append("Synthetic    no")
        subsets = ", ".join(f"{s} (default)" if s == self.default_subset else s for s in self.subsets)
        lines.append(f"Subsets      {subsets}")
        lines.append(f"Fingerprint  {self.fingerprint()}")
        lines += ["", *self._count_lines(), ""]
        if not self.skipped and not self.warnings:
            lines.append("Problems     none")
        if self.skipped:
            lines.append(f"Skipped      {len(self.skipped)} bad file(s):")
            lines += [f"  {display_path(p)}: {why}" for p, why in self.skipped]
        if self.warnings:
            lines.append(f"Warnings     {len(self.warnings)}:")
            lines += [f"  {display_path(p)}: {why}" for p, why in self.warnings]
        return "\n".join(lines)


def _read_marker(reader: _walk.Reader, folders: Iterable[Path]) -> tuple[bool, dict[str, Any] | None]:
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


def _problems_error(root: Path, bad: list[tuple[Path, str]], fatal: list[tuple[Path, str]],
                    skip_bad: bool) -> BadFilesError:
    """One error listing every problem: structural ones first, then the bad files."""
    n = len(bad) + len(fatal)
    if n == 1:
        path, problem = (fatal or bad)[0]
        hint = "" if fatal else "; fix or remove it, or leave it out with --skip-bad (skip_bad=True)"
        return BadFilesError(path, problem + hint, [(path, problem)])
    if fatal:
        head = (f"{n} problem{'s' * (n != 1)}, listed below; an empty, missing or unreadable class "
                "folder cannot be skipped")
    else:
        head = (f"{n} bad file{'s' * (n != 1)}, listed below; fix or remove {'them' if n > 1 else 'it'}, "
                f"or leave {'them' if n > 1 else 'it'} out with --skip-bad (skip_bad=True)")
    return BadFilesError(root, head, [*fatal, *bad])


def load_index(root: str | os.PathLike[str], *, skip_bad: bool = False, verify: bool = False) -> DatasetIndex:
    """Index a SIPaKMeD root (either nesting, or one level above) or a class-per-folder set.

    Every file is looked at before anything is reported, so all problems come at once.

    Args:
        root: the dataset folder.
        skip_bad: leave bad files out and list them in ``index.skipped`` (and the log)
            instead of raising; a bad mask file is left off its image, which stays.
            Missing, empty or unreadable class folders always raise.
        verify: decode every image fully now (slow) instead of only checking headers,
            so that damage visible only to a decoder is found at indexing time too.

    Raises:
        BadFilesError: (a DataError) a line with the number of problems, then one
            ``"<path>: <what is wrong>"`` line per bad file or folder.
        DataError: one line, when the root itself is unusable (missing, not a folder,
            no classes found, several SIPaKMeD roots inside).
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(root, "no such folder")
    if not root.is_dir():
        raise DataError(root, "not a folder; give the dataset's root folder")
    reader = _walk.Reader(verify=verify)
    found = _walk.find_sipakmed(root)
    images: list[Item] = []
    if found is not None:
        base, class_dirs = found
        layout, multi, isolated = _walk.index_sipakmed(reader, base, class_dirs)
        classes = CLASSES
    else:
        base = root
        layout, multi, isolated = CLASS_FOLDERS, [], []
        classes, images = _walk.index_class_folders(reader, root)
    if reader.fatal or (reader.bad and not skip_bad):
        raise _problems_error(base, reader.bad, reader.fatal, skip_bad)
    synthetic, info = _read_marker(reader, dict.fromkeys([base, root]))
    index = DatasetIndex(root=base, layout=layout, synthetic=synthetic, classes=classes, multi=multi,
                         isolated=isolated, images=images, skipped=reader.bad, warnings=reader.warnings,
                         synthetic_info=info)
    if index.skipped:
        # relative to the set's folder: this line reaches the book's pages, which never show a path
        _log.warning("skipped %d bad file(s) in %s:\n%s", len(index.skipped), display_path(base.name),
                     "\n".join(f"  {display_path(_relative(p, base))}: {why}" for p, why in index.skipped))
    for path, why in index.warnings:
        _log.info("%s: %s", display_path(path), why)
    return index


def _relative(path: str | os.PathLike[str], base: Path) -> Path:
    """``path`` below ``base`` when it is, else as given."""
    try:
        return Path(path).relative_to(base)
    except ValueError:
        return Path(path)
