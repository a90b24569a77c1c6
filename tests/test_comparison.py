"""Paired statistics over folds (cervixlib.comparison) against SciPy, and the verdict rule
(cervixlib.claims.verdict) on constructed cases: a clear win, a tie, a sample too small."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from cervixlib.claims import (CONTRADICTED, SUPPORTED, UNDECIDED, Claim, Evidence, claims_html,
                              combine_verdicts, verdict)
from cervixlib.comparison import (NO_SPREAD, corrected_resampled_t, detectable_difference, fold_mean_sd,
                                  paired_bootstrap, repeats_needed)

A = np.array([0.91, 0.88, 0.93, 0.87, 0.90])
B = np.array([0.89, 0.87, 0.90, 0.88, 0.86])


def test_uncorrected_t_is_scipys_paired_t_test():
    res = corrected_resampled_t(A - B, n_train=100, n_test=25, correction=False)
    ref = stats.ttest_rel(A, B)
    ci = ref.confidence_interval(0.95)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert (res.low, res.high) == (pytest.approx(ci.low, rel=1e-12), pytest.approx(ci.high, rel=1e-12))
    assert res.mean == pytest.approx(np.mean(A - B))


def test_corrected_t_uses_the_nadeau_bengio_variance():
    n_train, n_test = 70.0, 25.0
    res = corrected_resampled_t(A - B, n_train=n_train, n_test=n_test)
    d, k = A - B, len(A)
    se = np.sqrt((1 / k + n_test / n_train) * np.var(d, ddof=1))  # by hand
    t = d.mean() / se
    assert res.p_value == pytest.approx(2 * stats.t.sf(abs(t), k - 1), rel=1e-12)
    half = stats.t.ppf(0.975, k - 1) * se
    assert (res.low, res.high) == (pytest.approx(d.mean() - half), pytest.approx(d.mean() + half))
    plain = corrected_resampled_t(d, n_train=n_train, n_test=n_test, correction=False)
    assert res.high - res.low > plain.high - plain.low  # the correction widens the interval


def test_one_fold_gives_no_interval():
    res = corrected_resampled_t([0.05], n_train=50, n_test=20)
    assert not res.has_interval and res.mean == 0.05 and res.n == 1


def test_fold_mean_sd_matches_numpy():
    assert fold_mean_sd(A) == (pytest.approx(A.mean()), pytest.approx(A.std(ddof=1)))


def test_paired_bootstrap_is_centred_on_the_pooled_difference_and_resamples_within_folds():
    rng = np.random.default_rng(0)
    a = rng.random(300) < 0.8
    b = rng.random(300) < 0.7
    strata = np.repeat([0, 1, 2], 100)
    res = paired_bootstrap(a, b, strata=strata, n_resamples=4000, seed=1)
    d = a.astype(float) - b
    assert res.mean == pytest.approx(d.mean())
    se = np.sqrt(sum(np.var(d[strata == s]) * 100 for s in range(3))) / 300  # stratified standard error
    assert res.low == pytest.approx(d.mean() - 1.96 * se, abs=0.012)
    assert res.high == pytest.approx(d.mean() + 1.96 * se, abs=0.012)
    # a difference that is the same within each fold: resampling within folds cannot move it, and a
    # zero-width interval would claim a certainty the images cannot give: no interval, and why
    const = paired_bootstrap(np.repeat([1.0, 0.0], 5), np.zeros(10), strata=np.repeat([0, 1], 5))
    assert const.mean == 0.5 and not const.has_interval and "no spread" in const.reason
    assert verdict(const, +1) == UNDECIDED


def _diff(values, n_train=60, n_test=30):
    return corrected_resampled_t(np.asarray(values), n_train=n_train, n_test=n_test)


def test_verdict_rule_on_constructed_cases():
    win = _diff([0.10, 0.12, 0.11, 0.09, 0.10])  # every fold about +10 points
    assert win.low > 0 and verdict(win, +1) == SUPPORTED and verdict(win, -1) == CONTRADICTED
    tie = _diff([0.02, -0.03, 0.01, -0.01, 0.00])
    assert tie.low < 0 < tie.high and verdict(tie, +1) == verdict(tie, -1) == UNDECIDED
    too_small = _diff([0.30])  # one fold: no interval, however large the difference
    assert verdict(too_small, +1) == UNDECIDED
    assert verdict(paired_bootstrap([1.0], [0.0]), +1) == UNDECIDED  # one image: no interval either
    with pytest.raises(ValueError, match="side must be"):
        verdict(win, 0)


def test_a_claim_of_several_comparisons_needs_them_all():
    win, tie, loss = _diff([0.1, 0.12, 0.11]), _diff([0.05, -0.06, 0.01]), _diff([-0.1, -0.12, -0.11])
    assert combine_verdicts([SUPPORTED, SUPPORTED]) == SUPPORTED
    assert combine_verdicts([SUPPORTED, UNDECIDED]) == UNDECIDED
    assert combine_verdicts([SUPPORTED, CONTRADICTED, UNDECIDED]) == CONTRADICTED
    claim = Claim(1, "a beats b and c", (Evidence("a − b", win.scaled(100), 1),
                                          Evidence("a − c", tie.scaled(100), 1)),
                  ("03_attention_models.ipynb",), synthetic=True)
    assert claim.verdict == UNDECIDED and claim.deciding.label == "a − c"  # the weakest is reported
    assert claim.verdict_text == "undecided at this sample size on the synthetic set (not SIPaKMeD)"
    text = claim.sentence()
    d = claim.deciding.difference
    assert f"{d.mean:+.1f} points" in text and f"[{d.low:+.1f}, {d.high:+.1f}]" in text
    table = claims_html([claim, Claim(2, "x", (Evidence("x", loss.scaled(100), 1),),
                                      ("04_multicell_vs_isolated.ipynb",), synthetic=False)])
    assert '<a href="03_attention_models.html">chapter 3</a>' in table
    assert "<strong>contradicted</strong>" in table and "a − c" in table


def _fake_run(test_index, y, prob, fold=0, folds=2, n_train=20):
    from types import SimpleNamespace

    prob = np.asarray(prob, dtype=float)
    return SimpleNamespace(
        name=f"fake-f{fold}", predictions={"test_index": np.asarray(test_index), "test_y": np.asarray(y),
                                           "test_prob": prob},
        y_true=np.asarray(y), y_pred=prob.argmax(1), info={"split_sizes": {"train": n_train}},
        config=SimpleNamespace(data=SimpleNamespace(folds=folds, fold=fold)))


def test_the_isolated_vote_is_the_mean_softmax_over_an_images_crops():
    from pathlib import Path

    from cervixlib.claims import image_votes, vote_comparison
    from cervixlib.data import Item

    multi_items = [Item(Path(f"m{g}.bmp"), 0, f"C/{g}", (), (1, 1)) for g in range(3)]
    iso_items = [Item(Path(f"c{g}_{m}.bmp"), 0, f"C/{g}", (), (1, 1)) for g in range(3) for m in range(2)]
    # image 0: crops 0.9/0.1 and 0.2/0.8 -> mean 0.55 for class 0: right (a majority of argmaxes would tie)
    # image 1: crops both wrong; image 2: no crop among the isolated test cells (left out)
    iso = _fake_run([0, 1, 2, 3], [0, 0, 0, 0], [[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6]])
    multi = _fake_run([0, 1, 2], [0, 0, 0], [[0.2, 0.8], [0.6, 0.4], [0.9, 0.1]])
    right_multi, right_vote, missing = image_votes(multi, iso, multi_items, iso_items)
    assert right_multi.tolist() == [False, True] and right_vote.tolist() == [True, False] and missing == 1
    cmp = vote_comparison([multi, multi], [iso, _fake_run([0, 1, 2, 3], [0] * 4, [[0.9, 0.1]] * 4, fold=0)],
                          multi_items, iso_items)
    assert cmp.a.tolist() == [0.5, 0.5] and cmp.b.tolist() == [0.5, 1.0] and cmp.n_images == 4


def _runs_with_accuracy(accuracies, n=100):
    """One fake run per fold, right on the first ``acc * n`` of the same ``n`` test images."""
    runs = []
    for fold, acc in enumerate(accuracies):
        y = np.zeros(n, dtype=int)
        prob = np.tile([0.1, 0.9], (n, 1))
        prob[: int(round(acc * n))] = [0.9, 0.1]
        runs.append(_fake_run(np.arange(n) + 1000 * fold, y, prob, fold=fold, folds=len(accuracies), n_train=200))
    return runs


def test_paper_claims_on_constructed_runs():
    from cervixlib.claims import PerImageMeasure, paper_claims

    accuracy = {"rcan_densenet121": (0.90, 0.92, 0.91), "densenet121": (0.70, 0.74, 0.71),
                "resnet50": (0.60, 0.63, 0.62), "ran_resnet50": (0.50, 0.52, 0.49)}
    folds = {subset: {m: _runs_with_accuracy(a) for m, a in accuracy.items()} for subset in ("multi", "isolated")}
    found = paper_claims(folds, synthetic=True, n_resamples=200)
    assert [c.number for c in found] == [1, 2, 3]  # no measures, no vote: claims 4 and 5 left out
    assert [c.verdict for c in found] == [SUPPORTED] * 3
    assert len(found[0].evidence) == 6 and "DenseNet-121" in found[0].deciding.label  # the closest rival
    assert found[2].deciding.paper == pytest.approx(84.16 - 85.15)  # the paper's difference, in points
    # the same runs with DenseNet-121 and ResNet-50 swapped contradict claim 2
    swapped = {s: {**runs, "densenet121": runs["resnet50"], "resnet50": runs["densenet121"]} for s, runs in folds.items()}
    assert paper_claims(swapped, synthetic=False, n_resamples=200)[1].verdict == CONTRADICTED
    tie = PerImageMeasure("share", np.full(8, 0.5), np.full(8, 0.5), side=1)
    claim4 = paper_claims({}, synthetic=True, measures=[tie])[0]
    assert claim4.number == 4 and claim4.verdict == UNDECIDED


def test_paper_claims_on_a_class_per_folder_set():
    """One subset, no cell outlines: claims 1 to 3 on its images with no SIPaKMeD number beside
    them, claims 4 and 5 listed as not testable with the reason, on the page's table too."""
    from cervixlib.claims import NOT_TESTABLE, claims_html, paper_claims, untestable_claims, verdict_intro
    from cervixlib.facts import PAPER_TABLE2

    accuracy = {"rcan_densenet121": (0.90, 0.92, 0.91), "densenet121": (0.70, 0.74, 0.71),
                "resnet50": (0.60, 0.63, 0.62), "ran_resnet50": (0.50, 0.52, 0.49)}
    folds = {"images": {m: _runs_with_accuracy(a) for m, a in accuracy.items()}}
    missing = untestable_claims(("images",), outlines=False)
    assert missing == [4, 5] and untestable_claims(("multi", "isolated"), outlines=True) == []
    found = paper_claims(folds, synthetic=False, sipakmed=False, not_testable=missing, n_resamples=200)
    assert [c.number for c in found] == [1, 2, 3, 4, 5]
    assert [c.verdict for c in found] == [SUPPORTED] * 3 + [NOT_TESTABLE] * 2
    assert found[0].chapters == ("03_attention_models.ipynb",)  # chapter 4 is a note on such data
    assert all(e.paper is None for c in found for e in c.evidence)
    page = claims_html(found) + " ".join(c.sentence() for c in found)
    page += verdict_intro(found, synthetic=False, folds=3, data="cervix-cells (class-per-folder set)")
    assert "this set has no cell outlines" in page and "one subset of images" in page
    assert "2 not testable on this data" in page and "on cervix-cells" in page
    numbers = {f"{v:.2f}" for row in PAPER_TABLE2.values() for v in row.values() if isinstance(v, float)}
    assert not [n for n in numbers if n in page]  # no SIPaKMeD number beside ours
    assert "multi-cell images, " not in claims_html(found[:3])  # claims 1-3 name this set's images


