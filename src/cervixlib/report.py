"""Tables of finished runs: a run's metrics, and the comparison in the form of Table II.

Table II of Wang et al. (2021) lists test accuracy per model on isolated cells (a) and
multi-cell images (b), and per-class F1 on multi-cell images (c). Ours adds what a
reader needs to judge it: 95% bootstrap intervals, the test-split size, seed summaries
where several seeds ran, McNemar tests between models on the same split, the paper's
numbers beside ours, and which dataset produced the numbers.

The paper's numbers are SIPaKMeD's: they stand beside runs on SIPaKMeD (and on the
embedded synthetic SIPaKMeD-compatible set, labelled as the paper's), never beside runs
on a class-per-folder set (:mod:`cervixlib.published`), whose tables say what they hold
without the paper's name (:func:`table2_caption`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

from cervixlib.facts import (ISOLATED_COUNTS, MULTI_COUNTS, PAPER_FRACTIONS, SUBSET_WORDS, class_abbreviations,
                             class_key_text)
from cervixlib.layout import data_label
from cervixlib.metrics import mcnemar, proportion_interval, summarize
from cervixlib.published import on_sipakmed, paper_numbers
from cervixlib.runs import Run

__all__ = ["dataset_label", "format_run", "table2_rows", "subset_rows", "split_rows", "leakage_rows",
           "weights_label", "format_table", "mcnemar_rows", "fold_rows", "paired_fold_rows",
           "mcnemar_fold_rows", "vote_rows", "compare_text", "class_order_text", "subset_text",
           "table2_caption", "table2_note", "SPLIT_WORDS", "protocol_of", "fold_label"]


def dataset_label(run: Run) -> str:
    """``"synthetic (not SIPaKMeD)"``, or the real data by its folder's name
    (:func:`cervixlib.layout.data_label`): tables on a page never show the build machine's path."""
    if run.synthetic:
        return "synthetic (not SIPaKMeD)"
    return data_label(run.data_root.name, run.info.get("layout", "sipakmed"))


def subset_text(runs: Iterable[Run]) -> str:
    """The runs' subsets in words (:data:`cervixlib.facts.SUBSET_WORDS`): ``"multi-cell images"``,
    ``"images"`` on a class-per-folder set."""
    return " and ".join(SUBSET_WORDS.get(s, s) for s in dict.fromkeys(r.config.data.subset for r in runs))


def _classes(run: Run) -> list[str]:
    return list(run.metrics["test"]["per_class"])


def class_order_text(runs: Sequence[Run]) -> str:
    """``"F1 per class: Dys (Dyskeratotic), Koi (Koilocytotic), ..."``: the short names that head
    the per-class F1 columns (:func:`cervixlib.facts.class_abbreviations`), each with its full
    name where the two differ."""
    classes = list(dict.fromkeys(c for r in runs for c in _classes(r)))
    return f"F1 per class: {class_key_text(class_abbreviations(classes))}"


def _pct(interval: dict[str, float], n: int | None = None) -> str:
    """``"84.2 [76.0, 91.3]"`` in percent. A bootstrap with no spread (every test image right, or
    wrong) gives a zero-width interval: for an accuracy (``n``: the test images) the exact
    Clopper-Pearson interval of the proportion stands in its place; otherwise the value alone."""
    value, low, high = interval["value"], interval["low"], interval["high"]
    if high <= low:
        if n is None:
            return f"{100 * value:.1f} (no interval: no spread between the test images)"
        ci = proportion_interval(round(value * n), n)
        low, high = ci.low, ci.high
    return f"{100 * value:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def _accuracy(run: Run) -> str:
    """A run's test accuracy in percent with its interval (:func:`_pct`)."""
    return _pct(run.metrics["test"]["accuracy"], int(run.metrics["test"]["n"]))


def weights_label(run: Run) -> str:
    """Where a run's starting weights came from: ``"ImageNet"``, a file's name, or ``"none"`` (from scratch)."""
    source = run.info.get("weights_source") or run.config.weights
    if not source:
        return "none"
    return "ImageNet" if run.config.weights == "imagenet" else Path(str(source)).name


