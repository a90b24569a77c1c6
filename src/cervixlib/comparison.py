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
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from cervixlib.metrics import MIN_IMAGES, percentile_bootstrap

__all__ = ["MIN_IMAGES", "PairedDifference", "corrected_resampled_t", "fold_mean_sd", "paired_bootstrap"]



@dataclass(frozen=True)
class PairedDifference:
    """The mean paired difference ``a - b`` with a two-sided interval.

    ``low``/``high`` are NaN when the sample is too small for an interval (fewer than two
    folds or images). ``n`` counts folds (t-test) or images (bootstrap); ``p_value`` is the
    two-sided p-value where the method gives one.
    """

    mean: float
    low: float
    high: float
    n: int
    method: str
    level: float = 0.95
    p_value: float | None = None

    @property
    def has_interval(self) -> bool:
        return bool(np.isfinite(self.low) and np.isfinite(self.high))

    def __str__(self) -> str:
        """``+0.012 [-0.003, +0.027]``, or the mean and why there is no interval (a table cell)."""
        if not self.has_interval:
            return f"{self.mean:+.3f} (n = {self.n}: too few for an interval)"
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"

    def scaled(self, factor: float) -> PairedDifference:
        """The same difference in other units (``100`` for percentage points)."""
        return PairedDifference(self.mean * factor, self.low * factor, self.high * factor, self.n,
                                self.method, self.level, self.p_value)

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
        and the two-sided p-value; with k < 2 the interval and p-value are NaN.
    """
    d = _vector(differences, "differences")
    if n_train <= 0 or n_test <= 0:
        raise ValueError(f"n_train and n_test must be positive, got {n_train} and {n_test}")
    k = d.size
    method = "corrected resampled t-test (Nadeau & Bengio 2003)" if correction else "paired t-test"
    mean = float(d.mean())
    if k < 2:
        return PairedDifference(mean, float("nan"), float("nan"), k, method, level, float("nan"))
    factor = 1.0 / k + (n_test / n_train if correction else 0.0)
    se = float(np.sqrt(factor * d.var(ddof=1)))
    if se == 0.0:  # every fold gave the same difference: no spread to test against
        p = 1.0 if mean == 0 else 0.0
        return PairedDifference(mean, mean, mean, k, method, level, p)
    t = mean / se
    p = float(2 * stats.t.sf(abs(t), k - 1))
    half = float(stats.t.ppf(0.5 + level / 2, k - 1)) * se
    return PairedDifference(mean, mean - half, mean + half, k, method, level, p)


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
    mean = float(d.mean())
    if d.size < MIN_IMAGES:
        return PairedDifference(mean, float("nan"), float("nan"), int(d.size), method, level)
    low, high = percentile_bootstrap(np.mean, d, strata=s, n_resamples=n_resamples, level=level, seed=seed)
    return PairedDifference(mean, low, high, int(d.size), method, level)
