"""Paired comparisons of two models over repeated grouped folds, with intervals.

Wang et al. (2021) rank four models on one test split of about 100 multi-cell images,
where RCAN-DenseNet-121's lead over DenseNet-121 is two images. Here every model is
trained on the same k grouped, stratified folds (:func:`cervixlib.data.fold_split`), and
two models are compared by their paired differences. Three statistics, pure functions
on arrays:

- :func:`corrected_resampled_t` -- **the one that decides a verdict.** The corrected
  resampled t-test of Nadeau & Bengio (2003, "Inference for the Generalization Error",
  Machine Learning 52): the mean of the k per-fold differences with the variance
  ``(1/k + n_test/n_train) * s^2`` instead of ``s^2 / k``, and a t interval with k - 1
  degrees of freedom. The extra ``n_test/n_train`` accounts for the training sets of
  different folds overlapping (each pair shares (k-2)/(k-1) of its images), which makes
  the fold differences positively correlated and the plain paired t-test over-confident
  (Bouckaert & Frank 2004 apply the same correction to k-fold cross-validation). It is
  the only one of the three that counts the variation due to training, not only to the
  test images.
- :func:`paired_bootstrap` -- a paired percentile bootstrap over the pooled test images
  (each image is tested exactly once across the k folds), resampling images within each
  fold. It holds the trained models fixed, so its interval is about the test images
  only, usually narrower; shown beside, never deciding for fold comparisons. For a
  per-image measure on one fold (the attribution shares of Fig. 2) it is the only
  statistic there is, and it decides.
- McNemar's exact test per fold: :func:`cervixlib.metrics.mcnemar`, reused.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from cervixlib.metrics import MIN_IMAGES, percentile_bootstrap

__all__ = ["MIN_IMAGES", "NO_SPREAD", "PairedDifference", "corrected_resampled_t", "detectable_difference",
           "detectable_floor", "detectable_from_interval",
           "fold_mean_sd", "paired_bootstrap", "repeats_needed"]

#: Why a fold comparison whose folds all gave the same difference has no interval: its variance
#: is zero, so the t interval would have zero width and p = 0, a certainty the data cannot give.
NO_SPREAD = "the folds gave no spread to estimate from"
#: The power at which :func:`detectable_difference` states the smallest decidable difference.
POWER = 0.8


@dataclass(frozen=True)
class PairedDifference:
    """The mean paired difference ``a - b`` with a two-sided interval.

    ``low``/``high`` are NaN when there is no interval, and ``reason`` says why: too few
    folds or images, or no spread between them to estimate the variance from (a zero-width
    interval is never returned). ``n`` counts folds (t-test) or images (bootstrap);
    ``p_value`` is the two-sided p-value where the method gives one.
    """

    mean: float
    low: float
    high: float
    n: int
    method: str
    level: float = 0.95
    p_value: float | None = None
    reason: str = ""

    @property
    def has_interval(self) -> bool:
        return bool(np.isfinite(self.low) and np.isfinite(self.high))

    def __str__(self) -> str:
        """``+0.012 [-0.003, +0.027]``, or the mean and why there is no interval."""
        return self.text(3)

    def text(self, digits: int = 1) -> str:
        """``"+1.2 [-3.4, +5.8]"``, or ``"+1.2 (no interval: <why>)"``: the one way a table cell or a
        sentence shows a difference."""
        if not self.has_interval:
            return f"{self.mean:+.{digits}f} (no interval: {self.reason})"
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"

    def scaled(self, factor: float) -> PairedDifference:
        """The same difference in other units (``100`` for percentage points)."""
        return dataclasses.replace(self, mean=self.mean * factor, low=self.low * factor, high=self.high * factor)

    def to_dict(self) -> dict[str, float | int | str | None]:
        return asdict(self)


def _vector(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0 or not np.isfinite(v).all():
        raise ValueError(f"{name} must be a non-empty 1-D array of finite numbers, got shape {v.shape}")
    return v


def fold_mean_sd(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN for one value) over folds."""
    v = _vector(values, "values")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else float("nan")


def corrected_resampled_t(
    differences: Sequence[float] | np.ndarray,
    *,
    n_train: float,
    n_test: float,
    level: float = 0.95,
    correction: bool = True,
) -> PairedDifference:
    """Nadeau & Bengio's corrected resampled t-test on per-fold differences ``a_j - b_j``.

    Args:
        differences: ``(k,)`` the metric of model a minus that of model b on each fold.
        n_train: images a model was trained on per fold (the mean over folds).
        n_test: test images per fold (the mean over folds).
        level: confidence level of the interval.
        correction: ``False`` gives the plain paired t-test (``scipy.stats.ttest_rel``).

    Returns:
        The mean difference, the t interval ``mean +- t_{k-1} * sqrt((1/k + n_test/n_train) s^2)``
        and the two-sided p-value. With k < 2, or when every fold gave the same difference
        (zero variance: :data:`NO_SPREAD`), the interval and p-value are NaN and ``reason`` says
        why; the verdict is then undecided, never decided by a zero-width interval.
    """
    d = _vector(differences, "differences")
    if n_train <= 0 or n_test <= 0:
        raise ValueError(f"n_train and n_test must be positive, got {n_train} and {n_test}")
    k = d.size
    method = "corrected resampled t-test (Nadeau & Bengio 2003)" if correction else "paired t-test"
    mean = float(d.mean())
    nan = float("nan")
    if k < 2:
        return PairedDifference(mean, nan, nan, k, method, level, nan, "one fold: no spread to estimate from")
    if np.unique(d).size < 2:  # every fold gave the same difference: zero variance, no interval
        return PairedDifference(mean, nan, nan, k, method, level, nan, NO_SPREAD)
    factor = 1.0 / k + (n_test / n_train if correction else 0.0)
    se = float(np.sqrt(factor * d.var(ddof=1)))
    t = mean / se
    p = float(2 * stats.t.sf(abs(t), k - 1))
    half = float(stats.t.ppf(0.5 + level / 2, k - 1)) * se
    return PairedDifference(mean, mean - half, mean + half, k, method, level, p)


