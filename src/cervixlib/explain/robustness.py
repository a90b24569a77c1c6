"""Robustness: how much a map depends on choices it should not (Quantus' category).

- **IG baseline sensitivity.** Integrated Gradients explains the change from a
  baseline, and Wang et al. (2021) do not say which; the released code uses uniform
  noise. :func:`baseline_sensitivity` recomputes IG from black, white, blur,
  background-colour and uniform-noise baselines (:func:`~cervixlib.explain.make_baseline`)
  and reports how each image's in-cell share moves and the Spearman rank correlation
  of each map with the black-baseline map.
- **IG convergence.** The completeness error ``|sum IG - (F(x) - F(b))|``, absolute and
  relative, against ``n_steps`` (:func:`ig_convergence`): how much the map depends on the
  number of integration steps.

Whether a map depends on the weights, as it should, is :mod:`~cervixlib.explain.randomisation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor, nn

from cervixlib.comparison import paired_bootstrap
from cervixlib.explain.attributions import attribute
from cervixlib.explain.localisation import in_cell_share
from cervixlib.explain.randomisation import spearman_per_image
from cervixlib.metrics import bootstrap_mean

__all__ = ["SENSITIVITY_BASELINES", "BaselineSensitivity", "Convergence", "baseline_sensitivity", "convergence_rows",
           "ig_convergence"]

SENSITIVITY_BASELINES = ("black", "white", "blur", "background", "uniform")


@dataclass
class BaselineSensitivity:
    """Per baseline, ``(N,)`` arrays: ``share`` (in-cell share of ``sum_c |IG_c|``) and
    ``spearman`` (rank correlation of the map with the black-baseline map)."""

    share: dict[str, np.ndarray]
    spearman: dict[str, np.ndarray]
    n_steps: int

    def rows(self, **kwargs: Any) -> list[dict[str, Any]]:
        """One row per baseline: mean in-cell share and the Spearman correlation with the
        black map (bootstrap intervals, :func:`~cervixlib.metrics.bootstrap_mean`), and the
        share's change against black, paired per image
        (:func:`~cervixlib.comparison.paired_bootstrap`: no interval under 10 images)."""
        rows = []
        black = self.share["black"]
        for b, s in self.share.items():
            row = {"baseline": b, "images": len(s)}
            if np.isfinite(black).any():  # measured against cell outlines
                paired = np.isfinite(s) & np.isfinite(black)
                row.update({"images": int(np.isfinite(s).sum()), "in-cell share": bootstrap_mean(s, **kwargs),
                            "change vs black": paired_bootstrap(s, black, **kwargs) if paired.any() else None})
            rows.append({**row, "Spearman vs black": bootstrap_mean(self.spearman[b], **kwargs)})
        return rows


def baseline_sensitivity(model: nn.Module, X: Tensor, cell: Tensor | np.ndarray | None, targets: Tensor, *,
                         baselines: Sequence[str] = SENSITIVITY_BASELINES, n_steps: int = 32,
                         seed: int = 0, internal_batch_size: int | None = 128) -> BaselineSensitivity:
    """IG of ``targets`` from each baseline; ``cell``: ``(N, H, W)`` masks of the annotated cells
    (None: a set without cell outlines; the shares are NaN and only the Spearman is measured)."""
    baselines = list(baselines)
    if "black" not in baselines:
        baselines.insert(0, "black")
    maps = {b: attribute(model, X, target=targets, n_steps=n_steps, baseline=b, seed=seed,  # type: ignore[arg-type]
                         internal_batch_size=internal_batch_size).heatmap("abs") for b in baselines}
    share = {b: np.full(X.shape[0], np.nan) if cell is None else in_cell_share(m, cell) for b, m in maps.items()}
    return BaselineSensitivity(share=share,
                               spearman={b: spearman_per_image(m, maps["black"]) for b, m in maps.items()},
                               n_steps=n_steps)


@dataclass
class Convergence:
    """``steps`` ``(S,)``; ``absolute`` and ``relative`` ``(S, N)`` completeness errors of IG."""

    steps: np.ndarray
    absolute: np.ndarray
    relative: np.ndarray
    baseline: str = "black"


def ig_convergence(model: nn.Module, X: Tensor, targets: Tensor, *, steps: Sequence[int] = (4, 8, 16, 32, 64),
                   baseline: str = "black", internal_batch_size: int | None = 128) -> Convergence:
    """Our IG (logit, Gauss-Legendre) at each ``n_steps`` of ``steps``: ``|delta|`` (Captum's fp32
    convergence delta) and ``|delta| / |F(x) - F(b)|`` per image."""
    absolute, relative = [], []
    for n in steps:
        a = attribute(model, X, target=targets, n_steps=int(n), baseline=baseline,  # type: ignore[arg-type]
                      internal_batch_size=internal_batch_size)
        absolute.append(a.delta.abs().numpy())
        relative.append(a.relative_delta.numpy())
    return Convergence(steps=np.asarray(steps), absolute=np.array(absolute), relative=np.array(relative),
                       baseline=baseline)


def convergence_rows(conv: Convergence, model: str) -> list[dict[str, Any]]:
    """Median absolute and relative completeness error per number of steps."""
    return [{"model": model, "IG steps": int(s), "median |delta|": float(np.median(conv.absolute[i])),
             "median |delta| / |F(x) - F(b)|": float(np.median(conv.relative[i]))}
            for i, s in enumerate(conv.steps)]

