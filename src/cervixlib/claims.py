"""The five claims of Wang et al. (2021), each with a verdict computed from the runs.

The paper's conclusions rest on one test split of about 100 multi-cell images. Here each
claim is restated as paired differences between runs on the same grouped folds
(:mod:`cervixlib.comparison`), and a verdict is computed by one rule (:func:`verdict`):

- **supported**: the 95% interval of the paired difference lies entirely on the side
  of 0 that the claim states;
- **contradicted**: it lies entirely on the other side;
- **undecided at this sample size**: it contains 0, or there are too few folds or
  images for an interval (fewer than two folds, fewer than
  :data:`~cervixlib.comparison.MIN_IMAGES` images).

A claim made of several comparisons (RCAN-DenseNet-121 against each of three models, on
both subsets) is supported only if every comparison is, contradicted if any comparison
is, and undecided otherwise; the comparison it reports is the weakest one, the one whose
interval comes closest to (or furthest across) 0 on the claimed side. Fold comparisons
are decided by the corrected resampled t-test; the paired bootstrap over images is
shown beside it. Every sentence here is built from the numbers it states; nothing
about a result is written by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cervixlib.comparison import PairedDifference, detectable_from_interval, paired_bootstrap
from cervixlib.facts import MODEL_TITLES, PAPER_TABLE2
from cervixlib.fold_comparison import (FoldComparison, compare_fold_runs, fold_accuracies, image_votes,
                                       vote_comparison)

if TYPE_CHECKING:
    from cervixlib.explain import ExplanationStudy
    from cervixlib.runs import Run

__all__ = [
    "CONTRADICTED", "NOT_TESTABLE", "SUPPORTED", "UNDECIDED", "VERDICTS", "MODEL_NAMES", "RULE",
    "Claim", "Evidence", "FoldComparison", "PerImageMeasure",
    "claims_html", "verdict_intro", "combine_verdicts", "compare_fold_runs", "fold_accuracies", "image_votes",
    "explanation_measures", "fig2_claim", "fold_evidence", "paper_claims", "untestable_claims", "verdict",
    "vote_comparison",
]

SUPPORTED, CONTRADICTED, UNDECIDED = "supported", "contradicted", "undecided at this sample size"
VERDICTS: tuple[str, ...] = (SUPPORTED, CONTRADICTED, UNDECIDED)
#: The verdict of a claim that the book's data cannot test (its reason says why).
NOT_TESTABLE = "not testable on this data"
#: The rule, as the front page states it.
RULE = ("A claim is **supported** when the 95% interval of the paired difference lies entirely on "
        "the side of 0 that the claim states, **contradicted** when it lies entirely on the other "
        "side, and **undecided at this sample size** when it contains 0 or when there is no interval: "
        "too few folds or images (fewer than two folds, fewer than ten images), or folds that all "
        "gave the same difference, which leave no spread to estimate from. A claim made of several "
        "comparisons is supported only if all of them are, contradicted if any is; the table gives "
        "the weakest. Beside each claim stands the smallest difference its design could have "
        "decided (80% power, at the fold-to-fold spread measured): a claim undecided with a "
        "smallest decidable difference far above the paper's 1 to 2 points was never within reach.")
#: The paper's names of its four models.
MODEL_NAMES: dict[str, str] = {m: MODEL_TITLES[m] for m in ("resnet50", "densenet121", "ran_resnet50",
                                                         "rcan_densenet121")}
_SUBSET_NAMES = {"multi": "multi-cell images", "isolated": "isolated cells", "images": "this set's images"}
#: Why claims 4 and 5 cannot be tested on data without cell outlines or without SIPaKMeD's two subsets.
_CLAIM_NEEDS = {4: "it measures where the maps fall against the cells, and this set has no cell outlines "
                   "(SIPaKMeD's .dat boundaries, or a masks/ folder per class)",
                5: "it compares SIPaKMeD's multi-cell images with their isolated cells, and this set has "
                   "one subset of images"}
_CLAIM4 = "Fig. 2: {0} attends to fewer cells and less background than {1}"
_CLAIM5 = "Multi-cell images carry information that isolated cells lack"
_METHOD_WORDS = {"ig": "|IG|", "saliency": "|gradient|", "gradcam": "Grad-CAM"}
#: Where the fold comparisons are shown: multi-cell images in chapter 3, isolated cells in chapter 4.
_FOLD_CHAPTERS = ("03_attention_models.ipynb", "04_multicell_vs_isolated.ipynb")


# ------------------------------------------------------------------ the rule
def verdict(difference: PairedDifference, side: int) -> str:
    """The verdict on a claim that ``difference`` is above 0 (``side=+1``) or below 0 (``side=-1``)."""
    if side not in (1, -1):
        raise ValueError(f"side must be +1 (the claim says the difference is above 0) or -1, got {side}")
    if not difference.has_interval:
        return UNDECIDED
    low, high = side * difference.low, side * difference.high
    low, high = min(low, high), max(low, high)
    if low > 0:
        return SUPPORTED
    if high < 0:
        return CONTRADICTED
    return UNDECIDED


def combine_verdicts(verdicts: Sequence[str]) -> str:
    """All supported: supported; any contradicted: contradicted; otherwise undecided."""
    if not verdicts or any(v not in VERDICTS for v in verdicts):
        raise ValueError(f"expected a non-empty list of {VERDICTS}, got {list(verdicts)}")
    if CONTRADICTED in verdicts:
        return CONTRADICTED
    return SUPPORTED if all(v == SUPPORTED for v in verdicts) else UNDECIDED


@dataclass(frozen=True)
class Evidence:
    """One paired comparison behind a claim: ``difference`` decides, ``beside`` is shown with it."""

    label: str
    difference: PairedDifference
    side: int
    unit: str = "points"
    paper: float | None = None
    beside: PairedDifference | None = None
    detectable: float = float("nan")  # the smallest difference this design decides at 80% power (unit)
    repeats: str = ""  # what repeated folds would buy (fold comparisons only): a sentence, or ""

    @property
    def verdict(self) -> str:
        return verdict(self.difference, self.side)

    @property
    def margin(self) -> float:
        """How far the interval's claimed-side bound is from 0 (negative: across it; -inf: none)."""
        if not self.difference.has_interval:
            return float("-inf")
        return min(self.side * self.difference.low, self.side * self.difference.high)

    def _count(self) -> str:
        d = self.difference
        return f"{d.n} " + ("fold" if "t-test" in d.method else "image") + "s" * (d.n != 1)

    def number_text(self) -> str:
        """``"+2.0 points, 95% interval [-5.1, +9.1] (<method>, 3 folds)"``; without an interval,
        why, and what the images say beside it (the bootstrap, which holds training fixed)."""
        d = self.difference
        if d.has_interval:
            return f"{d.mean:+.1f} {self.unit}, 95% interval [{d.low:+.1f}, {d.high:+.1f}] ({d.method}, {self._count()})"
        text = f"{d.mean:+.1f} {self.unit}, no interval: {d.reason} ({d.method}, {self._count()})"
        b = self.beside
        if b is not None and b.has_interval:
            text += (f"; over the {b.n} test images alone (paired bootstrap, training held fixed): "
                     f"{b.text()} {self.unit}")
        return text

    def short_text(self) -> str:
        """The number for a table cell: ``"+2.0 points [-5.1, +9.1], 3 folds"`` (the method is in the rule)."""
        d = self.difference
        interval = f" [{d.low:+.1f}, {d.high:+.1f}]" if d.has_interval else f" (no interval: {d.reason})"
        return f"{d.mean:+.1f} {self.unit}{interval}, {self._count()}"

    def detectable_text(self) -> str:
        """``"±12.3 points"``: the smallest difference the design decides at 80% power, or why none."""
        if np.isfinite(self.detectable):
            return f"±{self.detectable:.1f} {self.unit}"
        return "not estimable"  # the reason stands beside it, with the number


