"""How the run store puts bytes on disk and knows them again: atomic writes and SHA-256 records.

Every file of a run is written through :func:`atomic_write_bytes` (a temporary file
unique to the writer, fsynced, renamed over the target), so a reader sees the old file or
the whole new one. When a run finishes, :func:`file_record` notes each file's size and
SHA-256 (``hashlib``); :func:`record_problem` compares a file with its record later. The
fast check compares sizes (a ``stat``), the full check hashes; :func:`read_checked` reads
a file once and checks the bytes it returns, so what is loaded is what was checked.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_npz",
    "atomic_torch_save",
    "bytes_record",
    "file_record",
    "file_sha256",
    "payload_sha256",
    "read_checked",
    "record_problem",
]

TMP_SUFFIX = ".tmp"
_CHUNK = 1 << 20


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one.

    The temporary file is created by ``mkstemp`` (O_EXCL, a random name), so two
    writers of the same path never share, truncate or rename away each other's
    temporary file; the last rename wins.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
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
    """:func:`atomic_write_bytes` of ``obj`` as indented, key-sorted JSON."""
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode())


def atomic_write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """:func:`atomic_write_bytes` of ``arrays`` as an uncompressed ``.npz`` (read with ``allow_pickle=False``)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(path, buf.getvalue())


def atomic_torch_save(path: Path, obj: Any) -> None:
    """:func:`atomic_write_bytes` of ``torch.save(obj)``."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


# ------------------------------------------------------------------ SHA-256 records
def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks (``hashlib.file_digest``)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def bytes_record(data: bytes) -> dict[str, Any]:
    """``{"sha256": ..., "size": ...}`` of bytes in memory."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def file_record(path: Path) -> dict[str, Any]:
    """``{"sha256", "size", "mtime_ns"}`` of a file: what a finished run records for each of its files
    (the modification time lets the fast check hash only a file that was written since)."""
    st = Path(path).stat()
    return {"sha256": file_sha256(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def payload_sha256(payload: Mapping[str, Any]) -> str:
    """SHA-256 of a run's ``config.json`` content (its ``config``, ``key`` and ``info``) as canonical
    JSON. A file cannot hold its own hash, so ``config.json`` records the hash of what it says."""
    canonical = {k: payload.get(k) for k in ("config", "key", "info")}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _size_problem(size: int, record: Mapping[str, Any]) -> str | None:
    if size != record.get("size"):
        return f"{size:,} bytes, {record.get('size', 0):,} when the run finished"
    return None


_HASH_PROBLEM = "its SHA-256 differs from the one recorded when the run finished"


def record_problem(path: Path, record: Mapping[str, Any], *, full: bool = True) -> str | None:
    """What is wrong with ``path`` against its ``record`` (None: nothing).

    ``full=False`` compares the size and modification time (one ``stat``) and hashes the file only
    when the time differs (written since the record: a flipped byte, a copy); damage that leaves
    both alone (a failing disk) needs ``full=True``, which always compares the SHA-256.
    """
    try:
        st = Path(path).stat()
    except FileNotFoundError:
        return "missing"
    problem = _size_problem(st.st_size, record)
    hash_it = full or record.get("mtime_ns") not in (None, st.st_mtime_ns)
    if problem is None and hash_it and file_sha256(path) != record.get("sha256"):
        problem = _HASH_PROBLEM
    return problem


def read_checked(path: Path, record: Mapping[str, Any] | None) -> tuple[bytes, str | None]:
    """The bytes of ``path`` (read once) and what is wrong with them against ``record`` (None: nothing,
    or no record to check against). Raises ``FileNotFoundError`` for a missing file."""
    data = Path(path).read_bytes()
    if record is None:
        return data, None
    problem = _size_problem(len(data), record)
    if problem is None and hashlib.sha256(data).hexdigest() != record.get("sha256"):
        problem = _HASH_PROBLEM
    return data, problem
