"""How much a map depends on choices it should not, and on the weights it should.

- **IG baseline sensitivity.** Integrated Gradients explains the change from a
  baseline, and Wang et al. (2021) do not say which; the released code uses uniform
  noise. :func:`baseline_sensitivity` recomputes IG from black, white, blur,
  background-colour and uniform-noise baselines (:func:`~cervixlib.explain.make_baseline`)
  and reports how each image's in-cell share moves and the Spearman rank correlation
  of each map with the black-baseline map.
- **Cascading randomisation** (Adebayo et al., "Sanity Checks for Saliency Maps",
  NeurIPS 2018): the weights are re-initialised from the top (the head) down, stage by
  stage and cumulatively (:func:`~cervixlib.explain.randomize_weights` with a growing
  ``layers`` list), and after each stage the map is compared with the trained model's
  (Spearman, :func:`~cervixlib.explain.spearman_per_image`). A map that explains the
  model decays as soon as the top layers go; one that stays similar shows the image.
- **IG convergence.** The completeness error ``|sum IG - (F(x) - F(b))|``, absolute and
  relative, against ``n_steps`` (:func:`ig_convergence`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cervixlib.explain.attributions import attribute, model_device
from cervixlib.explain.faithfulness import bootstrap_mean, in_cell_share, randomize_weights, spearman_per_image
from cervixlib.explain.maps import method_maps

__all__ = ["SENSITIVITY_BASELINES", "BaselineSensitivity", "CascadeResult", "Convergence", "baseline_sensitivity",
           "cascade_stages", "cascading_randomization", "convergence_rows", "ig_convergence"]

SENSITIVITY_BASELINES = ("black", "white", "blur", "background", "uniform")


@dataclass
class BaselineSensitivity:
    """Per baseline, ``(N,)`` arrays: ``share`` (in-cell share of ``sum_c |IG_c|``) and
    ``spearman`` (rank correlation of the map with the black-baseline map)."""

    share: dict[str, np.ndarray]
    spearman: dict[str, np.ndarray]
    n_steps: int

    def rows(self, **kwargs: Any) -> list[dict[str, Any]]:
        """One row per baseline: mean in-cell share, its paired change against black and
        the Spearman correlation with the black map, each with a bootstrap interval."""
        rows = []
        for b, s in self.share.items():
            rows.append({"baseline": b, "n": int(np.isfinite(s).sum()), "in-cell share": bootstrap_mean(s, **kwargs),
                         "change vs black": bootstrap_mean(s - self.share["black"], **kwargs),
                         "Spearman vs black": bootstrap_mean(self.spearman[b], **kwargs)})
        return rows


def baseline_sensitivity(model: nn.Module, X: Tensor, cell: Tensor | np.ndarray, targets: Tensor, *,
                         baselines: Sequence[str] = SENSITIVITY_BASELINES, n_steps: int = 32,
                         seed: int = 0, internal_batch_size: int | None = 128) -> BaselineSensitivity:
    """IG of ``targets`` from each baseline; ``cell``: ``(N, H, W)`` masks of the annotated cells."""
    baselines = list(baselines)
    if "black" not in baselines:
        baselines.insert(0, "black")
    maps = {b: attribute(model, X, target=targets, n_steps=n_steps, baseline=b, seed=seed,  # type: ignore[arg-type]
                         internal_batch_size=internal_batch_size).heatmap("abs") for b in baselines}
    return BaselineSensitivity(share={b: in_cell_share(m, cell) for b, m in maps.items()},
                               spearman={b: spearman_per_image(m, maps["black"]) for b, m in maps.items()},
                               n_steps=n_steps)


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def cascade_stages(model: nn.Module, X: Tensor) -> list[str]:
    """The model's stages from the top (head) down, as module names for :func:`randomize_weights`.

    The stages are the direct children with parameters, in the order one forward pass of
    ``X[:1]`` calls them (attention modules sit after the stage they follow, whatever
    their registration order); a ``nn.Sequential`` whose children are of different
    kinds (DenseNet's ``features``: conv0, norm0, dense blocks, transitions, norm5) is
    opened one level, while one of identical blocks (a ResNet stage) stays one stage.
    """
    candidates: dict[str, nn.Module] = {}
    for name, child in model.named_children():
        if not _has_params(child):
            continue
        kinds = {type(c) for c in child.children() if _has_params(c)}
        if isinstance(child, nn.Sequential) and len(kinds) > 1:
            candidates.update({f"{name}.{n}": c for n, c in child.named_children() if _has_params(c)})
        else:
            candidates[name] = child
    order: list[str] = []
    handles = [m.register_forward_hook(lambda _m, _i, _o, n=n: order.append(n) if n not in order else None)
               for n, m in candidates.items()]
    try:
        was = model.training
        model.eval()
        with torch.no_grad():
            model(X[:1].to(model_device(model)))
        model.train(was)
    finally:
        for h in handles:
            h.remove()
    return order[::-1]


@dataclass
class CascadeResult:
    """``stages`` top-down; ``spearman[method]`` ``(S, N)``: the map after randomising
    stages ``0..s`` against the trained model's map."""

    stages: list[str]
    spearman: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """One row per stage: the mean Spearman of each method over the images."""
        return [{"randomised down to": s, **{m: float(np.ma.masked_invalid(v[i]).mean()) if np.isfinite(v[i]).any()
                                              else float("nan") for m, v in self.spearman.items()}}
                for i, s in enumerate(self.stages)]


def cascading_randomization(model: nn.Module, X: Tensor, targets: Tensor, *,
                            methods: Sequence[str] = ("saliency", "ig", "gradcam"),
                            stages: Sequence[str] | None = None, seed: int = 0, n_steps: int = 32,
                            max_stages: int | None = 6, internal_batch_size: int | None = 128) -> CascadeResult:
    """Adebayo et al.'s cascading randomisation: Spearman of ``|map|`` against the trained
    model's after each cumulative top-down stage (:func:`cascade_stages` by default).

    The explained classes stay ``targets`` (the trained model's) throughout. Each stage
    is a fresh :func:`randomize_weights` copy with layers ``stages[:s + 1]`` and one seed,
    so a stage randomised once keeps the same random weights in every later stage.
    ``max_stages``: measure after at most this many of the cumulative stages, evenly
    spaced from the head to the whole model (each measurement needs a fresh copy of the
    model, the costly part on a CPU); None: after every stage.
    """
    all_stages = list(cascade_stages(model, X) if stages is None else stages)
    ends = range(len(all_stages))
    if max_stages is not None and len(all_stages) > max_stages:
        ends = sorted({int(round(v)) for v in np.linspace(0, len(all_stages) - 1, max(2, max_stages))})
    stages = [all_stages[e] for e in ends]
    kw = {"n_steps": n_steps, "internal_batch_size": internal_batch_size, "seed": seed}
    trained = {m: method_maps(model, X, m, targets, **kw) for m in methods}
    out = {m: np.empty((len(stages), X.shape[0])) for m in methods}
    for s, end in enumerate(ends):
        rand = randomize_weights(model, seed=seed, layers=all_stages[:end + 1])
        for m in methods:
            out[m][s] = spearman_per_image(method_maps(rand, X, m, targets, **kw), trained[m])
        del rand
    return CascadeResult(stages=stages, spearman=out, meta={"n_steps": n_steps, "seed": seed})


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
    return [{"model": model, "n_steps": int(s), "median |delta|": float(np.median(conv.absolute[i])),
             "median |delta| / |F(x) - F(b)|": float(np.median(conv.relative[i]))}
            for i, s in enumerate(conv.steps)]