def test_folds_without_spread_never_decide():
    """Chapter 3's case: three folds that each gave resnet50 - densenet121 = -7.4 points (6 of 81
    images). The variance is zero, so the t interval would be [-7.4, -7.4] with p = 0: no interval
    instead, the reason, an undecided verdict, and the images' bootstrap named beside it."""
    same = corrected_resampled_t([-6 / 81] * 3, n_train=160, n_test=81)
    assert same.mean == pytest.approx(-6 / 81) and not same.has_interval
    assert same.reason == NO_SPREAD and np.isnan(same.p_value)
    assert verdict(same, -1) == verdict(same, +1) == UNDECIDED
    assert "no interval: the folds gave no spread to estimate from" in same.text()
    boot = paired_bootstrap(np.r_[np.zeros(18), np.ones(225)], np.r_[np.ones(18), np.ones(225)],
                            strata=np.repeat([0, 1, 2], 81))
    e = Evidence("multi-cell images, ResNet-50 − DenseNet-121", same.scaled(100), -1, beside=boot.scaled(100))
    assert e.verdict == UNDECIDED and "no spread" in e.number_text() and "paired bootstrap" in e.number_text()
    claim = Claim(2, "DenseNet-121 beats ResNet-50", (e,), ("03_attention_models.ipynb",), synthetic=True)
    assert claim.verdict == UNDECIDED and "[-7.4, -7.4]" not in claim.sentence()
    # one distinct value among more folds is the same case; two distinct values give an interval
    assert not corrected_resampled_t([0.02, 0.02, 0.02, 0.02], n_train=100, n_test=25).has_interval
    assert corrected_resampled_t([0.02, 0.02, 0.03], n_train=100, n_test=25).has_interval


