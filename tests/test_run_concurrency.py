"""The run store under concurrency: one process trains a configuration, the others wait and load it.

Two `cervix train` processes on one configuration, a fit that waits on a held lock, a
lock whose holder is SIGKILLed, and atomic writes racing on one path.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock, Timeout

from cervixlib import runs as store
from cervixlib import train as train_mod
from cervixlib.config import make_config


def _cervix() -> str:
    exe = Path(sys.executable).with_name("cervix")
    found = str(exe) if exe.exists() else shutil.which("cervix")
    assert found, "the cervix console script is not installed"
    return found


def _config(root: Path):
    return make_config("resnet50", profile="smoke", root=str(root), subset="isolated", epochs=1)


def _run_path(cfg, runs: Path) -> Path:
    data = train_mod.prepare_data(cfg.data)
    return store.find_run(runs, cfg, store.run_key(cfg, data.index.fingerprint()))


# ------------------------------------------------------------------ two real processes
def test_two_cli_trainings_of_one_config_train_once_and_both_succeed(synth_root, tmp_path):
    runs = tmp_path / "runs"
    cmd = [_cervix(), "train", "--model", "resnet50", "--profile", "smoke", "--subset", "isolated",
           "--epochs", "1", "--data", str(synth_root), "--runs", str(runs), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes share the cores
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    try:
        outs = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, f"cervix train exited {p.returncode}:\n{err[-3000:]}"
        assert "Traceback" not in err
    trained = [i for i, (_, err) in enumerate(outs) if "epoch 1/1" in err]
    assert len(trained) == 1, f"expected exactly one process to train, got {len(trained)}:\n" + \
        "\n----\n".join(err for _, err in outs)
    waiter = outs[1 - trained[0]][1]
    final = _run_path(_config(synth_root), runs)
    assert waiter.count(f"waiting for another process training run {final.name}") == 1, waiter
    assert f"run {final} was finished by another process; loaded it" in waiter, waiter
    # both print the same run; the store holds it once, finished, with nothing half-written
    assert all(str(final) in out for out, _ in outs)
    assert sorted(p.name for p in runs.iterdir()) == sorted([final.name, store.lock_path(final).name])
    assert sorted(p.name for p in final.iterdir()) == sorted(store.RUN_FILES)
    store.load_run(final)


# ------------------------------------------------------------------ waiting on a held lock
def test_fit_waits_for_the_lock_holder_and_loads_its_run(synth_root, tmp_path, monkeypatch, caplog):
    """Hold the lock as 'another process' would, finish the run meanwhile: fit must wait, then load it."""
    cfg = _config(synth_root)
    final = _run_path(cfg, tmp_path)

    def no_training(*args, **kwargs):
        raise AssertionError("trained although another process held the lock and finished the run")

    monkeypatch.setattr(train_mod, "train_one_epoch", no_training)
    result: dict[str, object] = {}

    def waiter() -> None:
        try:
            result["run"] = train_mod.fit(cfg, runs_dir=tmp_path, progress=False)
        except BaseException as exc:  # reported by the main thread
            result["error"] = exc

    holder = FileLock(store.lock_path(final))  # a separate open file: excludes the waiter like a process
    caplog.set_level("INFO", logger="cervixlib")
    with holder:
        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while "waiting for another process" not in caplog.text:
            assert thread.is_alive(), f"fit returned without waiting: {result}"
            assert time.monotonic() < deadline, "fit did not report that it waits"
            time.sleep(0.02)
        time.sleep(0.3)
        assert thread.is_alive(), "fit went on while the lock was held"
        # the 'other process' finishes the run while holding the lock
        part, state = store.start_partial(final)
        assert state is None
        store.atomic_write_bytes(part / "best.pt", b"not read by load_run")
        store.finish_run(part, final, config=cfg, key="k" * 16, info={"marker": "theirs"},
                         metrics={"marker": 1}, history=[], predictions={"test_y": np.arange(3)})
    thread.join(timeout=60)
    assert not thread.is_alive() and "error" not in result, result
    run = result["run"]
    assert run.dir == final and run.info == {"marker": "theirs"} and run.metrics == {"marker": 1}
    assert caplog.text.count(f"waiting for another process training run {final.name}") == 1
    assert "finished by another process" in caplog.text


def test_run_lock_gives_up_after_its_timeout_with_one_line(tmp_path):
    final = tmp_path / "some-run"
    with FileLock(store.lock_path(final)):
        start = time.monotonic()
        with pytest.raises(store.RunError, match=r"some-run\.lock: still locked by another process") as info:
            with store.run_lock(final, timeout=0.3):
                pass
        assert 0.25 < time.monotonic() - start < 10
    assert "\n" not in str(info.value)
    with store.run_lock(final, timeout=0):  # free again
        pass


# ------------------------------------------------------------------ a killed holder
_HOLD_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from cervixlib.runs import run_lock
    with run_lock(Path(sys.argv[1])):
        print("locked", flush=True)
        time.sleep(600)
""")