@dataclass(frozen=True)
class Claim:
    """A claim of the paper, its evidence on this run's data and the verdict the rule gives."""

    number: int
    text: str
    evidence: tuple[Evidence, ...]
    chapters: tuple[str, ...]  # the notebooks with the evidence, e.g. ("03_attention_models.ipynb",)
    synthetic: bool
    paper_text: str = ""
    context: str = ""
    not_testable: str = ""  # why the book's data cannot test this claim (then no evidence)

    @property
    def verdict(self) -> str:
        return NOT_TESTABLE if self.not_testable else combine_verdicts([e.verdict for e in self.evidence])

    @property
    def deciding(self) -> Evidence:
        """The weakest comparison (the one reported): smallest margin on the claimed side."""
        return min(self.evidence, key=lambda e: e.margin)

    @property
    def verdict_text(self) -> str:
        return f"{self.verdict} on the synthetic set (not SIPaKMeD)" if self.synthetic else self.verdict

    def sentence(self) -> str:
        """One sentence: the verdict, and the number that decided it (or why there is none)."""
        if self.not_testable:
            return f"Claim {self.number}: {NOT_TESTABLE}: {self.not_testable}."
        e = self.deciding
        which = "the weakest of its comparisons, " if len(self.evidence) > 1 else ""
        reach = (f"; the smallest difference this design could decide (80% power): {e.detectable_text()}"
                 if np.isfinite(e.detectable) else "")
        more = f" For claim {self.number}: {e.repeats[:1].lower()}{e.repeats[1:]}" if e.repeats else ""
        return f"Claim {self.number}: {self.verdict_text}; {which}{e.label}: {e.number_text()}{reach}.{more}"

    def details(self) -> str:
        """Every comparison behind the claim with its own verdict, one sentence each."""
        return " ".join(f"{e.label}: {e.number_text()}, {e.verdict}." for e in self.evidence)

    def row(self) -> dict[str, str]:
        """The table row: claim, verdict, our number (the deciding comparison), the paper's, the evidence."""
        if self.not_testable:
            return {"claim": f"{self.number}. {self.text}", "verdict": NOT_TESTABLE,
                    "ours": f"none: {self.not_testable}", "detectable": "none",
                    "paper": self.paper_text or "not given",
                    "evidence": ", ".join(self.chapters)}
        e = self.deciding
        paper = self.paper_text or (f"{e.paper:+.2f} {e.unit}" if e.paper is not None else "not given")
        return {"claim": f"{self.number}. {self.text}", "verdict": self.verdict_text,
                "ours": f"{e.label}: {e.short_text()}", "detectable": e.detectable_text(),
                "paper": paper, "evidence": ", ".join(self.chapters)}


