"""Localisation: where a map puts its mass, against the annotated cells (Quantus' category).

Wang et al. (2021) claim from their Fig. 2 that RCAN-DenseNet-121 decides from "a few
cells" while DenseNet-121 also looks at the background. This module turns that into
numbers per image, from non-negative maps ``(N, H, W)`` and the ``.dat`` masks
(:func:`cervixlib.data.cell_mask`; one mask per cell from :func:`cervixlib.data.cell_components`):

- :func:`pointing_game` (Zhang et al., "Top-down neural attention by excitation
  backprop", ECCV 2016): is the map's maximum inside a cell? Ties are resolved the
  way the metric defines it (every pixel that reaches the maximum must hit, or any
  may, ``ties=``), and ``tolerance`` px widens the cells, as that paper's 15 px does;
- :func:`in_cell_share`: the fraction of a map's mass ``sum_c |A_c|`` that falls inside
  the cells, next to :func:`area_share`, the fraction of the image they cover (what a
  map blind to the cells gets): "attends to cells" means the share exceeds the area;
- :func:`part_shares`: the in-cell share split into nucleus and cytoplasm, and the
  nucleus share of the in-cell mass;
- :func:`concentration`: the smallest number of annotated cells that hold ``level``
  (80%) of the in-cell mass, and that number as a fraction of the image's annotated
  cells: a direct test of "a few cells".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F

from cervixlib.reductions import Reduce, attribution_mass

if TYPE_CHECKING:
    from cervixlib.explain.attributions import Attribution

__all__ = ["area_share", "cells_holding", "concentration", "dilate", "in_cell_share", "part_shares",
           "pointing_game", "stack_concentration"]

Ties = Literal["all", "any"]


def _as_maps(maps: np.ndarray | torch.Tensor) -> np.ndarray:
    a = np.asarray(maps.detach().cpu() if isinstance(maps, torch.Tensor) else maps, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"maps must be (N, H, W) or (H, W), got shape {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError("maps must be finite and non-negative (reduce signed attributions first)")
    return a


def _bool_masks(mask: np.ndarray | torch.Tensor) -> np.ndarray:
    """Masks as bool ``(N, H, W)``: ``(H, W)`` gets an image axis, ``(N, 1, H, W)`` loses its channel."""
    m = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
    m = m > 0.5 if m.dtype != bool else m
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    return m[None] if m.ndim == 2 else m


def _as_masks(mask: np.ndarray | torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """Masks matching maps of ``shape`` ``(N, H, W)``; one mask serves every image."""
    m = _bool_masks(mask)
    if m.ndim == 3 and m.shape[0] == 1 and m.shape[1:] == shape[1:]:
        m = np.broadcast_to(m, shape)
    if m.shape != shape:
        raise ValueError(f"mask of shape {m.shape} does not match maps of shape {shape}")
    return m


def _mass(attr: Attribution | torch.Tensor | np.ndarray, reduce: Reduce) -> np.ndarray:
    """Attributions ``(N, C, H, W)``, ``(N, H, W)`` or ``(H, W)`` as non-negative ``(N, H, W)``
    masses (:func:`~cervixlib.reductions.attribution_mass`; a map without channels is one channel)."""
    from cervixlib.explain.attributions import Attribution

    if isinstance(attr, Attribution):
        attr = attr.attributions
    a = torch.as_tensor(np.asarray(attr) if isinstance(attr, np.ndarray) else attr).detach().cpu().double()
    if a.ndim in (2, 3):
        a = a.reshape(-1, 1, *a.shape[-2:])
    elif a.ndim != 4:
        raise ValueError(f"attributions must be (N, C, H, W), (N, H, W) or (H, W), got {tuple(a.shape)}")
    return attribution_mass(a, reduce).numpy()


def in_cell_share(
    attr: Attribution | torch.Tensor | np.ndarray,
    mask: np.ndarray | torch.Tensor,
    *,
    reduce: Reduce = "abs",
) -> np.ndarray:
    """The share of attribution mass inside ``mask``, per image: ``(N,)`` in [0, 1].

    Args:
        attr: an :class:`~cervixlib.explain.Attribution`, or maps ``(N, C, H, W)``,
            ``(N, H, W)``, ``(H, W)``.
        mask: bool (or {0, 1} float) ``(N, H, W)``, ``(N, 1, H, W)`` or one ``(H, W)`` for all.
        reduce: mass per pixel (:func:`~cervixlib.explain.reduce_channels`): ``abs`` =
            ``sum_c |A_c|`` (default), ``abs_sum`` = ``|sum_c A_c|``, ``positive`` =
            ``max(sum_c A_c, 0)`` (evidence for the class).

    An image without attribution mass gets NaN rather than a made-up share.
    """
    a = _mass(attr, reduce)
    m = _as_masks(mask, a.shape)
    total = a.reshape(len(a), -1).sum(1)
    inside = (a * m).reshape(len(a), -1).sum(1)
    return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)


def area_share(mask: np.ndarray | torch.Tensor) -> np.ndarray:
    """The fraction of each image that ``mask`` covers: ``(N,)`` (the share a map blind to the cells gets)."""
    m = _bool_masks(mask)
    return m.reshape(len(m), -1).mean(1, dtype=np.float64)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` ``(..., H, W)`` bool grown by ``radius`` px (a disc of that radius; 0: unchanged)."""
    if radius <= 0:
        return np.asarray(mask, dtype=bool)
    m = torch.as_tensor(np.ascontiguousarray(mask, dtype=np.float32))
    shape = m.shape
    m = m.reshape(-1, 1, *shape[-2:])
    r = torch.arange(-radius, radius + 1, dtype=torch.float32)
    disc = ((r[:, None] ** 2 + r[None, :] ** 2) <= radius ** 2).float()[None, None]
    out = F.conv2d(m, disc, padding=radius) > 0.5
    return out.reshape(shape).numpy()


