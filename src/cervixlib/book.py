"""The analysis book: papermill runs the notebooks, Jupyter Book 1 renders them offline.

The five notebooks in ``notebooks/`` reproduce Wang et al. (2021), "Towards
Interpretable Attention Networks for Cervical Cancer Analysis" (IEEE EMBC 2021,
arXiv:2106.00557), on SIPaKMeD or on the embedded synthetic set. This module turns
them into a static site that works with no network:

* ``book/manifest.yml`` declares which notebooks run, in which order, with which
  parameters (:func:`load_manifest` validates it against the notebooks' ``parameters``
  cells and against ``_toc.yml``);
* :func:`run_book` (``cervix book``) executes them with papermill into ``book/``,
  skips a notebook whose inputs did not change, stops at the first failing cell with
  a one-line message naming the notebook and the cell, and then builds the site
  with ``jupyter-book build`` with warnings as errors (:func:`build_site`);
* :func:`display_figure` (alias :func:`show`) displays a plotly figure as an HTML
  ``div`` the book renders (plotly's default renderer under papermill writes only
  ``application/vnd.plotly.v1+json``, which Jupyter Book cannot render) together
  with the plotly JSON that JupyterLab renders;
* the module is also a Sphinx extension (``_config.yml`` lists it): it copies
  plotly.js from the installed plotly package and the vendored widget manager and
  MathJax (``book/_vendor``) into ``_static/vendor``, loads plotly.js on the pages
  that hold a figure, reports any script or stylesheet from another host or missing
  from the site, warns about notebook outputs the book would drop, makes any warning
  fail the build, and removes two script errors of the stock pages (sphinx-thebe's
  inline config added twice; ipywidgets calling MathJax 2's API next to MathJax 3).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cervixlib import __version__
from cervixlib._kernel import BookKernelManager
from cervixlib.config import PROFILES

__all__ = [
    "BookError",
    "CellTimeout",
    "BookResult",
    "INJECTED_PARAMETERS",
    "Manifest",
    "NotebookSpec",
    "PROFILE_NAMES",
    "build_site",
    "display_figure",
    "execute_notebook",
    "figure_mimebundle",
    "load_manifest",
    "notebook_parameters",
    "resolve_kernel",
    "run_book",
    "setup",
    "show",
    "toc_chapters",
    "use_book_renderer",
]

_log = logging.getLogger(__name__)

#: Profiles ``cervix book --profile`` accepts: those of ``cervixlib.config.PROFILES``.
PROFILE_NAMES: tuple[str, ...] = tuple(PROFILES)
#: Parameters every notebook declares and the runner always injects.
INJECTED_PARAMETERS: tuple[str, ...] = ("profile", "data_root", "runs_dir")
PLOTLY_MIMETYPE = "application/vnd.plotly.v1+json"
#: Where the Sphinx extension puts plotly.js and the vendored files, under ``_static``.
VENDOR_STATIC = "vendor"
PLOTLY_JS = f"{VENDOR_STATIC}/plotly.min.js"
#: Our shim that lets ipywidgets (which typesets with MathJax 2's API) run next to MathJax 3.
MATHJAX_SHIM = "cervix/mathjax2-hub-shim.js"
_MATHJAX_SHIM_JS = """\
/* cervixlib: @jupyter-widgets typesets labels with MathJax 2's MathJax.Hub.Queue;
   the book loads MathJax 3, which has no Hub. Map "Typeset" requests onto v3. */
(function () {
  var mj = window.MathJax;
  if (!mj || mj.Hub || !mj.startup) { return; }
  mj.Hub = {
    Queue: function () {
      Array.prototype.forEach.call(arguments, function (cmd) {
        if (Array.isArray(cmd) && cmd[0] === "Typeset" && cmd[2]) {
          mj.startup.promise
            .then(function () { return mj.typesetPromise([cmd[2]]); })
            .catch(function (err) { console.warn("MathJax typesetting failed", err); });
        }
      });
    }
  };
})();
"""
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PLOTLY_CONFIG = {"responsive": True, "displaylogo": False}


class BookError(RuntimeError):
    """A notebook, the manifest or the site build failed; the message is one line."""


class CellTimeout(BookError):
    """A notebook cell ran longer than the allowed time (``cell_timeout``)."""


# ----------------------------------------------------------------------------- manifest
@dataclass(frozen=True)
class NotebookSpec:
    """One chapter: ``notebooks/<name>.ipynb`` and the parameters papermill injects.

    ``parameters`` apply to every profile; ``profiles[p]`` override them for profile p.
    """

    name: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    profiles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def parameters_for(self, profile: str) -> dict[str, Any]:
        """The manifest's parameters for ``profile`` (without the injected ones)."""
        return {**self.parameters, **self.profiles.get(profile, {})}


