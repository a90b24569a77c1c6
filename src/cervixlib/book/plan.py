"""The book's run plan: every run the chapters read, computed before any kernel starts.

``book/manifest.yml`` says per chapter which groups of runs it reads (``runs: [main,
side, folds, leakage]``); :func:`book_plan` builds each chapter's
:class:`~cervixlib.study.Study` from the parameters papermill would inject and asks it
for those groups, so the plan and the notebooks name the same runs. The plan itself
(:class:`~cervixlib.plan.RunPlan`: names, images, store status) is :mod:`cervixlib.plan`,
which the parallel trainer reads without the book.
"""

from __future__ import annotations

import ast
import logging
import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cervixlib.book.errors import BookError
from cervixlib.book.manifest import NotebookSpec, load_manifest, notebook_parameters
from cervixlib.config import TrainConfig
from cervixlib.layout import root_needs
from cervixlib.plan import RunPlan, plan_runs

if TYPE_CHECKING:
    from cervixlib.study import Study

__all__ = ["book_plan", "chapter_configs", "chapter_plan", "find_manifest", "plan_to_execute", "train_book_plan"]

_log = logging.getLogger(__name__)


def _literal(source: str, where: str) -> Any:
    try:
        return ast.literal_eval(source)
    except (ValueError, SyntaxError):
        raise BookError(f"{where}: the default {source!r} is not a literal the run plan can read") from None


def book_plan(
    profile: str = "default",
    data: str | os.PathLike[str] | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    book_dir: str | os.PathLike[str] = "book",
    notebooks_dir: str | os.PathLike[str] = "notebooks",
    runs_dir: str | os.PathLike[str] = "runs",
    only: Sequence[str] | None = None,
    generate: bool = True,
    manifest: str | os.PathLike[str] | None = None,
    verify: Literal["size", "hash"] = "hash",
) -> RunPlan:
    """The runs the book's chapters read, for ``profile`` on ``data`` (None: the embedded set).

    Each chapter's parameters are resolved as ``cervix book`` injects them (the notebook's
    defaults, the manifest's for the profile, ``params``), its :class:`~cervixlib.study.Study`
    built from them, and the groups of runs its manifest entry lists asked of it; a run read
    by several chapters is listed once. ``generate=False`` leaves an embedded set that is not
    generated yet alone (the plan then lists the runs without image counts or store status).
    ``manifest``: default ``book_dir/manifest.yml``. A parameter in ``params`` that no selected
    chapter declares is refused, as ``cervix book`` refuses it. A chapter that needs subsets the
    data lacks (a note on such data) and a ``NEED@SUBSET`` whose subset it lacks plan nothing.
    ``verify``: how the store's runs are checked (:func:`cervixlib.plan.plan_runs`).
    """
    from cervixlib.study import Study

    # the chapter parameters a Study takes, by the names the notebooks pass them under; the
    # plan's own run store replaces the notebooks' (relative to notebooks/)
    study_fields = {f.name for f in dataclasses.fields(Study) if f.init and not f.name.startswith("_")}
    study_fields.discard("runs_dir")
    book_dir, notebooks_dir = Path(book_dir), Path(notebooks_dir)
    man = load_manifest(manifest if manifest is not None else book_dir / "manifest.yml")
    available = root_needs(data)
    wanted: dict[TrainConfig, list[str]] = {}
    selected = man.select(only)
    known: set[str] = set()
    for spec in selected:
        src = notebooks_dir / f"{spec.name}.ipynb"
        declared = {k: _literal(v, f"{src}: parameter {k}") for k, v in notebook_parameters(src).items()}
        known |= set(declared)
        if not spec.runs or spec.missing_subsets(available):
            continue
        values = {**declared, **spec.parameters_for(profile),
                  **{k: v for k, v in (params or {}).items() if k in declared},
                  "profile": profile, "data_root": None if data is None else str(data)}
        study = Study(**{k: v for k, v in values.items() if k in study_fields}, runs_dir=str(runs_dir))
        for config in chapter_configs(study, spec, values.get("models", []), available):
            wanted.setdefault(config, [])
            if spec.name not in wanted[config]:
                wanted[config].append(spec.name)
    unknown = sorted(set(params or {}) - known)
    if unknown:
        raise BookError(f"parameter(s) {', '.join(unknown)} are not in the parameters cell of "
                        f"{', '.join(s.name for s in selected)}")
    return plan_runs(list(wanted), profile=profile, runs_dir=runs_dir, generate=generate,
                     chapters={c: tuple(ch) for c, ch in wanted.items()}, verify=verify)


def chapter_configs(study: Study, spec: NotebookSpec, models: Sequence[str],
                    available: Sequence[str]) -> list[TrainConfig]:
    """The configurations chapter ``spec`` reads through ``study`` (its manifest's ``runs:``, each
    asked of :meth:`~cervixlib.study.Study.needed_configs`), once each, on data with the
    ``available`` subsets: none for a chapter that is a note there, and a ``NEED@SUBSET`` whose
    subset the data lacks left out. The book's plan and a chapter's own training cell both call it."""
    if not spec.runs or spec.missing_subsets(available):
        return []
    configs: list[TrainConfig] = []
    for need in spec.runs:
        if need.partition("@")[2] not in ("", *available):
            continue
        configs += [c for c in study.needed_configs(need, models) if c not in configs]
    return configs


