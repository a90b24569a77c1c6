"""Checking finished runs against their checksums, and moving damaged ones aside to be retrained.

A finished run's ``config.json`` records the size and SHA-256 of its other files and the
hash of its own content (:mod:`cervixlib.runs`, :mod:`cervixlib.storage`). :func:`verify_run`
compares a run with that record: the fast check (``full=False``, what ``cervix plan`` does)
compares sizes and modification times and hashes only a file written since the run finished
(a flipped byte written by a program, a copy); the full check (``cervix plan --verify``,
``cervix train --plan``, ``cervix book``) hashes every file, and also finds damage that leaves
size and time alone (a failing disk). Checking only reads: a run appears in the store by one
rename of a complete folder, so a check running beside a process that finishes a run sees no
run or the whole run, never half of one (``tests/test_run_checks.py`` races the two).

Damage is never used and never silently deleted: :func:`repair` takes the run's lock, checks
again (another process may have repaired it meanwhile) and moves a damaged run to
``<runs>/.damaged/<name>-<UTC time>`` with one log line; the caller then trains it again.

Runs from before checksums existed (no ``files`` in ``config.json``) are *trusted once*: the
first full check reads each file as a loader would (JSON, the ``.npz``, the checkpoint through
``torch.load``) and, if all are readable, records their checksums under the run's lock, with
one log line; an unreadable one is damage like any other. Flagging them all instead would ask
for hours of retraining of runs that are almost always intact, or leave a permanent warning
that users learn to ignore; from the first full check on, they are checked like new runs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from cervixlib import runs as store
from cervixlib.storage import atomic_write_json, file_record, payload_sha256, record_problem

__all__ = ["verify_run", "repair", "repair_all", "trust_once"]

_log = logging.getLogger(__name__)


def _damage(final: Path, file: str, problem: str) -> store.RunDamaged:
    return store.RunDamaged(final, file, problem)


def verify_run(final: Path, key: str | None = None, *, full: bool = True) -> store.RunDamaged | None:
    """What is wrong with the finished run at ``final`` (None: nothing, or no run there).

    Checks that every file is there, that ``config.json`` is the run's (its content hash,
    its key against ``key`` when given, and the folder name its settings and key give), and
    each file's size and time, hashing a file written since (``full=False``), or its size and
    SHA-256 (``full=True``) against the record.
    A run from before checksums is read whole and trusted once by the full check
    (:func:`trust_once`); the fast check passes it on its files being there.
    """
    return _verify(Path(final), key, full, trust_once)


def _verify(final: Path, key: str | None, full: bool,
            on_legacy: Callable[[Path], store.RunDamaged | None]) -> store.RunDamaged | None:
    if not final.is_dir():
        return None
    missing = [f for f in store.RUN_FILES if not (final / f).is_file()]
    if missing:
        return _damage(final, missing[0], "missing" + (f", as are {', '.join(missing[1:])}" if missing[1:] else ""))
    try:
        payload = json.loads((final / "config.json").read_bytes())
        config = store.TrainConfig.from_dict(payload["config"])
        records = dict(payload.get("files") or {})
        name = store.run_dir_name(config, payload["key"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return _damage(final, "config.json", f"not a cervixlib run config: {type(exc).__name__}: {exc}")
    if key is not None and payload["key"] != key:
        return _damage(final, "config.json", f"its key {payload['key']} is not the run's key {key}")
    if name != final.name or ("config_sha256" in payload and payload_sha256(payload) != payload["config_sha256"]):
        return _damage(final, "config.json", "its settings no longer match the run's key: "
                                             "changed since the run finished")
    if not records:
        return on_legacy(final) if full else None
    for file in store.CHECKSUMMED:
        if file not in records:
            return _damage(final, "config.json", f"records no checksum of {file}")
        problem = record_problem(final / file, records[file], full=full)
        if problem is not None:
            return _damage(final, file, problem)
    return None


def trust_once(final: Path) -> store.RunDamaged | None:
    """A run from before checksums: read every file as a loader would and, if all are readable,
    record their sizes and SHA-256 in ``config.json`` under the run's lock (one log line).

    Returns the damage found instead (nothing is recorded then). See the module's docstring for
    why such runs are trusted once rather than flagged.
    """
    with store.run_lock(Path(final)):
        return _trust(Path(final))


def _trust(final: Path) -> store.RunDamaged | None:
    """:func:`trust_once` under the run's lock, held by the caller."""
    try:
        run = store.load_run(final)
        if run.checksums:  # another process recorded them meanwhile
            return None
        store.safe_torch_load(final / "best.pt")
    except store.RunDamaged as exc:
        return exc
    except store.RunError as exc:
        return _damage(final, "best.pt", str(exc).split(": ", 1)[-1])
    payload = json.loads((final / "config.json").read_bytes())
    payload["files"] = {f: file_record(final / f) for f in store.CHECKSUMMED}
    payload["config_sha256"] = payload_sha256(payload)
    atomic_write_json(final / "config.json", payload)
    _log.info("%s: written before runs recorded checksums; its files are readable, so it is trusted "
              "once: their checksums are recorded now and checked from here on", final)
    return None


def repair(final: Path, key: str | None = None) -> Path | None:
    """Under the run's lock, check ``final`` fully again and move it aside if it is damaged
    (:func:`cervixlib.runs.move_aside`: one log line). Returns where it went (None: it was sound,
    or gone)."""
    final = Path(final)
    with store.run_lock(final):
        damage = _verify(final, key, True, _trust)
        if damage is None:
            return None
        return store.move_aside(final, str(damage).split("; run ")[0])


def repair_all(runs_dir: Path, names: Iterable[str]) -> list[Path]:
    """:func:`repair` each of the runs ``names`` in ``runs_dir``; where the damaged ones went."""
    moved = [repair(Path(runs_dir) / n) for n in names]
    return [m for m in moved if m is not None]