def claims_html(claims: Sequence[Claim], *, link_suffix: str = ".html") -> str:
    """The claims as an HTML table, each with links to the chapters with its evidence.

    The links point at the built site's pages (``03_attention_models.html``): a notebook's
    HTML output is not rewritten by Jupyter Book, and MyST-NB renders Markdown outputs
    without tables. The front page adds the same links as ``.ipynb`` links in a Markdown
    cell, which Jupyter Book resolves and JupyterLab opens.
    """
    import html

    head = "".join(f"<th>{h}</th>" for h in ("claim", "verdict", "our number [95% interval]",
                                             "smallest decidable difference", "the paper", "evidence"))
    body = []
    for c in claims:
        r = c.row()
        ours = r["ours"] if len(c.evidence) <= 1 else f"the weakest of {len(c.evidence)} comparisons: {r['ours']}"
        links = ", ".join(f'<a href="{html.escape(Path(ch).stem + link_suffix)}">chapter '
                          f"{html.escape(ch.split('_', 1)[0].lstrip('0') or '0')}</a>" for ch in c.chapters)
        body.append(f"<tr><td>{html.escape(r['claim'])}</td><td><strong>{html.escape(r['verdict'])}</strong></td>"
                    f"<td>{html.escape(ours)}</td><td>{html.escape(r['detectable'])}</td>"
                    f"<td>{html.escape(r['paper'])}</td><td>{links}</td></tr>")
    return (f'<table class="table"><caption>The paper\'s claims and the verdicts on this run\'s data</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def verdict_intro(claims: Sequence[Claim], *, synthetic: bool, folds: int, data: str = "SIPaKMeD",
                  weights: str | None = None) -> str:
    """The sentence above the table: how many claims got which verdict, on which data (``data``:
    its name, for real data), from how many folds; ``weights``, where the fold runs started in
    words (``Study.weights_text("ours")``), is named after it."""
    counts = {v: sum(c.verdict == v for c in claims) for v in (*VERDICTS, NOT_TESTABLE)}
    tally = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    where = ("on the synthetic SIPaKMeD-compatible set, not on SIPaKMeD: these verdicts are about the "
             "generated data and test the pipeline, not the paper" if synthetic else f"on {data}")
    start = f" The fold runs (our protocol): {weights}." if weights else ""
    return f"Of the {len(claims)} claims checked {where}, with {folds} fold{'s' * (folds != 1)}: {tally}.{start}"


