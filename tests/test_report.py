"""The report tables (Table II, McNemar, the subset comparison) and the notebooks' Study glue,
checked against sklearn/scipy on fixed predictions and against the profile."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score

from cervixlib import report
from cervixlib.config import PROFILES, make_config
from cervixlib.display import study_statement
from cervixlib.facts import CLASSES, PAPER_TABLE2
from cervixlib.metrics import classification_metrics
from cervixlib.runs import Run
from cervixlib.study import Study

Y = np.array([0, 1, 2, 3, 4] * 4)


def _run(tmp_path, model: str, pred: np.ndarray, subset: str = "multi", synthetic: bool = True) -> Run:
    prob = np.eye(5)[pred]
    return Run(dir=tmp_path / f"{model}-{subset}", config=make_config(model, profile="smoke", subset=subset),
               key="k", info={"data_root": str(tmp_path / "data"), "synthetic": synthetic, "classes": list(CLASSES)},
               history=[], metrics={"test": classification_metrics(Y, prob, CLASSES), "best_epoch": 1},
               predictions={"test_index": np.arange(len(Y)), "test_y": Y, "test_prob": prob})


@pytest.fixture
def runs(tmp_path):
    a = Y.copy()
    a[:3] = (a[:3] + 1) % 5  # 3 wrong
    b = Y.copy()
    b[10:18] = (b[10:18] + 2) % 5  # 8 wrong, none shared with a
    return [_run(tmp_path, "resnet50", a), _run(tmp_path, "densenet121", b)]


def test_table2_rows_hold_our_numbers_and_the_papers(runs):
    rows = {r["model"]: r for r in report.table2_rows(runs)}
    for run in runs:
        row = rows[run.config.model]
        acc = accuracy_score(Y, run.y_pred)
        assert row["accuracy (%)"].startswith(f"{100 * acc:.1f} [")
        assert row["weighted F1 (%)"].startswith(f"{100 * f1_score(Y, run.y_pred, average='weighted'):.1f} [")
        assert row["paper (%)"] == f"{PAPER_TABLE2[run.config.model]['multi_acc']:.2f}"
        assert row["test images"] == len(Y)
        keys = list(row)  # ours first, the paper's beside it
        assert keys.index("accuracy (%)") + 1 == keys.index("paper (%)")
    f1 = f1_score(Y, runs[0].y_pred, average=None)
    per_class = [rows["resnet50"][f"F1 {short}"] for short in ("Dys", "Koi", "Met", "Par", "Sup")]
    assert per_class == [f"{ours:.3f} (paper {paper:.3f})" for ours, paper in
                         zip(f1, (0.869, 0.744, 0.839, 0.960, 0.846))]


def test_mcnemar_rows_count_discordant_pairs_and_match_scipy(runs):
    (row,) = report.mcnemar_rows(runs)
    assert (row["a right, b wrong"], row["a wrong, b right"]) == (8, 3)
    assert row["p (exact)"] == pytest.approx(stats.binomtest(8, 11, 0.5).pvalue)


def test_runs_on_other_test_splits_are_not_paired(runs, tmp_path):
    other = _run(tmp_path, "ran_resnet50", Y, subset="isolated")
    assert len(report.mcnemar_rows([*runs, other])) == 1


def test_subset_rows_pair_each_models_two_runs(runs, tmp_path):
    isolated = {"resnet50": _run(tmp_path, "resnet50", Y, subset="isolated")}
    multi = {r.config.model: r for r in runs}
    (row,) = report.subset_rows(isolated, multi)
    assert row["model"] == "resnet50" and row["isolated cells: accuracy (%)"].startswith("100.0 [")
    assert row["multi-cell images: accuracy (%)"].startswith(f"{100 * 17 / 20:.1f} [")
    assert (row["paper, isolated (%)"], row["paper, multi-cell (%)"]) == (95.11, 85.15)


def test_compare_text_says_synthetic_and_names_the_class_order(runs):
    text = report.compare_text(runs)
    assert "not SIPaKMeD results" in text and "McNemar" in text
    assert ("F1 per class: Dys (Dyskeratotic), Koi (Koilocytotic), Met (Metaplastic), Par (Parabasal), "
            "Sup (Superficial-Intermediate)") in text
    assert "resnet50" in report.format_run(runs[0]) and "accuracy 85.0" in report.format_run(runs[0])


def test_study_configs_are_the_profiles_and_the_statement_says_what_ran(synth_root, tmp_path):
    study = Study(profile="smoke", data_root=str(synth_root), runs_dir=str(tmp_path))
    for subset in ("multi", "isolated"):
        assert study.config("resnet50", subset) == make_config(
            "resnet50", profile="smoke", root=str(synth_root), subset=subset)
    assert study.config("resnet50").data.subset == "multi"  # a SIPaKMeD tree's own default
    text = study_statement(study)
    assert "Synthetic data: these are not SIPaKMeD results" in text
    assert (f"the embedded synthetic SIPaKMeD-compatible set ({len(study.index.multi)} multi-cell images, "
            f"{len(study.index.isolated)} isolated cells; data fingerprint <code>") in text
    assert "profile <code>smoke</code>: 64 px, 1 epoch," in text
    default = study_statement(Study(profile="default", data_root=str(synth_root)))
    assert "profile <code>default</code>: 64 px, 8 epochs on multi-cell images and 2 on isolated cells" in default
    # the profile by name, linked to the one page that says what each profile is for (not repeated here)
    assert PROFILES["default"].description not in default and 'href="intro.html#profiles"' in default


def test_the_statement_names_the_data_and_its_fingerprint_never_its_path(synth_root, sipakmed_tree, tmp_path):
    """A published page shows the data's name, counts and fingerprint; the root's path
    (the build machine's) stays in the notebook's parameters cell."""
    folders = tmp_path / "my-cytology-set"
    for name in ("a", "b", "c"):
        (folders / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folders / name / f"{i}.png")
    expected = {synth_root: "the embedded synthetic SIPaKMeD-compatible set (",
                sipakmed_tree: "SIPaKMeD, folder <code>sipakmed</code> (",
                folders: "The class-per-folder set <code>my-cytology-set</code> (9 images in 3 classes; "}
    for root, name in expected.items():
        study = Study(profile="smoke", data_root=str(root), runs_dir=str(tmp_path / "runs"))
        text, index = study_statement(study), study.index
        for path in {root, root.resolve(), study.root, study.root.resolve()}:
            assert str(path) not in text and str(path.parent) not in text
        assert name in text and f"data fingerprint <code>{index.fingerprint()[:12]}</code>)" in text
        if index.layout != "class-folders":
            assert f"({len(index.multi)} multi-cell images, {len(index.isolated)} isolated cells;" in text
        assert str(root) not in study.dataset_label and str(root.parent) not in study.dataset_label
    assert Study(profile="smoke", data_root=str(sipakmed_tree)).dataset_label == "SIPaKMeD (sipakmed)"
    assert Study(profile="smoke", data_root=str(folders)).dataset_label == "my-cytology-set (class-per-folder set)"


def test_report_tables_name_real_data_by_folder_not_path(tmp_path):
    run = _run(tmp_path, "resnet50", Y, synthetic=False)
    run.info["layout"] = "sipakmed"
    (row,) = report.table2_rows([run])
    assert "SIPaKMeD (data)" in report.compare_text([run]) and str(tmp_path) not in report.compare_text([run])
    assert str(tmp_path) not in str(row)
    assert f"at {tmp_path / 'data'}" in report.format_run(run)  # the command line may show where it is


def test_split_rows_count_each_class_in_each_part():
    from types import SimpleNamespace

    from cervixlib.data import Split

    items = [SimpleNamespace(label=k) for k in (0, 0, 1, 1, 1, 2)]
    split = Split(train=np.array([0, 2, 3]), val=np.array([1]), test=np.array([4, 5]))
    rows = report.split_rows(items, split, ["a", "b", "c"], subset="multi")
    assert [(r["class"], r["train"], r["val"], r["test"]) for r in rows] == [
        ("a", 1, 1, 0), ("b", 2, 0, 1), ("c", 0, 0, 1)]
    assert all(r["subset"] == "multi" for r in rows)


def test_table2_keeps_splits_and_weights_apart_and_names_them(tmp_path, runs):
    released = _run(tmp_path, "rcan_densenet121_released", Y)
    released.config = released.config.replace(split="released", folds=1)  # the released split: one split
    rows = report.table2_rows([*runs, released])
    row = next(r for r in rows if r["model"] == "rcan_densenet121_released")
    assert (row["weights"], row["protocol"]) == ("none", "released code")
    assert row["paper (%)"] == "91.09"  # the paper's RCAN-DenseNet-121
    assert [r["protocol"] for r in rows] == ["ours", "ours", "released code"]  # the main protocol first
    assert [r["model"] for r in rows][:2] == ["resnet50", "densenet121"]  # in the order given, not sorted
    assert not {"seeds", "subset", "split"} & set(row)  # one seed, one subset; the protocol names the split
    assert report.table2_rows(runs)[0]["split"] == "ours (grouped)"


def test_leakage_rows_put_both_splits_of_one_model_side_by_side(tmp_path):
    group, paper = _run(tmp_path, "resnet50", Y, "isolated"), _run(tmp_path, "resnet50", Y, "isolated")
    group.info["test_with_sibling_in_train"], paper.info["test_with_sibling_in_train"] = 0, 7
    rows = report.leakage_rows({"resnet50": {"group": group, "released": paper}})
    assert [(r["split"], r["test images with a sibling in training"]) for r in rows] == [
        ("ours (grouped)", 0), ("released code", 7)]


def test_the_released_protocol_maps_the_papers_models_to_the_released_designs(synth_root):
    study = Study(profile="paper", data_root=str(synth_root))
    assert study.main_protocol == "released" and study.side_protocol == "ours"
    cfg = study.config("rcan_densenet121")
    assert (cfg.model, cfg.data.split, cfg.weights) == ("rcan_densenet121_released", "released", "imagenet")
    assert study.config("ran_resnet50").model == "ran92" and study.config("ran_resnet50").weights is None
    ours = study.config("rcan_densenet121", protocol="ours")
    assert (ours.model, ours.data.split, ours.weights) == ("rcan_densenet121", "group", None)
    default = Study(profile="default", data_root=str(synth_root))
    side = default.config("rcan_densenet121", protocol=default.side_protocol)
    assert (side.model, side.data.split, side.weights) == ("rcan_densenet121_released", "released", None)  # offline
    assert default.config("resnet50", "isolated", split="released").data.split == "released"


# ------------------------------------------------------------------ a class-per-folder set
FOLDER_CLASSES = ("ASC-US", "HSIL", "LSIL", "Metaplastic cells", "Negative for intraepithelial lesion", "SCC")
Y6 = np.array(list(range(6)) * 4)
#: What a page on a class-per-folder set must not show: SIPaKMeD's classes and counts, the paper's numbers.
SIPAKMED_WORDS = ("Dyskeratotic", "Koilocytotic", "Parabasal", "Superficial", "Dys", "Koi", "Sup", "4,049", "966",
                  "multi-cell", "Table II (")
PAPER_NUMBERS = tuple(f"{v:.2f}" for m in PAPER_TABLE2.values() for k, v in m.items() if k.endswith("_acc")) + \
    tuple(" ".join(f"{v:.3f}" for v in m["multi_f1"]) for m in PAPER_TABLE2.values())


def _folder_run(tmp_path, model: str, pred: np.ndarray, fold: int = 0) -> Run:
    prob = np.eye(6)[pred]
    return Run(dir=tmp_path / f"{model}-images-{fold}",
               config=make_config(model, profile="smoke", subset="images", folds=2, fold=fold), key="k",
               info={"data_root": str(tmp_path / "cervix-cells"), "synthetic": False, "layout": "class-folders",
                     "classes": list(FOLDER_CLASSES)},
               history=[], metrics={"test": classification_metrics(Y6, prob, FOLDER_CLASSES), "best_epoch": 1},
               predictions={"test_index": np.arange(len(Y6)), "test_y": Y6, "test_prob": prob})


@pytest.fixture
def folder_runs(tmp_path):
    a, b = Y6.copy(), Y6.copy()
    a[:4] = (a[:4] + 1) % 6
    b[8:12] = (b[8:12] + 2) % 6
    return [_folder_run(tmp_path, "resnet50", a), _folder_run(tmp_path, "ran_resnet50", b)]


def test_table2_on_a_class_folder_set_has_no_paper_column_and_says_what_it_is(folder_runs):
    rows = report.table2_rows(folder_runs)
    assert not any(k.startswith("paper") for row in rows for k in row)
    assert "subset" not in rows[0] and "F1 MC" in rows[0]
    caption = report.table2_caption(folder_runs, what="baselines", dataset="cervix-cells (class-per-folder set)")
    assert caption == ("Test accuracy and F1 on images: baselines. F1 per class: ASC-US, HSIL, LSIL, "
                       "MC (Metaplastic cells), NIL (Negative for intraepithelial lesion), SCC. "
                       "Dataset: cervix-cells (class-per-folder set)")
    note = report.table2_note(folder_runs)
    assert note.startswith("Our test split holds 24 images, so one image is 4.2 points of accuracy.")
    assert "not shown" in note
    text = " ".join([str(rows), caption, report.format_table(rows), report.compare_text(folder_runs)])
    for word in (*SIPAKMED_WORDS, *PAPER_NUMBERS):
        assert word not in text, word


def test_the_papers_numbers_stand_beside_sipakmed_runs_only(runs, folder_runs):
    from cervixlib.published import on_sipakmed, paper_numbers

    assert on_sipakmed(runs[0]) and "layout" not in runs[0].info  # a run stored before layouts: SIPaKMeD
    assert paper_numbers(runs[0]) == PAPER_TABLE2["resnet50"] and paper_numbers(folder_runs[0]) == {}
    assert not on_sipakmed(folder_runs[0])


def test_table2_on_sipakmed_keeps_the_paper_column_caption_and_test_size(runs):
    assert report.table2_caption(runs, what="baselines", dataset="x").startswith(
        "Table II (b, c): baselines. F1 per class: Dys (Dyskeratotic), ")
    assert report.table2_note(runs) == (
        "Our test split holds 20 multi-cell images, so one image is 5.0 points of accuracy. The paper's numbers "
        "beside ours come from its own 10% test split of 101 multi-cell images (one image: 1.0 points).")
    assert all("paper (%)" in row for row in report.table2_rows(runs))


def test_fold_rows_and_figures_on_a_class_folder_set_leave_the_paper_out(folder_runs, tmp_path, runs):
    from cervixlib.figures import accuracy_intervals, confusion_matrices

    folds = {r.config.model: [r, _folder_run(tmp_path, r.config.model, Y6, fold=1)] for r in folder_runs}
    rows = report.fold_rows(folds)
    assert [r["folds"] for r in rows] == [2, 2] and not any("paper" in k for row in rows for k in row)
    assert "paper (%), one split" in report.fold_rows({"resnet50": runs[:1]})[0]
    fig = accuracy_intervals(folder_runs)
    assert [t.name for t in fig.data] == ["ours, images"]
    assert [t.name for t in accuracy_intervals(runs).data] == ["ours, multi-cell images", "paper, multi-cell images"]
    cm = confusion_matrices({r.config.model: r for r in folder_runs})
    assert list(cm.data[0].x) == list(FOLDER_CLASSES)  # full names in the hover text, short ones on the axes
    assert list(cm.layout.xaxis.ticktext) == list(cm.layout.yaxis2.ticktext) == ["ASC-US", "HSIL", "LSIL", "MC",
                                                                                  "NIL", "SCC"]
    (key,) = [a.text for a in cm.layout.annotations if "NIL" in a.text]
    assert key == "ASC-US, HSIL, LSIL, MC (Metaplastic cells), NIL (Negative for intraepithelial lesion), SCC"
