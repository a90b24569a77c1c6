"""What ``cervix book``, ``cervix plan`` and ``cervix train --plan`` settle before they run
(issue 26): ``--profile auto`` (paper with a GPU and --data, else default, said in one line),
the paper profile's refusal without --data (``--synthetic`` to ask for the embedded set), its
ImageNet weights by default (``--weights none``: from scratch), and the book folder found from
any working folder. The book and the plan are faked here: nothing is indexed or trained."""

from __future__ import annotations

from pathlib import Path

import pytest

import cervixlib._cli_options as options
from cervixlib.cli import main

REPO = Path(__file__).resolve().parents[1]
PAPER_LINE = ("profile paper (a GPU is present and --data is given; --profile default for the quick CPU book)")


@pytest.fixture
def calls(monkeypatch, tmp_path):
    """Fakes of book_plan, run_book and train_plan that record what the commands pass them."""
    import cervixlib.book
    import cervixlib.book.plan
    import cervixlib.parallel
    from cervixlib.plan import RunPlan

    seen: list[dict] = []

    def fake_plan(profile, data, *, params, book_dir="book", notebooks_dir="notebooks", **kwargs):
        seen.append({"profile": profile, "data": data, "params": params, "book": Path(book_dir),
                     "notebooks": Path(notebooks_dir)})
        return RunPlan(profile=profile, runs=(), runs_dir=tmp_path)

    def fake_book(profile, data, notebooks_dir, book_dir, *, params, **kwargs):
        seen.append({"profile": profile, "data": data, "params": params, "book": Path(book_dir),
                     "notebooks": Path(notebooks_dir)})
        raise cervixlib.book.BookError("stop here")

    monkeypatch.setattr(cervixlib.book.plan, "book_plan", fake_plan)
    monkeypatch.setattr(cervixlib.book, "run_book", fake_book)
    monkeypatch.setattr(cervixlib.parallel, "train_plan", lambda plan, **kw: type("R", (), {"ok": True})())
    return seen


def _run(command: str, *argv: str) -> int:
    extra = ("--plan",) if command == "train" else ()
    return main([command, *extra, *argv])


