"""fit/evaluate and the run store: metrics from saved predictions, caching, kill safety, determinism."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from cervixlib import runtime
from cervixlib import train as train_mod
from cervixlib.cli import main as cli_main
from cervixlib.config import make_config
from cervixlib.runs import RunError, load_run, partial_dir
from cervixlib.train import fit


@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory) -> Path:
    from cervixlib.data import synthesize

    return synthesize(tmp_path_factory.mktemp("engine") / "synth", scale=0.03, seed=0)


def _config(root: Path, **overrides):
    return make_config("resnet50", profile="smoke", root=str(root), **overrides)


@pytest.fixture(scope="module")
def smoke_run(smoke_root, tmp_path_factory):
    return fit(_config(smoke_root), runs_dir=tmp_path_factory.mktemp("runs"), progress=False)


def test_saved_metrics_equal_sklearn_on_saved_predictions(smoke_run):
    run = load_run(smoke_run.dir)
    y, pred = run.predictions["test_y"], run.predictions["test_prob"].argmax(1)
    assert run.metrics["test"]["n"] == len(y) > 0
    assert run.metrics["test"]["accuracy"]["value"] == pytest.approx(accuracy_score(y, pred))
    assert run.metrics["test"]["weighted_f1"]["value"] == pytest.approx(f1_score(y, pred, average="weighted"))
    ci = run.metrics["test"]["accuracy"]
    assert ci["low"] <= ci["value"] <= ci["high"]
    assert np.allclose(run.predictions["test_prob"].sum(1), 1, atol=1e-4)
    assert run.synthetic and run.info["split_sizes"]["test"] == len(y)


def test_run_directory_holds_everything_and_names_its_config(smoke_run):
    files = {p.name for p in smoke_run.dir.iterdir()}
    assert {"config.json", "metrics.json", "history.json", "predictions.npz", "best.pt"} <= files
    assert "last.pt" not in files
    saved = json.loads((smoke_run.dir / "config.json").read_text())
    assert saved["key"] in smoke_run.dir.name or saved["key"][:10] in smoke_run.dir.name
    state = torch.load(smoke_run.dir / "best.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_second_call_is_a_cache_hit_without_training(smoke_run, smoke_root, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of loading the cached run")

    monkeypatch.setattr(train_mod, "train_one_epoch", no_training)
    again = fit(_config(smoke_root), runs_dir=smoke_run.dir.parent, progress=False)
    assert again.dir == smoke_run.dir
    assert again.metrics == smoke_run.metrics


def test_fit_the_run_and_the_study_share_one_data_path(smoke_run, smoke_root, sipakmed_tree):
    from cervixlib.config import DataConfig
    from cervixlib.data import CellImageDataset, load_index, prepare
    from cervixlib.study import Study

    run = load_run(smoke_run.dir)
    assert run.data.root == smoke_root and run.data.config.split == "group"
    np.testing.assert_array_equal(run.split().test, run.predictions["test_index"])
    np.testing.assert_array_equal(run.split().val, run.predictions["val_index"])
    assert run.info["test_with_sibling_in_train"] == 0 == run.data.test_with_sibling_in_train
    # test_batch: the first n test images through the evaluation transform, at the run's size
    items, X = run.test_batch(3)
    assert items == run.test_items()[:3]
    S = run.config.data.image_size
    assert X.shape == (3, 3, S, S) and X.dtype == torch.float32
    ds = CellImageDataset(items, image_size=S, train=False)
    torch.testing.assert_close(X, torch.stack([ds[i][0] for i in range(3)]))
    assert run.test_batch()[1].shape[0] == len(run.y_true)
    # the notebooks' study prepares the same data (one index shared by both subsets)
    study = Study(profile="smoke", data_root=str(smoke_root))
    assert study.config("resnet50") == run.config
    np.testing.assert_array_equal(study.data().split.test, run.split().test)
    assert study.root == smoke_root and study.index is study.data("isolated").index
    # the released split on isolated cells puts crops of one source image on both sides
    released = prepare(DataConfig(root=str(smoke_root), subset="isolated", split="released"), index=study.index)
    assert released.test_with_sibling_in_train > 0
    with pytest.raises(ValueError, match="the index given"):
        prepare(run.config.data, index=load_index(sipakmed_tree))  # an index of other data
    assert "-released-" in train_mod.store.run_dir_name(_config(smoke_root, split="released"), "0" * 16)


def test_a_different_config_is_a_different_run(smoke_run, smoke_root):
    from cervixlib.runs import find_run, run_key

    cfg = _config(smoke_root, seed=1)
    key = run_key(cfg, smoke_run.dataset_index.fingerprint())
    assert key != smoke_run.key
    assert find_run(smoke_run.dir.parent, cfg, key) != smoke_run.dir


def test_training_lowers_the_loss_and_overfits_ten_images(smoke_root):
    from cervixlib.data import CellImageDataset, load_index
    from cervixlib.models import create_model

    torch.manual_seed(0)
    items = load_index(smoke_root).subset("isolated")[:10]
    loader = train_mod.make_loader(CellImageDataset(items, image_size=64, train=False),
                                   batch_size=10, train=True)
    model = create_model("resnet50", num_classes=5)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    device = torch.device("cpu")
    precision = runtime.resolve_precision("auto", device)
    model.to(memory_format=runtime.memory_format_for(device))
    history = [train_mod.train_one_epoch(model, loader, optimizer, device=device, precision=precision)
               for _ in range(40)]
    assert history[-1]["loss"] < 0.2 * history[0]["loss"]
    assert history[-1]["loss"] < 0.1
    assert history[-1]["accuracy"] == 1.0


def test_same_seed_gives_the_same_split_and_metrics(smoke_run, smoke_root, tmp_path):
    twin = fit(_config(smoke_root), runs_dir=tmp_path, progress=False)
    for name in ("test_index", "val_index", "test_y"):
        assert np.array_equal(twin.predictions[name], smoke_run.predictions[name])
    assert np.array_equal(twin.predictions["test_prob"], smoke_run.predictions["test_prob"])
    assert twin.metrics == smoke_run.metrics


def test_corrupt_run_is_reported_and_retrained(smoke_root, tmp_path, caplog):
    run = fit(_config(smoke_root), runs_dir=tmp_path, progress=False)
    (run.dir / "metrics.json").write_text("{ not json")
    with pytest.raises(RunError, match=r"metrics\.json: damaged \([\d,]+ bytes, [\d,]+ when the run finished\)"):
        load_run(run.dir)
    with caplog.at_level("WARNING"):
        again = fit(_config(smoke_root), runs_dir=tmp_path, progress=False)
    assert f"moved the run aside to {tmp_path / '.damaged' / run.dir.name}-" in caplog.text  # never deleted
    assert again.metrics["test"]["n"] == run.metrics["test"]["n"]
    (again.dir / "best.pt").write_bytes(b"\x80\x02 truncated")
    with pytest.raises(RunError, match=r"best\.pt: damaged \(12 bytes, "):
        again.load_model()


def test_load_run_names_missing_files(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    with pytest.raises(RunError, match=r"run/metrics\.json: damaged \(missing, as are history\.json, "):
        load_run(tmp_path / "run")
    with pytest.raises(RunError, match="no such run directory"):
        load_run(tmp_path / "nothing")


_TRAIN_SCRIPT = textwrap.dedent("""
    import sys
    from cervixlib.config import make_config
    from cervixlib.train import fit
    cfg = make_config("resnet50", profile="smoke", root=sys.argv[1], epochs=4)
    fit(cfg, runs_dir=sys.argv[2], progress=False, checkpoint_every=0)  # a checkpoint after every epoch
