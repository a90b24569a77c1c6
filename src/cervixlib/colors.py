"""The colours of every figure: one palette for models and methods, one for classes.

Models and methods (the four networks of Wang et al. 2021, the attribution methods of
chapter 5) take :data:`PALETTE` in the order a figure lists them. Classes take
:data:`CLASS_PALETTE` by their label (position in the data's class list), so that a
class has the same colour in every figure of a book, whichever classes a figure shows;
the palette is distinct from the models' so that a reader does not take a class for a
model. No imports: any module may read it.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["CLASS_PALETTE", "PALETTE", "class_colors"]

#: The colours of the models and methods in every plotly figure, in order (matplotlib's tab10).
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
#: The colours of the classes, by label: plotly's ``qualitative.Safe`` (CARTO's colour-blind
#: safe qualitative scheme), eleven colours; a twelfth class starts again at the first.
CLASS_PALETTE = ("#88CCEE", "#CC6677", "#DDCC77", "#117733", "#332288", "#AA4499", "#44AA99", "#999933",
                 "#882255", "#661100", "#888888")


def class_colors(classes: Sequence[str]) -> dict[str, str]:
    """``{class name: colour}`` for a data set's class list (label order): class ``k``
    takes ``CLASS_PALETTE[k % 11]``, so a figure of some of the classes colours them as
    one of all of them does."""
    return {name: CLASS_PALETTE[k % len(CLASS_PALETTE)] for k, name in enumerate(classes)}
