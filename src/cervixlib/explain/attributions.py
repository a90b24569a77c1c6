"""Saliency and Integrated Gradients through Captum, for any registered model.

Wang et al. (2021), "Towards Interpretable Attention Networks for Cervical Cancer
Analysis", explain their classifiers with the plain input gradient (Simonyan et al.
2014) and Integrated Gradients (Sundararajan et al. 2017) in their Fig. 2. This module
wraps Captum's :class:`~captum.attr.Saliency` and
:class:`~captum.attr.IntegratedGradients` without reimplementing them: ``n_steps``,
the baselines, ``internal_batch_size`` and ``return_convergence_delta`` go straight
through. What it adds is what the paper left out:

- the convergence delta, ``sum(attributions) - (F(x) - F(baseline))`` (the
  completeness axiom), is always computed in fp32 and returned with the maps;
- baselines by name (:mod:`~cervixlib.explain.baselines`: black, blurred, the dataset
  mean, uniform noise) in the model's normalised space, and IG averaged over several noise baselines with the delta of
  each, as the authors' released ``integrated-gradient.py`` does (:data:`RELEASED_IG`:
  the softmax probability of the predicted class, 10 baselines of uniform noise in
  pixel space, 50 left-Riemann steps each);
- batching across images, with the model in eval mode and the target the predicted
  class unless given;
- bf16 autocast only where the convergence delta shows it stays faithful: with
  ``precision="auto"`` an image is attributed under bf16 when the device computes bf16
  natively, and recomputed in fp32 when its relative delta exceeds a tolerance (fp32
  stays the default: the delta checks a map's sum, not its pixels).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch
from captum.attr import IntegratedGradients, Saliency
from torch import Tensor, nn

from cervixlib.config import ATTRIBUTION_METHODS, BASELINES, PRECISIONS, AttributionMethod, Precision
from cervixlib.explain.baselines import BaselineName, make_baseline
from cervixlib.reductions import Reduce, reduce_channels
from cervixlib.runtime import autocast, eval_mode, resolve_precision

__all__ = ["METHODS", "OUTPUTS", "RELEASED_IG", "Attribution", "attribute", "check_settings", "explained_classes",
           "model_device"]

_log = logging.getLogger(__name__)

METHODS = ATTRIBUTION_METHODS
OUTPUTS = ("logit", "softmax")
Output = Literal["logit", "softmax"]

#: The settings of the authors' released IG (``integrated-gradient.py``): gradients of the
#: softmax probability of the predicted class, 10 baselines of uniform noise in [0, 255]
#: pixel space, 50 steps each as a left Riemann sum (alphas 0, 1/50, ..., 49/50), averaged.
#: Use as ``attribute(model, X, **RELEASED_IG)``.
RELEASED_IG: dict[str, object] = {"output": "softmax", "baseline": "uniform", "n_baselines": 10,
                                  "n_steps": 50, "integration": "riemann_left"}


@dataclass(frozen=True)
class Attribution:
    """Attributions of ``N`` images with everything needed to judge them.

    Attributes:
        attributions: ``(N, C, H, W)`` float32 on the CPU. IG: Captum's attributions
            (they sum to ``output_diff + delta``); saliency: the signed input
            gradient of the target output (logit or softmax probability).
            With several baselines, the mean of the maps of each.
        target: ``(N,)`` int64, the explained class of each image.
        delta: ``(N,)`` float32, the completeness gap ``sum(A) - output_diff`` in fp32.
            For saliency, the gap of its one-step linearisation
            ``sum(grad * (x - b)) - (F(x) - F(b))``: how far the gradient is from
            accounting for the output, which IG closes as its steps grow. With several
            baselines, the mean of :attr:`delta_per_baseline` (gaps of opposite signs
            can cancel here: judge each baseline by :attr:`delta_per_baseline`).
        output_diff: ``(N,)`` float32, ``F(x) - F(b)`` for the target output (logit or
            softmax probability), in fp32; with several baselines, its mean over them.
        delta_per_baseline: ``(N, n_baselines)`` float32, the completeness gap of each
            baseline's own map, ``sum(A_k) - (F(x) - F(b_k))``.
        output_diff_per_baseline: ``(N, n_baselines)`` float32, ``F(x) - F(b_k)``.
        method: ``"ig"`` or ``"saliency"``.
        n_steps: IG steps per baseline (1 for saliency).
        baseline: the baseline's name (``"black"``, ``"blur"``, ``"mean"``, ``"uniform"`` or ``"tensor"``).
        precision: per image, ``"fp32"`` or ``"bf16"``: the precision its map was computed
            in (``"bf16"`` if any of its baselines' maps was).
        integration: Captum's approximation method (``"gausslegendre"`` by default).
        output: ``"logit"`` or ``"softmax"``: what ``F`` is.
        n_baselines: how many baselines the map averages.
    """

    attributions: Tensor
    target: Tensor
    delta: Tensor
    output_diff: Tensor
    delta_per_baseline: Tensor
    output_diff_per_baseline: Tensor
    method: str
    n_steps: int
    baseline: str
    precision: tuple[str, ...]
    integration: str = "gausslegendre"
    output: str = "logit"
    n_baselines: int = 1

    def __len__(self) -> int:
        return int(self.attributions.shape[0])

    @property
    def relative_delta(self) -> Tensor:
        """``|delta| / |F(x) - F(b)|`` per image: the completeness error as a fraction."""
        return self.delta.abs() / self.output_diff.abs().clamp_min(1e-12)

    @property
    def relative_delta_per_baseline(self) -> Tensor:
        """``(N, n_baselines)``: ``|delta_k| / |F(x) - F(b_k)|``, the completeness error of each baseline."""
        return self.delta_per_baseline.abs() / self.output_diff_per_baseline.abs().clamp_min(1e-12)

    def heatmap(self, reduce: Reduce = "abs") -> Tensor:
        """``(N, H, W)`` maps with the channels reduced by :func:`reduce_channels`."""
        return reduce_channels(self.attributions, reduce)

    def __getitem__(self, index: int | slice | Sequence[int] | Tensor) -> Attribution:
        if isinstance(index, int):
            index = [index]
        idx = torch.arange(len(self))[index]
        return replace(
            self, attributions=self.attributions[idx], target=self.target[idx], delta=self.delta[idx],
            output_diff=self.output_diff[idx], delta_per_baseline=self.delta_per_baseline[idx],
            output_diff_per_baseline=self.output_diff_per_baseline[idx],
            precision=tuple(self.precision[int(i)] for i in idx),
        )

    @staticmethod
    def cat(parts: Sequence[Attribution]) -> Attribution:
        """Concatenate attributions of the same method, steps, baseline and output along the images."""
        if not parts:
            raise ValueError("nothing to concatenate")
        first = parts[0]
        for p in parts[1:]:
            if (p.method, p.n_steps, p.baseline, p.integration, p.output, p.n_baselines) != (
                    first.method, first.n_steps, first.baseline, first.integration, first.output,
                    first.n_baselines):
                raise ValueError("cannot concatenate attributions of different settings")
        return replace(
            first,
            attributions=torch.cat([p.attributions for p in parts]),
            target=torch.cat([p.target for p in parts]),
            delta=torch.cat([p.delta for p in parts]),
            output_diff=torch.cat([p.output_diff for p in parts]),
            delta_per_baseline=torch.cat([p.delta_per_baseline for p in parts]),
            output_diff_per_baseline=torch.cat([p.output_diff_per_baseline for p in parts]),
            precision=tuple(s for p in parts for s in p.precision),
        )


# ------------------------------------------------------------------ helpers
def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); the CPU for a parameter-free model."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _check_images(X: Tensor) -> Tensor:
    if not isinstance(X, Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(X).__name__}")
    if X.ndim == 3:
        X = X.unsqueeze(0)
    if X.ndim != 4 or X.shape[0] == 0:
        raise ValueError(f"images must have shape (N, C, H, W) or (C, H, W), got {tuple(X.shape)}")
    if not torch.isfinite(X).all():
        raise ValueError("images contain NaN or infinite values")
    return X.float()


def explained_classes(model: nn.Module, X: Tensor, target: int | Sequence[int] | Tensor | None) -> Tensor:
    """``(N,)`` the classes to explain, on ``X``'s device: ``target`` (one for all, or one
    an image), or each image's predicted class (an fp32 forward) when it is None."""
    N = X.shape[0]
    if target is None:
        with torch.no_grad():
            return model(X).float().argmax(dim=1)
    t = torch.as_tensor(target, dtype=torch.long, device=X.device).reshape(-1)
    if t.numel() == 1:
        t = t.expand(N)
    if t.numel() != N:
        raise ValueError(f"got {t.numel()} targets for {N} images")
    return t.clone()