def test_a_lock_whose_holder_was_killed_is_free(tmp_path):
    final = tmp_path / "runs" / "some-run"
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_SCRIPT, str(final)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(Timeout):  # really held while the holder lives
            FileLock(store.lock_path(final)).acquire(timeout=0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert store.lock_path(final).exists(), "the dead holder's lock file is still there"
    start = time.monotonic()
    with store.run_lock(final, timeout=5):  # ... and does not block: the kernel dropped the flock
        assert time.monotonic() - start < 1


def test_no_silent_fallback_to_a_soft_lock_without_flock(tmp_path, monkeypatch):
    """On a filesystem without flock(2) a soft lock would survive a killed holder: refuse instead."""
    def no_flock(fd, operation):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    with pytest.raises(store.RunError, match=r"some-run\.lock: cannot lock the run \(the filesystem does not "
                                             r"support flock\(2\)\)"):
        with store.run_lock(tmp_path / "some-run", timeout=1):
            pass


# ------------------------------------------------------------------ atomic writes
def test_concurrent_atomic_writes_of_one_path_never_collide(tmp_path):
    """Each writer's temporary file is its own: racing writers of one file all succeed."""
    target = tmp_path / "predictions.npz"
    errors: list[BaseException] = []

    def writer(value: int) -> None:
        try:
            for _ in range(50):
                store.atomic_write_npz(target, {"x": np.full(1000, value)})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(v,)) for v in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with np.load(target, allow_pickle=False) as npz:
        x = npz["x"]
    assert len(set(x.tolist())) == 1  # one writer's whole file, not a mix
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.npz"]  # no temporary file left


def test_finish_run_keeps_the_partial_resumable_until_the_rename(tmp_path, monkeypatch):
    """A kill just before the final rename leaves a .partial with last.pt; stray temp files are swept."""
    cfg = make_config("resnet50", profile="smoke", root=str(tmp_path))
    final = tmp_path / "runs" / "run"
    final.parent.mkdir()
    part, _ = store.start_partial(final)
    store.atomic_torch_save(part / "best.pt", {})
    store.atomic_torch_save(part / "last.pt", {"epoch": 1})
    (part / ".metrics.json.abc123.tmp").write_text("a writer killed mid-write left this")
    kwargs = dict(config=cfg, key="k" * 16, info={}, metrics={}, history=[], predictions={"y": np.arange(2)})

    def killed(src, dst):
        raise KeyboardInterrupt("killed before the rename")

    monkeypatch.setattr(os, "rename", killed)
    with pytest.raises(KeyboardInterrupt):
        store.finish_run(part, final, **kwargs)
    assert not final.exists() and (part / "last.pt").is_file()
    monkeypatch.undo()
    run = store.finish_run(part, final, **kwargs)
    assert not part.exists()
    assert sorted(p.name for p in run.dir.iterdir()) == sorted(store.RUN_FILES)