def leakage_rows(pairs: Mapping[str, Mapping[str, Run]]) -> list[dict[str, Any]]:
    """The same model and recipe under our split and the released one (:meth:`Study.leakage_runs`):
    test n, accuracy (95% CI) and how many test images share a source image with a training image."""
    rows = []
    for model, by_split in pairs.items():
        for split, run in by_split.items():
            rows.append({"model": model, "split": SPLIT_WORDS.get(split, split),
                         "test images": run.metrics["test"]["n"],
                         "accuracy (%)": _accuracy(run),
                         "test images with a sibling in training": run.info.get("test_with_sibling_in_train")})
    return rows


def _skipped_text(run: Run) -> str:
    n = int(run.info.get("skipped_files", 0))
    return f"  ({n} bad file{'s' * (n != 1)} left out, --skip-bad)" if n else ""


def _siblings_text(run: Run) -> str:
    n = run.info.get("test_with_sibling_in_train")
    return f" ({n} test image{'s' * (n != 1)} with a sibling crop in train)" if n else ""


def format_run(run: Run) -> str:
    """A plain-text metrics table of one run's test split."""
    m = run.metrics["test"]
    lines = [f"run       {run.dir}",
             f"model     {run.config.model}  subset {run.config.data.subset}  "
             f"{run.config.data.image_size}px  epochs {run.config.epochs}  seed {run.config.seed}  "
             f"split {run.config.data.split}  weights {weights_label(run)}" + _siblings_text(run),
             f"data      {dataset_label(run)}" + ("" if run.synthetic else f" at {run.data_root}")
             + _skipped_text(run),
             f"test n={m['n']}  accuracy {_pct(m['accuracy'], int(m['n']))}%  "
             f"weighted F1 {_pct(m['weighted_f1'])}% "
             f"(95% bootstrap CI)  best epoch {run.metrics.get('best_epoch')}",
             f"{'class':<26}{'precision':>10}{'recall':>10}{'F1':>10}{'support':>10}"]
    for name, row in m["per_class"].items():
        lines.append(f"{name:<26}{row['precision']:>10.3f}{row['recall']:>10.3f}{row['f1']:>10.3f}{row['support']:>10d}")
    return "\n".join(lines)


#: The splits by the words a table uses.
SPLIT_WORDS: dict[str, str] = {"group": "ours (grouped)", "released": "released code"}


def protocol_of(run: Run) -> str:
    """``"ours"`` or ``"released code"``: the protocol a run followed (its split names it)."""
    return "released code" if run.config.data.split == "released" else "ours"


def table2_rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """One row per (model, subset, split, weights), main protocol and the other in one table:
    ours first (mean over seeds, or the single run with its CI), the paper's accuracy beside
    it on SIPaKMeD, weighted F1, then F1 per class under each class's short name
    (:func:`cervixlib.facts.class_abbreviations`), the paper's beside ours on multi-cell
    images. Rows of runs on other data have no paper columns
    (:func:`cervixlib.published.paper_numbers`). Rows in the order the runs come (the paper's order
    of the models), the main protocol's first; a column says which protocol a row followed when
    the runs follow both (else the split), which subset when they cover both, how many seeds
    when a row averages several."""
    groups: dict[tuple[str, str, str, str], list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run.config.model, run.config.data.subset, run.config.data.split, weights_label(run))].append(run)
    protocols = {protocol_of(r) for r in runs}
    subsets = {r.config.data.subset for r in runs}
    seeds = any(len(g) > 1 for g in groups.values())
    order = {m: i for i, m in enumerate(dict.fromkeys(r.config.model for r in runs))}  # as given: the paper's
    rows = []
    for (model, subset, split, weights), group in sorted(groups.items(), key=lambda kv: (
            kv[0][2] != group_split(runs), kv[0][1], order[kv[0][0]])):
        accs = [r.metrics["test"]["accuracy"] for r in group]
        f1s = [r.metrics["test"]["weighted_f1"] for r in group]
        paper = paper_numbers(group[0])
        row: dict[str, Any] = {"model": model}
        if len(subsets) > 1:
            row["subset"] = SUBSET_WORDS.get(subset, subset)
        if len(protocols) > 1:  # the protocol names the split too
            row["protocol"] = protocol_of(group[0])
        else:
            row["split"] = SPLIT_WORDS.get(split, split)
        row["weights"] = weights
        if seeds:
            row["seeds"] = len(group)
        row["test images"] = group[0].metrics["test"]["n"]
        if len(group) == 1:
            row["accuracy (%)"] = _accuracy(group[0])
        else:
            a = summarize([x["value"] for x in accs])
            row["accuracy (%)"] = f"{100 * a['mean']:.1f} ± {100 * a['std']:.1f} (n = {a['n']})"
        if on_sipakmed(group[0]):  # the paper's column: SIPaKMeD's numbers, beside SIPaKMeD runs only
            row["paper (%)"] = f"{paper[f'{subset}_acc']:.2f}" if f"{subset}_acc" in paper else "not given"
        if len(group) == 1:
            row["weighted F1 (%)"] = _pct(f1s[0])
        else:
            f = summarize([x["value"] for x in f1s])
            row["weighted F1 (%)"] = f"{100 * f['mean']:.1f} ± {100 * f['std']:.1f} (n = {f['n']})"
        per_class = group[0].metrics["test"]["per_class"]
        short = class_abbreviations(list(per_class))
        paper_f1 = dict(zip(per_class, paper["multi_f1"])) if subset == "multi" and "multi_f1" in paper else {}
        for name, v in per_class.items():
            row[f"F1 {short[name]}"] = (f"{v['f1']:.3f}" + (f" (paper {paper_f1[name]:.3f})" if name in paper_f1 else ""))
        rows.append(row)
    return rows


