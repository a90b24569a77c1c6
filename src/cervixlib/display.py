"""What the notebooks display with: figures and tables that JupyterLab and the book both render.

The five chapters of the analysis book (Wang et al. 2021, "Towards Interpretable
Attention Networks for Cervical Cancer Analysis", arXiv:2106.00557) import this module,
never the build (:mod:`cervixlib.book`): importing it loads no papermill, nbclient,
jupyter_client or Sphinx, so a notebook opened in JupyterLab starts as fast as its own
imports allow.

* :func:`display_figure` (alias :func:`show`) displays a plotly figure as an HTML
  ``div`` the book renders (plotly's default renderer under papermill writes only
  ``application/vnd.plotly.v1+json``, which Jupyter Book cannot render) together
  with the plotly JSON that JupyterLab renders; a matplotlib figure as PNG;
* :func:`use_book_renderer` makes a bare ``fig`` or ``fig.show()`` do the same;
* :func:`html_table` writes rows of dicts as a small HTML table;
* :func:`study_statement` (shown by :func:`show_statement`) says which data and
  settings produced a chapter's numbers, without the data's path (pages are published;
  the path stays in the downloadable notebook's parameters cell).

The book's Sphinx extension and output checks read the constants here
(:data:`PLOTLY_MIMETYPE`); this module imports nothing from the book.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cervixlib.facts import SUBSET_WORDS, model_title

if TYPE_CHECKING:
    from cervixlib.study import DatasetFacts, Study

__all__ = [
    "FINGERPRINT_CHARS",
    "PLOTLY_MIMETYPE",
    "dataset_html",
    "display_figure",
    "figure_mimebundle",
    "html_table",
    "column_header",
    "MODEL_COLUMNS",
    "show",
    "show_statement",
    "study_statement",
    "use_book_renderer",
]

#: The mime type of plotly's JSON output: JupyterLab renders it, Jupyter Book does not.
PLOTLY_MIMETYPE = "application/vnd.plotly.v1+json"
_PLOTLY_CONFIG = {"responsive": True, "displaylogo": False}
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
    # auto_play=False: a figure with frames (the static IG slider) opens on its first frame,
    # as JupyterLab shows it, instead of playing every frame once when the page loads
    html_div = pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id,
                           config=_PLOTLY_CONFIG, validate=False, auto_play=False)
    payload = json.loads(fig_json)
    payload["config"] = dict(_PLOTLY_CONFIG)
    return {"text/html": html_div, PLOTLY_MIMETYPE: payload}


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


#: The columns whose values are registry names of models: a table shows the names the paper
#: uses (:func:`cervixlib.facts.model_title`).
MODEL_COLUMNS: tuple[str, ...] = ("model", "model a", "model b")


def column_header(name: Any) -> str:
    """A column's header as words: rows are keyed by what the reader reads ("test images",
    "a right, b wrong"), and any code name left (``p_value``) loses its underscores."""
    return str(name).replace("_", " ")


def _lacks_interval(v: Any) -> bool | None:
    """True/False for a value with an interval (``low``/``high``); None for any other value."""
    import math

    if not (hasattr(v, "low") and hasattr(v, "high")):
        return None
    return not (math.isfinite(v.low) and math.isfinite(v.high))


def html_table(rows: Sequence[dict[str, Any]], caption: str | None = None) -> str:
    """Rows of dicts as a small HTML table (renders the same in JupyterLab and in the book): the
    one function every table of the book goes through.

    Headers are words (:func:`column_header`); model columns (:data:`MODEL_COLUMNS`) show the
    paper's model names; a float with no value (NaN) reads "none", never "nan". A value with
    an interval and none to show (too few images, no spread) shows its mean alone, and the
    caption says why once, instead of the same words in every cell."""
    if not rows:
        return "<p><em>(no rows)</em></p>"
    import math

    from cervixlib.metrics import MIN_IMAGES

    cols = list(dict.fromkeys(k for row in rows for k in row))
    intervals = [(v, x) for row in rows for v in row.values() if (x := _lacks_interval(v)) is not None]
    lacking = [x for _, x in intervals]
    reasons = list(dict.fromkeys(getattr(v, "reason", "") or f"fewer than {MIN_IMAGES} images"
                                 for v, x in intervals if x))

    def fmt(col: Any, v: Any) -> str:
        if v is None:
            return ""
        if col in MODEL_COLUMNS and isinstance(v, str):
            return html.escape(model_title(v))
        if _lacks_interval(v):
            return f"{v.value:.3f}" if hasattr(v, "value") else f"{v.mean:+.3f}"
        if isinstance(v, float):
            return f"{v:.3g}" if math.isfinite(v) else "none"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(column_header(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{fmt(c, r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    if any(lacking):
        because = " or ".join(reasons)
        why = (f"no interval: {because}" if all(lacking) else
               f"a value without brackets has no interval ({because})")
        caption = f"{caption.rstrip('. ')}; {why}." if caption else f"{why[:1].upper()}{why[1:]}."
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f'<table class="table">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


#: The page of the book that describes the profiles once (book/intro.md, ``{{ profiles }}``).
PROFILES_PAGE = "intro.html#profiles"
#: Hex digits of the data fingerprint a statement shows (the first of the 16 ``cervix info`` prints).
FINGERPRINT_CHARS = 12


def dataset_html(facts: DatasetFacts) -> str:
    """The data in one phrase: its name, its images per subset, its fingerprint; never a path."""
    counts = ", ".join(f"{n} {SUBSET_WORDS.get(s, s)}" for s, n in facts.counts.items())
    if "images" in facts.counts:
        counts += f" in {facts.n_classes} classes"
    fingerprint = f"data fingerprint <code>{html.escape(facts.fingerprint[:FINGERPRINT_CHARS])}</code>"
    if facts.synthetic:
        name = html.escape(facts.name)
    elif "images" in facts.counts:
        name = f"the class-per-folder set <code>{html.escape(facts.name)}</code>"
    else:
        name = f"SIPaKMeD, folder <code>{html.escape(facts.name)}</code>"
    return f"{name} ({counts}; {fingerprint})"


def _settings_html(study: Study) -> str:
    """The profile, sizes, epochs, optimiser, split, protocols and starting weights the study's runs use."""
    cfg = study.config("<model>")
    subsets = study.index.subsets  # SIPaKMeD's two, or a class-per-folder set's one
    both = {subset: study.config("<model>", subset) for subset in subsets}
    epochs, sizes = ({s: c.epochs for s, c in both.items()}, {s: c.data.image_size for s, c in both.items()})
    epochs_text = (f"{cfg.epochs} epoch{'s' * (cfg.epochs != 1)}" if len(set(epochs.values())) == 1 else
                   f"{epochs['multi']} epochs on multi-cell images and {epochs['isolated']} on isolated cells")
    size_text = (f"{cfg.data.image_size} px" if len(set(sizes.values())) == 1 else
                 f"{sizes['multi']} px multi-cell images, {sizes['isolated']} px isolated cells")
    settings = (f"profile <code>{html.escape(study.profile)}</code>: {size_text}, "
                f"{epochs_text}, batch {cfg.batch_size}, Adam lr {cfg.lr:g}, seed {study.seed}, "
                f"split {'/'.join(str(round(100 * f)) for f in cfg.data.fractions)}")
    if cfg.data.split == "released":
        settings += " as in the released code (seed 230; crops of one source image on both sides)"
    elif cfg.data.folds > 1:
        settings = settings.rsplit(", split ", 1)[0] + (f", {study.folds_text()}, validation carved out of the "
                    f"training folds (train:validation {round(100 * cfg.data.fractions[0])}:"
                    f"{round(100 * cfg.data.fractions[1])})")
    if cfg.data.split == "released" and study.n_folds > 1:
        settings += f"; the repeated-fold sections: our protocol on {study.n_folds} grouped, stratified folds"
    # where each protocol's runs start (study.weights is ours; a file by its name only, never its path)
    main, side = study.main_protocol, study.side_protocol
    settings += f"; main tables: {study.protocol_title(main)}, {html.escape(study.weights_text(main), quote=False)}"
    if study.settings.side_models:
        settings += (f"; beside them, {study.protocol_title(side)} for "
                     f"{', '.join(map(model_title, study.settings.side_models))}, "
                     f"{html.escape(study.weights_text(side), quote=False)}")
    return settings


