"""The book's Sphinx extension: an offline site, figures that draw, warnings that fail the build.

``_config.yml`` lists ``cervixlib.book.sphinx_ext`` under ``sphinx.extra_extensions``.
The extension

* copies plotly.js from the installed plotly package and the vendored widget manager
  and MathJax (``book/_vendor``) into ``_static/vendor``, and loads plotly.js on the
  pages that hold a figure (:func:`cervixlib.display.show` leaves it out of each figure);
* reports any script or stylesheet from another host or missing from the site
  (``cervix_offline``), and notebook outputs the book would drop;
* makes any warning fail the build (``cervix_warnings_as_errors``, Sphinx's
  ``-W --keep-going``, also for a plain ``jupyter-book build book/``);
* removes two script errors of the stock pages: sphinx-thebe's inline config added
  twice, and ipywidgets calling MathJax 2's API next to MathJax 3 (a small shim);
* keeps wide outputs inside the content column (:data:`BOOK_CSS`: an HTML output
  wider than the column scrolls in its own box, tables in a smaller font);
* describes the profiles once (``{{ profiles }}``, from :data:`cervixlib.config.PROFILES`),
  on the page that each chapter's settings line links to;
* links the repository when ``_config.yml`` names one (``repository: url:``): the
  theme's repository button on every page, and the MyST substitution
  ``{{ repository }}`` (a link, or where the notebooks are when no address is set);
* stops a build whose chapters were never executed (a fresh clone: the executed
  notebooks in ``book/`` are git-ignored) with one line naming them and the command
  that writes them (:func:`missing_chapters_message`), instead of Sphinx's "unable to
  load the master document" and jupyter-book's tracebacks;
* rebuilds a page whenever its source's content changed, also when the new file
  carries an older modification time than the last build (``cp -p``, ``rsync -a``, an
  unpacked archive of executed notebooks), which Sphinx's mtime check misses.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cervixlib import __version__
from cervixlib.display import PLOTLY_MIMETYPE

__all__ = ["BOOK_CSS", "MANIFEST", "MATHJAX_SHIM", "NO_REPOSITORY_TEXT", "PLOTLY_JS", "VENDOR_STATIC",
           "missing_chapters_message", "setup"]

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

#: Our stylesheet, under ``_static``.
BOOK_CSS = "cervix/book.css"
_BOOK_CSS = """\
/* cervixlib: wide outputs stay inside the content column at any window width. */
/* An HTML output (a table, a fixed-size figure) wider than the column scrolls in its
   own box instead of pushing the page sideways. */
div.cell_output div.output.text_html { max-width: 100%; overflow-x: auto; }
/* Tables: a smaller font, numbers aligned, the caption above and left-aligned. */
div.cell_output div.output.text_html table { font-size: 0.8rem; margin: 0.25rem 0 1rem 0; }
div.cell_output div.output.text_html table th,
div.cell_output div.output.text_html table td { padding: 0.2rem 0.35rem; vertical-align: top; }
div.cell_output div.output.text_html table caption {
  caption-side: top; text-align: left; font-size: 0.85rem; color: var(--pst-color-text-muted);
}
/* Autosized plotly figures fill the column. */
div.cell_output div.plotly-graph-div { max-width: 100%; }
"""
#: What ``{{ repository }}`` says when ``_config.yml`` names no repository URL.
NO_REPOSITORY_TEXT = ("the cervixlib repository (this copy of the book names no public address "
                      "for it; `repository: url:` in `_config.yml` sets one)")


#: The book's manifest in the source folder: its notebooks are the chapters papermill executes.
MANIFEST = "manifest.yml"
#: Attribute of the build environment: docname -> SHA-256 of its source file when last read.
_DIGESTS = "cervix_source_digests"

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
    _link_repository(config)
    _describe_profiles(config)


def _describe_profiles(config: Any) -> None:
    """``{{ profiles }}``: each profile and what it is for, from :data:`cervixlib.config.PROFILES`
    (the one place that says it), for the page each chapter's settings line links to."""
    from cervixlib.config import profiles_markdown

    substitutions = dict(getattr(config, "myst_substitutions", None) or {})
    substitutions.setdefault("profiles", profiles_markdown())
    config.myst_substitutions = substitutions