def detectable_difference(sd: float, k: int, *, n_train: float, n_test: float, level: float = 0.95,
                          power: float = POWER, correction: bool = True) -> float:
    """The smallest true difference that :func:`corrected_resampled_t` over ``k`` folds (or r x k
    repeated folds: ``k`` differences in all) decides with probability ``power``: the minimum
    detectable effect ``(t_{1-a/2, k-1} + t_{power, k-1}) * sqrt((1/k + n_test/n_train) sd^2)``,
    in the units of ``sd`` (the fold-to-fold standard deviation of the differences).

    It says whether "undecided" was a question of sample size: a 1-point effect under a
    12-point detectable difference was never within reach. NaN where it cannot be estimated
    (fewer than two folds, no spread)."""
    if k < 2 or not np.isfinite(sd) or sd <= 0:
        return float("nan")
    factor = 1.0 / k + (n_test / n_train if correction else 0.0)
    quantiles = stats.t.ppf(0.5 + level / 2, k - 1) + stats.t.ppf(power, k - 1)
    return float(quantiles * np.sqrt(factor * sd ** 2))


def detectable_from_interval(d: PairedDifference, *, power: float = POWER) -> float:
    """The smallest difference decided with probability ``power`` by an interval as wide as
    ``d``'s (a bootstrap over images, normal approximation): ``(z_{1-a/2} + z_power) * se`` with
    ``se = (high - low) / (2 z_{1-a/2})``; NaN without an interval."""
    if not d.has_interval:
        return float("nan")
    z = float(stats.norm.ppf(0.5 + d.level / 2))
    return float((z + stats.norm.ppf(power)) * (d.high - d.low) / (2 * z))


def detectable_floor(sd: float, *, n_train: float, n_test: float, level: float = 0.95,
                     power: float = POWER) -> float:
    """The limit of :func:`detectable_difference` as the repeats of the folds grow: the 1/k term
    vanishes and the overlap of training sets is left, ``(z_{1-a/2} + z_power) * sqrt(n_test/n_train) * sd``.
    No number of repeats decides a smaller difference; NaN where it cannot be estimated."""
    if not np.isfinite(sd) or sd <= 0:
        return float("nan")
    return float((stats.norm.ppf(0.5 + level / 2) + stats.norm.ppf(power)) * np.sqrt(n_test / n_train) * sd)


def repeats_needed(target: float, sd: float, folds: int, *, n_train: float, n_test: float,
                   level: float = 0.95, power: float = POWER, most: int = 100) -> int | None:
    """How many repeats r of ``folds``-fold cross-validation (each with another split seed) bring
    :func:`detectable_difference` over the r x ``folds`` differences down to ``target``; None when
    no r up to ``most`` does. Repeats shrink only the ``1/k`` term: the overlap of training
    sets (``n_test/n_train``) sets a floor that no number of repeats goes below (Bouckaert &
    Frank 2004), so a small effect may need more images, not more repeats."""
    if not np.isfinite(sd) or sd <= 0 or target <= detectable_floor(sd, n_train=n_train, n_test=n_test,
                                                                     level=level, power=power):
        return None
    for r in range(1, most + 1):
        if detectable_difference(sd, r * folds, n_train=n_train, n_test=n_test, level=level,
                                 power=power) <= target:
            return r
    return None


def paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    strata: Sequence[int] | np.ndarray | None = None,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """Paired percentile bootstrap of ``mean(a - b)`` over images, resampled within ``strata``.

    Args:
        a, b: ``(n,)`` per-image values of the two models on the same images (1/0 for
            right/wrong gives an accuracy difference; NaN pairs are dropped).
        strata: ``(n,)`` the fold of each image: each fold is resampled on its own, keeping
            its size (None: one stratum).
        n_resamples, level, seed: the bootstrap's settings.

    Returns:
        The pooled mean difference and its percentile interval (NaN with fewer than
        :data:`MIN_IMAGES` pairs).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D arrays of one length, got {a.shape} and {b.shape}")
    s = np.zeros(a.shape, dtype=np.int64) if strata is None else np.asarray(strata)
    if s.shape != a.shape:
        raise ValueError(f"strata must have the shape of a, {a.shape}, got {s.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    d, s = (a - b)[keep], s[keep]
    method = "paired bootstrap over images" + (" within folds" if strata is not None else "")
    if d.size == 0:
        raise ValueError("no pair of finite values to compare")
    mean, nan = float(d.mean()), float("nan")
    if d.size < MIN_IMAGES:
        return PairedDifference(mean, nan, nan, int(d.size), method, level,
                                reason=f"{d.size} image{'s' * (d.size != 1)}, too few for an interval")
    low, high = percentile_bootstrap(np.mean, d, strata=s, n_resamples=n_resamples, level=level, seed=seed)
    if not high > low:  # every resample gave the same mean (no spread within any fold)
        return PairedDifference(mean, nan, nan, int(d.size), method, level,
                                reason="the images gave no spread to estimate from")
    return PairedDifference(mean, low, high, int(d.size), method, level)
