"""The run store: one directory per trained configuration, written atomically.

A run's directory name ends in a hash of everything that determines its numbers: the
whole :class:`~cervixlib.config.TrainConfig` (less the data path), the data fingerprint
and the version of the code that matters. It holds ``config.json``, ``metrics.json``,
``history.json``, ``predictions.npz`` and the best checkpoint ``best.pt`` (a
state_dict, loaded with ``weights_only=True``).

Training happens in ``<name>.partial/``; every file there is written to a temporary
name and renamed, and the finished directory is renamed into place last. So a process
killed at any moment leaves either a complete run or none (plus a ``.partial`` that a
resumed fit continues from its last epoch checkpoint, or a fresh fit replaces).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from cervixlib.config import TrainConfig

if TYPE_CHECKING:
    from cervixlib.data import DatasetIndex, Item, Split

__all__ = [
    "RUN_FILES",
    "Run",
    "RunError",
    "code_version",
    "run_key",
    "run_dir_name",
    "find_run",
    "load_run",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_torch_save",
    "safe_torch_load",
]

RUN_FILES = ("config.json", "metrics.json", "history.json", "predictions.npz", "best.pt")
PARTIAL_SUFFIX = ".partial"

# Source files whose edits can change a trained model or its numbers. Editing any of
# them changes the code version, hence every run key: stale runs are never reused.
_CODE_THAT_MATTERS = (
    "config.py", "train.py", "metrics.py", "layers", "models",
    "data/datasets.py", "data/splits.py", "data/io.py", "data/index.py",
)


class RunError(RuntimeError):
    """A run directory is missing, partial or corrupt; the message names it and what is wrong."""


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
    """Hash naming a run: the config (without the data's path), the data fingerprint, the code version."""
    payload = config.to_dict()
    payload["data"] = {k: v for k, v in payload["data"].items() if k != "root"}
    payload["data_fingerprint"] = data_fingerprint
    payload["code_version"] = version or code_version()
    blob = json.dumps(payload, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def run_dir_name(config: TrainConfig, key: str) -> str:
    d = config.data
    return f"{config.model}-{d.subset}-{d.image_size}px-e{config.epochs}-s{config.seed}-{key[:10]}"


# ------------------------------------------------------------------ atomic writes
def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode())


def atomic_torch_save(path: Path, obj: Any) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def safe_torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with a clear :class:`RunError` for an unreadable file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
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
        load_checkpoint(model, safe_torch_load(self.dir / "best.pt"))
        model.eval()
        return model.to(device) if device is not None else model

    @cached_property
    def dataset_index(self) -> DatasetIndex:
        from cervixlib.data import load_index

        return load_index(self.data_root)

    def items(self) -> list[Item]:
        return self.dataset_index.subset(self.config.data.subset)

    def split(self) -> Split:
        from cervixlib.data import make_split

        d = self.config.data
        return make_split(self.items(), seed=d.split_seed, fractions=d.fractions)

    def test_items(self) -> list[Item]:
        items = self.items()
        return [items[i] for i in self.predictions["test_index"]]

    @property
    def y_true(self) -> np.ndarray:
        return self.predictions["test_y"]

    @property
    def y_pred(self) -> np.ndarray:
        return self.predictions["test_prob"].argmax(axis=1)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: not valid JSON ({exc})") from None


def load_run(path: str | os.PathLike[str]) -> Run:
    """Load a finished run directory, checking that every file is there and readable."""
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"{path}: no such run directory")
    if path.name.endswith(PARTIAL_SUFFIX):
        raise RunError(f"{path}: an unfinished run (resume it with fit(..., resume=True) "
                       "or `cervix train ... --resume`)")
    missing = [f for f in RUN_FILES if not (path / f).is_file()]
    if missing:
        raise RunError(f"{path}: incomplete run, missing {', '.join(missing)}")
    cfg = _read_json(path / "config.json")
    try:
        config = TrainConfig.from_dict(cfg["config"])
        key, info = cfg["key"], cfg["info"]
    except (KeyError, TypeError, ValueError) as exc:
        raise RunError(f"{path / 'config.json'}: not a cervixlib run config ({exc})") from None
    try:
        with np.load(path / "predictions.npz", allow_pickle=False) as npz:
            predictions = {k: npz[k] for k in npz.files}
    except Exception as exc:
        raise RunError(f"{path / 'predictions.npz'}: unreadable ({type(exc).__name__}: {exc})") from None
    return Run(dir=path, config=config, key=key, info=info,
               history=_read_json(path / "history.json"),
               metrics=_read_json(path / "metrics.json"), predictions=predictions)


def find_run(runs_dir: Path, config: TrainConfig, key: str) -> Path:
    """The directory a run of ``config`` with ``key`` lives in (it may not exist yet)."""
    return Path(runs_dir) / run_dir_name(config, key)


def partial_dir(final: Path) -> Path:
    return final.with_name(final.name + PARTIAL_SUFFIX)


def discard(path: Path) -> None:
    """Remove a run or partial directory (rename first, so a crash leaves no half-deleted run)."""
    if path.exists():
        trash = path.with_name(f".trash-{path.name}-{os.getpid()}")
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