@pytest.mark.parametrize("command", ["book", "plan", "train"])
def test_auto_is_paper_with_a_gpu_and_data_and_says_so(command, calls, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(options, "_gpu_count", lambda: 1)
    _run(command, "--data", str(tmp_path), "--runs", str(tmp_path / "runs"))
    assert calls[-1]["profile"] == "paper" and calls[-1]["params"] == {"weights": "imagenet"}
    assert f"cervix {command}: {PAPER_LINE}" in capsys.readouterr().err.splitlines()


@pytest.mark.parametrize("command", ["book", "plan", "train"])
def test_auto_is_default_without_a_gpu_or_without_data(command, calls, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(options, "_gpu_count", lambda: 0)
    _run(command, "--data", str(tmp_path), "--runs", str(tmp_path / "runs"))
    assert calls[-1]["profile"] == "default" and calls[-1]["params"] == {}  # from scratch, as before
    assert (f"cervix {command}: profile default (no CUDA GPU is visible; --profile paper for the paper's "
            "protocol, on a GPU with --data)") in capsys.readouterr().err.splitlines()

    def no_gpu_question():
        raise AssertionError("without --data, auto does not look for a GPU (nor import torch)")

    monkeypatch.setattr(options, "_gpu_count", no_gpu_question)
    _run(command, "--runs", str(tmp_path / "runs"))
    assert calls[-1]["profile"] == "default"
    assert f"cervix {command}: profile default (no --data given;" in capsys.readouterr().err


def test_explicit_profiles_are_not_announced(calls, tmp_path, capsys):
    assert main(["plan", "--profile", "smoke", "--runs", str(tmp_path)]) == 0
    assert calls[-1]["profile"] == "smoke" and "profile" not in capsys.readouterr().err


def test_gpu_count_asks_torch(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    assert options._gpu_count() == 8
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert options._gpu_count() == 0


@pytest.mark.parametrize("command", ["book", "plan", "train"])
def test_paper_without_data_stops_in_one_line_unless_synthetic(command, calls, tmp_path, capsys):
    assert _run(command, "--profile", "paper", "--runs", str(tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"cervix {command}: error: --profile paper trains 50 epochs at 224 px on full-size data: pass "
                   "--data ROOT (SIPaKMeD or a class-per-folder set), or --synthetic to run it on the full-size "
                   "embedded synthetic set on purpose"]
    assert calls == []
    _run(command, "--profile", "paper", "--synthetic", "--runs", str(tmp_path))
    assert (calls[-1]["profile"], calls[-1]["data"]) == ("paper", None)


@pytest.mark.parametrize("command", ["book", "plan", "train"])
def test_paper_starts_from_imagenet_unless_weights_none(command, calls, tmp_path):
    _run(command, "--profile", "paper", "--data", str(tmp_path), "--runs", str(tmp_path / "runs"))
    assert calls[-1]["params"] == {"weights": "imagenet"}
    _run(command, "--profile", "paper", "--data", str(tmp_path), "--weights", "none", "--runs", str(tmp_path))
    assert calls[-1]["params"] == {"weights": "none"}
    _run(command, "--profile", "default", "--runs", str(tmp_path))
    assert calls[-1]["params"] == {}  # the other profiles: from scratch, no parameter injected


def test_none_is_from_scratch_in_the_api():
    from cervixlib.config import PROFILES, make_config
    from cervixlib.study import Study

    assert Study(weights="none").weights is None and Study(weights="None").weights is None
    assert make_config("resnet50", weights="none").weights is None
    assert Study(weights="none").config("resnet50") == Study().config("resnet50")  # the same run
    assert {n: p.weights for n, p in PROFILES.items()} == {"smoke": None, "default": None, "paper": "imagenet"}


def test_the_front_page_names_the_fold_runs_weights():
    from cervixlib.claims import verdict_intro

    text = verdict_intro([], synthetic=False, folds=5, data="SIPaKMeD",
                         weights="ImageNet weights in the backbones")
    assert text.endswith("The fold runs (our protocol): ImageNet weights in the backbones.")


@pytest.mark.parametrize("command", ["book", "plan", "train"])
def test_the_book_is_found_from_any_folder(command, calls, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)  # no book/ here: the clone's
    _run(command, "--profile", "smoke", "--runs", str(tmp_path / "runs"))
    assert (calls[-1]["book"], calls[-1]["notebooks"]) == (REPO / "book", REPO / "notebooks")
    (tmp_path / "mine" / "book").mkdir(parents=True)
    (tmp_path / "mine" / "book" / "manifest.yml").write_text("notebooks: []\n")
    monkeypatch.chdir(tmp_path / "mine")  # a book/ with a manifest here: this one
    _run(command, "--profile", "smoke", "--runs", str(tmp_path / "runs"))
    assert (calls[-1]["book"], calls[-1]["notebooks"]) == (Path("book"), Path("notebooks"))
    _run(command, "--profile", "smoke", "--book", str(tmp_path / "b"), "--runs", str(tmp_path / "runs"))
    assert (calls[-1]["book"], calls[-1]["notebooks"]) == (tmp_path / "b", tmp_path / "notebooks")


@pytest.mark.parametrize("command", ["book", "plan", "train"])
def test_no_book_anywhere_is_one_line_saying_what_to_do(command, calls, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(options, "_clone_root", lambda: tmp_path / "site-packages")
    assert _run(command, "--profile", "smoke", "--runs", str(tmp_path / "runs")) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"cervix {command}: error: no book/manifest.yml here or in {tmp_path / 'site-packages'}; run it in the "
        "clone (cd /path/to/clone) or pass --book DIR --notebooks DIR"]
    assert calls == []


def test_a_single_paper_run_takes_imagenet_weights_where_its_model_has_a_backbone(monkeypatch, tmp_path, capsys):
    import cervixlib.report
    import cervixlib.train

    configs = []
    monkeypatch.setattr(cervixlib.train, "fit", lambda config, **kw: configs.append(config))
    monkeypatch.setattr(cervixlib.report, "format_run", lambda run: "")
    for model in ("resnet50", "ran92"):
        assert main(["train", "--model", model, "--profile", "paper", "--data", str(tmp_path)]) == 0
    assert main(["train", "--model", "resnet50", "--profile", "paper", "--data", str(tmp_path), "--weights", "none"]) == 0
    assert main(["train", "--model", "resnet50", "--profile", "default", "--data", str(tmp_path)]) == 0
    assert [c.weights for c in configs] == ["imagenet", None, None, None]  # ran92 (Attention-92) has none