@dataclass(frozen=True)
class Manifest:
    """The validated ``book/manifest.yml``: the chapters in reading order."""

    path: Path
    notebooks: tuple[NotebookSpec, ...]

    @property
    def names(self) -> list[str]:
        return [nb.name for nb in self.notebooks]

    def select(self, only: Sequence[str] | None = None) -> list[NotebookSpec]:
        """The chapters named in ``only`` (a full name, ``NAME.ipynb`` or a unique
        prefix such as ``05``), in reading order; all of them when ``only`` is empty."""
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
        unknown = set(entry) - {"name", "parameters", "profiles"}
        if unknown:
            raise BookError(f"{where}: unknown key(s) {sorted(unknown)}; "
                            "allowed: name, parameters, profiles")
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
        specs.append(NotebookSpec(name, params, profiles))
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BookError(f"{path}: notebook(s) listed twice: {', '.join(dupes)}")
    return Manifest(path, tuple(specs))


def toc_chapters(toc: str | os.PathLike[str]) -> list[str]:
    """The documents a Jupyter Book ``_toc.yml`` lists after its root, in order."""
    import yaml

    toc = Path(toc)
    try:
        data = yaml.safe_load(toc.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BookError(f"{toc}: table of contents not found") from None
    if not isinstance(data, Mapping) or "root" not in data:
        raise BookError(f"{toc}: not a Jupyter Book table of contents (no 'root')")
    found: list[str] = []

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


# ----------------------------------------------------------------------------- kernel
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


# ----------------------------------------------------------------------------- running
@dataclass
class BookResult:
    """What :func:`run_book` did: executed and reused notebooks, the site, timings (s)."""

    executed: list[Path] = field(default_factory=list)
    reused: list[Path] = field(default_factory=list)
    html_dir: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def _library_digest() -> str:
    """Hash of cervixlib's Python sources: a changed library re-executes the book."""
    root = Path(__file__).parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
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
                                "display it with cervixlib.book.show(fig)")


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
    ``metadata`` is stored under the notebook's ``metadata.cervix``. On failure a
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
    nbformat.write(nb, str(scratch))
    os.replace(scratch, output)
    return output