def _chunks(N: int, size: int) -> Iterator[slice]:
    for start in range(0, N, size):
        yield slice(start, min(start + size, N))


# ------------------------------------------------------------------ attribution
def check_settings(*, method: str = "ig", output: str = "logit", precision: str = "fp32", n_steps: int = 50,
                   n_baselines: int = 1, baseline: str | Tensor = "black") -> None:
    """Refuse (``ValueError`` naming it) the first invalid setting of :func:`attribute`,
    before any model is loaded or run: ``cervix explain`` checks its options with it."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if n_steps < 1:
        raise ValueError(f"n_steps must be at least 1, got {n_steps}")
    if n_baselines < 1:
        raise ValueError(f"n_baselines must be at least 1, got {n_baselines}")
    if not isinstance(baseline, Tensor) and baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES} or a tensor, got {baseline!r}")


def _ig_chunk(ig: IntegratedGradients, X: Tensor, B: Tensor, t: Tensor, *, n_steps: int,
              integration: str, internal_batch_size: int | None, bf16: bool) -> tuple[Tensor, Tensor]:
    """Captum IG for one chunk; the convergence delta is always evaluated in fp32."""
    kwargs = dict(baselines=B, target=t, n_steps=n_steps, method=integration,
                  internal_batch_size=internal_batch_size)
    if not bf16:
        attr, delta = ig.attribute(X, return_convergence_delta=True, **kwargs)
        return attr.detach().float(), delta.detach().float()
    with autocast(X.device, "bf16"):
        attr = ig.attribute(X, return_convergence_delta=False, **kwargs)
    attr = attr.detach().float()
    delta = ig.compute_convergence_delta(attr, B, X, target=t)  # fp32 forward passes
    return attr, delta.detach().float()


def _forward_func(model: nn.Module, output: Output) -> Callable[[Tensor], Tensor]:
    """What Captum differentiates: the model's logits, or their softmax over the classes."""
    if output == "logit":
        return model

    def probabilities(x: Tensor) -> Tensor:
        return model(x).float().softmax(dim=1)

    return probabilities