# ------------------------------------------------------------------ the five claims
@dataclass(frozen=True)
class PerImageMeasure:
    """A per-image measure of two models' explanations on the same images (claim 4).

    ``a`` and ``b``: ``(n,)`` for RCAN-DenseNet-121 and DenseNet-121; ``side=+1`` if the
    claim says a's values are higher, ``-1`` lower; ``scale`` converts to ``unit``.
    """

    name: str
    a: np.ndarray
    b: np.ndarray
    side: int
    unit: str = "points"
    scale: float = 100.0


def explanation_measures(claimed: ExplanationStudy, other: ExplanationStudy, *,
                         method: str = "ig") -> list[PerImageMeasure]:
    """Claim 4's two per-image measures from two :func:`cervixlib.explain.explanation_study`
    results on the same images: the share of the map inside the annotated cells ("less
    background": higher) and the number of cells holding 80% of the in-cell map ("fewer
    cells": lower)."""
    if claimed.images != other.images:
        raise ValueError(f"{claimed.model} and {other.model} were explained on different images: "
                         "no paired comparison")
    a, b = claimed.values[method], other.values[method]
    label = _METHOD_WORDS.get(method, method)
    return [PerImageMeasure(f"share of {label} inside the annotated cells", a["in_cell"], b["in_cell"],
                            side=1, unit="points of share"),
            PerImageMeasure(f"number of annotated cells holding 80% of the in-cell {label}", a["cells_80"],
                            b["cells_80"], side=-1, unit="cells", scale=1.0)]


def fig2_claim(claimed: ExplanationStudy, other: ExplanationStudy, *, synthetic: bool, method: str = "ig",
               n_resamples: int = 2000, seed: int = 0) -> Claim:
    """Claim 4 (Fig. 2) from two explanation studies on the same images, paired per image."""
    return _claim4(explanation_measures(claimed, other, method=method), synthetic, n_resamples, seed,
                   (MODEL_NAMES.get(claimed.model, claimed.model), MODEL_NAMES.get(other.model, other.model)))


def _claim4(measures: Sequence[PerImageMeasure], synthetic: bool, n_resamples: int, seed: int,
            names: tuple[str, str] = ("RCAN-DenseNet-121", "DenseNet-121")) -> Claim:
    ev = []
    for m in measures:
        d = paired_bootstrap(m.a, m.b, seed=seed, n_resamples=n_resamples).scaled(m.scale)
        ev.append(Evidence(f"{m.name}, {names[0]} − {names[1]}", d, m.side, m.unit,
                           detectable=detectable_from_interval(d)))
    return Claim(4, _CLAIM4.format(*names),
                 tuple(ev), ("05_explainability.ipynb",), synthetic, "one image shown (Fig. 2), no number")


#: The size of the paper's claimed differences (points): RCAN-DenseNet-121 over DenseNet-121 is
#: 1.98 points on multi-cell images; where a claim has no published difference, this is the target.
PAPER_EFFECT = 2.0


