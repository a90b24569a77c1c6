"""Two models compared over the same folds: the per-fold accuracies, the corrected resampled
t-test that decides (:func:`cervixlib.comparison.corrected_resampled_t`), the paired bootstrap
over the pooled test images beside it, McNemar's test per fold, the smallest difference the
folds could decide and the repeats that would reach a target.

:func:`compare_fold_runs` pairs two models' runs on the same folds; :func:`vote_comparison`
pairs, image by image, a multi-cell model with the vote of the isolated-cell model of the same
fold over the image's crops (claim 5). The front page's verdicts (:mod:`cervixlib.claims`) and
the chapters' fold tables (:mod:`cervixlib.report`) read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from cervixlib.comparison import (POWER, PairedDifference, corrected_resampled_t, detectable_difference,
                                  detectable_floor, paired_bootstrap, repeats_needed)
from cervixlib.metrics import mcnemar

if TYPE_CHECKING:
    from cervixlib.data import Item
    from cervixlib.runs import Run

__all__ = ["FoldComparison", "compare_fold_runs", "fold_accuracies", "image_votes", "vote_comparison"]


@dataclass(frozen=True)
class FoldComparison:
    """Model a against model b on the same k folds: per-fold metric, the t-test, the bootstrap, McNemar."""

    a: np.ndarray  # (k,) model a's accuracy per fold
    b: np.ndarray
    t: PairedDifference  # decides
    bootstrap: PairedDifference  # beside it
    mcnemar: tuple[dict[str, float], ...] = field(default=())
    n_images: int = 0
    n_train: float = 0.0  # training images per fold (mean), for the t-test's correction
    n_test: float = 0.0  # test images per fold (mean)
    folds: int = 0  # k of the k-fold design (a, b hold r x k values with repeats); 0: one value a fold

    def _spread(self) -> float:
        """The fold-to-fold standard deviation of ``a - b``; NaN with fewer than two folds."""
        d = self.a - self.b
        return float(d.std(ddof=1)) if d.size > 1 else float("nan")

    def detectable(self, *, level: float = 0.95, power: float = POWER) -> float:
        """The smallest accuracy difference (a fraction) that these folds decide with ``power``, at the
        fold-to-fold spread of ``a - b`` measured (:func:`cervixlib.comparison.detectable_difference`)."""
        return detectable_difference(self._spread(), self.a.size, n_train=max(self.n_train, 1.0),
                                     n_test=max(self.n_test, 1.0), level=level, power=power)

    def floor(self) -> float:
        """What no number of repeats of these folds goes below (:func:`cervixlib.comparison.detectable_floor`)."""
        return detectable_floor(self._spread(), n_train=max(self.n_train, 1.0), n_test=max(self.n_test, 1.0))

    def repeats_for(self, target: float) -> int | None:
        """Repeats of the k folds that bring the detectable difference down to ``target`` (a
        fraction); None: none up to 100 does (:func:`cervixlib.comparison.repeats_needed`)."""
        return repeats_needed(target, self._spread(), self.folds or self.a.size, n_train=max(self.n_train, 1.0),
                              n_test=max(self.n_test, 1.0))


def fold_accuracies(runs: Sequence[Run]) -> np.ndarray:
    """``(k,)`` test accuracy of each fold's run."""
    return np.asarray([float(np.mean(r.y_true == r.y_pred)) for r in runs])


def _check_folds(runs_a: Sequence[Run], runs_b: Sequence[Run]) -> None:
    if len(runs_a) != len(runs_b) or not runs_a:
        raise ValueError(f"need the same folds for both models, got {len(runs_a)} and {len(runs_b)} runs")
    for i, (ra, rb) in enumerate(zip(runs_a, runs_b)):
        if not np.array_equal(ra.predictions["test_index"], rb.predictions["test_index"]):
            raise ValueError(f"fold {i + 1}: {ra.name} and {rb.name} were tested on different images")


def _sizes(runs: Sequence[Run]) -> tuple[float, float]:
    sizes = [r.info.get("split_sizes", {}) for r in runs]
    n_train = float(np.mean([s.get("train", 0) for s in sizes]))
    n_test = float(np.mean([len(r.y_true) for r in runs]))
    return n_train, n_test


