"""The one data path of a run: a :class:`~cervixlib.config.DataConfig` to its root, index,
items and split.

Training (:func:`cervixlib.train.fit`), the notebooks' :class:`cervixlib.study.Study` and
a finished :class:`cervixlib.runs.Run` all call :func:`prepare`, so the images a run was
trained and tested on are worked out in one place: the root (the user's, or the embedded
synthetic set generated at ``synth_scale``/``synth_seed``), the index of every file, the
chosen subset, and its split (ours, group-aware, or the released code's of Wang et al.
2021, see :mod:`cervixlib.data.splits`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from cervixlib.config import DataConfig
from cervixlib.data.errors import DataError
from cervixlib.data.index import DatasetIndex, Item, load_index
from cervixlib.data.splits import Split, fold_split, make_split, released_split, siblings_in_train

__all__ = ["PreparedData", "data_root", "prepare", "split_items"]

Part = Literal["train", "val", "test"]


def data_root(cfg: DataConfig, *, generate: bool = True) -> Path:
    """The dataset root of ``cfg``: ``cfg.root``, or the embedded synthetic set (generated on
    first use; with ``generate=False`` its path, which may not exist yet)."""
    if cfg.root:
        return Path(cfg.root)
    from cervixlib.data.synth import default_data_root

    return default_data_root(scale=cfg.synth_scale, seed=cfg.synth_seed, generate=generate)


def split_items(items: list[Item], cfg: DataConfig, *, index: DatasetIndex | None = None) -> Split:
    """Split ``items`` as ``cfg`` says: :func:`make_split` (``"group"``, one fold),
    :func:`fold_split` (``"group"``, ``folds`` > 1) or :func:`released_split`.

    For folds, the groups of every SIPaKMeD subset of ``index`` are dealt together, so that a
    multi-cell image and its isolated crops are in the same test fold even if one subset
    lacks some source images.
    """
    if cfg.split == "released":
        return released_split(items, fractions=cfg.fractions)
    if cfg.folds > 1:
        groups = None
        if index is not None and cfg.subset in ("multi", "isolated"):
            groups = [(str(it.group), int(it.label)) for it in (*index.multi, *index.isolated)]
        return fold_split(items, folds=cfg.folds, fold=cfg.fold, seed=cfg.split_seed,
                          fractions=cfg.fractions, groups=groups)
    return make_split(items, seed=cfg.split_seed, fractions=cfg.fractions)


@dataclass(frozen=True, eq=False)
class PreparedData:
    """A dataset root and index, with the items of ``config.subset`` and their split.

    ``items`` and ``split`` are worked out on first use, so that a caller that needs only
    the index (a dataset statement) works on data whose subset cannot be split.
    """

    config: DataConfig
    root: Path
    index: DatasetIndex

    @cached_property
    def items(self) -> list[Item]:
        """The images of ``config.subset``, in index order (split indices point into this list)."""
        return self.index.subset(self.config.subset)

    @cached_property
    def split(self) -> Split:
        """The split of :attr:`items`; ``ValueError`` if a part would be empty."""
        classes = sorted({it.label for it in self.items})
        if len(classes) < 2:
            raise DataError(self.root, f"the {self.config.subset} subset has {len(classes)} class"
                                       f"{'es' * (len(classes) != 1)} with images: a classifier needs at least two")
        split = split_items(self.items, self.config, index=self.index)
        empty = [name for name in ("train", "val", "test") if len(getattr(split, name)) == 0]
        if empty:
            counts = {self.index.classes[c]: sum(it.label == c for it in self.items) for c in classes}
            small = min(counts, key=counts.get)
            raise DataError(self.root, f"the {self.config.subset} subset has {len(self.items)} images (the smallest "
                                       f"class, {small}, {counts[small]}): too few for a non-empty {empty[0]} part "
                                       f"with fractions {self.config.fractions} ({self.config.split} split"
                                       f"{self._fold_text}); add images to the small classes, or use fewer folds")
        return split

    @property
    def _fold_text(self) -> str:
        return f", fold {self.config.fold + 1} of {self.config.folds}" if self.config.folds > 1 else ""

    def part(self, name: Part) -> list[Item]:
        """The items of one part of the split, in index order."""
        return [self.items[i] for i in getattr(self.split, name)]

    @property
    def test_with_sibling_in_train(self) -> int:
        """Test items with a crop of the same source image in train (0 for the group split)."""
        return siblings_in_train(self.items, self.split, "test")


def prepare(cfg: DataConfig, *, index: DatasetIndex | None = None) -> PreparedData:
    """Resolve the root of ``cfg`` (generating the embedded synthetic set if needed) and index it.

    Bad files raise one error that lists them all, unless ``cfg.skip_bad`` leaves them
    out; ``len(result.index.skipped)`` then says how many were left out.

    Args:
        cfg: the run's data configuration.
        index: an index of the same root already loaded with the same ``skip_bad``
            (reading every file again is the slow part); ``ValueError`` if its root differs.
    """
    root = data_root(cfg)
    if index is None:
        index = load_index(root, skip_bad=cfg.skip_bad)
    else:  # load_index may find the dataset in a folder below the root it was given
        found = Path(index.root).resolve()
        if root.resolve() not in (found, *found.parents):
            raise ValueError(f"the index given is of {index.root}, the configuration's data is at {root}")
    return PreparedData(config=cfg, root=root, index=index)