def _repeats_text(cmp: FoldComparison, detectable: float, paper: float | None) -> str:
    """What repeated folds would buy for an effect of the paper's size (points), or ""."""
    target = abs(paper) if paper else PAPER_EFFECT
    k = cmp.folds or cmp.a.size
    if not np.isfinite(detectable) or detectable <= target or cmp.a.size < 2:
        return ""
    r = cmp.repeats_for(target / 100)
    if r is None:
        floor = 100 * cmp.floor()
        return (f"No number of repeats of these {k} folds decides {target:.1f} points: at this spread the "
                f"overlap of training sets alone sets a floor of ±{floor:.1f} points; more images would.")
    size = "the paper's difference" if paper else "the size of the paper's differences"
    return (f"Deciding {target:.1f} points ({size}) at this spread would need {r} repeats of the {k} folds "
            f"({r * k} runs a model; the parameter repeats = {r}).")


def fold_evidence(label: str, cmp: FoldComparison, side: int, paper: float | None) -> Evidence:
    """The evidence of a fold comparison (claims 1 to 3, 5, and chapter 6's claim 6): the corrected
    t-test decides, the bootstrap stands beside it, with the smallest decidable difference and
    what repeats would buy (in points)."""
    detectable = cmp.detectable() * 100
    return Evidence(label, cmp.t.scaled(100), side, "points", paper, cmp.bootstrap.scaled(100),
                    detectable, _repeats_text(cmp, detectable, paper))


def _paper_diff(a: str, b: str, subset: str) -> float | None:
    pa, pb = PAPER_TABLE2.get(a, {}), PAPER_TABLE2.get(b, {})
    key = f"{subset}_acc"
    return round(pa[key] - pb[key], 2) if key in pa and key in pb else None


def _pairs_evidence(fold_runs: Mapping[str, Mapping[str, Sequence[Run]]], a: str, b: str, side: int,
                    **kw: Any) -> list[Evidence]:
    out = []
    for subset, runs in fold_runs.items():
        if a in runs and b in runs:
            cmp = compare_fold_runs(runs[a], runs[b], **kw)
            label = f"{_SUBSET_NAMES.get(subset, subset)}, {MODEL_NAMES.get(a, a)} − {MODEL_NAMES.get(b, b)}"
            out.append(fold_evidence(label, cmp, side, _paper_diff(a, b, subset)))
    return out


def _paper_text(items: Sequence[tuple[str, str, str]]) -> str:
    """``"RCAN-DenseNet-121 91.09% vs DenseNet-121 89.11% (multi-cell images)"``-style text."""
    parts = []
    for a, b, subset in items:
        pa, pb = PAPER_TABLE2.get(a, {}), PAPER_TABLE2.get(b, {})
        key = f"{subset}_acc"
        if key in pa and key in pb:
            parts.append(f"{_SUBSET_NAMES[subset]}: {MODEL_NAMES[a]} {pa[key]:.2f}% vs {MODEL_NAMES[b]} {pb[key]:.2f}%")
    return "; ".join(parts)