def test_detectable_difference_is_the_effect_found_with_80_percent_power():
    """Independent check by simulation: fold differences drawn around the detectable difference
    are decided (interval above 0) in about 80% of trials, and around half of it far less often."""
    k, sd, n_train, n_test = 5, 0.03, 400.0, 100.0
    mde = detectable_difference(sd, k, n_train=n_train, n_test=n_test)
    se = np.sqrt((1 / k + n_test / n_train) * sd ** 2)
    assert mde == pytest.approx((stats.t.ppf(0.975, k - 1) + stats.t.ppf(0.8, k - 1)) * se)
    rng = np.random.default_rng(0)

    def power(effect: float) -> float:
        # differences with the variance the corrected test assumes for one fold: k * se^2 per draw,
        # drawn as a mean shared by the folds (the overlap of training sets) plus independent noise
        shared = rng.normal(0, np.sqrt(n_test / n_train) * sd, size=(4000, 1))
        d = effect + shared + rng.normal(0, sd, size=(4000, k)) * 1.0
        return float(np.mean([corrected_resampled_t(row, n_train=n_train, n_test=n_test).low > 0 for row in d]))

    assert 0.72 < power(mde) < 0.9
    assert power(mde / 2) < 0.45
    assert np.isnan(detectable_difference(0.0, k, n_train=n_train, n_test=n_test))
    assert np.isnan(detectable_difference(sd, 1, n_train=n_train, n_test=n_test))