def group_split(runs: Sequence[Run]) -> str:
    """The split of the first run: the main protocol's, whose rows come first in a table."""
    return runs[0].config.data.split if runs else "group"


def subset_rows(isolated: Mapping[str, Run], multi: Mapping[str, Run]) -> list[dict[str, Any]]:
    """One row per model trained on both subsets: test n and accuracy (95% CI) on each, beside the paper's."""
    rows = []
    for model in [m for m in isolated if m in multi]:
        paper = paper_numbers(multi[model])
        row = {"model": model,
               "isolated cells: test images": isolated[model].metrics["test"]["n"],
               "isolated cells: accuracy (%)": _accuracy(isolated[model]),
               "multi-cell images: test images": multi[model].metrics["test"]["n"],
               "multi-cell images: accuracy (%)": _accuracy(multi[model])}
        if on_sipakmed(multi[model]):
            row.update({"paper, isolated (%)": paper.get("isolated_acc"), "paper, multi-cell (%)": paper.get("multi_acc")})
        rows.append(row)
    return rows


def split_rows(items: Sequence[Any], split: Any, class_names: Sequence[str], *, subset: str = "") -> list[dict[str, Any]]:
    """Images per class in each part of ``split`` (indices into ``items``), one row per class."""
    return [{"subset": subset, "class": name,
             **{part: int(sum(items[i].label == k for i in getattr(split, part))) for part in ("train", "val", "test")}}
            for k, name in enumerate(class_names)]


