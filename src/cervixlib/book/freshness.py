"""When an executed chapter is up to date: the same notebook, parameters, library, data and runs.

``cervix book`` keeps an executed chapter only if all of these are as they were when it ran:

- its key (:func:`chapter_key`): the notebook, its parameters, cervixlib's sources, Python;
- the data: its :meth:`~cervixlib.data.DatasetIndex.fingerprint`, checked cheaply first by the
  folder's :func:`~cervixlib.data.signature.tree_signature` (sizes and times); the data is
  indexed again only when that differs (:class:`DataState`);
- the runs it read (the chapter's runs in the book's plan): each run's ``config.json``, which
  records the SHA-256 of every file of the run (:func:`run_digest`), and the files themselves,
  hashed against that record (:func:`cervixlib.run_checks.verify_run`). A damaged run is moved
  aside (:func:`cervixlib.run_checks.repair`) and the chapters that read it execute again after
  it is retrained; a removed or retrained run does the same.

All of this is stored in the executed notebook's ``metadata.cervix`` (``key``, ``data``,
``runs``), and each stale chapter's reason is logged in one line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cervixlib.book.errors import BookError

if TYPE_CHECKING:
    from cervixlib.data import DatasetIndex

__all__ = ["DataState", "RunState", "chapter_key", "data_path", "run_digest", "stale_reason", "stamp"]

_log = logging.getLogger(__name__)


def chapter_key(source: Path, parameters: Mapping[str, Any], library: str) -> str:
    """Hash of a chapter's notebook, its parameters, cervixlib's sources (``library``) and Python."""
    return hashlib.sha256(json.dumps(
        [hashlib.sha256(Path(source).read_bytes()).hexdigest(), parameters, library, sys.version],
        sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class DataState:
    """The book's data now: its folder signature at once, its fingerprint (and index) when asked.

    ``root``: a callable giving the data's root (it may generate the embedded set, so it is
    called only when the data must be read); ``path``: that root if known without generating
    it (None: not there yet).
    """

    path: Path | None
    root: Callable[[], Path]
    skip_bad: bool = False
    signature: str | None = None
    _fingerprint: str | None = field(default=None, repr=False)
    _index: DatasetIndex | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from cervixlib.data.signature import tree_signature

        self.signature = None if self.path is None else tree_signature(self.path)

    def read(self) -> DatasetIndex:
        """The data's index, read once (the embedded set generated first); every bad file is one
        :class:`BookError`, unless ``skip_bad``."""
        if self._index is None:
            from cervixlib.data import DataError, load_index
            from cervixlib.data.signature import tree_signature

            root = self.root()
            try:
                self._index = load_index(root, skip_bad=self.skip_bad)
            except DataError as exc:
                raise BookError(str(exc)) from None
            if self.path is None:  # generated just now
                self.path, self.signature = root, tree_signature(root)
            self._fingerprint = self._index.fingerprint()
        return self._index

    def fingerprint(self) -> str:
        """The data's fingerprint: from an executed chapter with the same signature, else indexed."""
        if self._fingerprint is None:
            self._fingerprint = self.read().fingerprint()
        return self._fingerprint

    def changed_since(self, stored: Mapping[str, Any]) -> str | None:
        """Why the data differs from ``stored`` (a chapter's ``metadata.cervix.data``), or None."""
        if not stored.get("fingerprint"):
            return "it was executed before chapters recorded their data"
        if self.signature is not None and stored.get("signature") == self.signature:
            self._fingerprint = self._fingerprint or stored["fingerprint"]  # sizes and times agree
            return None
        if stored["fingerprint"] == self.fingerprint():
            return None
        return f"the data changed (fingerprint {stored['fingerprint']} -> {self.fingerprint()})"

    def record(self) -> dict[str, Any]:
        """What an executed chapter stores about its data: ``{"fingerprint", "signature"}``."""
        return {"fingerprint": self.fingerprint(), "signature": self.signature}


def run_digest(run: Path) -> str | None:
    """SHA-256 of a finished run's ``config.json`` (which records every other file's checksum);
    None when the run is not there."""
    try:
        return hashlib.sha256((Path(run) / "config.json").read_bytes()).hexdigest()
    except OSError:
        return None


@dataclass
class RunState:
    """The run store as the book's chapters see it: each run checked once per ``cervix book``."""

    runs_dir: Path
    _checked: dict[str, str | None] = field(default_factory=dict)

    def digest(self, name: str) -> str | None:
        """The run's :func:`run_digest` after a full check; a damaged run is moved aside first
        (one log line), so it reads as missing."""
        if name not in self._checked:
            from cervixlib.run_checks import repair, verify_run

            final = self.runs_dir / name
            if verify_run(final, full=True) is not None:
                repair(final)  # checks again under the run's lock; moves it to .damaged/
            self._checked[name] = run_digest(final)
        return self._checked[name]

    def record(self, names: Iterable[str]) -> dict[str, str | None]:
        """``{run name: digest}`` as an executed chapter stores the runs it read (not checked again)."""
        return {n: run_digest(self.runs_dir / n) for n in sorted(names)}


def stale_reason(stored: Mapping[str, Any], key: str, data: DataState, runs: RunState) -> str | None:
    """Why an executed chapter (its ``metadata.cervix``: ``stored``) must execute again, or None."""
    if not stored:
        return "not executed yet"
    if stored.get("key") != key:
        return "its notebook, its parameters, cervixlib's sources or Python changed"
    why = data.changed_since(stored.get("data") or {})
    if why is not None:
        return why
    if "runs" not in stored:
        return "it was executed before chapters recorded their runs"
    for name, digest in sorted(stored["runs"].items()):
        now = runs.digest(name)
        if now is None:
            return f"run {name} it read is missing or was damaged (moved aside); it is trained again"
        if now != digest:
            return f"run {name} it read was trained again"
    return None


def stamp(notebook: Path, **values: Any) -> None:
    """Add ``values`` to an executed notebook's ``metadata.cervix`` (written atomically)."""
    import nbformat

    from cervixlib.storage import atomic_write_bytes

    nb = nbformat.read(notebook, as_version=4)
    nb.metadata.setdefault("cervix", {}).update(values)
    atomic_write_bytes(Path(notebook), nbformat.writes(nb).encode("utf-8"))


def data_path(data: str | os.PathLike[str] | None, profile: str) -> Path | None:
    """The book's data root if it exists without generating anything (the embedded set's, for None)."""
    if data is not None:
        return Path(data)
    from cervixlib.config import DataConfig, get_profile
    from cervixlib.data.prepared import data_root

    root = data_root(DataConfig(synth_scale=get_profile(profile).synth_scale), generate=False)
    return root if root.exists() else None