def _compare(right_a: Sequence[np.ndarray], right_b: Sequence[np.ndarray], n_train: float,
             n_resamples: int, seed: int, tests: tuple[dict[str, float], ...], folds: int = 0) -> FoldComparison:
    acc_a = np.asarray([np.mean(x) for x in right_a])
    acc_b = np.asarray([np.mean(x) for x in right_b])
    n_test = float(np.mean([len(x) for x in right_a]))
    t = corrected_resampled_t(acc_a - acc_b, n_train=max(n_train, 1.0), n_test=max(n_test, 1.0))
    strata = np.concatenate([np.full(len(x), i) for i, x in enumerate(right_a)])
    boot = paired_bootstrap(np.concatenate(right_a).astype(float), np.concatenate(right_b).astype(float),
                            strata=strata, n_resamples=n_resamples, seed=seed)
    return FoldComparison(acc_a, acc_b, t, boot, tests, int(strata.size), float(n_train), n_test, folds)


def compare_fold_runs(runs_a: Sequence[Run], runs_b: Sequence[Run], *, n_resamples: int = 2000,
                      seed: int = 0) -> FoldComparison:
    """Paired comparison of two models' test accuracy over the same folds (a - b)."""
    _check_folds(runs_a, runs_b)
    right_a = [r.y_true == r.y_pred for r in runs_a]
    right_b = [r.y_true == r.y_pred for r in runs_b]
    tests = tuple(mcnemar(ra.y_true, ra.y_pred, rb.y_pred) for ra, rb in zip(runs_a, runs_b))
    return _compare(right_a, right_b, _sizes(runs_a)[0], n_resamples, seed, tests, runs_a[0].config.data.folds)


def image_votes(multi: Run, isolated: Run, multi_items: Sequence[Item],
                isolated_items: Sequence[Item]) -> tuple[np.ndarray, np.ndarray, int]:
    """Each multi-cell test image classified by the multi-cell model and by the vote of the
    isolated-cell model over the image's crops (mean softmax over the crops of its group).

    ``multi_items``/``isolated_items``: the subsets' items, which the runs' ``test_index``
    point into. Returns ``(right_multi, right_vote, n_without_crops)``: bool arrays over the
    test images that have crops among the isolated run's test cells (with grouped folds, all
    of them that have crops at all), and how many test images had none (left out).
    """
    probs: dict[str, list[np.ndarray]] = {}
    for i, p in zip(isolated.predictions["test_index"], isolated.predictions["test_prob"]):
        probs.setdefault(str(isolated_items[int(i)].group), []).append(p)
    right_m, right_v, missing = [], [], 0
    for i, y, p in zip(multi.predictions["test_index"], multi.predictions["test_y"], multi.predictions["test_prob"]):
        crops = probs.get(str(multi_items[int(i)].group))
        if not crops:
            missing += 1
            continue
        right_m.append(int(np.argmax(p)) == int(y))
        right_v.append(int(np.argmax(np.mean(crops, axis=0))) == int(y))
    return np.asarray(right_m, dtype=bool), np.asarray(right_v, dtype=bool), missing


def vote_comparison(multi_runs: Sequence[Run], isolated_runs: Sequence[Run], multi_items: Sequence[Item],
                    isolated_items: Sequence[Item], *, n_resamples: int = 2000, seed: int = 0) -> FoldComparison:
    """Image-level accuracy over folds: the multi-cell model minus the vote of the isolated-cell
    model of the same fold (:func:`image_votes`); McNemar per fold on the same images."""
    if len(multi_runs) != len(isolated_runs) or not multi_runs:
        raise ValueError(f"need one isolated-cell run per multi-cell fold, got {len(isolated_runs)} "
                         f"and {len(multi_runs)}")
    right_m, right_v, tests = [], [], []
    for fold, (m, iso) in enumerate(zip(multi_runs, isolated_runs)):
        if (m.config.data.folds, m.config.data.fold) != (iso.config.data.folds, iso.config.data.fold):
            raise ValueError(f"fold {fold + 1}: {m.name} and {iso.name} are not the same fold")
        rm, rv, _ = image_votes(m, iso, multi_items, isolated_items)
        if rm.size == 0:
            raise ValueError(f"fold {fold + 1}: no multi-cell test image has crops among the isolated test cells")
        right_m.append(rm)
        right_v.append(rv)
        y = np.ones(rm.size, dtype=int)
        tests.append(mcnemar(y, rm.astype(int), rv.astype(int)))
    return _compare(right_m, right_v, _sizes(multi_runs)[0], n_resamples, seed, tuple(tests),
                    multi_runs[0].config.data.folds)