def _parse_toc_against(manifest: Manifest, toc: Path) -> None:
    chapters = toc_chapters(toc)
    if chapters != manifest.names:
        missing = [n for n in manifest.names if n not in chapters]
        extra = [n for n in chapters if n not in manifest.names]
        detail = "; ".join(filter(None, [
            f"not in the toc: {', '.join(missing)}" if missing else "",
            f"not in the manifest: {', '.join(extra)}" if extra else "",
            "same chapters in another order" if not (missing or extra) else "",
        ]))
        raise BookError(f"{toc} and {manifest.path} disagree: {detail}")


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
        used.update(k for k in overrides if k in declared)
        wanted.update(profile=profile, data_root=_inject_path(data, notebooks_dir),
                      runs_dir=_inject_path(runs_dir, notebooks_dir))
        plans.append((spec, src, wanted))
    unused = sorted(set(overrides) - used)
    if unused:
        raise BookError(f"parameter(s) {', '.join(unused)} are not in the parameters cell of "
                        f"{', '.join(s.name for s in selected)}")
    if data is not None:  # every bad file now, not a failed cell after an hour of training
        from cervixlib.data import DataError, load_index

        try:
            load_index(data, skip_bad=bool(overrides.get("skip_bad", False)))
        except DataError as exc:
            raise BookError(str(exc)) from None

    if cell_timeout is None:
        from cervixlib.config import get_profile

        cell_timeout = get_profile(profile).cell_timeout
    kernel = resolve_kernel(kernel_name)
    digest = _library_digest()
    result = BookResult()
    scratch_dir = book_dir / "_build" / "papermill"
    for spec, src, parameters in plans:
        out = book_dir / f"{spec.name}.ipynb"
        key = hashlib.sha256(json.dumps(
            [hashlib.sha256(src.read_bytes()).hexdigest(), parameters, digest, sys.version],
            sort_keys=True, default=str).encode()).hexdigest()
        if not force and _stored_meta(out).get("key") == key:
            _log.info("%s: up to date, reusing %s", spec.name, out)
            result.reused.append(out)
            continue
        _log.info("%s: executing with %s", spec.name, _short(parameters))
        t = time.perf_counter()
        for attempt in (1, 2):
            try:
                execute_notebook(
                    src, out, parameters, kernel_name=kernel, cwd=notebooks_dir,
                    metadata={"key": key, "profile": profile, "data_root": parameters["data_root"],
                              "parameters": parameters, "cervixlib": __version__},
                    progress=progress, log_output=log_output, scratch=scratch_dir / f"{spec.name}.ipynb",
                    cell_timeout=cell_timeout or None,
                )
                break
            except CellTimeout as exc:
                if attempt == 2:
                    raise
                _log.warning("%s; executing %s once more (a finished cell whose reply never "
                             "arrives looks the same: jupyter/nbclient#312)", exc, spec.name)
        result.seconds[spec.name] = time.perf_counter() - t
        _log.info("%s: done in %.1f s", spec.name, result.seconds[spec.name])
        result.executed.append(out)

    if build:
        _check_book_consistent(man, book_dir)
        t = time.perf_counter()
        result.html_dir = build_site(book_dir)
        result.seconds["build"] = time.perf_counter() - t
    result.seconds["total"] = time.perf_counter() - t0
    return result


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


# ----------------------------------------------------------------------------- building
def build_site(book_dir: str | os.PathLike[str] = "book", *, all_pages: bool = False,
               quiet: bool = True) -> Path:
    """Run ``jupyter-book build BOOK_DIR --warningiserror --keep-going``; return the HTML dir.

    The configuration and toc are the ones ``jupyter-book build book/`` finds
    (``book/_config.yml`` and ``book/_toc.yml``, links to the repository root's files),
    so the command line and this function build the same site into
    ``book/_build/html``. Raises :class:`BookError` with the first warning if any.
    """
    book_dir = Path(book_dir)
    for name in ("_toc.yml", "_config.yml"):
        if not (book_dir / name).is_file():
            raise BookError(f"{book_dir / name} not found (it should link to ../{name})")
    # Jupyter Book writes _build next to the _config.yml it finds: book_dir's own
    html_dir = book_dir.absolute() / "_build" / "html"
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
           "build", str(book_dir), "--warningiserror", "--keep-going"]
    if all_pages:
        cmd.append("--all")
    if quiet:
        cmd.append("-q")
    _log.info("building the site: jupyter-book build %s", book_dir)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines()
                 if re.search(r"WARNING|ERROR|Error|Exception", ln)]
        sys.stderr.write(proc.stdout + proc.stderr)
        first = lines[0].strip() if lines else f"exit status {proc.returncode}"
        raise BookError(f"jupyter-book build {book_dir} failed with {len(lines)} problem(s); "
                        f"first: {first}")
    if not (html_dir / "index.html").is_file():
        raise BookError(f"jupyter-book build {book_dir} wrote no {html_dir / 'index.html'}")
    _log.info("site: %s", html_dir / "index.html")
    return html_dir


# ----------------------------------------------------------------------------- figures
_counter = itertools.count(1)


def _figure_json(fig: Any) -> str:
    import plotly.io as pio

    return pio.to_json(fig, validate=False, remove_uids=False)


