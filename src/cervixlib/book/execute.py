"""Executing the book: papermill runs each chapter in a kernel of this interpreter.

:func:`run_book` (``cervix book``) validates the manifest, the notebooks' ``parameters``
cells and the data before anything runs, executes the chapters of the analysis book
(Wang et al. 2021, arXiv:2106.00557) with papermill into ``book/`` (skipping a chapter
whose notebook, parameters and library sources did not change), and stops at the
first failing cell with a one-line :class:`~cervixlib.book.errors.BookError` naming
the notebook and the cell. :func:`execute_notebook` runs one notebook with the
kernel manager of :mod:`cervixlib.book.kernel` and refuses outputs the book would
drop; :func:`resolve_kernel` finds (or installs) a kernel that runs this venv.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cervixlib
from cervixlib.book.errors import BookError
from cervixlib.book.kernel import BookKernelManager
from cervixlib.book.manifest import (
    INJECTED_PARAMETERS,
    PROFILE_NAMES,
    Manifest,
    NotebookSpec,
    _parse_toc_against,
    load_manifest,
    notebook_parameters,
)
from cervixlib.book.freshness import DataState, RunState, chapter_key, data_path, stale_reason, stamp
from cervixlib.book.note import write_note
from cervixlib.book.plan import plan_to_execute, train_book_plan
from cervixlib.book.site import build_site
from cervixlib.layout import root_needs
from cervixlib.display import PLOTLY_MIMETYPE

__all__ = [
    "BookResult",
    "CellTimeout",
    "execute_notebook",
    "hide_injected_parameters",
    "resolve_kernel",
    "run_book",
]

_log = logging.getLogger(__name__)


class CellTimeout(BookError):
    """A notebook cell ran longer than the allowed time (``cell_timeout``)."""


def resolve_kernel(kernel_name: str | None = None) -> str:
    """Name of a Jupyter kernel that runs this interpreter (the project's venv).

    ``python3`` normally does: jupyter_client starts the built-in ipykernel spec with
    ``sys.executable``. When a ``python3`` spec elsewhere (e.g. in ``~/.local``)
    points at another Python, a ``cervix`` kernelspec for this interpreter is
    installed into ``sys.prefix`` and used instead. An explicit ``kernel_name`` is
    returned as given after checking that it exists.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    ksm = KernelSpecManager()
    if kernel_name is not None:
        try:
            ksm.get_kernel_spec(kernel_name)
        except NoSuchKernel:
            raise BookError(f"no Jupyter kernel named {kernel_name!r}; "
                            f"available: {', '.join(sorted(ksm.find_kernel_specs()))}") from None
        return kernel_name
    if _kernel_runs_here(ksm, "python3"):
        return "python3"
    if not _kernel_runs_here(ksm, "cervix"):
        from ipykernel.kernelspec import install

        install(kernel_name="cervix", display_name="Python (cervixlib)", prefix=sys.prefix)
        _log.info("installed the Jupyter kernel 'cervix' for %s", sys.executable)
    return "cervix"


def _kernel_runs_here(ksm: Any, name: str) -> bool:
    from jupyter_client.kernelspec import NoSuchKernel

    try:
        argv0 = ksm.get_kernel_spec(name).argv[0]
    except (NoSuchKernel, IndexError):
        return False
    # jupyter_client replaces these by sys.executable when it starts the kernel
    if argv0 in {"python", f"python{sys.version_info[0]}", "python%d.%d" % sys.version_info[:2]}:
        return True
    exe = shutil.which(argv0) or argv0
    # same venv = same bin folder; do not resolve symlinks (a venv's python links out)
    return Path(os.path.abspath(exe)).parent == Path(os.path.abspath(sys.executable)).parent


@dataclass
class BookResult:
    """What :func:`run_book` did: executed and reused notebooks, the site, timings (s)."""

    executed: list[Path] = field(default_factory=list)
    reused: list[Path] = field(default_factory=list)
    html_dir: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    planned: list[str] = field(default_factory=list)  # the runs of the executed chapters' plan
    unplanned: list[str] = field(default_factory=list)  # runs the chapters trained that the plan lacked


def _library_files() -> tuple[Path, list[Path]]:
    """The cervixlib package folder and every Python source under it (the whole
    package, not only :mod:`cervixlib.book`), in a stable order."""
    root = Path(cervixlib.__file__).parent
    return root, sorted(root.rglob("*.py"))


def _library_digest() -> str:
    """Hash of cervixlib's Python sources: a changed library re-executes the book."""
    root, files = _library_files()
    h = hashlib.sha256()
    for p in files:
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _inject_path(path: str | os.PathLike[str] | None, cwd: Path) -> str | None:
    """A path as the notebook (run in ``cwd``) sees it: relative stays relative."""
    if path is None:
        return None
    path = Path(path)
    if path.is_absolute():
        return str(path)
    return os.path.relpath(path.absolute(), cwd.absolute())


def _cell_label(nb: Any, index: int) -> str:
    """``cell N`` (1-based, counted in the source notebook) and its first line."""
    injected = [i for i, c in enumerate(nb.cells)
                if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    src_index = index - (1 if injected and index > injected[0] else 0)
    first = next((ln.strip() for ln in str(nb.cells[index].source).splitlines() if ln.strip()), "")
    if len(first) > 60:
        first = first[:57] + "..."
    return f"cell {src_index + 1}" + (f" ({first!r})" if first else "")


def _check_executed(nb: Any, where: str) -> None:
    """Refuse outputs the book would drop or that show an error."""
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                raise BookError(f"{where}: {_cell_label(nb, i)} shows an error: "
                                f"{out.get('ename')}: {out.get('evalue')}")
            data = out.get("data", {})
            if PLOTLY_MIMETYPE in data and "text/html" not in data:
                raise BookError(f"{where}: {_cell_label(nb, i)} displays a plotly figure only as "
                                f"{PLOTLY_MIMETYPE}, which the book cannot render; "
                                "display it with cervixlib.display.show(fig)")


def hide_injected_parameters(nb: Any) -> int:
    """Tag papermill's ``injected-parameters`` cell ``remove-cell``, in place.

    papermill writes that cell into the executed copy; the source notebook cannot tag
    it. With the tag the rendered page leaves it out, as it leaves out the tagged
    ``parameters`` cell, while the downloadable notebook keeps both. Returns the
    number of cells tagged now.
    """
    n = 0
    for cell in nb.cells:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
            n += 1
    return n


def execute_notebook(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    parameters: Mapping[str, Any],
    *,
    kernel_name: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    progress: bool = False,
    log_output: bool = False,
    scratch: str | os.PathLike[str] | None = None,
    cell_timeout: float | None = None,
) -> Path:
    """Execute ``source`` with papermill and write it to ``output``, only on success.

    The executed copy is written to ``scratch`` (default: next to ``output``, hidden)
    and moved to ``output`` once it ran without error and passed the output checks;
    ``metadata`` is stored under the notebook's ``metadata.cervix``, and papermill's
    injected-parameters cell is tagged ``remove-cell`` (:func:`hide_injected_parameters`,
    so the page does not show it). On failure a
    stale ``output`` is removed and :class:`BookError` names the notebook, the cell
    (1-based, counted in ``source``) and the exception. A cell that runs longer than
    ``cell_timeout`` seconds (None: no limit) raises :class:`CellTimeout`.
    """
    import nbformat
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError
    from papermill.exceptions import PapermillExecutionError

    source, output = Path(source), Path(output)
    cwd = Path(cwd) if cwd is not None else source.parent
    scratch = Path(scratch) if scratch is not None else output.with_name(f".{output.stem}.running.ipynb")
    scratch.parent.mkdir(parents=True, exist_ok=True)
    kernel = resolve_kernel(kernel_name)
    try:
        pm.execute_notebook(
            str(source), str(scratch), parameters=dict(parameters), kernel_name=kernel,
            cwd=str(cwd), progress_bar=progress, log_output=log_output,
            request_save_on_cell_execute=False, execution_timeout=cell_timeout,
            kernel_manager_class=BookKernelManager,
        )
    except CellTimeoutError:
        output.unlink(missing_ok=True)
        raise CellTimeout(f"{source}: a cell ran longer than the {cell_timeout:g} s limit "
                          "(cervix book --cell-timeout)") from None
    except PapermillExecutionError as exc:
        output.unlink(missing_ok=True)
        nb = nbformat.read(scratch, as_version=4)
        # papermill inserted two marker cells when it wrote the failed copy; drop them
        nb.cells = [c for c in nb.cells
                    if "papermill-error-cell-tag" not in c.get("metadata", {}).get("tags", [])]
        label = _cell_label(nb, exc.cell_index) if exc.cell_index < len(nb.cells) else f"cell {exc.cell_index}"
        evalue = " ".join(str(exc.evalue).split())
        raise BookError(f"{source}: {label} failed: {exc.ename}: {evalue} "
                        f"(executed copy: {scratch})") from None
    except Exception as exc:  # kernel died, timeout, papermill input errors
        output.unlink(missing_ok=True)
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise BookError(f"{source}: execution failed: {type(exc).__name__}: {text}") from None
    nb = nbformat.read(scratch, as_version=4)
    try:
        _check_executed(nb, str(source))
    except BookError:
        output.unlink(missing_ok=True)
        raise
    nb.metadata["cervix"] = dict(metadata or {})
    hide_injected_parameters(nb)
    nbformat.write(nb, str(scratch))
    os.replace(scratch, output)
    return output


def _embedded_data(profile: str) -> Path:
    """The profile's embedded synthetic set, generated now if absent (before any kernel starts).

    Generated here, its progress bar goes to the terminal of ``cervix book`` instead of
    onto the page of whichever chapter would first have asked for the data.
    """
    from cervixlib.config import DataConfig, get_profile
    from cervixlib.data import DataError, data_root

    try:
        return data_root(DataConfig(synth_scale=get_profile(profile).synth_scale))
    except DataError as exc:
        raise BookError(str(exc)) from None


def run_book(
    profile: str = "default",
    data: str | os.PathLike[str] | None = None,
    notebooks_dir: str | os.PathLike[str] = "notebooks",
    book_dir: str | os.PathLike[str] = "book",
    *,
    runs_dir: str | os.PathLike[str] = "runs",
    only: Sequence[str] | None = None,
    params: Mapping[str, Any] | None = None,
    manifest: str | os.PathLike[str] | None = None,
    build: bool = True,
    force: bool = False,
    kernel_name: str | None = None,
    progress: bool = False,
    log_output: bool = False,
    cell_timeout: float | None = None,
    train: bool = True,
    jobs: int | str = "auto",
    address: str | None = None,
) -> BookResult:
    """Execute the book's notebooks with papermill into ``book_dir``, then build the site.

    Args:
        profile: one of :data:`PROFILE_NAMES`, injected as ``profile``.
        data: dataset root injected as ``data_root``; None = the embedded synthetic set.
        notebooks_dir: where the clean source notebooks are; also the kernels' cwd.
        book_dir: the book's source folder (``_toc.yml``, ``manifest.yml``); the
            executed notebooks are written here.
        runs_dir: injected as ``runs_dir``; trained runs are cached there by the engine.
        only: run just these chapters (see :meth:`Manifest.select`); the others must
            already be in ``book_dir`` from a run of the same profile and data to build.
        params: overrides for every selected notebook, e.g. ``{"models": ["densenet121"]}``;
            each must be a parameter of at least one selected notebook.
        manifest: default ``book_dir/manifest.yml``.
        build: run :func:`build_site` afterwards.
        force: execute even notebooks whose executed copy is up to date (same
            notebook, parameters and cervixlib sources).
        kernel_name: default :func:`resolve_kernel`.
        progress, log_output: papermill's progress bar and cell output streaming.
        cell_timeout: the longest one cell may run, in seconds; None: the profile's
            (:attr:`cervixlib.config.Profile.cell_timeout`), 0: no limit. A notebook
            with a cell over the limit is executed once more before the build fails:
            nbclient can wait forever for the reply to a cell that the kernel has
            finished (seen with the ipywidgets explorer, jupyter/nbclient#312), and
            trained runs are cached, so the second try costs little.
        train: first train the run plan of the chapters to execute (:func:`cervixlib.book.plan.book_plan`)
            in parallel on Ray (:func:`cervixlib.parallel.train_plan`, ``jobs`` at once, on the
            cluster at ``address`` if given), so that the chapters only load their runs. Without
            Ray installed the chapters train them one at a time, as they do when run alone.

    Raises:
        BookError: one line naming the notebook and cell, or the file and problem.
    """
    if profile not in PROFILE_NAMES:
        raise BookError(f"unknown profile {profile!r}; known: {', '.join(PROFILE_NAMES)}")
    t0 = time.perf_counter()
    notebooks_dir, book_dir = Path(notebooks_dir), Path(book_dir)
    man = load_manifest(manifest if manifest is not None else book_dir / "manifest.yml")
    _parse_toc_against(man, book_dir / "_toc.yml")
    selected = man.select(only)
    overrides = dict(params or {})
    bad = sorted(set(overrides) & set(INJECTED_PARAMETERS))
    if bad:
        raise BookError(f"set {', '.join(bad)} with --profile/--data/--runs, not as a parameter")

    # validate every selected notebook before running any (fail in seconds, not hours)
    plans: list[tuple[NotebookSpec, Path, dict[str, Any]]] = []
    used: set[str] = set()
    for spec in selected:
        src = notebooks_dir / f"{spec.name}.ipynb"
        declared = notebook_parameters(src)
        missing = [k for k in INJECTED_PARAMETERS if k not in declared]
        if missing:
            raise BookError(f"{src}: the parameters cell lacks {', '.join(missing)}")
        wanted = spec.parameters_for(profile)
        unknown = sorted(set(wanted) - set(declared))
        if unknown:
            raise BookError(f"{man.path}: {spec.name}: {', '.join(unknown)} not in the notebook's "
                            f"parameters cell ({', '.join(declared)})")
        wanted.update({k: v for k, v in overrides.items() if k in declared})
        if "weights" in declared and str(overrides.get("weights", "imagenet")).lower() != "imagenet":
            wanted["weights"] = _inject_path(overrides["weights"], notebooks_dir)  # a file, seen from the kernel's cwd
        used.update(k for k in overrides if k in declared)
        wanted.update(profile=profile, data_root=_inject_path(data, notebooks_dir),
                      runs_dir=_inject_path(runs_dir, notebooks_dir))
        plans.append((spec, src, wanted))
    unused = sorted(set(overrides) - used)
    if unused:
        raise BookError(f"parameter(s) {', '.join(unused)} are not in the parameters cell of "
                        f"{', '.join(s.name for s in selected)}")
    if cell_timeout is None:
        from cervixlib.config import get_profile

        cell_timeout = get_profile(profile).cell_timeout
    kernel = resolve_kernel(kernel_name)
    digest = _library_digest()
    result = BookResult()
    scratch_dir = book_dir / "_build" / "papermill"
    # up to date: the same key (notebook, parameters, library, Python), data and runs (book/freshness.py)
    state = DataState(data_path(data, profile), lambda: Path(data) if data is not None else _embedded_data(profile),
                      skip_bad=bool(overrides.get("skip_bad", False)))
    store_state = RunState(Path(runs_dir))
    keyed = [(spec, src, parameters, chapter_key(src, parameters, digest)) for spec, src, parameters in plans]
    to_run = []
    for spec, _, _, key in keyed:
        why = "--force" if force else stale_reason(_stored_meta(book_dir / f"{spec.name}.ipynb"), key, state,
                                                   store_state)
        if why is not None:
            _log.info("%s: to execute: %s", spec.name, why)
            to_run.append(spec.name)
    if to_run:  # every bad file now, not a failed cell after an hour of training; the embedded set generated
        state.read()  # before the first kernel
    before = _run_names(runs_dir)
    plan = plan_to_execute(profile, data, overrides, man.path, book_dir, notebooks_dir, runs_dir, to_run)
    if to_run and train:
        t = time.perf_counter()
        result.planned = train_book_plan(profile, data, overrides, man.path, book_dir, notebooks_dir, runs_dir,
                                         to_run, jobs=jobs, address=address, plan=plan)
        result.seconds["plan"] = time.perf_counter() - t
    available = root_needs(data)  # the data's subsets (and cells), from folder names: which chapters apply
    for spec, src, parameters, key in keyed:
        out = book_dir / f"{spec.name}.ipynb"
        if spec.name not in to_run:
            _log.info("%s: up to date, reusing %s", spec.name, out)
            result.reused.append(out)
            continue
        t = time.perf_counter()
        missing = spec.missing_subsets(available)
        if missing:  # a chapter this data cannot answer: a page that says why
            _log.info("%s: the data lacks %s; writing a note in its place", spec.name, ", ".join(missing))
            write_note(src, out, missing, data, available,
                       metadata={"key": key, "profile": profile, "parameters": parameters,
                                 "data_root": parameters["data_root"]})
        else:
            _log.info("%s: executing with %s", spec.name, _short(parameters))
            _execute_twice(src, out, parameters, kernel_name=kernel, cwd=notebooks_dir,
                           metadata={"key": key, "profile": profile, "data_root": parameters["data_root"],
                                     "parameters": parameters, "cervixlib": cervixlib.__version__},
                           progress=progress, log_output=log_output, scratch=scratch_dir / f"{spec.name}.ipynb",
                           cell_timeout=cell_timeout or None)
        read = [r.name for r in (plan.runs if plan else ()) if spec.name in r.chapters and r.name]
        stamp(out, data=state.record(), runs=store_state.record(read))  # after: without Ray the chapter trains them
        result.seconds[spec.name] = time.perf_counter() - t
        _log.info("%s: done in %.1f s", spec.name, result.seconds[spec.name])
        result.executed.append(out)

    if result.planned:
        result.unplanned = sorted(_run_names(runs_dir) - before - set(result.planned))
        if result.unplanned:
            _log.warning("the chapters trained %d run(s) that the run plan did not list (book/manifest.yml's "
                         "runs: lack them): %s", len(result.unplanned), ", ".join(result.unplanned))
    if build:
        _check_book_consistent(man, book_dir)
        t = time.perf_counter()
        result.html_dir = build_site(book_dir)
        result.seconds["build"] = time.perf_counter() - t
    result.seconds["total"] = time.perf_counter() - t0
    return result


def _execute_twice(src: Path, out: Path, parameters: Mapping[str, Any], **kwargs: Any) -> None:
    """:func:`execute_notebook`, once more after a :class:`CellTimeout` (``cell_timeout`` of :func:`run_book`)."""
    try:
        execute_notebook(src, out, parameters, **kwargs)
    except CellTimeout as exc:
        _log.warning("%s; executing %s once more", exc, src.stem)
        execute_notebook(src, out, parameters, **kwargs)


def _run_names(runs_dir: str | os.PathLike[str]) -> set[str]:
    """The finished runs in a run store, by directory name."""
    root = Path(runs_dir)
    return {p.parent.name for p in root.glob("*/config.json")} if root.is_dir() else set()


def _short(parameters: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in parameters.items())


def _stored_meta(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        with path.open(encoding="utf-8") as fh:
            return dict(json.load(fh).get("metadata", {}).get("cervix", {}))
    except (OSError, ValueError, AttributeError):
        return {}


def _check_book_consistent(man: Manifest, book_dir: Path) -> None:
    """Every chapter executed, all with one profile and one dataset."""
    seen: dict[tuple[Any, Any], list[str]] = {}
    for name in man.names:
        meta = _stored_meta(book_dir / f"{name}.ipynb")
        if not meta:
            raise BookError(f"{book_dir / name}.ipynb is missing (or was not written by "
                            "`cervix book`): run `cervix book` for all chapters first")
        seen.setdefault((meta.get("profile"), meta.get("data_root")), []).append(name)
    if len(seen) > 1:
        parts = "; ".join(f"profile={p!r} data={d!r}: {', '.join(n)}" for (p, d), n in seen.items())
        raise BookError(f"{book_dir}: chapters were run with different settings ({parts}); "
                        "rerun them with one profile and dataset")
