"""Group-aware, stratified train/validation/test splits (70/20/10 by default).

Wang et al. (2021), "Towards Interpretable Attention Networks for Cervical Cancer
Analysis", split SIPaKMeD 70/20/10 and report test accuracy; with about 97 multi-cell
test images one image is about one point of accuracy, so the split must keep each
class's share and must never put two crops of one source image (one ``group``) on both
sides. Repeated splits give the spread needed for confidence intervals.

How (and why not scikit-learn): every SIPaKMeD group lies within one class, so
stratification decomposes by class. Per class, the target counts ``n_c * fraction``
are rounded to integers by controlled rounding: each split gets the floor or the
ceiling of its target (so within one item of it), and which splits get the ceilings
is chosen across classes so that the split totals also stay within about one item of
``N * fraction`` (a small set still gets a non-empty test split). Groups are then
dealt in seeded random order, each to a part it still fits in, chosen with
probability proportional to the room left there (for single-item groups this is a
uniformly random partition with exactly those counts); a group that fits nowhere goes
to the part furthest below its quota, overfilling it by less than one group (so a
part is within one group of its quota; a part can miss it by up to two groups only
if two others were overfilled, which a stress test of 4500 class-part counts never
produced). Dealing
largest groups first would bound the error more tightly but would leave the test
part with only the smallest groups (images with few crops): a biased test set. ``sklearn.model_selection.StratifiedGroupKFold`` makes equal
folds only; 70/20/10 from ten folds merges 7, 2 and 1 of them, the per-fold rounding
errors add up (1.4 items off for SIPaKMeD's multi-cell class counts, breaking the
"within one item" property tested in ``tests/test_splits.py``), and a class with
fewer than ten items cannot be split at all (tiny synthetic sets).

Repeated evaluation: :func:`fold_split` is grouped, stratified k-fold cross-validation.
Per class, the class's sorted group names are shuffled with the seed and dealt round-robin
to the k folds, the dealing position carried on from one class to the next (so each
class's groups per fold, and all groups per fold, differ by at most one). The fold of a
group depends on the group names only (:func:`fold_of_groups`), so given the same names a
multi-cell image and its isolated crops share a test fold, which is what lets the two
subsets be compared image by image. Validation is carved out of the training folds by
:func:`make_split` (group-aware, stratified, keeping the train:validation ratio).

Beside it, :func:`released_split` is the split of the authors' released code (one fixed
shuffle of each class's sorted file names, seed 230): crops of one source image fall
on both sides of it, which :func:`siblings_in_train` counts.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cervixlib.data.index import Item
from cervixlib.facts import PAPER_FRACTIONS

__all__ = ["PAPER_SPLIT_SEED", "RELEASED_SPLIT_SEED", "Split", "fold_of_groups", "fold_split", "make_split",
           "paper_split", "released_split", "repeated_splits", "siblings_in_train"]

#: The seed of the released split script (``random.seed(230)`` before each class's shuffle).
RELEASED_SPLIT_SEED = 230
PAPER_SPLIT_SEED = RELEASED_SPLIT_SEED  # its old name

_EPS = 1e-9


@dataclass(frozen=True, eq=False)
class Split:
    """Sorted int64 indices into the item list for each part of a split."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def __post_init__(self) -> None:
        for arr in (self.train, self.val, self.test):
            arr.flags.writeable = False

    def key(self) -> bytes:
        """Bytes identifying the split (for comparing and deduplicating splits)."""
        return b"|".join(a.tobytes() for a in (self.train, self.val, self.test))


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.shape != (3,) or (fr < 0).any() or abs(fr.sum() - 1.0) > 1e-6 or fr[0] <= 0:
        raise ValueError(f"fractions must be three non-negative numbers (train, val, test) summing "
                         f"to 1 with train > 0, got {tuple(fractions)}")
    return fr / fr.sum()


