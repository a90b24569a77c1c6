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
        assert row["accuracy"].startswith(f"{100 * acc:.1f} [")
        assert row["weighted_f1"].startswith(f"{100 * f1_score(Y, run.y_pred, average='weighted'):.1f} [")
        assert row["paper_accuracy"] == f"{PAPER_TABLE2[run.config.model]['multi_acc']:.2f}"
        assert row["test_n"] == len(Y) and row["dataset"] == "synthetic (not SIPaKMeD)"
    assert rows["resnet50"]["paper_f1_per_class"] == "0.869 0.744 0.839 0.960 0.846"


def test_mcnemar_rows_count_discordant_pairs_and_match_scipy(runs):
    (row,) = report.mcnemar_rows(runs)
    assert (row["a_right_b_wrong"], row["a_wrong_b_right"]) == (8, 3)
    assert row["p_value"] == pytest.approx(stats.binomtest(8, 11, 0.5).pvalue)


def test_runs_on_other_test_splits_are_not_paired(runs, tmp_path):
    other = _run(tmp_path, "ran_resnet50", Y, subset="isolated")
    assert len(report.mcnemar_rows([*runs, other])) == 1


def test_subset_rows_pair_each_models_two_runs(runs, tmp_path):
    isolated = {"resnet50": _run(tmp_path, "resnet50", Y, subset="isolated")}
    multi = {r.config.model: r for r in runs}
    (row,) = report.subset_rows(isolated, multi)
    assert row["model"] == "resnet50" and row["isolated accuracy %"].startswith("100.0 [")
    assert row["multi accuracy %"].startswith(f"{100 * 17 / 20:.1f} [")
    assert (row["paper isolated %"], row["paper multi %"]) == (95.11, 85.15)


def test_compare_text_says_synthetic_and_names_the_class_order(runs):
    text = report.compare_text(runs)
    assert "not SIPaKMeD results" in text and "Dys Koi Met Par Sup" in text and "McNemar" in text
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
    assert f"The default profile: {PROFILES['default'].description}." in default  # what the budget bought


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
    assert row["dataset"] == "SIPaKMeD (data)" and str(tmp_path) not in report.compare_text([run])
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
    released.config = released.config.replace(split="paper", folds=1)  # the released split: one split
    rows = report.table2_rows([*runs, released])
    row = next(r for r in rows if r["model"] == "rcan_densenet121_released")
    assert (row["split"], row["weights"], row["seeds"]) == ("paper", "none", 1)
    assert row["paper_accuracy"] == "91.09"  # the paper's RCAN-DenseNet-121
    assert {r["split"] for r in rows} == {"group", "paper"}


def test_leakage_rows_put_both_splits_of_one_model_side_by_side(tmp_path):
    group, paper = _run(tmp_path, "resnet50", Y, "isolated"), _run(tmp_path, "resnet50", Y, "isolated")
    group.info["test_with_sibling_in_train"], paper.info["test_with_sibling_in_train"] = 0, 7
    rows = report.leakage_rows({"resnet50": {"group": group, "paper": paper}})
    assert [(r["split"], r["test images with a sibling in train"]) for r in rows] == [("group", 0), ("paper", 7)]


def test_the_released_protocol_maps_the_papers_models_to_the_released_designs(synth_root):
    study = Study(profile="paper", data_root=str(synth_root))
    assert study.main_protocol == "released" and study.side_protocol == "ours"
    cfg = study.config("rcan_densenet121")
    assert (cfg.model, cfg.data.split, cfg.weights) == ("rcan_densenet121_released", "paper", "imagenet")
    assert study.config("ran_resnet50").model == "ran92" and study.config("ran_resnet50").weights is None
    ours = study.config("rcan_densenet121", protocol="ours")
    assert (ours.model, ours.data.split, ours.weights) == ("rcan_densenet121", "group", None)
    default = Study(profile="default", data_root=str(synth_root))
    side = default.config("rcan_densenet121", protocol=default.side_protocol)
    assert (side.model, side.data.split, side.weights) == ("rcan_densenet121_released", "paper", None)  # offline
    assert default.config("resnet50", "isolated", split="paper").data.split == "paper"
