"""The book's manifest: which notebooks run, in which order, with which parameters.

``book/manifest.yml`` declares the chapters of the analysis book (Wang et al. 2021,
arXiv:2106.00557) and the parameters papermill injects into each; this module reads
and validates it (:func:`load_manifest`), reads a notebook's ``parameters`` cell
(:func:`notebook_parameters`) and the chapters of Jupyter Book's ``_toc.yml``
(:func:`toc_chapters`), so that :func:`cervixlib.book.run_book` can refuse a
mismatch in seconds, before any notebook runs.

The manifest's order is the order of execution, the toc's the order of reading; they
must list the same notebooks but need not agree on the order. The front page
(``00_claims``, the toc's root) reads the fold runs that chapters 3 and 4 train, so the
manifest lists it last. A toc document with a Markdown source in the book folder
(``intro.md``) is a page, not a notebook, and is not in the manifest.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cervixlib.book.errors import BookError
from cervixlib.config import PROFILES, RUN_NEEDS, SUBSETS
from cervixlib.layout import CELLS

__all__ = [
    "INJECTED_PARAMETERS",
    "Manifest",
    "NotebookSpec",
    "PROFILE_NAMES",
    "load_manifest",
    "notebook_parameters",
    "toc_chapters",
    "toc_documents",
    "toc_notebooks",
]

#: Profiles ``cervix book --profile`` accepts: those of ``cervixlib.config.PROFILES``.
PROFILE_NAMES: tuple[str, ...] = tuple(PROFILES)
#: Parameters every notebook declares and the runner always injects.
INJECTED_PARAMETERS: tuple[str, ...] = ("profile", "data_root", "runs_dir")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class NotebookSpec:
    """One chapter: ``notebooks/<name>.ipynb`` and the parameters papermill injects.

    ``parameters`` apply to every profile; ``profiles[p]`` override them for profile p.
    ``runs`` are the groups of training runs the chapter reads (:data:`cervixlib.config.RUN_NEEDS`,
    ``NEED@SUBSET`` for another subset than the chapter's): the run plan
    (:mod:`cervixlib.plan`) trains them before the chapter runs, from the same
    :class:`cervixlib.study.Study` methods the notebook calls; a ``NEED@SUBSET`` whose subset
    the data lacks is left out. ``subsets``: the subsets the chapter cannot do without (SIPaKMeD's
    multi-cell images and isolated cells, for the chapter that compares them; ``cells``,
    :data:`cervixlib.layout.CELLS`, for the chapter that needs each image's cells); on data
    without them the chapter is a note saying why (:meth:`missing_subsets`).
    """

    name: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    profiles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    runs: tuple[str, ...] = ()
    subsets: tuple[str, ...] = ()

    def missing_subsets(self, available: Sequence[str]) -> list[str]:
        """The subsets this chapter needs that data with ``available`` subsets lacks."""
        return [s for s in self.subsets if s not in available]

    def parameters_for(self, profile: str) -> dict[str, Any]:
        """The manifest's parameters for ``profile`` (without the injected ones)."""
        return {**self.parameters, **self.profiles.get(profile, {})}


@dataclass(frozen=True)
class Manifest:
    """The validated ``book/manifest.yml``: the chapters in the order they are executed."""

    path: Path
    notebooks: tuple[NotebookSpec, ...]

    @property
    def names(self) -> list[str]:
        return [nb.name for nb in self.notebooks]

    def select(self, only: Sequence[str] | None = None) -> list[NotebookSpec]:
        """The chapters named in ``only`` (a full name, ``NAME.ipynb`` or a unique
        prefix such as ``05``), in execution order; all of them when ``only`` is empty."""
        if not only:
            return list(self.notebooks)
        chosen: set[str] = set()
        for query in only:
            key = Path(query).name.removesuffix(".ipynb")
            hits = [n for n in self.names if n == key] or [n for n in self.names if n.startswith(key)]
            if len(hits) != 1:
                what = "matches none" if not hits else f"is ambiguous ({', '.join(hits)})"
                raise BookError(f"{self.path}: notebook {query!r} {what}; "
                                f"chapters: {', '.join(self.names)}")
            chosen.add(hits[0])
        return [nb for nb in self.notebooks if nb.name in chosen]


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise BookError(f"{where} must be a mapping of names to values, got {value!r}")
    return dict(value)


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and validate a book manifest (YAML).

    Format::

        notebooks:
          - name: 02_baselines           # notebooks/02_baselines.ipynb
            parameters: {models: [resnet50, densenet121], subset: multi}
            profiles:                    # optional per-profile overrides
              smoke: {models: [resnet50]}

    ``profile``, ``data_root`` and ``runs_dir`` come from ``cervix book`` and may not
    appear here. Raises :class:`BookError` naming the file and the problem.
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BookError(f"{path}: manifest not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise BookError(f"{path}: not valid YAML{line}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, Mapping) or set(data) != {"notebooks"}:
        raise BookError(f"{path}: expected one top-level key 'notebooks', got "
                        f"{sorted(data) if isinstance(data, Mapping) else type(data).__name__}")
    entries = data["notebooks"]
    if not isinstance(entries, list) or not entries:
        raise BookError(f"{path}: 'notebooks' must be a non-empty list")
    specs: list[NotebookSpec] = []
    for i, entry in enumerate(entries):
        where = f"{path}: notebooks[{i}]"
        if not isinstance(entry, Mapping):
            raise BookError(f"{where}: expected a mapping with 'name', got {entry!r}")
        unknown = set(entry) - {"name", "parameters", "profiles", "runs", "subsets"}
        if unknown:
            raise BookError(f"{where}: unknown key(s) {sorted(unknown)}; "
                            "allowed: name, parameters, profiles, runs, subsets")
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name) or name.endswith(".ipynb"):
            raise BookError(f"{where}: 'name' must be a notebook file name without "
                            f".ipynb, got {name!r}")
        where = f"{path}: {name}"
        params = _mapping(entry.get("parameters"), f"{where}: parameters")
        profiles = _mapping(entry.get("profiles"), f"{where}: profiles")
        for prof, over in list(profiles.items()):
            if prof not in PROFILE_NAMES:
                raise BookError(f"{where}: unknown profile {prof!r}; "
                                f"known: {', '.join(PROFILE_NAMES)}")
            profiles[prof] = _mapping(over, f"{where}: profiles.{prof}")
        for key in itertools.chain(params, *profiles.values()):
            if key in INJECTED_PARAMETERS:
                raise BookError(f"{where}: parameter {key!r} is set by `cervix book` "
                                "(--profile, --data, --runs), not by the manifest")
        runs = entry.get("runs") or []
        if not isinstance(runs, list) or not all(_is_need(r) for r in runs):
            raise BookError(f"{where}: runs must be a list of {', '.join(RUN_NEEDS)}, each but leakage "
                            f"(isolated cells) optionally @SUBSET ({', '.join(SUBSETS)}), got {runs!r}")
        subsets = entry.get("subsets") or []
        if not isinstance(subsets, list) or not all(x in (*SUBSETS, CELLS) for x in subsets):
            raise BookError(f"{where}: subsets must be a list of {', '.join((*SUBSETS, CELLS))}, got {subsets!r}")
        specs.append(NotebookSpec(name, params, profiles, tuple(runs), tuple(subsets)))
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BookError(f"{path}: notebook(s) listed twice: {', '.join(dupes)}")
    return Manifest(path, tuple(specs))


def _is_need(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    kind, at, subset = value.partition("@")
    return kind in RUN_NEEDS and (not at or (subset in SUBSETS and kind != "leakage"))


def toc_chapters(toc: str | os.PathLike[str]) -> list[str]:
    """The documents a Jupyter Book ``_toc.yml`` lists after its root, in order."""
    return toc_documents(toc)[1:]


def toc_documents(toc: str | os.PathLike[str]) -> list[str]:
    """Every document of a Jupyter Book ``_toc.yml`` in reading order, the root first."""
    import yaml

    toc = Path(toc)
    try:
        data = yaml.safe_load(toc.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BookError(f"{toc}: table of contents not found") from None
    if not isinstance(data, Mapping) or "root" not in data:
        raise BookError(f"{toc}: not a Jupyter Book table of contents (no 'root')")
    found: list[str] = [str(Path(str(data["root"])).with_suffix(""))]

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            if "file" in node:
                found.append(str(Path(str(node["file"])).with_suffix("")))
            for key in ("parts", "chapters", "sections"):
                walk(node.get(key))
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(data)
    return found


def notebook_parameters(path: str | os.PathLike[str]) -> dict[str, str]:
    """Names of the variables in a notebook's ``parameters`` cell -> their source text.

    Raises :class:`BookError` unless exactly one cell is tagged ``parameters``.
    """
    import nbformat
    from papermill.inspection import inspect_notebook

    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise BookError(f"{path}: notebook not found") from None
    except Exception as exc:  # nbformat raises several kinds for a bad file
        raise BookError(f"{path}: not a readable notebook: {exc}".splitlines()[0]) from None
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        raise BookError(f"{path}: expected exactly one cell tagged 'parameters', found {len(tagged)}")
    return {name: p["default"] for name, p in inspect_notebook(str(path)).items()}


_PAGE_SUFFIXES = (".md", ".rst")


def toc_notebooks(toc: str | os.PathLike[str]) -> list[str]:
    """The toc's documents that are notebooks: all but those with a ``.md``/``.rst`` source
    beside the toc (pages such as ``intro.md``), in reading order, the root first."""
    toc = Path(toc)
    return [d for d in toc_documents(toc)
            if not any((toc.parent / f"{d}{suffix}").is_file() for suffix in _PAGE_SUFFIXES)]


def _parse_toc_against(manifest: Manifest, toc: Path) -> None:
    """Raise :class:`BookError` unless ``toc`` lists the manifest's notebooks (in any order:
    the manifest's is the execution order, the toc's the reading order)."""
    notebooks = toc_notebooks(toc)
    missing = [n for n in manifest.names if n not in notebooks]
    extra = [n for n in notebooks if n not in manifest.names]
    if missing or extra:
        detail = "; ".join(filter(None, [
            f"not in the toc: {', '.join(missing)}" if missing else "",
            f"not in the manifest: {', '.join(extra)}" if extra else "",
        ]))
        raise BookError(f"{toc} and {manifest.path} must list the same notebooks: {detail}")
