"""Attribution maps reduced over colour channels, one meaning per name.

Every map that the book shows or measures (the Fig. 2 heat maps of Wang et al. 2021,
the in-cell share, the randomisation check, the IG explorer) goes through
:func:`reduce_channels`, so that ``"sum"`` is the signed channel sum everywhere and a
share or a heat map is always computed from a non-negative mass
(:func:`attribution_mass`). It lives below :mod:`cervixlib.explain` and
:mod:`cervixlib.figures`, which both reduce through it, and imports no torch itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["MASS_REDUCTIONS", "REDUCTIONS", "Reduce", "attribution_mass", "reduce_channels"]

Reduce = Literal["abs", "sum", "abs_sum", "positive"]
#: The channel reductions of :func:`reduce_channels`, and those that give a non-negative mass.
REDUCTIONS: tuple[str, ...] = ("abs", "sum", "abs_sum", "positive")
MASS_REDUCTIONS: tuple[str, ...] = ("abs", "abs_sum", "positive")


def reduce_channels(attr: Tensor, reduce: Reduce = "abs") -> Tensor:
    """``(..., C, H, W) -> (..., H, W)``: one map per image, one meaning per name.

    - ``"abs"``: ``sum_c |A_c|``, the attribution mass of a pixel whatever its sign
      (the default of the figures and the in-cell share);
    - ``"sum"``: ``sum_c A_c``, signed (IG's completeness adds these up);
    - ``"abs_sum"``: ``|sum_c A_c|``, the size of the signed sum;
    - ``"positive"``: ``max(sum_c A_c, 0)``, the evidence for the explained class.

    Every caller (figures, in-cell share, randomisation, explorer) reduces through this
    function, so a name means the same map everywhere. A map without a channel axis
    is reduced as one channel (``attr[..., None, :, :]``).
    """
    if reduce == "abs":
        return attr.abs().sum(dim=-3)
    if reduce == "sum":
        return attr.sum(dim=-3)
    if reduce == "abs_sum":
        return attr.sum(dim=-3).abs()
    if reduce == "positive":
        return attr.sum(dim=-3).clamp_min(0)
    raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")


def attribution_mass(attr: Tensor, reduce: Reduce = "abs") -> Tensor:
    """Non-negative ``(..., H, W)`` maps from ``(..., C, H, W)`` attributions, for shares and heat maps.

    ``reduce`` is one of :data:`MASS_REDUCTIONS`: a share of signed values has no
    meaning, so ``"sum"`` is refused (``"abs_sum"`` is its size).
    """
    if reduce not in MASS_REDUCTIONS:
        raise ValueError(f"a mass needs a non-negative reduction, one of {MASS_REDUCTIONS}, got {reduce!r}"
                         + ("; 'abs_sum' is |sum_c A_c|" if reduce == "sum" else ""))
    return reduce_channels(attr, reduce)
