"""Stratified, group-aware 70/20/10 splits: proportions, no leakage, determinism; the
released code's split (``released_split``) against a literal re-run of its procedure."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from cervixlib.data import Item, Split, make_split, paper_split, released_split, repeated_splits, siblings_in_train
from cervixlib.facts import CLASSES, ISOLATED_COUNTS, MULTI_COUNTS

FRACTIONS = (0.7, 0.2, 0.1)


def _items(class_sizes, group_sizes=(1,), seed=0):
    """Items per class; groups (source images) of sizes drawn from ``group_sizes``."""
    rng = np.random.default_rng(seed)
    items = []
    for label, n in enumerate(class_sizes):
        made, g = 0, 0
        while made < n:
            size = min(int(rng.choice(group_sizes)), n - made)
            for m in range(size):
                items.append(Item(Path(f"c{label}/{g:03d}_{m:02d}.bmp"), label, f"c{label}/{g}", (), (10, 10)))
            made += size
            g += 1
    order = rng.permutation(len(items))  # the split must not rely on the input order
    return [items[i] for i in order]


def _check(split: Split, items, fractions=FRACTIONS, tolerance=None):
    labels = np.array([it.label for it in items])
    groups = np.array([it.group for it in items])
    parts = (split.train, split.val, split.test)
    everything = np.concatenate(parts)
    assert sorted(everything.tolist()) == list(range(len(items)))  # a partition
    for part in parts:
        assert part.dtype == np.int64 and (np.diff(part) > 0).all()
    owners = {}
    for s, part in enumerate(parts):  # no group in two parts
        for g in set(groups[part].tolist()):
            assert owners.setdefault(g, s) == s, f"group {g} in two parts"
    for c in np.unique(labels):
        n_c = (labels == c).sum()
        if tolerance is None:
            sizes = [np.sum(groups == g) for g in set(groups[labels == c].tolist())]
            tol = max(sizes)
        else:
            tol = tolerance
        for part, f in zip(parts, fractions):
            got = (labels[part] == c).sum()
            assert abs(got - n_c * f) < tol + 1e-9, (c, got, n_c * f, tol)


@pytest.mark.parametrize("sizes", [(223, 238, 271, 108, 126), (4, 5, 5, 2, 3), (1, 1, 2, 7, 13)])
def test_single_item_groups_within_one_item_per_class(sizes):
    items = _items(sizes)
    split = make_split(items, seed=3)
    _check(split, items, tolerance=1)
    # the totals also follow the fractions, so a tiny set still gets validation and test items
    for part, f in zip((split.train, split.val, split.test), FRACTIONS):
        assert abs(len(part) - len(items) * f) < 1.5


def test_groups_never_straddle_and_proportions_hold_within_one_group():
    items = _items(tuple(ISOLATED_COUNTS.values()), group_sizes=(1, 2, 3, 4, 5, 6, 8))
    for seed in range(3):
        _check(make_split(items, seed=seed), items)


def test_generated_crops_stay_with_their_source(synth_index):
    for name in ("isolated", "multi"):
        items = synth_index.subset(name)
        _check(make_split(items, seed=0), items)


def test_deterministic_for_a_seed_and_different_across_seeds():
    items = _items((80, 60, 40, 30, 20), group_sizes=(1, 3))
    a, b, c = make_split(items, seed=7), make_split(items, seed=7), make_split(items, seed=8)
    assert a.key() == b.key()
    for x, y in zip((a.train, a.val, a.test), (b.train, b.val, b.test)):
        np.testing.assert_array_equal(x, y)
    assert a.key() != c.key()


def test_custom_fractions_and_validation():
    items = _items((50, 50))
    split = make_split(items, seed=0, fractions=(0.8, 0.2, 0.0))
    assert len(split.test) == 0 and len(split.val) == 20
    _check(split, items, fractions=(0.8, 0.2, 0.0), tolerance=1)
    for bad in [(0.7, 0.2), (0.5, 0.2, 0.1), (0.0, 0.5, 0.5), (1.2, -0.1, -0.1)]:
        with pytest.raises(ValueError, match="fractions"):
            make_split(items, fractions=bad)
    with pytest.raises(ValueError, match="empty"):
        make_split([])


def test_repeated_splits_are_distinct_and_valid():
    items = _items((40, 30, 20, 10, 10), group_sizes=(1, 2, 4))
    splits = repeated_splits(items, n_repeats=5, seed=11)
    assert len(splits) == 5
    assert len({s.key() for s in splits}) == 5
    for s in splits:
        _check(s, items)
    assert splits[0].key() == make_split(items, seed=11).key()
    again = repeated_splits(items, n_repeats=5, seed=11)
    assert [s.key() for s in again] == [s.key() for s in splits]
    # test sets differ between repeats: every item lands in a test set at some point more often
    covered = np.unique(np.concatenate([s.test for s in repeated_splits(items, n_repeats=20)]))
    assert len(covered) > 0.6 * len(items)


def test_repeated_splits_refuses_impossible_requests():
    items = _items((1, 1))
    with pytest.raises(ValueError, match="distinct splits"):
        repeated_splits(items, n_repeats=5)
    with pytest.raises(ValueError, match="n_repeats"):
        repeated_splits(items, n_repeats=0)


# ------------------------------------------------------------------ the released code's split
#: SIPaKMeD's images per class (Dys, Koi, Met, Par, Sup) and the released split's test supports
#: (the authors' Results.md): every Table II accuracy is k/101 or k/409.
MULTI = tuple(MULTI_COUNTS.values())
ISOLATED = tuple(ISOLATED_COUNTS.values())
MULTI_TEST = (23, 25, 28, 12, 13)
ISOLATED_TEST = (82, 83, 80, 80, 84)
_NAMES = CLASSES


def _sipakmed_items(counts, *, isolated: bool, seed: int = 0) -> list[Item]:
    """SIPaKMeD-named items in a shuffled order: ``im_<Class>/NNN.bmp``, or crops
    ``im_<Class>/CROPPED/NNN_MM.bmp`` of 1-7 cells per source image (the crop's group)."""
    items = []
    for label, n in enumerate(counts):
        folder = Path(f"/data/im_{_NAMES[label]}")
        source, made = 0, 0
        while made < n:
            source += 1
            crops = min(1 + (source * 5) % 7 if isolated else 1, n - made)
            made += crops
            for m in range(1, crops + 1):
                path = folder / "CROPPED" / f"{source:03d}_{m:02d}.bmp" if isolated else folder / f"{source:03d}.bmp"
                items.append(Item(path, label, f"{_NAMES[label]}/{source}", (), (10, 10)))
    order = np.random.default_rng(seed).permutation(len(items))
    return [items[i] for i in order]


def _released_test_names(items) -> set[str]:
    """The released script's procedure, literally: per class, sorted names, random.seed(230), shuffle, cut."""
    state = random.getstate()
    test = set()
    try:
        for label in sorted({it.label for it in items}):
            files = sorted(str(it.path) for it in items if it.label == label)
            random.seed(230)
            random.shuffle(files)
            n_train, n_val = int(0.7 * len(files)), int(0.2 * len(files))
            test |= set(files[n_train + n_val:])
    finally:
        random.setstate(state)
    return test


def _per_class(items, part) -> tuple[int, ...]:
    labels = np.array([items[i].label for i in part], dtype=np.int64)
    return tuple(np.bincount(labels, minlength=5).tolist())


@pytest.mark.parametrize("counts, isolated, test_counts", [(MULTI, False, MULTI_TEST),
                                                           (ISOLATED, True, ISOLATED_TEST)])
def test_released_split_has_the_released_test_supports(counts, isolated, test_counts):
    items = _sipakmed_items(counts, isolated=isolated)
    split = released_split(items)
    assert _per_class(items, split.test) == test_counts
    assert len(split.test) == (101 if not isolated else 409)
    assert _per_class(items, split.train) == tuple(int(0.7 * n) for n in counts)
    assert sorted(np.concatenate([split.train, split.val, split.test]).tolist()) == list(range(len(items)))
    # the same files as a literal re-run of the released procedure, whatever the listing order
    assert {str(items[i].path) for i in split.test} == _released_test_names(items)
    other = _sipakmed_items(counts, isolated=isolated, seed=1)
    again = released_split(other)
    for a, b in zip((split.train, split.val, split.test), (again.train, again.val, again.test)):
        assert {str(items[i].path) for i in a} == {str(other[i].path) for i in b}
    before = random.getstate()
    released_split(items)
    assert random.getstate() == before  # the global random state is left alone


def test_siblings_in_train_is_zero_for_the_group_split_and_not_for_the_released():
    items = _sipakmed_items(ISOLATED, isolated=True)
    assert siblings_in_train(items, make_split(items, seed=0)) == 0
    assert siblings_in_train(items, make_split(items, seed=0), "val") == 0
    leaked = siblings_in_train(items, released_split(items))
    assert 0 < leaked <= 409
    # multi-cell images are their own source images: no siblings under either split
    multi = _sipakmed_items(MULTI, isolated=False)
    assert siblings_in_train(multi, released_split(multi)) == 0
    with pytest.raises(ValueError, match="part"):
        siblings_in_train(items, released_split(items), "train")


def test_the_old_name_paper_is_the_released_split_with_a_deprecation_warning():
    """The released code's split is called "released" everywhere; "paper" (its old name) still works."""
    from cervixlib.config import DataConfig, make_config
    from cervixlib.study import Study

    items = _sipakmed_items(MULTI, isolated=False)
    with pytest.warns(DeprecationWarning, match="paper_split is now called released_split"):
        old = paper_split(items)
    np.testing.assert_array_equal(old.test, released_split(items).test)
    for build in (lambda: DataConfig(split="paper"), lambda: make_config("resnet50", split="paper").data,
                  lambda: Study(split="paper").config("resnet50").data):
        with pytest.warns(DeprecationWarning, match="split 'paper' is now called 'released'"):
            assert build().split == "released"