def figure_mimebundle(fig: Any) -> dict[str, Any]:
    """A plotly figure as ``{"text/html": div, "application/vnd.plotly.v1+json": json}``.

    ``text/html`` is what Jupyter Book renders: a div and a call to ``Plotly.newPlot``
    without plotly.js, which the book loads once per page from ``_static/vendor``.
    JupyterLab prefers the plotly JSON, rendered by plotly's own extension.
    ``fig`` is a plotly ``Figure`` or its dict form.
    """
    import plotly.io as pio

    fig_json = _figure_json(fig)
    div_id = f"cervix-fig-{next(_counter)}-{hashlib.sha1(fig_json.encode()).hexdigest()[:10]}"
    html = pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id,
                       config=_PLOTLY_CONFIG, validate=False)
    payload = json.loads(fig_json)
    payload["config"] = dict(_PLOTLY_CONFIG)
    return {"text/html": html, PLOTLY_MIMETYPE: payload}


def display_figure(fig: Any) -> None:
    """Display a figure in a form both JupyterLab and the offline book render.

    A plotly ``Figure`` (or dict) goes out as :func:`figure_mimebundle`; a matplotlib
    ``Figure`` (or ``(fig, ax)``) as PNG, then closed so that it is not shown twice.
    Use it (or :func:`show`) for every figure in the notebooks instead of
    ``fig.show()`` or a bare ``fig`` at the end of a cell.
    """
    from IPython.display import display

    if isinstance(fig, tuple) and fig and hasattr(fig[0], "savefig"):
        fig = fig[0]
    if hasattr(fig, "savefig"):  # matplotlib: PNG whatever the backend
        import io

        import matplotlib.pyplot as plt
        from IPython.display import Image

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        display(Image(data=buf.getvalue(), format="png"))
        return
    display(figure_mimebundle(fig), raw=True)


show = display_figure


def use_book_renderer() -> None:
    """Make plotly's default renderer emit :func:`figure_mimebundle`, so that a bare
    ``fig`` or ``fig.show()`` also renders in the book."""
    import plotly.io as pio
    from plotly.io.base_renderers import MimetypeRenderer

    class _BookRenderer(MimetypeRenderer):
        def to_mimebundle(self, fig_dict: dict[str, Any]) -> dict[str, Any]:
            return figure_mimebundle(fig_dict)

    pio.renderers["cervix_book"] = _BookRenderer()
    pio.renderers.default = "cervix_book"


# ----------------------------------------------------------------------------- Sphinx extension
_LOCAL_ASSETS: dict[int, dict[str, str]] = {}  # id(app) -> local asset -> first page using it


def _asset_name(asset: Any) -> str | None:
    name = getattr(asset, "filename", asset)
    return name if isinstance(name, str) and name else None


def _is_external(url: str) -> bool:
    return "://" in url or url.startswith("//")


def _sphinx_config_inited(app: Any, config: Any) -> None:
    if config.cervix_warnings_as_errors and not app.warningiserror and not app.keep_going:
        # Sphinx 7's -W --keep-going: report every warning, then exit with status 1
        app.keep_going = True


def _sphinx_page_context(app: Any, pagename: str, templatename: str, context: dict[str, Any],
                         doctree: Any) -> None:
    from sphinx.util import logging as sphinx_logging

    scripts = context.get("script_files")
    if isinstance(scripts, list):
        # sphinx-thebe's inline config can be registered twice (once as filename None,
        # once as ""): its `const THEBE_JS_URL` then throws in the browser
        seen: set[Any] = set()
        unique = []
        for js in scripts:
            key = (_asset_name(js), getattr(js, "priority", None),
                   tuple(sorted(getattr(js, "attributes", {}).items())))
            if key not in seen:
                seen.add(key)
                unique.append(js)
        scripts[:] = unique
        names = [_asset_name(js) or "" for js in scripts]
        if any(n.endswith(app.config.mathjax_path) for n in names if app.config.mathjax_path):
            # after MathJax (deferred scripts run in document order)
            app.add_js_file(MATHJAX_SHIM, priority=900, defer="defer")
    if "plotly-graph-div" in context.get("body", ""):
        # before the figures' inline scripts, which run while the page is parsed
        app.add_js_file(PLOTLY_JS, priority=200)
    if not app.config.cervix_offline:
        return
    logger = sphinx_logging.getLogger(__name__)
    local = _LOCAL_ASSETS.setdefault(id(app), {})
    for asset in list(context.get("script_files", [])) + list(context.get("css_files", [])):
        name = _asset_name(asset)
        if name is None:
            continue
        if _is_external(name):
            logger.warning("page %r loads %s from another host; the book must work offline",
                           pagename, name, type="cervix", subtype="offline")
        else:
            local.setdefault(name.split("?", 1)[0], pagename)