def _ig_one_baseline(ig: IntegratedGradients, X: Tensor, B: Tensor, t: Tensor, *, batch_size: int,
                     n_steps: int, integration: str, internal_batch_size: int | None, use_bf16: bool,
                     fallback_tolerance: float | None) -> tuple[Tensor, Tensor, list[str]]:
    """IG of every image from baseline ``B``, in chunks: CPU maps ``(N, ...)``, deltas ``(N,)``, precisions.

    With ``fallback_tolerance`` (precision ``"auto"``), an image whose bf16 relative delta
    exceeds it is recomputed in fp32.
    """
    attrs, deltas, precs = [], [], []
    for sl in _chunks(X.shape[0], batch_size):
        a, d = _ig_chunk(ig, X[sl], B[sl], t[sl], n_steps=n_steps, integration=integration,
                         internal_batch_size=internal_batch_size, bf16=use_bf16)
        prec = ["bf16" if use_bf16 else "fp32"] * a.shape[0]
        if use_bf16 and fallback_tolerance is not None:
            diff = a.flatten(1).sum(1) - d
            bad = (d.abs() > fallback_tolerance * diff.abs()).nonzero().flatten()
            if bad.numel():
                _log.info("bf16 IG unfaithful for %d of %d images (relative delta > %.3g); "
                          "recomputing them in fp32", bad.numel(), a.shape[0], fallback_tolerance)
                a32, d32 = _ig_chunk(ig, X[sl][bad], B[sl][bad], t[sl][bad], n_steps=n_steps,
                                     integration=integration, internal_batch_size=internal_batch_size,
                                     bf16=False)
                a[bad], d[bad] = a32, d32
                for i in bad.tolist():
                    prec[i] = "fp32"
        attrs.append(a.cpu())
        deltas.append(d.cpu())
        precs.extend(prec)
    return torch.cat(attrs), torch.cat(deltas), precs