def _shown(path: Path) -> str:
    """``path`` as the user would type it: relative to the working directory, unless far from it."""
    rel = os.path.relpath(path)
    return rel if Path(rel).parts.count("..") <= 1 else str(path)


def missing_chapters_message(srcdir: str | os.PathLike[str], docnames: Sequence[str],
                             suffixes: Iterable[str], toc: str = "_toc.yml") -> str | None:
    """One line naming the toc documents without a source in ``srcdir``, or None if all are there.

    Documents listed in ``srcdir/manifest.yml`` are chapters that papermill writes
    (``cervix book``, git-ignored), so the line says how to execute them; any other
    missing document is reported as missing from the toc's folder.
    """
    from cervixlib.book.errors import BookError
    from cervixlib.book.manifest import load_manifest

    srcdir = Path(srcdir)
    suffixes = tuple(suffixes)

    def exists(doc: str) -> bool:
        return (doc.endswith(suffixes) and (srcdir / doc).is_file()) or any(
            (srcdir / f"{doc}{suffix}").is_file() for suffix in suffixes)

    missing = [d for d in docnames if not exists(d)]
    if not missing:
        return None
    try:
        chapters = load_manifest(srcdir / MANIFEST).names if (srcdir / MANIFEST).is_file() else []
    except BookError:
        chapters = []  # a broken manifest is `cervix book`'s to report; here: plain missing files
    book = _shown(srcdir) + "/"
    notebooks = _shown(srcdir.parent / "notebooks") + "/"
    parts = []
    unexecuted = [d for d in missing if d in chapters]
    if unexecuted:
        listed = [d for d in docnames if d in chapters]
        count = f"{len(unexecuted)} of {len(listed)}" if len(unexecuted) < len(listed) else f"{len(unexecuted)}"
        parts.append(f"{count} chapter{'s' if len(listed) > 1 else ''} not executed yet "
                     f"({', '.join(unexecuted)}): run `make book` or `cervix book` (or papermill each "
                     f"notebook of {notebooks} into {book}) before `jupyter-book build {book}`")
    others = [d for d in missing if d not in chapters]
    if others:
        parts.append(f"{', '.join(others)} listed in {toc} but not found")
    return f"{book}: " + "; ".join(parts)


def _sphinx_check_sources(app: Any, config: Any) -> None:
    """Exit with one line when a document of the toc has no source (after sphinx-external-toc
    has read ``_toc.yml``). A :class:`SystemExit`, not a Sphinx error: jupyter-book prints
    any exception from the build with two tracebacks and a box that bury the line."""
    site_map = getattr(config, "external_site_map", None)
    if site_map is None:  # not a toc build (`jupyter-book build PAGE`)
        return
    toc = Path(app.srcdir) / str(config.external_toc_path)  # an absolute path stays as it is
    message = missing_chapters_message(app.srcdir, list(site_map), config.source_suffix, _shown(toc))
    if message:
        raise SystemExit(message)


def _file_digest(path: Path) -> str | None:
    """SHA-256 of the file's bytes; None when it cannot be read (Sphinx reports that itself)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _digests(env: Any) -> dict[str, str]:
    """The build environment's docname -> source digest (pickled with it)."""
    if not isinstance(getattr(env, _DIGESTS, None), dict):
        setattr(env, _DIGESTS, {})
    return getattr(env, _DIGESTS)


def _sphinx_record_source(app: Any, docname: str, source: list[str]) -> None:
    """Remember the digest of the source just read (see :func:`_sphinx_env_get_outdated`)."""
    digest = _file_digest(Path(app.env.doc2path(docname)))
    if digest is not None:
        _digests(app.env)[docname] = digest