def find_manifest(start: str | os.PathLike[str] | None = None) -> Path:
    """``book/manifest.yml`` in ``start`` (default: the working directory, ``notebooks/`` in a
    kernel) or the nearest folder above it that has one."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "book" / "manifest.yml").is_file():
            return folder / "book" / "manifest.yml"
    raise BookError(f"no book/manifest.yml in {here} or a folder above it: pass manifest= (the path of the "
                    "book's manifest.yml)")


def chapter_plan(study: Study, chapter: str, models: Sequence[str], *,
                 manifest: str | os.PathLike[str] | None = None,
                 verify: Literal["size", "hash"] = "hash") -> RunPlan:
    """The run plan of one chapter as its notebook runs it: the runs ``chapter`` (a name in the
    manifest, default :func:`find_manifest`'s) reads through ``study`` with ``models``, with
    their store status (``verify``: how finished runs are checked, see :func:`~cervixlib.plan.plan_runs`).
    With the parameters ``cervix book`` injects, these are the runs that ``cervix plan --only CHAPTER`` lists."""
    man = load_manifest(manifest if manifest is not None else find_manifest())
    spec, = man.select([chapter])
    configs = chapter_configs(study, spec, list(models), root_needs(study.data_root))
    return plan_runs(configs, profile=study.profile, runs_dir=study.runs_dir,
                     chapters={c: (spec.name,) for c in configs}, verify=verify)


def plan_to_execute(profile: str, data: Any, params: Mapping[str, Any], manifest: Path, book_dir: Path,
                    notebooks_dir: Path, runs_dir: Any, chapters: Sequence[str]) -> RunPlan | None:
    """The run plan of the ``chapters`` ``cervix book`` is about to execute (None: no chapter), every
    run in the store fully checked; damaged ones are moved aside now (one line each), so that they
    are trained again, by the plan or, without Ray, by the chapters."""
    from cervixlib.data import DataError
    from cervixlib.run_checks import repair_all

    if not chapters:
        return None
    try:
        plan = book_plan(profile, data, params=params, book_dir=book_dir, notebooks_dir=notebooks_dir,
                         runs_dir=runs_dir, only=chapters, manifest=manifest, verify="hash")
    except (DataError, ValueError) as exc:  # data the chapters' runs cannot use: one line, as a chapter says it
        raise BookError(f"the run plan of {', '.join(chapters)}: {exc}") from None
    repair_all(plan.runs_dir, [r.name for r in plan.runs if r.damage and r.name])
    return plan


def train_book_plan(profile: str, data: Any, params: Mapping[str, Any], manifest: Path, book_dir: Path,
                notebooks_dir: Path, runs_dir: Any, chapters: Sequence[str], *, jobs: int | str,
                address: str | None, plan: RunPlan | None = None) -> list[str]:
    """Train the run plan of ``chapters`` in parallel before they execute (``cervix book``); the
    plan's run names. ``plan``: the plan of (at least) those chapters, already computed; its runs
    that no chapter of ``chapters`` reads are left alone.

    A failed run fails the book (after the others finished) with one line a run; without Ray
    the runs are trained one at a time in this process, before the chapters as with Ray.
    """
    from cervixlib.data import DataError
    from cervixlib.models.weights import CheckpointError, WeightsNotFoundError, prefetch_imagenet
    from cervixlib.parallel import RayUnavailable, train_plan

    try:
        if plan is None:
            plan = book_plan(profile, data, params=params, book_dir=book_dir, notebooks_dir=notebooks_dir,
                             runs_dir=runs_dir, only=chapters, manifest=manifest)
        else:
            plan = dataclasses.replace(plan, runs=tuple(r for r in plan.runs if set(r.chapters) & set(chapters)))
    except (DataError, ValueError) as exc:  # data the chapters' runs cannot use: one line, as a chapter says it
        raise BookError(f"the run plan of {', '.join(chapters)}: {exc}") from None
    try:  # ImageNet files fetched once (or refused in one line) before any run starts
        prefetch_imagenet(r.config.model for r in plan.todo if r.config.weights == "imagenet")
    except (WeightsNotFoundError, CheckpointError) as exc:
        raise BookError(f"the run plan of {', '.join(chapters)}: {exc}") from None
    try:
        # without Ray, one at a time here; a cluster asked for (address) gets no quiet fallback
        outcome = train_plan(plan, jobs=jobs, address=address, without_ray="here")
    except RayUnavailable as exc:
        raise BookError(str(exc)) from None
    if not outcome.ok:
        raise BookError(f"{len(outcome.failed)} run(s) of the plan failed; rerun to resume them:\n"
                        f"{outcome.failure_text()}")
    return [r.name for r in plan.runs if r.name]
