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
* :func:`html_table` writes rows of dicts as a small HTML table.

The book's Sphinx extension and output checks read the constants here
(:data:`PLOTLY_MIMETYPE`); this module imports nothing from the book.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
from collections.abc import Sequence
from typing import Any

__all__ = [
    "PLOTLY_MIMETYPE",
    "display_figure",
    "figure_mimebundle",
    "html_table",
    "show",
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
    html_div = pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id,
                           config=_PLOTLY_CONFIG, validate=False)
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


def html_table(rows: Sequence[dict[str, Any]], caption: str | None = None) -> str:
    """Rows of dicts as a small HTML table (renders the same in JupyterLab and in the book).

    Column names may break after an underscore (``<wbr>``), so a wide table reflows
    into a narrow column; the book's stylesheet scrolls what still does not fit inside
    the table's own box."""
    if not rows:
        return "<p><em>(no rows)</em></p>"
    cols = list(dict.fromkeys(k for row in rows for k in row))

    def fmt(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.3g}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(str(c)).replace('_', '_<wbr>')}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f'<table class="table">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
