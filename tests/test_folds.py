"""Grouped, stratified k-fold cross-validation (cervixlib.data.fold_split): group-aware,
stratified, every item tested exactly once, one group->fold map for both SIPaKMeD subsets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cervixlib.config import DataConfig, make_config
from cervixlib.data import Item, fold_of_groups, fold_split


def _subsets(class_groups=(23, 24, 27, 11, 13), seed=0):
    """Multi-cell items (one per group) and isolated items (1-6 crops per group), shuffled."""
    rng = np.random.default_rng(seed)
    multi, isolated = [], []
    for label, n in enumerate(class_groups):
        for g in range(n):
            group = f"C{label}/{g:03d}"
            multi.append(Item(Path(f"C{label}/{g:03d}.bmp"), label, group, (), (10, 10)))
            for m in range(int(rng.integers(1, 7))):
                isolated.append(Item(Path(f"C{label}/CROPPED/{g:03d}_{m:02d}.bmp"), label, group, (), (10, 10)))
    return ([multi[i] for i in rng.permutation(len(multi))],
            [isolated[i] for i in rng.permutation(len(isolated))])


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("seed", [0, 7])
def test_folds_are_grouped_stratified_and_test_every_item_once(k, seed):
    multi, isolated = _subsets(seed=seed)
    groups = [(str(it.group), it.label) for it in multi + isolated]
    for items in (multi, isolated):
        labels = np.array([it.label for it in items])
        names = np.array([str(it.group) for it in items])
        tested = np.zeros(len(items), dtype=int)
        per_fold_groups = np.zeros((k, labels.max() + 1), dtype=int)
        for fold in range(k):
            split = fold_split(items, folds=k, fold=fold, seed=seed, groups=groups)
            parts = [split.train, split.val, split.test]
            assert sorted(np.concatenate(parts).tolist()) == list(range(len(items)))  # a partition
            owner = {}
            for s, part in enumerate(parts):  # group-aware: no group in two parts
                for g in set(names[part].tolist()):
                    assert owner.setdefault(g, s) == s, f"group {g} in two parts of fold {fold}"
            assert len(split.val) > 0 and len(split.train) > 2 * len(split.val)  # 7:2 from the other folds
            tested[split.test] += 1
            for c in range(labels.max() + 1):
                per_fold_groups[fold, c] = len(set(names[split.test][labels[split.test] == c].tolist()))
        assert (tested == 1).all()  # every item tested exactly once over the k folds
        # stratified: each class's groups per fold differ by at most one, and so do the totals
        assert (per_fold_groups.max(0) - per_fold_groups.min(0) <= 1).all(), per_fold_groups
        totals = per_fold_groups.sum(1)
        assert totals.max() - totals.min() <= 1, totals


def test_a_multi_cell_image_and_its_crops_share_the_test_fold():
    multi, isolated = _subsets()
    # even when the isolated subset lacks some images' crops, given the groups of both
    isolated = [it for it in isolated if not it.group.endswith("5")]
    groups = [(str(it.group), it.label) for it in multi + isolated]
    for fold in range(3):
        test_m = {multi[i].group for i in fold_split(multi, folds=3, fold=fold, groups=groups).test}
        test_i = {isolated[i].group for i in fold_split(isolated, folds=3, fold=fold, groups=groups).test}
        assert test_i == {g for g in test_m if not g.endswith("5")}
    # the map depends on the names only, not on their order or on repeats
    pairs = [(str(it.group), it.label) for it in multi]
    assert fold_of_groups(pairs, folds=3) == fold_of_groups(pairs[::-1] * 2, folds=3)


def test_prepared_folds_of_both_subsets_agree_on_the_embedded_set(tmp_path, monkeypatch):
    from cervixlib.data import prepare

    monkeypatch.setenv("CERVIX_DATA_HOME", str(tmp_path))
    cfg = make_config("resnet50", profile="smoke")
    assert (cfg.data.folds, cfg.data.fold) == (2, 0)
    multi = prepare(cfg.data)
    iso = prepare(cfg.replace(subset="isolated").data, index=multi.index)
    assert {it.group for it in multi.part("test")} == {it.group for it in iso.part("test")}


def test_fold_settings_are_checked():
    with pytest.raises(ValueError, match="released split is one fixed split"):
        DataConfig(split="released", folds=3)
    with pytest.raises(ValueError, match="0 <= fold < folds"):
        DataConfig(folds=3, fold=3)
    multi, _ = _subsets()
    with pytest.raises(ValueError, match="fold must be in 0..2"):
        fold_split(multi, folds=3, fold=-1)
    with pytest.raises(ValueError, match="folds must be at least 2"):
        fold_of_groups([("a", 0)], folds=1)


def test_study_trains_every_model_on_the_same_folds_under_our_protocol():
    from cervixlib.study import Study

    paper = Study(profile="paper")  # main tables: the released split, one split
    assert (paper.config("resnet50").data.split, paper.config("resnet50").data.folds) == ("released", 1)
    with pytest.raises(ValueError, match="fold must be in 0..0"):
        paper.config("resnet50", fold=1)
    ours = [paper.config(m, "multi", protocol="ours", split="group", fold=f) for m in ("resnet50", "densenet121")
            for f in range(5)]
    assert [(c.data.folds, c.data.fold) for c in ours] == [(5, f) for f in range(5)] * 2
    default = Study(profile="default")
    assert default.n_folds == 3 and default.config("resnet50", "isolated").data.fold == 0
    assert default.folds_text() == "fold 1 of 3 (grouped, stratified 3-fold cross-validation)"
    assert Study(profile="default", folds=1).config("resnet50").data.folds == 1  # the single split


def test_fold_runs_count_folds_from_1_as_the_command_line_and_run_names_do():
    """``Study.fold_runs(folds=[1, 2])`` is the first two folds (DataConfig.fold stays the 0-based index)."""
    from cervixlib.study import Study

    study = Study(profile="smoke")  # 2 folds
    by_fold = study.fold_configs(["resnet50"], folds=[2])["resnet50"]
    assert [c.data.fold for c in by_fold] == [1] and by_fold[0] == study.config("resnet50", fold=1)
    assert [c.data.fold for c in study.fold_configs(["resnet50"], folds=[1, 2])["resnet50"]] == [0, 1]
    assert [c.data.fold for c in study.fold_configs(["resnet50"])["resnet50"]] == [0, 1]
    assert study.fold_configs(["resnet50"], folds=[0, 3])["resnet50"] == []  # no fold 0, no fold 3 of 2


def test_repeated_folds_split_each_repeat_with_its_own_seed(synth_root):
    """``repeats=r``: r x k fold runs a model, repeat i split with ``split_seed=i``; repeat 1 is
    the unrepeated design (its runs are the store's runs already), and every repeat tests each
    image once."""
    from cervixlib.config import Profile
    from cervixlib.data import prepare
    from cervixlib.study import Study

    once = Study(profile="smoke", data_root=str(synth_root)).fold_configs(["resnet50"])["resnet50"]
    study = Study(profile="smoke", data_root=str(synth_root), repeats=3)
    configs = study.fold_configs(["resnet50"])["resnet50"]
    assert [(c.data.split_seed, c.data.fold) for c in configs] == [(r, f) for r in range(3) for f in range(2)]
    assert configs[:2] == once and len(set(configs)) == 6
    assert study.folds_text() == "fold 1 of 2 (grouped, stratified 2-fold cross-validation, repeated 3 times)"
    tests = [prepare(c.data).split.test for c in configs]
    for r in range(3):
        assert sorted(i for t in tests[2 * r:2 * r + 2] for i in t) == sorted(range(len(prepare(configs[0].data).items)))
    assert not np.array_equal(np.sort(tests[0]), np.sort(tests[2]))  # another seed deals the source images to other folds
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        Profile("x", "x", 64, 1, 0.1, repeats=0)