def pointing_game(
    maps: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor,
    *,
    tolerance: int = 0,
    ties: Ties = "all",
) -> np.ndarray:
    """Hit (1.0) or miss (0.0) per image: does the maximum of the map fall inside ``mask``?

    Args:
        maps: non-negative ``(N, H, W)`` maps.
        mask: bool ``(N, H, W)`` (or one ``(H, W)`` for all) of the annotated cells.
        tolerance: px by which the mask is grown first (:func:`dilate`), as the pointing
            game's authors allow 15 px at full resolution; 0: the exact mask.
        ties: when several pixels share the maximum, ``"all"`` hits only if every one of
            them is inside (a flat map cannot hit by luck), ``"any"`` if one is.
    Returns: ``(N,)`` float; NaN for an all-zero map (no maximum to point with).
    """
    a = _as_maps(maps)
    m = dilate(_as_masks(mask, a.shape), tolerance)
    peak = a.reshape(len(a), -1).max(1)
    at_peak = a == peak[:, None, None]
    inside = (at_peak & m).reshape(len(a), -1).sum(1)
    count = at_peak.reshape(len(a), -1).sum(1)
    if ties not in ("all", "any"):
        raise ValueError(f"ties must be 'all' or 'any', got {ties!r}")
    hit = inside == count if ties == "all" else inside > 0
    return np.where(peak > 0, hit.astype(np.float64), np.nan)


def part_shares(
    maps: np.ndarray | torch.Tensor,
    cell: np.ndarray | torch.Tensor,
    nucleus: np.ndarray | torch.Tensor,
) -> dict[str, np.ndarray]:
    """Shares of each map's mass, ``(N,)`` each: ``"cell"``, ``"nucleus"``, ``"cytoplasm"``
    (cell minus nucleus) and ``"nucleus_of_cell"`` (nucleus mass / in-cell mass, the
    nucleus against the cytoplasm inside the cells). NaN where the denominator is 0."""
    a = _as_maps(maps)
    c = np.array(_as_masks(cell, a.shape))  # a writable copy of a broadcast mask, for torch
    n = _as_masks(nucleus, a.shape) & c
    out = {k: in_cell_share(a, m) for k, m in (("cell", c), ("nucleus", n), ("cytoplasm", c & ~n))}
    out["nucleus_of_cell"] = in_cell_share(a * c, n)  # the share of the in-cell mass: NaN without any
    return out


def concentration(
    map_: np.ndarray | torch.Tensor,
    cells: np.ndarray | torch.Tensor,
    *,
    level: float = 0.8,
) -> tuple[float, float]:
    """How many annotated cells hold ``level`` of one map's in-cell mass.

    Args:
        map_: one non-negative ``(H, W)`` map.
        cells: bool ``(K, H, W)``, one mask per annotated cell (:func:`cervixlib.data.cell_components`);
            overlapping cells each count a shared pixel (a pixel in two cells backs both).
        level: the share of in-cell mass to reach, in (0, 1].
    Returns:
        ``(count, fraction)``: the smallest number of cells whose summed mass reaches
        ``level`` of the mass of all cells (the cells taken largest mass first), and that
        count divided by ``K``. ``(nan, nan)`` when the cells hold no mass.
    """
    if not 0 < level <= 1:
        raise ValueError(f"level must be in (0, 1], got {level}")
    a = _as_maps(map_)[0]
    m = np.asarray(cells.detach().cpu() if isinstance(cells, torch.Tensor) else cells).astype(bool)
    if m.ndim != 3 or m.shape[1:] != a.shape or m.shape[0] == 0:
        raise ValueError(f"cells must be (K >= 1, H, W) matching the map {a.shape}, got {m.shape}")
    return cells_holding((m * a[None]).reshape(len(m), -1).sum(1), level=level)


def cells_holding(shares: np.ndarray, *, level: float = 0.8) -> tuple[float, float]:
    """:func:`concentration` from each cell's mass (or share) ``(K,)``: the fewest cells whose
    mass reaches ``level`` of their sum (largest first), and that count over K; ``(nan, nan)``
    for no cell or no mass. Chapter 6 measures its cell graphs' shares with it."""
    if not 0 < level <= 1:
        raise ValueError(f"level must be in (0, 1], got {level}")
    s = np.sort(np.asarray(shares, dtype=np.float64))[::-1]
    if s.size == 0 or not np.isfinite(s).all() or s.sum() <= 0:
        return float("nan"), float("nan")
    count = int(np.searchsorted(np.cumsum(s) / s.sum(), level - 1e-12) + 1)
    return float(count), count / s.size


def stack_concentration(maps: np.ndarray | torch.Tensor, cells: Sequence[np.ndarray], *,
                        level: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """:func:`concentration` of each of ``N`` maps with its own cells: ``(N,)`` counts and fractions."""
    a = _as_maps(maps)
    if len(cells) != len(a):
        raise ValueError(f"{len(a)} maps but {len(cells)} sets of cell masks")
    res = np.array([concentration(a[i], cells[i], level=level) for i in range(len(a))]).reshape(-1, 2)
    return res[:, 0], res[:, 1]