def study_statement(study: Study) -> str:
    """HTML paragraph saying which data and settings produced a notebook's numbers.

    The data appear by name, counts and fingerprint (:func:`dataset_html`), not by path:
    the page is published, and the root's path is the build machine's. A synthetic set
    gets a warning box that its numbers are not SIPaKMeD results.
    """
    facts = study.dataset
    settings = _settings_html(study)
    if facts.skipped:
        settings += f", {facts.skipped} bad file{'s' * (facts.skipped != 1)} left out (skip_bad)"
    settings += f' (<a href="{PROFILES_PAGE}">what the profiles are for</a>)'
    if facts.synthetic:
        return (
            '<div class="admonition warning"><p class="admonition-title">Synthetic data: '
            f"these are not SIPaKMeD results</p><p>This notebook ran on {dataset_html(facts)}, "
            "generated procedurally. Its numbers test the pipeline, not the paper's claims. Rerun with "
            "<code>data_root</code> pointing at the real SIPaKMeD download to reproduce the paper. "
            f"Settings: {settings}.</p></div>")
    data = dataset_html(facts)
    return (f'<div class="admonition note"><p class="admonition-title">Data</p><p>{data[:1].upper()}{data[1:]}. '
            f"Settings: {settings}.</p></div>")


def show_statement(study: Study) -> None:
    """Display :func:`study_statement` (each notebook's second cell calls ``show_statement(study)``)."""
    from IPython.display import HTML, display

    display(HTML(study_statement(study)))