def attribute(
    model: nn.Module,
    X: Tensor,
    *,
    method: AttributionMethod = "ig",
    target: int | Sequence[int] | Tensor | None = None,
    n_steps: int = 50,
    baseline: BaselineName | Tensor = "black",
    n_baselines: int = 1,
    seed: int = 0,
    output: Output = "logit",
    internal_batch_size: int | None = None,
    batch_size: int | None = None,
    integration: str = "gausslegendre",
    precision: Precision = "fp32",
    bf16_tolerance: float = 0.05,
    blur_sigma: float | None = None,
) -> Attribution:
    """Attribute the target output of ``model`` (logit or softmax probability) to the pixels of ``X``.

    Args:
        model: any classifier ``(N, C, H, W) -> (N, classes)`` logits; run in eval mode
            (its modes are restored afterwards) on its own device.
        X: normalised images ``(N, C, H, W)`` (or one ``(C, H, W)``), any device.
        method: ``"ig"`` (Integrated Gradients) or ``"saliency"`` (the input gradient).
        target: class index, one per image, or None for each image's predicted class.
        n_steps: IG integration steps per baseline (Captum's ``n_steps``); ignored by saliency.
        baseline: ``"black"``, ``"white"``, ``"blur"``, ``"mean"``, ``"background"``, ``"uniform"`` (noise) or a tensor
            (see :func:`make_baseline`).
        n_baselines: IG only: how many ``"uniform"`` noise baselines to average the maps
            over (the released code: 10); each one's completeness is reported in
            :attr:`Attribution.delta_per_baseline`.
        seed: seeds the ``"uniform"`` noise (baseline ``k`` is the ``k``-th ``(N, C, H, W)``
            draw of a CPU generator seeded with ``seed``); ignored by the other baselines.
        output: ``"logit"`` (default) or ``"softmax"``: attribute the target class's
            softmax probability, as the released code does (Captum differentiates
            ``softmax(model(x))``; completeness then holds for the probabilities).
        internal_batch_size: Captum's ``internal_batch_size``: at most this many scaled
            images per forward pass (None: all steps of a chunk at once).
        batch_size: images per Captum call (None: all images, or ``internal_batch_size``
            of them when that is set, so that Captum never has to shrink its chunks).
        integration: Captum's approximation ``method`` (``"gausslegendre"``,
            ``"riemann_left"`` (the released code's), ``"riemann_trapezoid"``, ...).
        precision: ``"fp32"`` (default); ``"bf16"`` (autocast, no fallback); ``"auto"``:
            bf16 where the device computes it natively, with an image recomputed in fp32
            whenever its relative delta ``|delta| / |F(x) - F(b)|`` exceeds
            ``bf16_tolerance``. The delta bounds the sum of a map, not its pixels:
            ``benchmarks/explain_results.md`` shows a bf16 map within 0.2% on the delta
            yet visibly different from fp32 pixel by pixel, hence fp32 by default.
        bf16_tolerance: the largest relative delta accepted from bf16 under ``"auto"``.
        blur_sigma: the blur baseline's Gaussian sigma in pixels.

    Returns:
        An :class:`Attribution` with CPU tensors; ``delta`` is always filled.
        ``attribute(model, X, **RELEASED_IG)`` is the released code's IG.
    """
    check_settings(method=method, output=output, precision=precision, n_steps=n_steps, n_baselines=n_baselines,
                   baseline=baseline)
    baseline_name = "tensor" if isinstance(baseline, Tensor) else str(baseline)
    if n_baselines > 1 and (method != "ig" or baseline_name != "uniform"):
        raise ValueError("n_baselines > 1 averages IG over random baselines: it needs method='ig' and "
                         f"baseline='uniform', got method={method!r}, baseline={baseline_name!r}")
    device = model_device(model)
    X = _check_images(X).to(device)
    N = X.shape[0]
    if batch_size is None:
        batch_size = N if internal_batch_size is None else max(1, min(N, internal_batch_size))
    forward = _forward_func(model, output)
    generator = torch.Generator().manual_seed(seed)

    with eval_mode(model):
        t = explained_classes(model, X, target)
        if method == "saliency":
            B = make_baseline(X, baseline, blur_sigma=blur_sigma, generator=generator)
            return _saliency(forward, X, B, t, batch_size=batch_size, baseline_name=baseline_name, output=output)

        use_bf16 = precision == "bf16" or (precision == "auto" and resolve_precision("auto", device) == "bf16")
        ig = IntegratedGradients(forward)
        total: Tensor | None = None
        deltas, diffs = [], []
        bf16_used = [False] * N
        for _ in range(n_baselines):
            B = make_baseline(X, baseline, blur_sigma=blur_sigma, generator=generator)
            a, d, precs = _ig_one_baseline(
                ig, X, B, t, batch_size=batch_size, n_steps=n_steps, integration=integration,
                internal_batch_size=internal_batch_size, use_bf16=use_bf16,
                fallback_tolerance=bf16_tolerance if precision == "auto" else None)
            total = a if total is None else total + a
            deltas.append(d)
            diffs.append(a.flatten(1).sum(1) - d)
            bf16_used = [u or p == "bf16" for u, p in zip(bf16_used, precs)]
    assert total is not None
    delta_pb, diff_pb = torch.stack(deltas, dim=1), torch.stack(diffs, dim=1)
    return Attribution(
        attributions=total / n_baselines, target=t.cpu(), delta=delta_pb.mean(dim=1),
        output_diff=diff_pb.mean(dim=1), delta_per_baseline=delta_pb, output_diff_per_baseline=diff_pb,
        method="ig", n_steps=int(n_steps), baseline=baseline_name,
        precision=tuple("bf16" if u else "fp32" for u in bf16_used), integration=integration,
        output=output, n_baselines=int(n_baselines),
    )


