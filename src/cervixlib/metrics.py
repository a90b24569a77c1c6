"""Pure metric functions for the paper's evaluation, with the uncertainty it left out.

Wang et al. (2021) report test accuracy and weighted F1 (Table II) on a 10% split: on
the multi-cell subset that is about 97 images, where one image moves accuracy by about
one point. So every number here comes with a percentile-bootstrap 95% interval, seeds
are summarised by mean and standard deviation, and two models on the same test split
are compared with McNemar's exact test. Point metrics are scikit-learn's; tests are
SciPy's. :func:`percentile_bootstrap` is the library's one resampling code path: the
intervals of the classification metrics (:func:`bootstrap_ci`), of a mean over images
(:func:`bootstrap_mean`: the explanation measures) and of a paired difference
(:func:`cervixlib.comparison.paired_bootstrap`) all go through it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import (
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from cervixlib.facts import PAPER_TABLE2  # re-exported: report and notebooks read it here too

__all__ = [
    "MIN_IMAGES",
    "proportion_interval",
    "PAPER_TABLE2",
    "Interval",
    "classification_metrics",
    "bootstrap_ci",
    "bootstrap_mean",
    "mcnemar",
    "percentile_bootstrap",
    "summarize",
    "weighted_f1",
]

#: Fewer images than this give a mean over images (an explanation measure, a paired
#: difference) no bootstrap interval: a percentile bootstrap over a handful of values has
#: far less than its nominal coverage, so the value is shown alone and a verdict is "undecided".
MIN_IMAGES = 10


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval."""

    value: float
    low: float
    high: float
    level: float = 0.95
    reason: str = ""  # why low and high are NaN

    def __str__(self) -> str:
        if not (np.isfinite(self.low) and np.isfinite(self.high)):
            return f"{self.value:.3f} (no interval: {self.reason or 'too few images'})"
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def weighted_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Support-weighted F1 over the classes present, as in the paper (sklearn's ``average='weighted'``)."""
    return float(f1_score(y_true, y_pred, average="weighted", zero_division=0))


# Vectorised forms for the bootstrap: ``y_true``/``y_pred`` of shape (..., n), the
# statistic taken along the last axis, so all resamples are scored in one NumPy pass
# (sklearn scores one resample per call, about a millisecond each). tests/test_metrics.py
# checks both against sklearn on every resample.
def _accuracy_along(y_true: np.ndarray, y_pred: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(y_true == y_pred, axis=axis)


def _weighted_f1_along(y_true: np.ndarray, y_pred: np.ndarray, axis: int = -1) -> np.ndarray:
    y_true, y_pred = np.moveaxis(y_true, axis, -1), np.moveaxis(y_pred, axis, -1)
    classes = np.arange(int(max(y_true.max(), y_pred.max())) + 1).reshape(-1, *([1] * y_true.ndim))
    is_true, is_pred = y_true == classes, y_pred == classes  # (K, ..., n)
    support = is_true.sum(-1)
    tp = (is_true & is_pred).sum(-1)
    denom = support + is_pred.sum(-1)
    f1 = np.divide(2 * tp, denom, out=np.zeros(denom.shape, dtype=float), where=denom > 0)
    return (support * f1).sum(0) / support.sum(0)


_METRICS: dict[str, Callable[..., np.ndarray]] = {
    "accuracy": _accuracy_along,
    "weighted_f1": _weighted_f1_along,
}


def percentile_bootstrap(
    statistic: Callable[..., Any],
    *samples: np.ndarray,
    strata: np.ndarray | None = None,
    vectorized: bool = True,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """The percentile interval of ``statistic(*samples)`` over resamples of the images.

    The samples are ``(n,)`` arrays of the same images, resampled together (paired:
    one index draw serves all of them); with ``strata`` ``(n,)``, each stratum (a fold)
    is resampled on its own and keeps its size. ``statistic(*resampled, axis=-1)``
    scores all resamples at once when ``vectorized``, else ``statistic(*resampled)`` is
    called once a resample. The percentile method rather than BCa: BCa is undefined when
    every resample gives the same value (a perfect score on a small split).
    """
    n = len(samples[0])
    if any(len(x) != n for x in samples):
        raise ValueError(f"the samples differ in length: {[len(x) for x in samples]}")
    s = np.zeros(n, dtype=np.int64) if strata is None else np.asarray(strata)
    if s.shape != (n,):
        raise ValueError(f"strata must have shape ({n},), got {s.shape}")
    rng = np.random.default_rng(seed)
    idx = np.empty((n_resamples, n), dtype=np.int64)
    pos = 0
    for stratum in np.unique(s):
        members = np.flatnonzero(s == stratum)
        idx[:, pos:pos + members.size] = members[rng.integers(0, members.size, size=(n_resamples, members.size))]
        pos += members.size
    if vectorized:
        values = np.asarray(statistic(*(x[idx] for x in samples), axis=-1), dtype=np.float64)
    else:
        values = np.array([statistic(*(x[i] for x in samples)) for i in idx], dtype=np.float64)
    low, high = np.quantile(values, [0.5 - level / 2, 0.5 + level / 2])
    return float(low), float(high)


def bootstrap_ci(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    metric: str | Callable[[np.ndarray, np.ndarray], float] = "accuracy",
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile-bootstrap interval of a metric over test images (resampled in pairs).

    ``metric`` is ``"accuracy"``, ``"weighted_f1"`` (both vectorised) or a callable
    ``f(y_true, y_pred) -> float`` (scored one resample at a time).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or len(y_true) == 0:
        raise ValueError(f"y_true and y_pred must be equal-length 1-D arrays, got {y_true.shape} and {y_pred.shape}")
    vectorized = isinstance(metric, str)
    fn = _METRICS[metric] if vectorized else metric
    value = float(fn(y_true, y_pred))
    if len(y_true) < 2:
        return Interval(value, value, value, level)
    low, high = percentile_bootstrap(fn, y_true, y_pred, vectorized=vectorized, n_resamples=n_resamples,
                                     level=level, seed=seed)
    return Interval(value, low, high, level)


def bootstrap_mean(
    values: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """The mean of per-image values with its percentile-bootstrap interval; NaNs (a measure
    undefined on an image) are left out, and with fewer than :data:`MIN_IMAGES` values the
    interval is NaN (the same rule as :func:`cervixlib.comparison.paired_bootstrap`, the
    statistic of a paired difference). Never a zero-width interval: where every image gave the
    same value, a 0/1 measure (the pointing game: all hits or all misses) gets the exact
    Clopper-Pearson interval of its proportion (:func:`proportion_interval`), any other none,
    with the reason."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    nan = float("nan")
    if v.size == 0:
        return Interval(nan, nan, nan, level, "no image")
    mean = float(v.mean())
    if v.size < MIN_IMAGES:
        return Interval(mean, nan, nan, level, f"fewer than {MIN_IMAGES} images")
    if np.all(v == v[0]):
        if v[0] in (0.0, 1.0):
            return proportion_interval(int(v.sum()), v.size, level=level)
        return Interval(mean, nan, nan, level, "every image gave the same value")
    low, high = percentile_bootstrap(np.mean, v, n_resamples=n_resamples, level=level, seed=seed)
    return Interval(mean, low, high, level)


def proportion_interval(k: int, n: int, *, level: float = 0.95) -> Interval:
    """``k`` of ``n`` with its exact (Clopper-Pearson) interval, from SciPy's binomial test: where a
    bootstrap has no spread to resample (0 of 16, 16 of 16), the interval a proportion still has."""
    from scipy import stats

    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return Interval(k / n, float(ci.low), float(ci.high), level)


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_prob: np.ndarray,
    class_names: Sequence[str],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy, weighted F1 (each with a bootstrap 95% CI), per-class P/R/F1 and the confusion matrix.

    ``y_prob`` has shape (N, C); the prediction is its argmax. Everything returned is
    JSON-serialisable and recomputable from the saved predictions.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_prob = np.asarray(y_prob)
    if y_prob.ndim != 2 or y_prob.shape != (len(y_true), len(class_names)):
        raise ValueError(f"y_prob must have shape ({len(y_true)}, {len(class_names)}), got {y_prob.shape}")
    y_pred = y_prob.argmax(axis=1)
    labels = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    acc = bootstrap_ci(y_true, y_pred, "accuracy", n_resamples=n_resamples, seed=seed)
    wf1 = bootstrap_ci(y_true, y_pred, "weighted_f1", n_resamples=n_resamples, seed=seed)
    return {
        "n": int(len(y_true)),
        "accuracy": acc.to_dict(),
        "weighted_f1": wf1.to_dict(),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "class_names": list(class_names),
    }


def mcnemar(
    y_true: Sequence[int] | np.ndarray,
    pred_a: Sequence[int] | np.ndarray,
    pred_b: Sequence[int] | np.ndarray,
) -> dict[str, float]:
    """McNemar's exact test: do models A and B err on different test images more than chance?

    ``b`` counts images A gets right and B wrong, ``c`` the reverse; under the null the
    discordant pairs split 50/50, so the p-value is a two-sided binomial test on b of b+c.
    """
    y_true, pred_a, pred_b = (np.asarray(a) for a in (y_true, pred_a, pred_b))
    if not (y_true.shape == pred_a.shape == pred_b.shape):
        raise ValueError("McNemar needs predictions of both models on the same test images")
    right_a, right_b = pred_a == y_true, pred_b == y_true
    b = int(np.sum(right_a & ~right_b))
    c = int(np.sum(~right_a & right_b))
    p = 1.0 if b + c == 0 else float(stats.binomtest(b, b + c, 0.5).pvalue)
    return {"b": b, "c": c, "n_discordant": b + c, "p_value": p}


def summarize(values: Sequence[float] | Mapping[Any, float]) -> dict[str, float]:
    """Mean, sample standard deviation and count over seeds or repeated splits."""
    arr = np.asarray(list(values.values()) if isinstance(values, Mapping) else list(values), dtype=float)
    if arr.size == 0:
        raise ValueError("summarize() needs at least one value")
    std = float(arr.std(ddof=1)) if arr.size > 1 else float("nan")
    return {"mean": float(arr.mean()), "std": std, "n": int(arr.size)}
