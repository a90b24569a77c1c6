"""The analysis book: papermill runs the notebooks, Jupyter Book 1 renders them offline.

The notebooks in ``notebooks/`` reproduce Wang et al. (2021), "Towards
Interpretable Attention Networks for Cervical Cancer Analysis" (IEEE EMBC 2021,
arXiv:2106.00557), on SIPaKMeD or on the embedded synthetic set. This package turns
them into a static site that works with no network, one job a module:

* :mod:`~cervixlib.book.manifest`: ``book/manifest.yml`` declares which notebooks run,
  in which order, with which parameters (:func:`load_manifest` validates it against
  the notebooks' ``parameters`` cells and against ``_toc.yml``);
* :mod:`~cervixlib.book.execute`: :func:`run_book` (``cervix book``) executes them
  with papermill into ``book/``, skips a notebook whose inputs did not change, stops
  at the first failing cell with a one-line message naming the notebook and the
  cell, and then builds the site; :mod:`~cervixlib.book.kernel` is the kernel
  manager it executes with (IPC, sliced socket waits);
* :mod:`~cervixlib.book.site`: :func:`build_site` runs ``jupyter-book build`` with
  warnings as errors;
* :mod:`~cervixlib.book.sphinx_ext`: the Sphinx extension ``_config.yml`` lists
  (vendored plotly.js, widget manager and MathJax; offline and dropped-output checks);
* :mod:`~cervixlib.book.errors`: :class:`BookError`, the one-line error of them all.

Notebooks import :mod:`cervixlib.display` (``show``, ``html_table``), never this
package: the display module loads none of the build's dependencies.
"""

from __future__ import annotations

from cervixlib._lazy import lazy_exports

_EXPORTS: dict[str, tuple[str, ...]] = {
    "errors": ("BookError",),
    "execute": ("BookResult", "CellTimeout", "execute_notebook", "resolve_kernel", "run_book"),
    "manifest": ("INJECTED_PARAMETERS", "PROFILE_NAMES", "Manifest", "NotebookSpec", "load_manifest",
                 "notebook_parameters", "toc_chapters", "toc_documents", "toc_notebooks"),
    "site": ("build_site",),
}
# Lazy: a chapter's training cell imports cervixlib.book.plan, and loading execute with it would
# import nbformat and jsonschema (seconds, in every kernel).
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
