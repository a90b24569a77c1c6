"""The run store: one directory per trained configuration, written atomically, trained once.

A run's directory name ends in a hash of everything that determines its numbers: the
whole :class:`~cervixlib.config.TrainConfig` (less the data path), the data fingerprint
and the version of the code that matters. It holds ``config.json``, ``metrics.json``,
``history.json``, ``predictions.npz`` and the best checkpoint ``best.pt`` (a
state_dict, loaded with ``weights_only=True``).

Crash safety. Training happens in ``<name>.partial/``; every file there is written
through :func:`atomic_write_bytes` (a temporary file unique to the writing process,
fsynced, then renamed over the target), and :func:`finish_run` renames the finished
directory into place last. So a process killed at any moment leaves either a complete
run or none (plus a ``.partial`` that a resumed fit continues from its last epoch
checkpoint, or a fresh fit replaces).

Concurrency. Two processes may ask for the same configuration at once (a JupyterLab
session and a papermill run can). A finished run is never modified, so loading one
needs no lock. Everything else -- checking for the finished run again, resuming or
starting ``.partial``, training, finishing -- happens under :func:`run_lock`, one
``filelock.FileLock`` per run at ``<runs>/<name>.lock``: one process trains, the others
log that they wait for it, then load the run it finished. The lock is flock(2), which
the kernel releases when its holder dies, so a killed trainer never blocks the next
one. Lock files stay in place after release (unlinking one would let two processes lock
two different files of the same name); they are empty and harmless.

Checksums. :func:`finish_run` records every file's size and SHA-256 in ``config.json``
before the rename that makes the run visible; :func:`load_run` and :meth:`Run.load_model`
check them (:class:`RunDamaged`: one line naming the run, the file and the remedy). A
damaged run is never deleted: :func:`move_aside` puts it in ``<runs>/.damaged/`` and the
caller trains it again. Whole plans are checked by :mod:`cervixlib.run_checks`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import io
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from filelock import FileLock, Timeout

from cervixlib.config import TrainConfig
from cervixlib.storage import (
    TMP_SUFFIX as _TMP_SUFFIX,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_npz,
    file_record,
    payload_sha256,
    read_checked,
    record_problem,
)

if TYPE_CHECKING:
    from cervixlib.data import DatasetIndex, Item, PreparedData, Split

__all__ = [
    "DAMAGED_DIR",
    "RUN_FILES",
    "Run",
    "RunDamaged",
    "RunError",
    "code_version",
    "run_key",
    "run_dir_name",
    "find_run",
    "load_run",
    "load_finished",
    "lock_path",
    "run_lock",
    "start_partial",
    "save_best",
    "save_epoch",
    "finish_run",
    "partial_dir",
    "discard",
    "move_aside",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_npz",
    "atomic_torch_save",
    "safe_torch_load",
]

_log = logging.getLogger(__name__)

RUN_FILES = ("config.json", "metrics.json", "history.json", "predictions.npz", "best.pt")
#: The files whose size and SHA-256 ``config.json`` records (``files``); it records its own content's hash.
CHECKSUMMED = ("best.pt", "predictions.npz", "metrics.json", "history.json")
#: Where damaged runs are moved (never deleted): ``<runs>/.damaged/<name>-<UTC time>``.
DAMAGED_DIR = ".damaged"
PARTIAL_SUFFIX = ".partial"
LOCK_SUFFIX = ".lock"

# Source files whose edits can change a trained model or its numbers. Editing any of
# them changes the code version, hence every run key: stale runs are never reused.
_CODE_THAT_MATTERS = (
    "config.py", "facts.py", "train.py", "metrics.py", "layers", "models",
    "data/datasets.py", "data/splits.py", "data/io.py", "data/index.py", "data/items.py",
    "data/_walk.py", "data/prepared.py", "data/masks.py", "graphs/build.py", "graphs/dataset.py", "graphs/embed.py",
)


class RunError(RuntimeError):
    """A run directory is missing, partial or corrupt; the message names it and what is wrong."""


class RunDamaged(RunError):
    """A finished run's file is missing, unreadable or not what the run recorded when it finished:
    one line naming the run, the file, the problem and the remedy (``.run``, ``.file``, ``.problem``)."""

    def __init__(self, run: Path, file: str, problem: str) -> None:
        self.run, self.file, self.problem = Path(run), file, problem
        super().__init__(f"{self.run / file}: damaged ({problem}); run {self.run.name} is not used: "
                         f"`cervix book` or `cervix train --plan` moves it to {self.run.parent / DAMAGED_DIR}/ "
                         "and trains it again")


def code_version() -> str:
    """Package version plus a short hash of the sources that affect training results."""
    import cervixlib

    pkg = Path(cervixlib.__file__).parent
    digest = hashlib.sha256()
    for rel in _CODE_THAT_MATTERS:
        path = pkg / rel
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for f in files:
            if f.is_file():
                digest.update(str(f.relative_to(pkg)).encode())
                digest.update(f.read_bytes())
    return f"{cervixlib.__version__}+{digest.hexdigest()[:12]}"


def run_key(config: TrainConfig, data_fingerprint: str, version: str | None = None) -> str:
    """Hash naming a run: the config (:meth:`~cervixlib.config.TrainConfig.key_dict`: no data path;
    a graph run's ``cell_encoder`` included), the data fingerprint, the code version."""
    payload = config.key_dict()
    payload["data_fingerprint"] = data_fingerprint
    payload["code_version"] = version or code_version()
    blob = json.dumps(payload, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def run_dir_name(config: TrainConfig, key: str) -> str:
    """The directory name of a run: readable settings, then the start of its key."""
    d = config.data
    split = "" if d.split == "group" else f"-{d.split}"  # the default split is not named
    split += f"-f{d.fold + 1}of{d.folds}" if d.folds > 1 else ""
    return f"{config.model}-{d.subset}{split}-{d.image_size}px-e{config.epochs}-s{config.seed}-{key[:10]}"


def safe_torch_load(path: Path, record: Mapping[str, Any] | None = None) -> Any:
    """``torch.load(weights_only=True)`` with a clear :class:`RunError` for an unreadable file.

    With ``record`` (the size and SHA-256 the run recorded) the bytes are read once, checked
    against it (:class:`RunDamaged` on a mismatch) and loaded from memory: what is loaded is
    what was checked.
    """
    path = Path(path)
    try:
        data, problem = read_checked(path, record)
        if problem is not None:
            raise RunDamaged(path.parent, path.name, problem)
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except RunDamaged:
        raise
    except FileNotFoundError:
        raise RunError(f"{path}: checkpoint file is missing") from None
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        raise RunError(f"{path}: checkpoint is unreadable or corrupt ({type(exc).__name__}: "
                       f"{str(exc).splitlines()[0][:200]})") from None


# ------------------------------------------------------------------ loading runs
@dataclass
class Run:
    """A finished run: its configuration, history, metrics and saved predictions."""

    dir: Path
    config: TrainConfig
    key: str
    info: dict[str, Any]
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    predictions: dict[str, np.ndarray] = field(repr=False)
    #: ``{file: {"sha256", "size"}}`` recorded when the run finished (empty: a run from before checksums)
    checksums: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def data_root(self) -> Path:
        """The dataset root this run was trained on (resolved, synthetic or real)."""
        return Path(self.info["data_root"])

    @property
    def synthetic(self) -> bool:
        return bool(self.info.get("synthetic", False))

    def load_model(self, device: torch.device | str | None = None) -> torch.nn.Module:
        """The best checkpoint in a freshly built model, in eval mode."""
        from cervixlib.models import create_model, load_checkpoint

        model = create_model(self.config.model, num_classes=len(self.info["classes"]))
        load_checkpoint(model, safe_torch_load(self.dir / "best.pt", self.checksums.get("best.pt")))
        model.eval()
        return model.to(device) if device is not None else model

    @cached_property
    def data(self) -> PreparedData:
        """The run's data, through :func:`cervixlib.data.prepare` with the run's config and data root."""
        from cervixlib.data import prepare

        return prepare(dataclasses.replace(self.config.data, root=str(self.data_root)))

    @property
    def dataset_index(self) -> DatasetIndex:
        return self.data.index

    def items(self) -> list[Item]:
        """The images of the run's subset (split and prediction indices point into this list)."""
        return self.data.items

    def split(self) -> Split:
        """The run's split, worked out again from its config (its test part is ``predictions["test_index"]``)."""
        return self.data.split

    def test_items(self) -> list[Item]:
        """The test images, in the order of the saved predictions."""
        items = self.items()
        return [items[i] for i in self.predictions["test_index"]]

    def test_batch(self, n: int | None = None) -> tuple[list[Item], torch.Tensor]:
        """The first ``n`` test images (all when None) and their normalised ``(n, 3, S, S)`` tensor.

        ``S`` is the run's image size; the images go through the evaluation transform,
        as at test time, so the tensor is what the model was scored on.
        """
        from cervixlib.data import CellImageDataset

        items = self.test_items()[:n]
        size = self.config.data.image_size
        if not items:
            return items, torch.zeros(0, 3, size, size)
        ds = CellImageDataset(items, image_size=size, train=False)
        return items, torch.stack([ds[i][0] for i in range(len(ds))])

    @property
    def y_true(self) -> np.ndarray:
        return self.predictions["test_y"]

    @property
    def y_pred(self) -> np.ndarray:
        return self.predictions["test_prob"].argmax(axis=1)


def _checked_bytes(run: Path, name: str, records: Mapping[str, Any]) -> bytes:
    """A run file's bytes, checked against the run's record of it when there is one."""
    try:
        data, problem = read_checked(run / name, records.get(name))
    except FileNotFoundError:
        raise RunDamaged(run, name, "missing") from None
    if problem is not None:
        raise RunDamaged(run, name, problem)
    return data


def _json(run: Path, name: str, data: bytes) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDamaged(run, name, f"not valid JSON: {exc}") from None


def load_run(path: str | os.PathLike[str]) -> Run:
    """Load a finished run directory, checking that every file is there, readable and, where the
    run recorded checksums, the same as when it finished (the small files by SHA-256, ``best.pt``
    by size and time; :meth:`Run.load_model` hashes it). Damage raises :class:`RunDamaged`."""
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"{path}: no such run directory")
    if path.name.endswith(PARTIAL_SUFFIX):
        raise RunError(f"{path}: an unfinished run (resume it with fit(..., resume=True) "
                       "or `cervix train ... --resume`)")
    missing = [f for f in RUN_FILES if not (path / f).is_file()]
    if missing:
        raise RunDamaged(path, missing[0], "missing" + (f", as are {', '.join(missing[1:])}" if missing[1:] else ""))
    cfg = _json(path, "config.json", (path / "config.json").read_bytes())
    try:
        config = TrainConfig.from_dict(cfg["config"])
        key, info = cfg["key"], cfg["info"]
        records = dict(cfg.get("files") or {})
    except (KeyError, TypeError, ValueError) as exc:
        raise RunDamaged(path, "config.json", f"not a cervixlib run config: {exc}") from None
    if "config_sha256" in cfg and payload_sha256(cfg) != cfg["config_sha256"]:
        raise RunDamaged(path, "config.json", "its settings no longer match the run's key: "
                         "changed since the run finished")
    problem = record_problem(path / "best.pt", records["best.pt"], full=False) if "best.pt" in records else None
    if problem is not None:
        raise RunDamaged(path, "best.pt", problem)
    data = _checked_bytes(path, "predictions.npz", records)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            predictions = {k: npz[k] for k in npz.files}
    except Exception as exc:
        raise RunDamaged(path, "predictions.npz", f"unreadable: {type(exc).__name__}: {exc}") from None
    return Run(dir=path, config=config, key=key, info=info,
               history=_json(path, "history.json", _checked_bytes(path, "history.json", records)),
               metrics=_json(path, "metrics.json", _checked_bytes(path, "metrics.json", records)),
               predictions=predictions, checksums=records)


def find_run(runs_dir: Path, config: TrainConfig, key: str) -> Path:
    """The directory a run of ``config`` with ``key`` lives in (it may not exist yet)."""
    return Path(runs_dir) / run_dir_name(config, key)


def partial_dir(final: Path) -> Path:
    """Where the run that will live at ``final`` is trained: ``<name>.partial``."""
    return final.with_name(final.name + PARTIAL_SUFFIX)


def move_aside(final: Path, why: str) -> Path | None:
    """Move a damaged run out of the store's way, to ``<runs>/.damaged/<name>-<UTC time>``, and log
    one line saying so and ``why``; never delete it (its files may still be worth a look). Returns
    where it went (None: it was gone already). Call it under :func:`run_lock`."""
    target = Path(final).parent / DAMAGED_DIR / f"{Path(final).name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    target.parent.mkdir(parents=True, exist_ok=True)
    target = target.with_name(f"{target.name}-{secrets.token_hex(3)}") if target.exists() else target
    try:
        os.replace(final, target)
    except FileNotFoundError:
        return None
    _log.warning("%s -- moved the run aside to %s; training it again", why, target)
    return target


def discard(path: Path) -> None:
    """Remove a run or partial directory (rename first, so a crash leaves no half-deleted run).

    The trash name is unique to this call, so two callers never collide on it.
    """
    trash = path.with_name(f".trash-{path.name}-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        os.replace(path, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


# ------------------------------------------------------------------ one trainer per run
def lock_path(final: Path) -> Path:
    """The lock file of the run that lives (or will live) at ``final``: ``<name>.lock``."""
    return final.with_name(final.name + LOCK_SUFFIX)


@contextlib.contextmanager
def run_lock(final: Path, *, timeout: float | None = None) -> Iterator[None]:
    """Hold the run's lock for this block; while another process holds it, log once and wait.

    Wait at most ``timeout`` seconds (``None``: until the other process finishes or dies),
    then raise :class:`RunError`. Locks are per open file, so two threads of one process
    exclude each other too.
    """
    final = Path(final)
    path = lock_path(final)
    # FileLock is flock(2) here (fcntl.flock on Linux and macOS, msvcrt on Windows): the
    # kernel releases it when the holder's file is closed, which happens when the holder
    # dies, even by SIGKILL. So a killed trainer never leaves a lock that blocks the next
    # process, and no stale-lock guessing (age, pid) is needed. SoftFileLock (a file whose
    # existence is the lock) would outlive a killed holder and block every later process
    # forever; fallback_to_soft=False stops filelock from switching to it silently on a
    # filesystem without flock (ENOSYS): we report that instead.
    lock = FileLock(path, fallback_to_soft=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(blocking=False)
        except Timeout:
            _log.info("waiting for another process training run %s (lock %s)", final.name, path)
            lock.acquire(timeout=-1 if timeout is None else timeout)
    except Timeout:
        raise RunError(f"{path}: still locked by another process training {final.name} "
                       f"after {timeout:g} s") from None
    except OSError as exc:
        why = "the filesystem does not support flock(2)" if exc.errno == errno.ENOSYS else exc.strerror
        raise RunError(f"{path}: cannot lock the run ({why}); put the run store on a local disk") from None
    try:
        yield
    finally:
        lock.release()


def load_finished(final: Path, *, discard_corrupt: bool = False) -> Run | None:
    """The finished run at ``final``, or ``None`` if there is none (yet).

    Without the run's lock this only reads (a finished run is never modified, so that is
    safe). With ``discard_corrupt`` -- only under :func:`run_lock` -- a corrupt run is
    reported, moved aside (:func:`move_aside`, never deleted) and ``None`` returned, so that the
    caller trains it again.
    """
    if not final.exists():
        return None
    try:
        return load_run(final)
    except RunError as exc:
        if not discard_corrupt:
            _log.debug("%s -- not loading it without the run's lock", exc)
            return None
        move_aside(final, str(exc).split("; run ")[0])
        return None


def start_partial(final: Path, *, resume: bool = False) -> tuple[Path, Any | None]:
    """The ``.partial`` directory to train the run at ``final`` in, and the state to resume from.

    With ``resume`` and a readable ``last.pt`` the partial directory is kept and its
    checkpoint returned; otherwise a leftover one is discarded and ``(part, None)``
    returned. Call it under :func:`run_lock`.
    """
    part = partial_dir(final)
    state = None
    if resume and (part / "last.pt").is_file():
        try:
            state = safe_torch_load(part / "last.pt")
            _log.info("resuming %s after epoch %d", part, state["epoch"])
        except RunError as exc:
            _log.warning("%s -- starting the run from scratch", exc)
    if state is None:
        discard(part)
    part.mkdir(parents=True, exist_ok=True)
    return part, state


def save_best(part: Path, best_model: Mapping[str, Any]) -> None:
    """Write the best epoch's weights (a state_dict) atomically as ``best.pt`` of the partial run."""
    atomic_torch_save(part / "best.pt", {k: v.detach().cpu() for k, v in best_model.items()})


def save_epoch(part: Path, state: Mapping[str, Any], *, best_model: Mapping[str, Any] | None = None) -> None:
    """Record a resumable checkpoint of the partial run in ``part``, after an epoch.

    ``best_model`` (a state_dict, given when an epoch since the previous checkpoint was the
    best so far) becomes ``best.pt`` first; then ``state`` (what :func:`start_partial`
    resumes from: epoch, model, optimizer, history, best, random states) becomes
    ``last.pt``. Both writes are atomic, so a kill between them leaves a ``best.pt`` ahead
    of ``last.pt``, which the resumed epochs rewrite (training resumes deterministically).
    """
    if best_model is not None:
        save_best(part, best_model)
    atomic_torch_save(part / "last.pt", dict(state))


def finish_run(part: Path, final: Path, *, config: TrainConfig, key: str, info: Mapping[str, Any],
               metrics: Mapping[str, Any], history: list[dict[str, Any]],
               predictions: Mapping[str, np.ndarray]) -> Run:
    """Write the remaining files of a trained run into ``part``, move it to ``final`` and load it.

    ``part`` must already hold ``best.pt``. Every file is written atomically and the
    rename comes last, so a kill before it leaves the resumable ``.partial`` (its
    ``last.pt`` is removed only after the rename) and a kill after it a complete run.
    ``config.json`` records the checksums of the others (see the module's docstring). Call it
    under :func:`run_lock`.
    """
    atomic_write_npz(part / "predictions.npz", predictions)
    atomic_write_json(part / "metrics.json", dict(metrics))
    atomic_write_json(part / "history.json", history)
    payload = {"config": config.to_dict(), "key": key, "info": dict(info)}
    # config.json, written last, records every other file's size and SHA-256 and its own content's
    # hash: the rename below makes the run visible with its checksums, never without
    atomic_write_json(part / "config.json", {**payload, "files": {f: file_record(part / f) for f in CHECKSUMMED},
                                             "config_sha256": payload_sha256(payload)})
    for tmp in part.glob(f".*{_TMP_SUFFIX}"):  # left by a writer killed in an earlier attempt
        tmp.unlink(missing_ok=True)
    try:
        os.rename(part, final)
    except OSError:  # a finished run is already there (written without the lock): keep it
        _log.warning("%s: already exists -- keeping it and discarding %s", final, part.name)
        discard(part)
    else:
        (final / "last.pt").unlink(missing_ok=True)
    return load_run(final)
