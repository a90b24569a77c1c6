"""A chapter's training cell as a JupyterLab user runs it: progress, an interrupt, a resume.

Chapter 3 (``notebooks/03_attention_models.ipynb``) is executed cell by cell with nbclient, as
JupyterLab executes it, on the tiny synthetic set and a fresh run store, with two models so
that its plan is four runs. Its training cell (``study.train_chapter``) is interrupted the way
the stop button interrupts a kernel (SIGINT to the kernel's process group, as jupyter_client's
provisioner sends it) once one run has finished and a later one has a checkpoint; then run
again, and the rest of the chapter executed. Finally ``cervix book`` executes the chapter on
the same store: its training cell finds every run there and says so in one line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from filelock import FileLock

from test_book import REPO, make_project

CHAPTER = "03_attention_models"
MODELS = ["resnet50", "densenet121"]  # main = fold 1, and fold 2 of each: four runs
EPOCHS = 4  # runs 3 and 4 start after 1 and 2 finish: one is interrupted after a checkpoint

pytestmark = pytest.mark.slow


def _params(data_root: Path, runs_dir: Path) -> dict:
    return {"profile": "smoke", "data_root": str(data_root), "runs_dir": str(runs_dir), "models": MODELS,
            "epochs": EPOCHS}


@pytest.fixture(scope="module")
def project(tmp_path_factory, synth_root):
    """The chapter and the book's manifest in a scratch project, and its run store."""
    root = make_project(tmp_path_factory.mktemp("jlab") / "proj", toc=REPO / "_toc.yml",
                        notebooks=REPO / "notebooks", manifest=REPO / "book" / "manifest.yml")
    return root, synth_root, root / "runs"


def _injected(nb: nbformat.NotebookNode, params: dict, *extra: str) -> nbformat.NotebookNode:
    """``nb`` with a cell after its parameters cell that sets ``params``, as papermill injects them."""
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    source = "\n".join([*(f"{k} = {v!r}" for k, v in params.items()), *extra])
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(source))
    return nb


def _shown_text(client, nb: nbformat.NotebookNode, cell: nbformat.NotebookNode) -> str:
    """What a cell shows: its text outputs, and the live values of the widgets it displayed."""
    client.set_widgets_metadata()
    parts, views = [], set()
    for out in cell.get("outputs", []):
        parts.append(str(out.get("text", "")))
        data = out.get("data", {})
        parts.append(str(data.get("text/plain", "")))
        if "application/vnd.jupyter.widget-view+json" in data:
            views.add(data["application/vnd.jupyter.widget-view+json"]["model_id"])
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    seen, todo = set(), list(views)
    while todo:  # a bar is an HBox of HTML texts and a progress bar: follow the children
        model = state.get(todo.pop(), {}).get("state", {})
        parts += [str(model.get(k, "")) for k in ("value", "description") if isinstance(model.get(k), str)]
        for child in model.get("children", []):
            ref = str(child).removeprefix("IPY_MODEL_")
            if ref not in seen:
                seen.add(ref)
                todo.append(ref)
    return "\n".join(parts).replace("\u2007", " ")  # tqdm's widgets space with figure spaces


def _lockable(runs_dir: Path) -> list[str]:
    """The run locks some process still holds."""
    held = []
    for path in runs_dir.glob("*.lock"):
        lock = FileLock(path, timeout=0)
        try:
            lock.acquire()
        except Exception:
            held.append(path.name)
        else:
            lock.release()
    return held