def _sphinx_env_purge_doc(app: Any, env: Any, docname: str) -> None:
    """Forget a document's digest when Sphinx drops it (reread or removed)."""
    _digests(env).pop(docname, None)


def _sphinx_env_merge_info(app: Any, env: Any, docnames: set[str], other: Any) -> None:
    """Take the digests recorded by a parallel reader (``parallel_read_safe``)."""
    theirs = _digests(other)
    _digests(env).update({d: theirs[d] for d in docnames if d in theirs})


def _sphinx_env_get_outdated(app: Any, env: Any, added: set[str], changed: set[str],
                             removed: set[str]) -> list[str]:
    """Documents whose source's content differs from the one last read.

    Sphinx rereads a document only when its file is newer than the last build, so a
    chapter replaced by a copy that keeps its older mtime would keep its old outputs.
    """
    skip = added | changed | removed
    return [doc for doc, digest in _digests(env).items()
            if doc not in skip and doc in env.found_docs
            and _file_digest(Path(env.doc2path(doc))) not in (None, digest)]


def _link_repository(config: Any) -> None:
    """``repository: url:`` of _config.yml (Jupyter Book passes it as the theme's
    ``repository_url``): when set, the theme's repository button and a link in
    ``{{ repository }}``; when empty, no button and :data:`NO_REPOSITORY_TEXT`."""
    options = config.html_theme_options if isinstance(config.html_theme_options, dict) else {}
    url = str(options.get("repository_url") or "").strip()
    if url:
        options["use_repository_button"] = True
    substitutions = dict(getattr(config, "myst_substitutions", None) or {})
    substitutions.setdefault("repository", f"the cervixlib repository, [{url}]({url})" if url else NO_REPOSITORY_TEXT)
    config.myst_substitutions = substitutions


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
                hint = "; display it with cervixlib.display.show(fig)" if PLOTLY_MIMETYPE in data else ""
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
    for name, text in ((MATHJAX_SHIM, _MATHJAX_SHIM_JS), (BOOK_CSS, _BOOK_CSS)):
        path = Path(app.outdir) / "_static" / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if app.config.cervix_offline:
        logger = sphinx_logging.getLogger(__name__)
        for name, page in sorted(_LOCAL_ASSETS.pop(id(app), {}).items()):
            if not (Path(app.outdir) / name).is_file():
                logger.warning("page %r loads %s, which is not in the site", page, name,
                               type="cervix", subtype="offline")


def setup(app: Any) -> dict[str, Any]:
    """Sphinx entry point: ``sphinx: extra_extensions: [cervixlib.book.sphinx_ext]`` in _config.yml."""
    app.add_config_value("cervix_warnings_as_errors", False, "env", [bool])
    app.add_config_value("cervix_offline", False, "html", [bool])
    app.add_config_value("cervix_vendor_dir", "_vendor", "html", [str])
    app.connect("config-inited", _sphinx_config_inited)
    # after sphinx-external-toc (priority 900) has read the toc into external_site_map
    app.connect("config-inited", _sphinx_check_sources, priority=950)
    app.connect("source-read", _sphinx_record_source)
    app.connect("source-read", _sphinx_source_read)
    app.connect("env-purge-doc", _sphinx_env_purge_doc)
    app.connect("env-merge-info", _sphinx_env_merge_info)
    app.connect("env-get-outdated", _sphinx_env_get_outdated)
    app.connect("html-page-context", _sphinx_page_context, priority=900)
    app.connect("build-finished", _sphinx_build_finished)
    app.add_css_file(BOOK_CSS, priority=900)  # after the theme's stylesheets
    # env_version: a build environment pickled without the digests is rebuilt once
    return {"version": __version__, "env_version": 1, "parallel_read_safe": True,
            "parallel_write_safe": True}