def _class_quotas(counts: np.ndarray, fr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integer (n_classes, 3) quotas: each within one of counts*fr, totals near N*fr."""
    quotas = np.zeros((len(counts), 3), dtype=np.int64)
    cum_target = np.zeros(3)
    totals = np.zeros(3)
    for c in rng.permutation(len(counts)):
        target = counts[c] * fr
        q = np.floor(target + _EPS).astype(np.int64)
        frac = target - q
        cum_target += target
        totals += q
        for _ in range(int(counts[c] - q.sum())):
            candidates = [s for s in range(3) if frac[s] > _EPS]
            s = max(candidates, key=lambda k: (round(cum_target[k] - totals[k], 9), frac[k], -k))
            q[s] += 1
            totals[s] += 1
            frac[s] = 0.0
        quotas[c] = q
    return quotas


def make_split(items: Sequence[Item], *, seed: int = 0,
               fractions: Sequence[float] = (0.7, 0.2, 0.1)) -> Split:
    """Stratified, group-aware train/val/test split, deterministic for a seed.

    Args:
        items: indexed images (anything with ``.label`` and ``.group``).
        seed: the split's random seed.
        fractions: train, validation and test shares.

    Returns:
        A :class:`Split` of indices into ``items``. Per class, each part holds its share
        within one item (within about one group where groups are larger, see the
        module docstring); no group is in two parts. A group whose items carry several labels is stratified by its most
        common label.
    """
    fr = _check_fractions(fractions)
    if len(items) == 0:
        raise ValueError("cannot split an empty item list")
    labels = np.asarray([it.label for it in items], dtype=np.int64)
    group_names, inverse = np.unique(np.asarray([str(it.group) for it in items]), return_inverse=True)
    n_groups = len(group_names)
    label_values, label_idx = np.unique(labels, return_inverse=True)
    table = np.zeros((n_groups, len(label_values)), dtype=np.int64)
    np.add.at(table, (inverse, label_idx), 1)
    group_size = table.sum(axis=1)
    group_class = table.argmax(axis=1)
    class_counts = np.bincount(group_class, weights=group_size, minlength=len(label_values)).astype(np.int64)

    rng = np.random.default_rng(seed)
    quotas = _class_quotas(class_counts, fr, rng)
    assignment = np.empty(n_groups, dtype=np.int64)
    for c in range(len(label_values)):
        members = np.flatnonzero(group_class == c)
        deficit = quotas[c].astype(np.float64)
        for g in members[rng.permutation(len(members))]:
            size = group_size[g]
            room = np.where(deficit >= size, deficit, 0.0)
            if room.sum() > 0:  # a part it fits in, chosen with probability ~ room left
                s = int(rng.choice(3, p=room / room.sum()))
            else:  # fits nowhere: overfill the part furthest below quota (by < one group)
                s = int(np.argmax(deficit))
            assignment[g] = s
            deficit[s] -= size
    part = assignment[inverse]
    return Split(*(np.flatnonzero(part == s).astype(np.int64) for s in range(3)))


def repeated_splits(items: Sequence[Item], *, n_repeats: int, seed: int = 0,
                    fractions: Sequence[float] = (0.7, 0.2, 0.1)) -> list[Split]:
    """``n_repeats`` distinct splits with the properties of :func:`make_split`.

    Repeat ``r`` is ``make_split(items, seed=seed + r)``, except that a seed giving a
    split already in the list is passed over (possible only for tiny sets).

    Raises:
        ValueError: the items admit fewer than ``n_repeats`` distinct splits (tried up
            to ``20 * n_repeats + 20`` seeds).
    """
    if n_repeats < 1:
        raise ValueError(f"n_repeats must be >= 1, got {n_repeats}")
    splits: list[Split] = []
    seen: set[bytes] = set()
    for s in range(seed, seed + 20 * n_repeats + 20):
        split = make_split(items, seed=s, fractions=fractions)
        if split.key() not in seen:
            seen.add(split.key())
            splits.append(split)
            if len(splits) == n_repeats:
                return splits
    raise ValueError(f"found only {len(splits)} distinct splits of {len(items)} items; "
                     f"asked for {n_repeats}")


def fold_of_groups(groups: Sequence[tuple[str, int]], *, folds: int, seed: int = 0) -> dict[str, int]:
    """The test fold of each group in grouped, stratified k-fold cross-validation.

    Args:
        groups: ``(group name, class label)`` pairs (repeats are fine; a name must keep one label).
        folds: k, at least 2.
        seed: shuffles each class's sorted group names before they are dealt.

    Returns:
        ``{group: fold}``: per class (in label order), the sorted, shuffled names dealt
        round-robin to folds 0..k-1, each class starting where the previous one stopped.
        A pure function of the names and labels: the order of ``groups`` does not matter.
    """
    if folds < 2:
        raise ValueError(f"folds must be at least 2 for k-fold cross-validation, got {folds}")
    label_of: dict[str, int] = {}
    for name, label in groups:
        if label_of.setdefault(str(name), int(label)) != int(label):
            raise ValueError(f"group {name!r} has items of two classes ({label_of[str(name)]} and {label})")
    assignment: dict[str, int] = {}
    position = 0
    for label in sorted(set(label_of.values())):
        names = sorted(n for n, c in label_of.items() if c == label)
        random.Random(f"{seed}/{label}").shuffle(names)
        for name in names:
            assignment[name] = position % folds
            position += 1
    return assignment


def fold_split(items: Sequence[Item], *, folds: int, fold: int, seed: int = 0,
               fractions: Sequence[float] = (0.7, 0.2, 0.1),
               groups: Sequence[tuple[str, int]] | None = None) -> Split:
    """Fold ``fold`` of grouped, stratified ``folds``-fold cross-validation as a :class:`Split`.

    Test: the items whose group :func:`fold_of_groups` puts in fold ``fold``. Train and
    validation: the other folds, split by :func:`make_split` (seed ``seed``) in the ratio
    ``fractions[0] : fractions[1]`` (the test share of ``fractions`` is not used: it is
    ``1 / folds``). Over ``fold = 0..folds-1`` every item is tested exactly once.

    Args:
        groups: the ``(group, label)`` pairs to deal (default: those of ``items``). Pass the
            groups of both SIPaKMeD subsets so that the multi-cell images and the isolated
            cells get the same assignment even where one subset lacks a group.
    """
    fr = _check_fractions(fractions)
    if not 0 <= fold < folds:
        raise ValueError(f"fold must be in 0..{folds - 1} for {folds} folds, got {fold}")
    if len(items) == 0:
        raise ValueError("cannot split an empty item list")
    pairs = [(str(it.group), int(it.label)) for it in items]
    assignment = fold_of_groups(list(groups) + pairs if groups is not None else pairs, folds=folds, seed=seed)
    in_test = np.asarray([assignment[g] == fold for g, _ in pairs])
    rest = np.flatnonzero(~in_test)
    if len(rest) == 0:
        raise ValueError(f"fold {fold} of {folds} holds every item: nothing left to train on")
    inner = make_split([items[i] for i in rest], seed=seed,
                       fractions=(fr[0] / (fr[0] + fr[1]), fr[1] / (fr[0] + fr[1]), 0.0))
    return Split(np.sort(rest[inner.train]), np.sort(rest[inner.val]),
                 np.flatnonzero(in_test).astype(np.int64))


def released_split(items: Sequence[Item], *, fractions: Sequence[float] = PAPER_FRACTIONS,
                   seed: int = RELEASED_SPLIT_SEED) -> Split:
    """The split of the authors' released code, as a pure function of the file names.

    The released script (``preprocess-scripts/spikamed-preprocess-for-classification.py``)
    takes, per class, the sorted ``.bmp`` files of the class folder (multi-cell images) or
    of its ``CROPPED/`` folder (isolated cells), calls ``random.seed(230)`` and
    ``random.shuffle`` on that sorted list, and cuts it: the first ``int(0.7 * n)`` files
    train, the next ``int(0.2 * n)`` validation, the rest test. This does the same with
    Python's :mod:`random` (a fresh ``random.Random(seed)`` per class, so the global
    random state is untouched), sorting each class's items by file name first, so the
    result does not depend on the order of ``items``. Groups are ignored: crops of one
    source image can land on both sides (see :func:`siblings_in_train`).

    Args:
        items: indexed images (anything with ``.path`` and ``.label``).
        fractions: train, validation and test shares; only the first two are used, as
            ``int(fraction * n)`` in Python floats, exactly like the released script.
        seed: the seed set before each class's shuffle (230 in the released code).

    Returns:
        A :class:`Split` of indices into ``items``.
    """
    fr = [float(f) for f in fractions]
    _check_fractions(fr)
    if len(items) == 0:
        raise ValueError("cannot split an empty item list")
    by_class: dict[int, list[int]] = {}
    for i, it in enumerate(items):
        by_class.setdefault(int(it.label), []).append(i)
    parts: list[list[int]] = [[], [], []]
    for label in sorted(by_class):
        members = sorted(by_class[label], key=lambda i: (Path(items[i].path).name, str(items[i].path)))
        random.Random(seed).shuffle(members)  # == random.seed(seed); random.shuffle(members)
        n_train = int(fr[0] * len(members))
        n_val = int(fr[1] * len(members))
        parts[0] += members[:n_train]
        parts[1] += members[n_train:n_train + n_val]
        parts[2] += members[n_train + n_val:]
    return Split(*(np.sort(np.asarray(p, dtype=np.int64)) for p in parts))


def paper_split(items: Sequence[Item], *, fractions: Sequence[float] = PAPER_FRACTIONS,
                seed: int = RELEASED_SPLIT_SEED) -> Split:
    """Deprecated name of :func:`released_split` (the released code's split, not the paper's)."""
    warnings.warn("paper_split is now called released_split", DeprecationWarning, stacklevel=2)
    return released_split(items, fractions=fractions, seed=seed)


def siblings_in_train(items: Sequence[Item], split: Split, part: str = "test") -> int:
    """How many items of ``part`` share a source image (``Item.group``) with a training item.

    Zero for :func:`make_split` (groups never straddle parts); above zero for
    :func:`released_split` on isolated cells, whose crops of one multi-cell image are split
    independently: a test cell whose neighbours were trained on is a leak.
    """
    if part not in ("val", "test"):
        raise ValueError(f"part must be 'val' or 'test', got {part!r}")
    train_groups = {str(items[i].group) for i in split.train}
    return int(sum(str(items[i].group) in train_groups for i in getattr(split, part)))