def test_training_cell_shows_progress_survives_an_interrupt_and_resumes(project):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    from cervixlib.runs import safe_torch_load

    root, data_root, runs_dir = project
    src = root / "notebooks" / f"{CHAPTER}.ipynb"
    # one checkpoint an epoch (fit's default is one a minute), so a short run has one to resume
    nb = _injected(nbformat.read(src, as_version=4), _params(data_root, runs_dir),
                   "import cervixlib.train; cervixlib.train.CHECKPOINT_EVERY_S = 0")
    train_at = next(i for i, c in enumerate(nb.cells) if "study.train_chapter(" in c.source)
    client = NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(root / "notebooks")}})
    with client.setup_kernel():
        kernel = psutil.Process(client.km.provisioner.process.pid)
        for i in range(train_at):
            client.execute_cell(nb.cells[i], i)

        # the first run: interrupted once a run has finished and another has a checkpoint
        seen: dict[str, object] = {}

        def interrupt_when_ready() -> None:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                finished = [p.parent for p in runs_dir.glob("*/config.json")]
                partial = [p.parent for p in runs_dir.glob("*.partial/last.pt")]
                if finished and partial:
                    seen.update(finished=finished, partial=partial[0],
                                pids=[p.pid for p in kernel.children(recursive=True)])
                    seen["t"] = time.monotonic()
                    os.killpg(client.km.provisioner.pgid, signal.SIGINT)  # the stop button
                    return
                time.sleep(0.2)

        watcher = threading.Thread(target=interrupt_when_ready, daemon=True)
        watcher.start()
        with pytest.raises(CellExecutionError, match="KeyboardInterrupt"):
            client.execute_cell(nb.cells[train_at], train_at)
        stopped = time.monotonic()
        watcher.join(5)
        assert "t" in seen, "the cell ended before a run had finished and another had a checkpoint"
        assert stopped - seen["t"] < 10, f"the interrupt reached the cell after {stopped - seen['t']:.1f} s"
        first = _shown_text(client, nb, nb.cells[train_at])
        assert "4 runs needed: 0 in the store, 4 to train" in first
        assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                   for o in nb.cells[train_at].outputs), "no progress widget"
        assert re.search(rf"epoch \d+/{EPOCHS}", first) and "runs: " in first and "ETA" in first, first[-2000:]

        # within 30 s no Ray process or training process of the kernel is left, and no lock held
        deadline = time.monotonic() + 30
        alive = list(seen["pids"])
        while alive and time.monotonic() < deadline:
            alive = [pid for pid in alive if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
            time.sleep(0.5)
        assert not alive, [psutil.Process(p).cmdline()[:3] for p in alive]
        assert not kernel.children(recursive=True)
        assert not _lockable(runs_dir)
        for run in seen["finished"]:  # finished runs stay; the interrupted run keeps its checkpoint
            assert (run / "config.json").is_file()
        assert (seen["partial"] / "last.pt").is_file()
        at = safe_torch_load(seen["partial"] / "last.pt")["epoch"]
        assert 1 <= at < EPOCHS

        # run again: it resumes the interrupted run from its checkpoint; then the rest reads runs
        client.execute_cell(nb.cells[train_at], train_at)
        again = _shown_text(client, nb, nb.cells[train_at])
        assert re.search(r"resumes? from (its|their) checkpoint", again), again[:500]
        assert f"resumed after epoch {at}" in again, again[-3000:]
        name = seen["partial"].name.removesuffix(".partial")
        history = json.loads((runs_dir / name / "history.json").read_text())
        assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
        for i in range(train_at + 1, len(nb.cells)):
            client.execute_cell(nb.cells[i], i)
    client.set_widgets_metadata()
    assert not _lockable(runs_dir)
    assert len(list(runs_dir.glob("*/config.json"))) == 4


def test_cervix_book_page_holds_no_progress(project):
    # After the test above, cervix book's plan finds the chapter's four runs in the store: the
    # training cell prints one line, displays nothing else, and is off the page (remove-cell).
    from cervixlib import book

    root, data_root, runs_dir = project
    if len(list(runs_dir.glob("*/config.json"))) != 4:
        pytest.skip("needs the store the test above trained")
    params = {k: v for k, v in _params(data_root, runs_dir).items() if k in ("models", "epochs")}
    book.run_book("smoke", data=data_root, notebooks_dir=root / "notebooks", book_dir=root / "book",
                  runs_dir=runs_dir, only=[CHAPTER], params=params, build=False)
    nb = nbformat.read(root / "book" / f"{CHAPTER}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "study.train_chapter(" in c.source)
    assert "remove-cell" in cell.metadata.tags
    assert [o.get("text", "").strip() for o in cell.outputs] == ["4 runs needed: 4 in the store"]
    for c in nb.cells:
        for out in c.get("outputs", []):
            assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {})
            assert "%|" not in str(out.get("text", ""))