def _saliency(forward: Callable[[Tensor], Tensor], X: Tensor, B: Tensor, t: Tensor, *, batch_size: int,
              baseline_name: str, output: str) -> Attribution:
    """Captum Saliency (signed gradient, fp32) plus the completeness gap of its linearisation."""
    sal = Saliency(forward)
    ig = IntegratedGradients(forward)  # only for Captum's compute_convergence_delta
    grads, deltas, diffs = [], [], []
    for sl in _chunks(X.shape[0], batch_size):
        g = sal.attribute(X[sl].clone().requires_grad_(True), target=t[sl], abs=False).detach().float()
        linear = g * (X[sl] - B[sl])
        d = ig.compute_convergence_delta(linear, B[sl], X[sl], target=t[sl]).detach().float()
        grads.append(g.cpu())
        deltas.append(d.cpu())
        diffs.append((linear.flatten(1).sum(1) - d).cpu())
    delta, diff = torch.cat(deltas), torch.cat(diffs)
    return Attribution(
        attributions=torch.cat(grads), target=t.cpu(), delta=delta, output_diff=diff,
        delta_per_baseline=delta[:, None], output_diff_per_baseline=diff[:, None],
        method="saliency", n_steps=1, baseline=baseline_name, precision=("fp32",) * X.shape[0],
        integration="none", output=output,
    )
