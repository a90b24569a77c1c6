"""cervixlib.metrics against independent references (sklearn, exact binomial sums)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score

from cervixlib.metrics import bootstrap_ci, classification_metrics, mcnemar, summarize

CLASSES = ("A", "B", "C", "D", "E")


def _random_predictions(n: int = 120, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, n)
    logits = rng.normal(size=(n, 5))
    logits[np.arange(n), y] += 1.5  # better than chance, not perfect
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, prob


def test_classification_metrics_equal_sklearn():
    y, prob = _random_predictions()
    pred = prob.argmax(1)
    m = classification_metrics(y, prob, CLASSES, n_resamples=200)
    assert m["accuracy"]["value"] == pytest.approx(accuracy_score(y, pred))
    assert m["weighted_f1"]["value"] == pytest.approx(f1_score(y, pred, average="weighted"))
    for k, name in enumerate(CLASSES):
        assert m["per_class"][name]["precision"] == pytest.approx(precision_score(y, pred, labels=[k], average="macro"))
        assert m["per_class"][name]["recall"] == pytest.approx(recall_score(y, pred, labels=[k], average="macro"))
        assert m["per_class"][name]["f1"] == pytest.approx(f1_score(y, pred, labels=[k], average="macro"))
        assert m["per_class"][name]["support"] == int((y == k).sum())
    assert m["confusion_matrix"] == confusion_matrix(y, pred, labels=range(5)).tolist()


def test_classification_metrics_rejects_wrong_shapes():
    y, prob = _random_predictions(10)
    with pytest.raises(ValueError, match="shape"):
        classification_metrics(y, prob[:, :4], CLASSES)


def test_bootstrap_interval_properties():
    y, prob = _random_predictions(200)
    pred = prob.argmax(1)
    ci = bootstrap_ci(y, pred, "accuracy", n_resamples=500, seed=1)
    assert ci.low <= ci.value <= ci.high
    # Binomial standard error as an independent yardstick for the interval's width.
    se = math.sqrt(ci.value * (1 - ci.value) / len(y))
    assert 2.5 * se < ci.high - ci.low < 5.5 * se
    assert bootstrap_ci(y, pred, "accuracy", n_resamples=500, seed=1) == ci  # deterministic
    small = bootstrap_ci(y[:40], pred[:40], "accuracy", n_resamples=500, seed=1)
    assert small.high - small.low > ci.high - ci.low  # fewer images, wider interval


def test_bootstrap_of_a_perfect_score_is_degenerate_not_nan():
    y = np.arange(50) % 5
    ci = bootstrap_ci(y, y, "weighted_f1", n_resamples=200)
    assert (ci.value, ci.low, ci.high) == (1.0, 1.0, 1.0)


def test_mcnemar_exact_p_value():
    y = np.zeros(30, dtype=int)
    a = np.zeros(30, dtype=int)
    b = np.zeros(30, dtype=int)
    b[:10] = 1   # A right, B wrong on 10 images
    a[10:12] = 1  # A wrong, B right on 2 images
    res = mcnemar(y, a, b)
    assert (res["b"], res["c"]) == (10, 2)
    expected = 2 * sum(math.comb(12, k) for k in range(3)) / 2**12
    assert res["p_value"] == pytest.approx(expected)
    assert mcnemar(y, a, a)["p_value"] == 1.0


def test_summarize_mean_and_sample_std():
    s = summarize([0.8, 0.9, 1.0])
    assert s["mean"] == pytest.approx(0.9)
    assert s["std"] == pytest.approx(0.1)
    assert s["n"] == 3
    with pytest.raises(ValueError):
        summarize([])


def test_vectorised_bootstrap_statistics_equal_sklearn_on_every_resample():
    from cervixlib.metrics import _accuracy_along, _weighted_f1_along

    y, prob = _random_predictions(60, seed=3)
    pred = prob.argmax(1)
    pred[:3] = 4  # a class predicted but never true, as small test splits produce
    idx = np.random.default_rng(0).integers(0, len(y), size=(50, len(y)))
    acc = _accuracy_along(y[idx], pred[idx])
    f1 = _weighted_f1_along(y[idx], pred[idx])
    for r in range(len(idx)):
        assert acc[r] == pytest.approx(accuracy_score(y[idx[r]], pred[idx[r]]))
        assert f1[r] == pytest.approx(f1_score(y[idx[r]], pred[idx[r]], average="weighted", zero_division=0))


def test_bootstrap_accepts_a_custom_metric():
    y, prob = _random_predictions(80)
    pred = prob.argmax(1)
    macro = lambda t, p: f1_score(t, p, average="macro", zero_division=0)  # noqa: E731
    ci = bootstrap_ci(y, pred, macro, n_resamples=100)
    assert ci.low <= ci.value <= ci.high


def test_percentile_bootstrap_agrees_with_scipy():
    """The library's one resampling path against SciPy's percentile bootstrap (an independent
    implementation): a mean and a paired statistic, on samples large enough for both to settle."""
    from scipy import stats

    from cervixlib.metrics import percentile_bootstrap

    rng = np.random.default_rng(3)
    v = rng.gamma(2.0, 0.1, size=300)
    ours = percentile_bootstrap(np.mean, v, n_resamples=4000, seed=0)
    ref = stats.bootstrap((v,), np.mean, n_resamples=4000, method="percentile",
                          random_state=np.random.default_rng(1)).confidence_interval
    assert ours == pytest.approx((ref.low, ref.high), abs=0.004)
    y = rng.integers(0, 5, size=300)
    pred = np.where(rng.random(300) < 0.7, y, rng.integers(0, 5, size=300))
    acc = lambda a, b, axis=-1: np.mean(a == b, axis=axis)  # noqa: E731
    ours = percentile_bootstrap(acc, y, pred, n_resamples=4000, seed=0)
    ref = stats.bootstrap((y, pred), acc, paired=True, n_resamples=4000, method="percentile",
                          random_state=np.random.default_rng(1)).confidence_interval
    assert ours == pytest.approx((ref.low, ref.high), abs=0.01)
    # the vectorised and the one-resample-at-a-time paths draw the same resamples
    assert percentile_bootstrap(lambda a, b: float(np.mean(a == b)), y, pred, vectorized=False,
                                n_resamples=500, seed=2) == percentile_bootstrap(acc, y, pred, n_resamples=500, seed=2)


def test_a_mean_without_spread_never_gets_a_zero_width_interval():
    """Every image gave the same value: a 0/1 measure gets SciPy's exact binomial interval, any
    other no interval and the reason; Table II's accuracy of a run with every test image right
    gets the proportion's interval too."""
    from scipy import stats

    from cervixlib.metrics import bootstrap_mean

    misses = bootstrap_mean(np.zeros(16))
    ref = stats.binomtest(0, 16).proportion_ci(method="exact")
    assert (misses.value, misses.low, misses.high) == (0.0, 0.0, pytest.approx(ref.high)) and misses.high > 0.15
    same = bootstrap_mean(np.full(16, 2.0))
    assert np.isnan(same.low) and same.reason == "every image gave the same value"
    assert "no interval: every image gave the same value" in str(same)
    from cervixlib.report import _pct

    assert _pct({"value": 1.0, "low": 1.0, "high": 1.0}, 20) == (
        f"100.0 [{100 * stats.binomtest(20, 20).proportion_ci(method='exact').low:.1f}, 100.0]")
