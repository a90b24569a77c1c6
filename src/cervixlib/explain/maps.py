"""Every explanation method of chapter 5 as one kind of object: non-negative maps ``(N, H, W)``.

Wang et al. (2021) show input gradients and Integrated Gradients (Fig. 2); a reader of
medical-imaging XAI also expects Grad-CAM (Selvaraju et al., ICCV 2017) and, for the
Residual Attention Network, the model's own soft masks. :func:`method_maps` gives each
at the input's size, so that faithfulness (:mod:`~cervixlib.explain.faithfulness`) and
localisation (:mod:`~cervixlib.explain.localisation`) treat them alike:

- ``"saliency"``, ``"ig"`` (ours: the logit, black baseline), ``"ig_released"``
  (:data:`~cervixlib.explain.RELEASED_IG`): Captum through :func:`attribute`, reduced
  with ``sum_c |A_c|`` (:func:`~cervixlib.explain.attribution_mass`, as the figures);
- ``"gradcam"``: pytorch-grad-cam's ``GradCAM`` on the model's ``attribution_layer``
  (its ReLU, per-image min-max scaling and bilinear upsampling: the package's own map);
- ``"attention"``: the RAN soft masks (:func:`cervixlib.models.collect_attention`),
  mean over channels, each upsampled bilinearly, averaged over the modules (RAN
  models only: RCAN's attention weighs channels and has no map);
- controls that know nothing of the model: ``"random"`` (uniform noise, seeded) and
  ``"edge"`` (Sobel gradient magnitude of the grey image: where a map that only
  follows image structure would point).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cervixlib.explain.attributions import RELEASED_IG, attribute, explained_classes, model_device
from cervixlib.runtime import eval_mode

__all__ = ["CONTROLS", "MAP_METHODS", "METHOD_LABELS", "attention_map", "available_methods", "edge_map", "gradcam",
           "has_attention_maps", "method_maps", "random_map"]

MAP_METHODS = ("saliency", "ig", "ig_released", "gradcam", "attention", "random", "edge")
CONTROLS = ("random", "edge")
#: Each method's name in figures and tables.
METHOD_LABELS = {"saliency": "saliency", "ig": "IG (ours)", "ig_released": "IG (released)", "gradcam": "Grad-CAM",
                 "attention": "RAN soft mask", "random": "random (control)", "edge": "Sobel edges (control)"}


def gradcam(model: nn.Module, X: Tensor, targets: int | Sequence[int] | Tensor, *,
            layer: str | None = None, batch_size: int = 16) -> Tensor:
    """Grad-CAM maps ``(N, H, W)`` in [0, 1] at the input size, through ``pytorch_grad_cam``.

    ``layer``: dotted module name (default ``model.attribution_layer``, the last
    feature map). The model's train/eval mode is restored afterwards (GradCAM sets eval).
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    name = layer or getattr(model, "attribution_layer", None)
    modules = dict(model.named_modules())
    if name is None or name not in modules:
        raise ValueError(f"no layer {name!r} in the model for Grad-CAM; pass layer=")
    with eval_mode(model), torch.no_grad():
        t = explained_classes(model, X.to(model_device(model)), targets).tolist()
    out = []
    with eval_mode(model), GradCAM(model=model, target_layers=[modules[name]]) as cam:
        for s in range(0, X.shape[0], batch_size):
            sl = slice(s, s + batch_size)
            maps = cam(input_tensor=X[sl].to(model_device(model)),
                       targets=[ClassifierOutputTarget(c) for c in t[sl]])
            out.append(torch.from_numpy(np.asarray(maps, dtype=np.float32)))
    model.zero_grad(set_to_none=True)
    return torch.cat(out)


def has_attention_maps(model: nn.Module) -> bool:
    """Whether the model has spatial soft masks (RAN, RAN-92) for :func:`attention_map`."""
    from cervixlib.layers import AttentionModule, RANAttentionModule

    return any(isinstance(m, (AttentionModule, RANAttentionModule)) for m in model.modules())


def attention_map(model: nn.Module, X: Tensor) -> Tensor:
    """The RAN soft masks as one map per image ``(N, H, W)``: each module's mask averaged
    over channels, upsampled bilinearly to the input, then averaged over the modules."""
    from cervixlib.models import collect_attention

    with eval_mode(model):
        masks = {k: v for k, v in collect_attention(model, X.to(model_device(model))).items() if v.ndim == 4}
    if not masks:
        raise ValueError("this model has no spatial attention masks (RAN and RAN-92 have; RCAN weighs channels)")
    H, W = X.shape[-2:]
    ups = [F.interpolate(m.float().mean(1, keepdim=True), size=(H, W), mode="bilinear", align_corners=False)[:, 0]
           for m in masks.values()]
    return torch.stack(ups).mean(0).cpu()


def random_map(shape: Sequence[int], seed: int = 0) -> Tensor:
    """Uniform noise maps of ``shape`` ``(N, H, W)``: the control that knows nothing."""
    return torch.rand(tuple(shape), generator=torch.Generator().manual_seed(seed))


def edge_map(X: Tensor) -> Tensor:
    """Sobel gradient magnitude of the grey image ``(N, H, W)``, from normalised ``X``.

    The control a structure-following map is measured against: cell borders and nuclei
    have strong edges, a pale background has none.
    """
    from cervixlib.data import denormalize

    grey = denormalize(X.detach().cpu().float()).mean(1, keepdim=True)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    k = torch.stack([kx, kx.T])[:, None]
    g = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), k)
    return g.pow(2).sum(1).sqrt()


def available_methods(model: nn.Module) -> tuple[str, ...]:
    """The methods of :data:`MAP_METHODS` that apply to ``model`` (``attention``: RAN only)."""
    return tuple(m for m in MAP_METHODS if m != "attention" or has_attention_maps(model))


def method_maps(model: nn.Module, X: Tensor, method: str, targets: Tensor, *, n_steps: int = 32,
                seed: int = 0, internal_batch_size: int | None = None, **kwargs: Any) -> Tensor:
    """One method's non-negative maps ``(N, H, W)`` (CPU, float32) for the ``targets`` classes.

    ``n_steps`` is our IG's (the released IG keeps its own 50); ``seed`` seeds the
    random control and the released IG's noise; extra keyword arguments go to
    :func:`attribute` (e.g. ``baseline`` for ``"ig"``).
    """
    if method in ("saliency", "ig", "ig_released"):
        opts: dict[str, Any] = {"method": "saliency"} if method == "saliency" else {"method": "ig"}
        if method == "ig":
            opts.update(n_steps=n_steps, baseline="black", internal_batch_size=internal_batch_size)
        if method == "ig_released":
            opts.update(RELEASED_IG, seed=seed, internal_batch_size=internal_batch_size)
        opts.update(kwargs)
        return attribute(model, X, target=targets, **opts).heatmap("abs").float()
    if method == "gradcam":
        return gradcam(model, X, targets)
    if method == "attention":
        return attention_map(model, X)
    if method == "random":
        return random_map((X.shape[0], *X.shape[-2:]), seed)
    if method == "edge":
        return edge_map(X)
    raise ValueError(f"method must be one of {MAP_METHODS}, got {method!r}")