def paper_claims(
    fold_runs: Mapping[str, Mapping[str, Sequence[Run]]],
    *,
    synthetic: bool,
    measures: Sequence[PerImageMeasure] = (),
    vote: FoldComparison | None = None,
    vote_model: str = "rcan_densenet121",
    sipakmed: bool = True,
    not_testable: Sequence[int] = (),
    n_resamples: int = 2000,
    seed: int = 0,
) -> list[Claim]:
    """The paper's five claims, each with evidence and verdict, from the runs that exist.

    Args:
        fold_runs: ``{"multi": {model: [run per fold]}, "isolated": {...}}`` on the same folds
            (:meth:`cervixlib.study.Study.fold_runs`); on a class-per-folder set ``{"images": ...}``.
        synthetic: the runs are on the embedded synthetic set (every verdict says so).
        measures: claim 4's per-image measures (:func:`explanation_measures`; more may be added).
        vote: claim 5's :func:`vote_comparison` of ``vote_model``.
        sipakmed: the data is SIPaKMeD (or the synthetic stand-in): the paper's numbers are
            shown beside ours; on other data they are not comparable and left out.
        not_testable: claims (4, 5) the data cannot test (:func:`untestable_claims`): listed
            with the reason, without a verdict.

    A claim whose runs or measures are missing is left out of the list.
    """
    kw = {"n_resamples": n_resamples, "seed": seed}
    chapters = _FOLD_CHAPTERS if "isolated" in fold_runs else _FOLD_CHAPTERS[:1]  # chapter 4 needs isolated cells

    def paper(items: Sequence[tuple[str, str, str]], suffix: str = "") -> str:
        return _paper_text(items) + suffix if sipakmed else "not comparable: the paper's numbers are SIPaKMeD's"

    claims = []
    best = "rcan_densenet121"
    ev = [e for other in ("resnet50", "densenet121", "ran_resnet50")
          for e in _pairs_evidence(fold_runs, best, other, 1, **kw)]
    if ev:
        where = ", on multi-cell images and on isolated cells" if sipakmed else ""
        claims.append(Claim(1, f"RCAN-DenseNet-121 is the most accurate of the four models{where}", tuple(ev),
                            chapters, synthetic,
                            paper([(best, "densenet121", "multi"), (best, "densenet121", "isolated")],
                                  " (the runner-up)")))
    ev = _pairs_evidence(fold_runs, "densenet121", "resnet50", 1, **kw)
    if ev:
        claims.append(Claim(2, "DenseNet-121 beats ResNet-50", tuple(ev), chapters, synthetic,
                            paper([("densenet121", "resnet50", s) for s in ("multi", "isolated")])))
    ev = _pairs_evidence(fold_runs, "ran_resnet50", "resnet50", -1, **kw)
    if ev:
        claims.append(Claim(3, "The residual attention modules lower ResNet-50's accuracy", tuple(ev),
                            chapters, synthetic,
                            paper([("ran_resnet50", "resnet50", s) for s in ("multi", "isolated")])))
    if 4 in not_testable:
        claims.append(Claim(4, _CLAIM4.format(MODEL_NAMES["rcan_densenet121"], MODEL_NAMES["densenet121"]), (),
                            ("05_explainability.ipynb",), synthetic, not_testable=_CLAIM_NEEDS[4]))
    elif measures:
        claims.append(_claim4(measures, synthetic, n_resamples, seed))
    if 5 in not_testable:
        claims.append(Claim(5, _CLAIM5, (), ("04_multicell_vs_isolated.ipynb",), synthetic,
                            not_testable=_CLAIM_NEEDS[5]))
    elif vote is not None:
        name = MODEL_NAMES.get(vote_model, vote_model)
        iso, mul = PAPER_TABLE2.get(vote_model, {}).get("isolated_acc"), PAPER_TABLE2.get(vote_model, {}).get("multi_acc")
        claims.append(Claim(
            5, _CLAIM5,
            (fold_evidence(f"image-level accuracy of {name}, multi-cell model − vote of the isolated-cell "
                            f"model over the image's crops", vote, 1, None),),
            ("04_multicell_vs_isolated.ipynb",), synthetic,
            f"not measured per image; Table II per cell/image: isolated {iso:.2f}% vs multi-cell {mul:.2f}%"
            if iso is not None else "",
            context="Table II's isolated-cell accuracy is per cell and its multi-cell accuracy per image: "
                    "different test units, so it does not compare the two inputs on the same question."))
    return claims


def untestable_claims(subsets: Sequence[str], *, outlines: bool) -> list[int]:
    """The claims the data cannot test: 4 without cell outlines (``outlines``), 5 without
    SIPaKMeD's two subsets (``subsets``, :attr:`cervixlib.data.DatasetIndex.subsets`)."""
    return [n for n, ok in ((4, outlines), (5, {"multi", "isolated"} <= set(subsets))) if not ok]
