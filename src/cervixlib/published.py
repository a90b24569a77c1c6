"""Which of our runs the published numbers of Wang et al. (2021) stand beside.

The paper's Table II (:data:`cervixlib.facts.PAPER_TABLE2`) was measured on SIPaKMeD.
Tables (:mod:`cervixlib.report`) and figures (:mod:`cervixlib.run_figures`) put it beside
runs on SIPaKMeD and on the embedded synthetic SIPaKMeD-compatible set (where pages call
it the paper's, for reference), and never beside runs on a class-per-folder set: the
paper has no numbers for other data. This module holds that one rule; it imports only
:mod:`cervixlib.facts` and :mod:`cervixlib.layout`, so both may read it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cervixlib.facts import PAPER_TABLE2, paper_model
from cervixlib.layout import CLASS_FOLDERS

if TYPE_CHECKING:
    from cervixlib.runs import Run

__all__ = ["on_sipakmed", "paper_numbers"]


def on_sipakmed(run: Run) -> bool:
    """Whether a run's data are SIPaKMeD or the embedded SIPaKMeD-compatible set, the data the
    paper's numbers are about; False on a class-per-folder set (``run.info["layout"]``)."""
    return run.info.get("layout", "sipakmed") != CLASS_FOLDERS


def paper_numbers(run: Run) -> dict[str, Any]:
    """The paper's Table II entry for the run's model (a released design stands for its paper
    model, :func:`cervixlib.facts.paper_model`) when the run is on SIPaKMeD; ``{}`` on other data."""
    return PAPER_TABLE2.get(paper_model(run.config.model), {}) if on_sipakmed(run) else {}