""")


def test_killed_run_leaves_a_valid_store_and_resumes_to_the_same_result(smoke_root, tmp_path):
    cfg = _config(smoke_root, epochs=4)
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-c", _TRAIN_SCRIPT, str(smoke_root), str(runs)])
    deadline = time.monotonic() + 240
    try:
        while not list(runs.glob("*.partial/last.pt")):
            assert proc.poll() is None, "training finished or died before its first epoch checkpoint"
            assert time.monotonic() < deadline, "no epoch checkpoint within the time limit"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    finished = [p for p in runs.iterdir()
                if p.is_dir() and not p.name.startswith(".") and not p.name.endswith(".partial")]
    assert finished == [], "a killed run must not leave a finished-looking directory"
    assert [p.suffix for p in runs.iterdir() if not p.is_dir()] == [".lock"]  # released by the kill
    (partial,) = runs.glob("*.partial")
    with pytest.raises(RunError, match="unfinished run"):
        load_run(partial)

    resumed = fit(cfg, runs_dir=runs, resume=True, progress=False)
    assert not partial_dir(resumed.dir).exists()
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    straight = fit(cfg, runs_dir=tmp_path / "straight", progress=False)
    assert np.array_equal(resumed.predictions["test_prob"], straight.predictions["test_prob"])


def test_checkpoints_follow_the_interval_and_never_change_the_result(smoke_root, tmp_path, monkeypatch):
    """A resumable checkpoint is written after an epoch once ``checkpoint_every`` seconds have
    passed (0: after every epoch but the last), and how often it is written changes nothing."""
    from cervixlib import runs as store

    calls: list[int] = []
    save_epoch = store.save_epoch
    monkeypatch.setattr(store, "save_epoch", lambda part, state, **kw: (calls.append(state["epoch"]),
                                                                         save_epoch(part, state, **kw)))
    cfg = _config(smoke_root, epochs=4)
    every = fit(cfg, runs_dir=tmp_path / "every", progress=False, checkpoint_every=0)
    assert calls == [1, 2, 3]  # none after the last epoch: the finished run replaces it
    calls.clear()
    never = fit(cfg, runs_dir=tmp_path / "never", progress=False, checkpoint_every=1e9)
    assert calls == []
    assert every.metrics["best_epoch"] == never.metrics["best_epoch"]
    assert np.array_equal(every.predictions["test_prob"], never.predictions["test_prob"])
    # the weights kept are the best epoch's, not the last one's: the same recipe stopped at the
    # best epoch (training is deterministic) ends with the same weights and predictions
    best = never.metrics["best_epoch"]
    assert best < cfg.epochs, "this check needs a run whose best epoch is not its last"
    shorter = fit(cfg.replace(epochs=best), runs_dir=tmp_path / "shorter", progress=False)
    assert np.array_equal(shorter.predictions["test_prob"], never.predictions["test_prob"])
    # the saved validation predictions (the best epoch's own, not a second pass) are what the
    # saved checkpoint predicts on the validation split
    from cervixlib.data import CellImageDataset

    model = never.load_model().to(memory_format=runtime.memory_format_for(torch.device("cpu")))
    val_items = [never.items()[i] for i in never.predictions["val_index"]]
    again = train_mod.evaluate(model, CellImageDataset(val_items, image_size=cfg.data.image_size, train=False),
                               precision=never.info["precision"])
    np.testing.assert_allclose(again.y_prob, never.predictions["val_prob"], rtol=0, atol=1e-6)
    assert sorted(p.name for p in never.dir.iterdir()) == sorted(p.name for p in every.dir.iterdir())


def test_cli_train_evaluate_compare(smoke_run, smoke_root, capsys):
    runs = smoke_run.dir.parent
    assert cli_main(["train", "--model", "resnet50", "--profile", "smoke", "--data", str(smoke_root),
                     "--runs", str(runs), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert str(smoke_run.dir) in out and "accuracy" in out and "weighted F1" in out and "95%" in out
    assert cli_main(["evaluate", str(smoke_run.dir)]) == 0
    assert "100.0% of predictions equal the saved ones" in capsys.readouterr().out
    assert cli_main(["compare", str(smoke_run.dir)]) == 0
    out = capsys.readouterr().out
    assert "not SIPaKMeD results" in out and "resnet50" in out and "85.15" in out


def test_cli_reports_a_bad_run_in_one_line(tmp_path, capsys):
    assert cli_main(["evaluate", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such run directory" in err