def _sphinx_source_read(app: Any, docname: str, source: list[str]) -> None:
    """Warn about notebook outputs the book would drop: no mime type it renders.

    myst-nb skips an unknown mime type with a warning even when the bundle has
    another one it renders (plotly JSON beside text/html), so _config.yml suppresses
    ``mystnb.unknown_mime_type``; this check keeps the case that matters, an output
    that disappears from the page (a figure shown with plotly's default renderer).
    """
    from myst_nb.core.render import get_mime_priority
    from sphinx.util import logging as sphinx_logging

    if not str(app.env.doc2path(docname)).endswith(".ipynb"):
        return
    try:
        cells = json.loads(source[0]).get("cells", [])
    except (ValueError, AttributeError):
        return  # myst-nb reports unreadable notebooks itself
    renderable = set(get_mime_priority(app.builder.name, app.config.nb_mime_priority_overrides))
    logger = sphinx_logging.getLogger(__name__)
    for i, cell in enumerate(cells):
        for out in cell.get("outputs", []) if isinstance(cell, dict) else []:
            data = out.get("data") if isinstance(out, dict) else None
            if data and not renderable & set(data):
                hint = "; display it with cervixlib.book.show(fig)" if PLOTLY_MIMETYPE in data else ""
                logger.warning("cell %d has an output the book cannot render (%s)%s", i + 1,
                               ", ".join(sorted(data)), hint, location=docname,
                               type="cervix", subtype="dropped_output")


def _sync(src: Path, dst: Path) -> None:
    if dst.is_file() and dst.stat().st_size == src.stat().st_size and dst.stat().st_mtime >= src.stat().st_mtime:
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


def _vendor_files(app: Any) -> Iterable[tuple[Path, Path]]:
    """(source, destination under _static) of plotly.js and book/<cervix_vendor_dir>."""
    import plotly

    static = Path(app.outdir) / "_static"
    yield Path(plotly.__file__).parent / "package_data" / "plotly.min.js", static / PLOTLY_JS
    vendor = Path(app.srcdir) / app.config.cervix_vendor_dir
    if vendor.is_dir():
        for p in sorted(vendor.rglob("*")):
            if p.is_file():
                yield p, static / VENDOR_STATIC / p.relative_to(vendor)


def _sphinx_build_finished(app: Any, exception: BaseException | None) -> None:
    from sphinx.util import logging as sphinx_logging

    if exception is not None or app.builder.format != "html":
        return
    for src, dst in _vendor_files(app):
        _sync(src, dst)
    shim = Path(app.outdir) / "_static" / MATHJAX_SHIM
    if not shim.is_file() or shim.read_text(encoding="utf-8") != _MATHJAX_SHIM_JS:
        shim.parent.mkdir(parents=True, exist_ok=True)
        shim.write_text(_MATHJAX_SHIM_JS, encoding="utf-8")
    if app.config.cervix_offline:
        logger = sphinx_logging.getLogger(__name__)
        for name, page in sorted(_LOCAL_ASSETS.pop(id(app), {}).items()):
            if not (Path(app.outdir) / name).is_file():
                logger.warning("page %r loads %s, which is not in the site", page, name,
                               type="cervix", subtype="offline")


def setup(app: Any) -> dict[str, Any]:
    """Sphinx entry point: ``sphinx: extra_extensions: [cervixlib.book]`` in _config.yml."""
    app.add_config_value("cervix_warnings_as_errors", False, "env", [bool])
    app.add_config_value("cervix_offline", False, "html", [bool])
    app.add_config_value("cervix_vendor_dir", "_vendor", "html", [str])
    app.connect("config-inited", _sphinx_config_inited)
    app.connect("source-read", _sphinx_source_read)
    app.connect("html-page-context", _sphinx_page_context, priority=900)
    app.connect("build-finished", _sphinx_build_finished)
    return {"version": __version__, "parallel_read_safe": True, "parallel_write_safe": True}