def test_repeats_shrink_the_detectable_difference_down_to_a_floor():
    """r x k repeated folds: the 1/k term shrinks with r, the overlap term n_test/n_train does not."""
    sd, k, n_train, n_test = 0.04, 3, 600.0, 60.0
    one = detectable_difference(sd, k, n_train=n_train, n_test=n_test)
    target = one / 2
    r = repeats_needed(target, sd, k, n_train=n_train, n_test=n_test)
    assert r is not None and r > 1
    assert detectable_difference(sd, r * k, n_train=n_train, n_test=n_test) <= target
    assert detectable_difference(sd, (r - 1) * k, n_train=n_train, n_test=n_test) > target
    floor = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * np.sqrt(n_test / n_train) * sd
    assert repeats_needed(floor * 0.9, sd, k, n_train=n_train, n_test=n_test) is None


def test_the_detectable_difference_of_a_bootstrap_interval_is_its_80_percent_power_effect():
    """For a normal interval mean ± 1.96 se, the 80%-power effect is (1.96 + 0.84) se."""
    from cervixlib.comparison import PairedDifference, detectable_from_interval

    z = stats.norm.ppf(0.975)
    d = PairedDifference(1.0, 1.0 - z * 2, 1.0 + z * 2, 40, "paired bootstrap over images")
    assert detectable_from_interval(d) == pytest.approx((z + stats.norm.ppf(0.8)) * 2)
    assert np.isnan(detectable_from_interval(PairedDifference(1.0, np.nan, np.nan, 3, "x")))


def test_the_floor_is_the_limit_of_the_detectable_difference_as_repeats_grow():
    from cervixlib.comparison import detectable_floor

    sd, n_train, n_test = 0.04, 600.0, 60.0
    floor = detectable_floor(sd, n_train=n_train, n_test=n_test)
    assert detectable_difference(sd, 10 ** 6, n_train=n_train, n_test=n_test) == pytest.approx(floor, rel=1e-3)
    assert repeats_needed(floor * 0.99, sd, 3, n_train=n_train, n_test=n_test, most=10 ** 4) is None
