"""Randomisation: does a map change when the model does? (Quantus' category.)

Adebayo et al., "Sanity Checks for Saliency Maps" (NeurIPS 2018): a method that explains
the model, not the image, must give a different map once the weights are re-initialised.
:func:`cascading_randomisation` re-initialises the weights from the top (the head) down,
stage by stage and cumulatively (:func:`randomise_weights` with a growing ``layers``
list), and after each stage compares the map with the trained model's (Spearman rank
correlation per image, :func:`spearman_per_image`). Its last stage is the whole model:
the full model-parameter randomisation test (:attr:`CascadeResult.full`). A map that
explains the model decays as soon as the top layers go; one that stays similar shows
the image.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import Tensor, nn

from cervixlib.explain.attributions import model_device
from cervixlib.explain.maps import method_maps

__all__ = ["CascadeResult", "cascade_stages", "cascading_randomisation", "randomise_weights", "spearman_per_image"]


def randomise_weights(
    model: nn.Module,
    *,
    seed: int = 0,
    layers: Sequence[str] | None = None,
) -> nn.Module:
    """A deep copy of ``model`` with its weights re-initialised (its own init schemes).

    Every submodule with ``reset_parameters`` is reset (conv, linear, batch norm, whose
    running statistics are reset too). ``layers``: names of submodules to randomise
    (with everything below them), for :func:`cascading_randomisation`; None
    randomises all. A parameter left unchanged afterwards is an error, so that a new
    layer type cannot slip through the check untouched.
    """
    rand = copy.deepcopy(model)
    modules = dict(rand.named_modules())
    roots = [""] if layers is None else list(layers)
    unknown = [n for n in roots if n not in modules]
    if unknown:
        raise ValueError(f"no such submodules: {unknown}")
    before = {n: p.detach().clone() for n, p in rand.named_parameters()}
    selected: set[str] = set()
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for root in roots:
            for name, module in modules[root].named_modules(prefix=root):
                reset = getattr(module, "reset_parameters", None)
                if callable(reset):
                    reset()
                for pname, _ in module.named_parameters(recurse=False):
                    selected.add(f"{name}.{pname}" if name else pname)
    finally:
        torch.random.set_rng_state(gen_state)
    stale = [n for n, p in rand.named_parameters()
             if n in selected and p.numel() > 1 and torch.equal(p.detach(), before[n])
             and not _is_constant_init(p)]
    if stale:
        raise ValueError(f"parameters not re-initialised (no reset_parameters on their module): {stale[:5]}")
    return rand


def _is_constant_init(p: Tensor) -> bool:
    """Norm weights (all ones) and biases (all zeros) legitimately reset to what they were."""
    v = p.detach().flatten()
    return bool(torch.all(v == v[0]))


def spearman_per_image(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> np.ndarray:
    """Spearman rank correlation of two stacks of maps ``(N, ...)``, image by image (SciPy)."""
    a = np.asarray(a.detach().cpu() if isinstance(a, Tensor) else a, dtype=np.float64)
    b = np.asarray(b.detach().cpu() if isinstance(b, Tensor) else b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {a.shape} vs {b.shape}")
    out = np.empty(a.shape[0])
    for i in range(a.shape[0]):
        x, y = a[i].ravel(), b[i].ravel()
        out[i] = np.nan if (np.all(x == x[0]) or np.all(y == y[0])) else stats.spearmanr(x, y).statistic
    return out



def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def cascade_stages(model: nn.Module, X: Tensor) -> list[str]:
    """The model's stages from the top (head) down, as module names for :func:`randomise_weights`.

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

    @property
    def full(self) -> dict[str, np.ndarray]:
        """Per method, ``(N,)``: the last stage, every weight of the model randomised
        (Adebayo et al.'s full model-parameter randomisation)."""
        return {m: v[-1] for m, v in self.spearman.items()}

    def rows(self) -> list[dict[str, Any]]:
        """One row per stage: the mean Spearman of each method over the images."""
        return [{"randomised down to": s, **{m: float(np.ma.masked_invalid(v[i]).mean()) if np.isfinite(v[i]).any()
                                              else float("nan") for m, v in self.spearman.items()}}
                for i, s in enumerate(self.stages)]


def cascading_randomisation(model: nn.Module, X: Tensor, targets: Tensor, *,
                            methods: Sequence[str] = ("saliency", "ig", "gradcam"),
                            stages: Sequence[str] | None = None, seed: int = 0, n_steps: int = 32,
                            max_stages: int | None = 6, internal_batch_size: int | None = 128,
                            **map_kwargs: Any) -> CascadeResult:
    """Adebayo et al.'s cascading randomisation: Spearman of ``|map|`` against the trained
    model's after each cumulative top-down stage (:func:`cascade_stages` by default); the
    last stage measured is always the whole model (:attr:`CascadeResult.full`).

    The explained classes stay ``targets`` (the trained model's) throughout. Each stage
    is a fresh :func:`randomise_weights` copy with layers ``stages[:s + 1]`` and one seed,
    so a stage randomised once keeps the same random weights in every later stage.
    ``max_stages``: measure after at most this many of the cumulative stages, evenly
    spaced from the head to the whole model (each measurement needs a fresh copy of the
    model, the costly part on a CPU); None: after every stage. Extra keyword arguments go
    to :func:`~cervixlib.explain.method_maps` (e.g. IG's ``baseline``).
    """
    all_stages = list(cascade_stages(model, X) if stages is None else stages)
    ends = range(len(all_stages))
    if max_stages is not None and len(all_stages) > max_stages:
        ends = sorted({int(round(v)) for v in np.linspace(0, len(all_stages) - 1, max(2, max_stages))})
    stages = [all_stages[e] for e in ends]
    kw = {"n_steps": n_steps, "internal_batch_size": internal_batch_size, "seed": seed, **map_kwargs}
    trained = {m: method_maps(model, X, m, targets, **kw) for m in methods}
    out = {m: np.empty((len(stages), X.shape[0])) for m in methods}
    for s, end in enumerate(ends):
        rand = randomise_weights(model, seed=seed, layers=all_stages[:end + 1])
        for m in methods:
            out[m][s] = spearman_per_image(method_maps(rand, X, m, targets, **kw), trained[m])
        del rand
    return CascadeResult(stages=stages, spearman=out, meta={"n_steps": n_steps, "seed": seed})