def mcnemar_rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """McNemar's exact test for every pair of runs that share a test split (same subset, data, split and seed)."""
    rows = []
    for a, b in combinations(runs, 2):
        if (a.config.data.subset, a.config.data.split, a.config.data.split_seed, a.data_root) != (
                b.config.data.subset, b.config.data.split, b.config.data.split_seed, b.data_root):
            continue
        if list(a.predictions["test_index"]) != list(b.predictions["test_index"]):
            continue
        res = mcnemar(a.y_true, a.y_pred, b.y_pred)
        rows.append({"subset": SUBSET_WORDS.get(a.config.data.subset, a.config.data.subset),
                     "model a": a.config.model, "model b": b.config.model,
                     "a right, b wrong": res["b"], "a wrong, b right": res["c"], "p (exact)": res["p_value"]})
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Render rows of dicts as a fixed-width text table."""
    if not rows:
        return "(no rows)"
    cols = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[("" if row.get(c) is None else (f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c])))
              for c in cols] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths]), *(line(r) for r in cells)])


#: The parts of the paper's Table II for each of SIPaKMeD's subsets.
_TABLE2_PARTS = {"isolated": "a", "multi": "b, c"}


def table2_caption(runs: Sequence[Run], *, what: str = "", dataset: str = "") -> str:
    """The caption of ``table2_rows(runs)``: on SIPaKMeD the part of the paper's table it
    reproduces (``"Table II (b, c)"``), on other data what it holds (``"Test accuracy and F1
    on images"``) without the paper's name; then ``what`` (``"baselines"``), the class order
    (:func:`class_order_text`) and the dataset."""
    subsets = list(dict.fromkeys(r.config.data.subset for r in runs))
    if runs and all(on_sipakmed(r) for r in runs):
        head = f"Table II ({'; '.join(_TABLE2_PARTS[s] for s in sorted(subsets) if s in _TABLE2_PARTS)})"
    else:
        head = f"Test accuracy and F1 on {subset_text(runs)}"
    parts = [head + (f": {what}" if what else ""), class_order_text(runs)]
    return ". ".join(parts + ([f"Dataset: {dataset}"] if dataset else []))


def _paper_test_n(subset: str) -> int | None:
    """Images in the paper's test split of a SIPaKMeD subset: ``n - int(0.7 n) - int(0.2 n)``
    a class, as the released code splits (101 multi-cell images)."""
    counts = {"multi": MULTI_COUNTS, "isolated": ISOLATED_COUNTS}.get(subset)
    if counts is None:
        return None
    return sum(n - int(PAPER_FRACTIONS[0] * n) - int(PAPER_FRACTIONS[1] * n) for n in counts.values())


def table2_note(runs: Sequence[Run]) -> str:
    """What a reader needs beside ``table2_rows(runs)``, in Markdown: how many test images
    the runs had and what one image is worth in accuracy points; on SIPaKMeD, the size of
    the paper's own test split (one image, about a point); on other data, that the paper's
    numbers are not shown because they are SIPaKMeD's."""
    ns = sorted({int(r.metrics["test"]["n"]) for r in runs})
    subsets = list(dict.fromkeys(r.config.data.subset for r in runs))
    words = subset_text(runs)
    size = (f"{ns[0]} {words}, so one image is {100 / ns[0]:.1f} points of accuracy" if len(ns) == 1 else
            f"between {ns[0]} and {ns[-1]} {words}, so one image is {100 / ns[-1]:.1f} to "
            f"{100 / ns[0]:.1f} points of accuracy")
    text = f"Our test split{'s' * (len(ns) > 1)} hold{'s' * (len(ns) == 1)} {size}."
    if runs and all(on_sipakmed(r) for r in runs):
        paper = [(n, SUBSET_WORDS[s]) for s in subsets if (n := _paper_test_n(s))]
        if paper:
            text += (" The paper's numbers beside ours come from its own 10% test split of "
                     + " and ".join(f"{n} {w}" for n, w in paper) + f" (one image: {100 / paper[0][0]:.1f} points).")
    else:
        text += (" The paper's numbers (Wang et al. 2021, Table II) are not shown: they were measured on "
                 "SIPaKMeD, not on these data.")
    return text


def compare_text(runs: Sequence[Run]) -> str:
    """The text printed by ``cervix compare``: Table II beside the paper (on SIPaKMeD), then McNemar tests."""
    datasets = sorted({dataset_label(r) for r in runs})
    if all(on_sipakmed(r) for r in runs):
        head = "Table II (ours beside Wang et al. 2021)."
    else:
        head = "Test accuracy and F1 of our runs (the paper's Table II is SIPaKMeD's and not shown)."
    parts = [f"{head} Test accuracy and weighted F1 in %, 95% bootstrap CI. {class_order_text(runs)}.",
             f"Dataset: {'; '.join(datasets)}"]
    if any(r.synthetic for r in runs):
        parts.append("NOTE: synthetic data -- these are not SIPaKMeD results; the paper's column is for reference only.")
    parts += ["", format_table(table2_rows(runs))]
    tests = mcnemar_rows(runs)
    if tests:
        parts += ["", "McNemar exact tests (same test split):", format_table(tests)]
    return "\n".join(parts)


# ------------------------------------------------------------------ repeated grouped folds
def fold_rows(fold_runs: Mapping[str, Sequence[Run]]) -> list[dict[str, Any]]:
    """One row per model (:meth:`Study.fold_runs`): test accuracy on each fold, their mean and
    standard deviation, beside the paper's single-split number on SIPaKMeD."""
    from cervixlib.claims import fold_accuracies
    from cervixlib.comparison import fold_mean_sd

    rows = []
    for model, runs in fold_runs.items():
        acc = 100 * fold_accuracies(runs)
        mean, sd = fold_mean_sd(acc)
        subset = runs[0].config.data.subset
        row = {"model": model, "folds": len(runs),
               "test images per fold": " ".join(str(len(r.y_true)) for r in runs),
               "accuracy per fold (%)": " ".join(f"{a:.1f}" for a in acc),
               "mean ± sd (%)": f"{mean:.1f} ± {sd:.1f}" if len(runs) > 1 else f"{mean:.1f}"}
        if on_sipakmed(runs[0]):
            paper = paper_numbers(runs[0]).get(f"{subset}_acc")
            row["paper (%), one split"] = "not given" if paper is None else f"{paper:.2f}"
        rows.append(row)
    return rows


def paired_fold_rows(fold_runs: Mapping[str, Sequence[Run]], *, n_resamples: int = 2000,
                     seed: int = 0) -> list[dict[str, Any]]:
    """Every pair of models on the same folds: the mean accuracy difference a - b in points with
    the corrected resampled t interval (which decides the front page's verdicts) and the paired
    bootstrap over the pooled test images beside it."""
    from cervixlib.claims import compare_fold_runs

    rows = []
    for a, b in combinations(fold_runs, 2):
        cmp = compare_fold_runs(fold_runs[a], fold_runs[b], n_resamples=n_resamples, seed=seed)
        t, boot = cmp.t.scaled(100), cmp.bootstrap.scaled(100)
        rows.append({"model a": a, "model b": b, "folds": t.n,
                     "a − b, points [95% corrected t]": t.text(),
                     "p (corrected t)": t.p_value if t.has_interval else "none",
                     "smallest decidable difference (points)": _detectable_text(cmp),
                     f"a − b, points [95% bootstrap, {boot.n} images]": boot.text()})
    return rows


def mcnemar_fold_rows(fold_runs: Mapping[str, Sequence[Run]]) -> list[dict[str, Any]]:
    """McNemar's exact test for every pair of models on each fold (the same test images)."""
    rows = []
    for a, b in combinations(fold_runs, 2):
        for fold, (ra, rb) in enumerate(zip(fold_runs[a], fold_runs[b])):
            res = mcnemar(ra.y_true, ra.y_pred, rb.y_pred)
            rows.append({"model a": a, "model b": b, "fold": fold_label(ra), "a right, b wrong": res["b"],
                         "a wrong, b right": res["c"], "p (exact)": res["p_value"]})
    return rows


def fold_label(run: Run) -> str:
    """``"2"``: the run's fold counted from 1, ``"2 (repeat 3)"`` in a repeat of the folds."""
    d = run.config.data
    return f"{d.fold + 1}" + (f" (repeat {d.split_seed + 1})" if d.split_seed else "")


def _detectable_text(cmp: Any) -> str:
    """The smallest difference the folds decide at 80% power, in points, or why none."""
    import math

    value = 100 * cmp.detectable()
    return f"±{value:.1f}" if math.isfinite(value) else "not estimable"


def vote_rows(votes: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per model (``{model: claims.vote_comparison(...)}``): image-level accuracy of the multi-cell
    model and of the isolated-cell model's vote over each image's crops, and their difference."""
    rows = []
    for model, cmp in votes.items():
        t, boot = cmp.t.scaled(100), cmp.bootstrap.scaled(100)
        rows.append({"model": model, "folds": t.n, "multi-cell images": cmp.n_images,
                     "multi-cell model, accuracy % per fold": " ".join(f"{100 * v:.1f}" for v in cmp.a),
                     "vote of the isolated-cell model, % per fold": " ".join(f"{100 * v:.1f}" for v in cmp.b),
                     "multi − vote, points [95% corrected t]": t.text(),
                     "multi − vote, points [95% bootstrap]": boot.text(),
                     "McNemar p per fold": " ".join(f"{m['p_value']:.3g}" for m in cmp.mcnemar)})
    return rows
