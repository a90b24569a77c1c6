"""Building the site: ``jupyter-book build`` over the executed notebooks, warnings as errors.

Jupyter Book 1 only renders here (``execute_notebooks: off`` in ``_config.yml``):
papermill has already executed the chapters into ``book/`` (:mod:`cervixlib.book.execute`).
:func:`build_site` runs the same build as ``jupyter-book build book/`` in a
subprocess and turns a failure into one :class:`~cervixlib.book.errors.BookError`
naming the first warning.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from cervixlib.book.errors import BookError

__all__ = ["build_site"]

_log = logging.getLogger(__name__)


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
