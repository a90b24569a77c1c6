"""A chapter's training cell as a JupyterLab user runs it: progress, an interrupt, a resume.

Chapter 3 (``notebooks/03_attention_models.ipynb``) is executed cell by cell with nbclient, as
JupyterLab executes it, on the tiny synthetic set and a fresh run store, with two models so
that its plan is four runs. Its training cell (``cervixlib.chapter.train_chapter``) is interrupted the way
the stop button interrupts a kernel (SIGINT to the kernel's process group, as jupyter_client's
provisioner sends it) once one run has finished and a later one has a checkpoint; then run
again, and the rest of the chapter executed. (Under ``cervix book`` every chapter's training
cell finds its runs and says so in one line, off the page: tests/test_book_chapters.py checks
that on the smoke book it builds anyway.)
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
    train_at = next(i for i, c in enumerate(nb.cells) if "train_chapter(study, " in c.source)
    client = NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(root / "notebooks")}})
    with client.setup_kernel():
        kernel = psutil.Process(client.km.provisioner.process.pid)
        for i in range(train_at):
            client.execute_cell(nb.cells[i], i)

        # the first run: interrupted once a run has finished, another has a checkpoint and the
        # bars have shown an epoch (the driver reads the runs' reports about once a second)
        seen: dict[str, object] = {}

        def epoch_shown() -> bool:
            texts = [v for state in list(client.widget_state.values()) for v in list(state.values())
                     if isinstance(v, str)]
            return any(re.search(rf"epoch \d+/{EPOCHS}", t.replace("\u2007", " ")) for t in texts)

        def interrupt_when_ready() -> None:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                finished = [p.parent for p in runs_dir.glob("*/config.json")]
                partial = [p.parent for p in runs_dir.glob("*.partial/last.pt")]
                if finished and partial and epoch_shown():
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


# --------------------------------------------------------------------------- JupyterLab in a browser
_LAB_STATE_JS = """(() => {
  const app = window.jupyterapp;
  const panel = app && Array.from(app.shell.widgets('main')).find(w => w.content && w.sessionContext);
  if (!panel) return {ready: false};
  if (app.shell.currentWidget !== panel) app.shell.activateById(panel.id);
  // the news prompt covers a corner of the page: say no
  for (const b of document.querySelectorAll('.jp-toast-button')) if (b.textContent.trim() === 'No') b.click();
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  const train = cells.find(c => c.model.sharedModel.getSource().includes('train_chapter(study, '));
  if (train && !window.cervixScrolled) train.node.scrollIntoView();  // in view: widgets draw there
  const outputs = cells.map(c => c.model.outputs.toJSON()).flat();
  return {ready: panel.context.isReady, kernel: kernel ? kernel.status : null,
          pending: cells.filter(c => c.promptNode && c.promptNode.textContent.includes('*')).length,
          unrun: cells.filter(c => c.model.executionCount === null).length,
          errors: outputs.filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue),
          bars: train ? Array.from(train.node.querySelectorAll('*')).filter(
              e => /hprogress/.test(e.className)).length : 0,
          train_text: train ? train.node.textContent.replace(/\u2007/g, ' ') : ''};  // tqdm's figure spaces
})()"""


def _screenshot(dt, path: Path) -> None:
    import base64

    path.write_bytes(base64.b64decode(dt.call("Page.captureScreenshot", format="png")["data"]))


def test_run_all_in_jupyterlab_shows_progress(tmp_path, synth_root):
    # Run All of chapter 3 in JupyterLab, in headless Chromium, on a fresh store at the smoke profile:
    # the progress bars appear while it trains and every cell runs without an error.
    import subprocess
    import sys
    import tempfile
    import urllib.request

    import book_checks as bc

    exe = bc.find_chromium()
    if exe is None:
        pytest.skip(bc.CHROMIUM_HINT)
    shots = Path(os.environ.get("CERVIX_SCREENSHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    root = make_project(tmp_path / "proj", toc=REPO / "_toc.yml", notebooks=REPO / "notebooks",
                        manifest=REPO / "book" / "manifest.yml")
    path = root / "notebooks" / f"{CHAPTER}.ipynb"
    params = {**_params(synth_root, tmp_path / "runs"), "epochs": 2}
    nbformat.write(_injected(nbformat.read(path, as_version=4), params), path)

    port, token = bc._free_port(), "t" + os.urandom(12).hex()
    home = tmp_path / "jupyter"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_DATA_DIR": str(home / "data"), "JUPYTER_NO_CONFIG": "1"}
    env.pop("JUPYTER_PATH", None)
    lab = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.expose_app_in_browser=True", "--allow-root"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    profile = Path(tempfile.mkdtemp(prefix="cervix-chromium-"))
    browser = subprocess.Popen(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-extensions", "--window-size=1280,1000", f"--user-data-dir={profile}",
         "--remote-debugging-port=0", "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (profile / "DevToolsActivePort").is_file() or not (profile / "DevToolsActivePort").read_text():
            assert time.monotonic() < deadline, "Chromium did not start"
            time.sleep(0.2)
        debug = int((profile / "DevToolsActivePort").read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{debug}/json/list", timeout=10) as resp:
            target = next(t for t in json.load(resp) if t.get("type") == "page")
        dt = bc._DevTools(target["webSocketDebuggerUrl"])
        try:
            url = f"http://127.0.0.1:{port}/lab/tree/notebooks/{CHAPTER}.ipynb?token={token}"
            deadline = time.monotonic() + 120
            while True:  # the server takes a few seconds to answer
                dt.call("Page.navigate", url=url)
                time.sleep(5)
                state = dt.evaluate(_LAB_STATE_JS)
                while not (state.get("ready") and state.get("kernel") == "idle") and time.monotonic() < deadline:
                    time.sleep(1)
                    state = dt.evaluate(_LAB_STATE_JS)
                if state.get("kernel") == "idle" or time.monotonic() > deadline:
                    break
            assert state.get("kernel") == "idle", f"the notebook did not open with an idle kernel: {state}"
            dt.evaluate("void window.jupyterapp.commands.execute('notebook:run-all-cells'), 0")
            seen_progress = seen_epoch = False
            deadline, polls = time.monotonic() + 600, []
            while time.monotonic() < deadline:
                time.sleep(2)
                state = dt.evaluate(_LAB_STATE_JS)
                polls.append((state["bars"], state["train_text"][-300:]))
                running = state["bars"] and re.search(r"[0-3]/4 done", state["train_text"])
                if running and not seen_epoch and re.search(r"(epoch \d+/2|started)", state["train_text"]):
                    seen_progress = True
                    seen_epoch = bool(re.search(r"epoch \d+/2", state["train_text"]))
                    _screenshot(dt, shots / "jupyterlab_03_training.png")  # again once an epoch shows
                elif seen_progress and not running:
                    dt.evaluate("window.cervixScrolled = true")  # then let JupyterLab follow the cells
                if state["errors"] or (state["unrun"] == 0 and state["pending"] == 0 and state["kernel"] == "idle"):
                    break
            dt.evaluate("""(() => { const p = Array.from(window.jupyterapp.shell.widgets('main')).find(w => w.content);
                const c = p.content.widgets.find(c => c.model.sharedModel.getSource().includes('train_chapter(study, '));
                c.node.scrollIntoView(); return 0; })()""")
            time.sleep(1)
            _screenshot(dt, shots / "jupyterlab_03_done.png")
        finally:
            dt.close()
    finally:
        for proc in (browser, lab):
            bc.stop_process(proc, timeout=20)
    assert not state["errors"], state["errors"]
    assert "Token authentication" not in state["train_text"]  # no warning of Ray's in red
    assert state["unrun"] == 0 and state["pending"] == 0, state
    assert seen_progress, f"no progress bar with a running run while training: {polls}"
    assert "4 runs needed: 0 in the store, 4 to train" in state["train_text"]
    assert len(list((tmp_path / "runs").glob("*/config.json"))) == 4


# --------------------------------------------------------------------------- without Ray
def test_without_ray_runs_train_here_and_an_interrupt_keeps_the_checkpoint(tmp_path, synth_root, monkeypatch):
    # Where Ray is missing, the plan trains one run at a time in this process with the same display;
    # KeyboardInterrupt (the kernel's stop button) after a checkpointed epoch leaves that checkpoint
    # and no lock, and the next call resumes from it.
    from cervixlib import parallel
    from cervixlib.config import make_config
    from cervixlib.plan import plan_runs
    from cervixlib.progress import PlanProgress

    def no_ray(*args, **kwargs):
        raise parallel.RayUnavailable("training a plan in parallel needs Ray (test)")

    monkeypatch.setattr(parallel, "start_ray", no_ray)
    config = make_config("resnet50", profile="smoke", root=str(synth_root), epochs=3)

    def stop_after_epoch_1(state):
        if any(s.get("epoch") == 1 and s.get("images_per_s") for s in state.values()):
            raise KeyboardInterrupt

    lines: list[str] = []
    plan = plan_runs([config], runs_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        parallel.train_plan(plan, checkpoint_every=0, without_ray="here", on_report=stop_after_epoch_1,
                            progress=PlanProgress(plan.todo, lines.append), write=lines.append)
    assert any("one at a time in this process" in line for line in lines)
    assert (tmp_path / f"{plan.runs[0].name}.partial" / "last.pt").is_file()
    assert not _lockable(tmp_path)
    with pytest.raises(parallel.RayUnavailable):  # the default: say that Ray is missing
        parallel.train_plan(plan_runs([config], runs_dir=tmp_path), write=lines.append)

    lines.clear()
    again = plan_runs([config], runs_dir=tmp_path)
    assert again.runs[0].partial
    result = parallel.train_plan(again, without_ray="here", progress=PlanProgress(again.todo, lines.append),
                                 write=lines.append)
    assert result.ok and result.trained == [plan.runs[0].name]
    assert any("epoch 3/3" in line and "resumed after epoch 1" in line for line in lines), lines
