"""Faithfulness: does a map rank first the pixels the model needs? (Quantus' category.)

- **Deletion and insertion** (Petsiuk et al., "RISE", BMVC 2018), batched:
  :func:`perturbation_curves` and the areas under them.
- **Completeness** (Sundararajan et al. 2017): :func:`completeness` recomputes
  ``|sum A - (F(x) - F(b))|`` with plain forward passes, independently of Captum's
  convergence delta.

A map is faithful to the model when the pixels it ranks first are the ones the model
needs. Deletion replaces the top-ranked fraction ``x`` of the pixels by a fill and
follows the model's score as ``x`` goes from 0 to 1; insertion starts from the fill
and puts the pixels back in the same order. The score is **the softmax probability
of the explained class** (the predicted class, unless given). The areas under the
curves, with ``x`` normalised to [0, 1] (trapezoid rule), summarise them: a low
deletion area and a high insertion area are faithful. The two share their end points
(the image and the fill), which are evaluated once for all methods.

**The fill.** Removing pixels to black is out of distribution on a Pap smear, whose
background is bright: the model would react to black holes, not to missing cells.
The default, ``"blur"``, is a Gaussian blur of the image (sigma ``min(H, W) / 16``, the
blur baseline of :func:`~cervixlib.explain.make_baseline`): it keeps the local colour
and the uneven illumination, and it is what RISE's insertion starts from, so deletion
ends and insertion starts at the same in-distribution image. Its cost: a blurred cell
is still a darker blob, so some information survives removal and the deletion curve
falls less than it would under complete removal. ``"background"`` fills with each
image's background colour (:func:`~cervixlib.explain.background_colour`) instead:
complete removal of a cell, at the price of flat patches with sharp borders.

Every perturbation step of every image goes through the model in one batched pass
(chunked by ``chunk_size``); only the ranking of the pixels is computed per image.

Why not Quantus' ``RegionPerturbation``/``PixelFlipping``: Quantus 0.6.0 requires
``opencv-python`` while ``grad-cam`` requires ``opencv-python-headless``, two
distributions that install the same ``cv2`` package over each other (removing either
breaks the other), and it pulls pandas and scikit-image for metrics this module
computes in a few lines; its own tests pin ``numpy<2``. The tests check these curves
against a model with a known answer and NumPy's trapezoid rule instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from cervixlib.explain.attributions import Attribution, model_device
from cervixlib.explain.baselines import make_baseline
from cervixlib.runtime import eval_mode

__all__ = ["FILLS", "PerturbationCurves", "completeness", "curve_auc", "fill_image", "perturbation_curves",
           "pixel_ranks", "perturbation_masks"]

Fill = Literal["blur", "background"]
FILLS = ("blur", "background")


@dataclass(frozen=True)
class PerturbationCurves:
    """One method's curves: ``x`` ``(K+1,)`` fractions in [0, 1]; ``deletion`` and ``insertion``
    ``(N, K+1)``: the probability of the explained class after each step."""

    x: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray

    @property
    def deletion_auc(self) -> np.ndarray:
        """``(N,)``: area under each deletion curve (lower is more faithful)."""
        return curve_auc(self.deletion, self.x)

    @property
    def insertion_auc(self) -> np.ndarray:
        """``(N,)``: area under each insertion curve (higher is more faithful)."""
        return curve_auc(self.insertion, self.x)


def curve_auc(curves: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
    """Trapezoid areas ``(...,)`` of ``curves`` ``(..., K+1)`` over ``x`` (default: K+1 equal steps on [0, 1])."""
    c = np.asarray(curves, dtype=np.float64)
    x = np.linspace(0.0, 1.0, c.shape[-1]) if x is None else np.asarray(x, dtype=np.float64)
    if x.shape != c.shape[-1:]:
        raise ValueError(f"x has shape {x.shape}, curves have {c.shape[-1]} points")
    return ((c[..., 1:] + c[..., :-1]) * np.diff(x) / 2).sum(-1)


def fill_image(X: Tensor, fill: Fill = "blur", *, blur_sigma: float | None = None) -> Tensor:
    """What removed pixels become: the blurred image or the background colour, ``(N, C, H, W)``."""
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    return make_baseline(X, fill, blur_sigma=blur_sigma)


def pixel_ranks(maps: Tensor | np.ndarray, *, seed: int = 0) -> Tensor:
    """``(N, H, W)`` int64: each pixel's rank in its map, 0 for the largest value.

    Ties are broken at random (seeded), not by position: a flat region of a map (an
    upsampled Grad-CAM, a zero map) must not remove the image's top rows first.
    """
    a = torch.as_tensor(np.asarray(maps) if isinstance(maps, np.ndarray) else maps).detach().cpu().double()
    if a.ndim != 3:
        raise ValueError(f"maps must be (N, H, W), got {tuple(a.shape)}")
    N, H, W = a.shape
    flat = a.reshape(N, -1)
    g = torch.Generator().manual_seed(seed)
    perm = torch.stack([torch.randperm(H * W, generator=g) for _ in range(N)])
    shuffled = torch.gather(flat, 1, perm)
    order_in_shuffled = torch.sort(shuffled, dim=1, descending=True, stable=True).indices
    order = torch.gather(perm, 1, order_in_shuffled)  # pixel indices, largest value first
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(H * W).expand(N, -1).contiguous())
    return ranks.reshape(N, H, W)


def perturbation_masks(ranks: Tensor, steps: int) -> Tensor:
    """``(N, K+1, H, W)`` bool: after step ``k`` the top ``round(k / K * H * W)`` pixels are chosen."""
    N, H, W = ranks.shape
    counts = torch.round(torch.linspace(0, 1, steps + 1, dtype=torch.float64) * H * W).long()
    return ranks[:, None] < counts.view(1, -1, 1, 1)


def _scores(model: nn.Module, X: Tensor, filled: Tensor, targets: Tensor, ranks: Tensor, rows: Tensor,
            counts: Tensor, *, chunk_size: int) -> Tensor:
    """Softmax probabilities of the explained class for perturbed images, built chunk by chunk.

    ``ranks`` ``(J, N, H, W)``: pixel ranks of each method's maps; ``rows`` ``(M, 4)``:
    (method, image, step, insertion) per perturbed image. In deletion the pixels ranked
    below ``counts[step]`` come from ``filled``, the rest from ``X``; insertion is the
    reverse. Only ``chunk_size`` images exist at a time, and each chunk is one forward
    pass, whatever method, curve or image its rows belong to. Returns ``(M,)``.
    """
    device = model_device(model)
    out = []
    with torch.no_grad():
        for s in range(0, rows.shape[0], chunk_size):
            j, i, k, ins = rows[s:s + chunk_size].unbind(1)
            chosen = ranks[j, i] < counts[k].view(-1, 1, 1)
            keep_x = torch.where(ins.bool().view(-1, 1, 1), chosen, ~chosen)[:, None]  # pixels from the image
            batch = torch.where(keep_x, X[i], filled[i])
            p = model(batch.to(device)).float().softmax(1)
            out.append(p.gather(1, targets[i].to(device)[:, None])[:, 0].cpu())
    return torch.cat(out)


def perturbation_curves(
    model: nn.Module,
    X: Tensor,
    maps: Mapping[str, Tensor | np.ndarray],
    targets: Tensor,
    *,
    steps: int = 10,
    fill: Fill = "blur",
    blur_sigma: float | None = None,
    chunk_size: int = 64,
    seed: int = 0,
) -> dict[str, PerturbationCurves]:
    """Deletion and insertion curves of several methods' maps on the same images.

    Args:
        model: the classifier the maps explain (eval mode here, restored afterwards).
        X: normalised images ``(N, C, H, W)``.
        maps: method name -> non-negative maps ``(N, H, W)`` (larger: more important).
        targets: ``(N,)`` the explained classes; the score is their softmax probability.
        steps: ``K``, the fraction removed grows by ``1/K`` a step (``K+1`` points).
        fill: ``"blur"`` (default) or ``"background"`` (see the module docstring).
        chunk_size: images per forward pass.
        seed: breaks ties in the rankings (:func:`pixel_ranks`).

    The end points (the image and the fill) are scored once for all methods; the
    interior steps of all methods and images are one sequence of perturbed images,
    built and scored ``chunk_size`` at a time (one forward pass each).
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    X = X.detach().cpu().float()
    N = X.shape[0]
    t = torch.as_tensor(targets, dtype=torch.long).reshape(-1).cpu()
    if t.numel() != N:
        raise ValueError(f"got {t.numel()} targets for {N} images")
    bad = [k for k, m in maps.items() if tuple(torch.as_tensor(np.asarray(m)).shape) != (N, *X.shape[-2:])]
    if bad:
        raise ValueError(f"maps of {bad} are not (N, H, W) = {(N, *X.shape[-2:])}")
    filled = fill_image(X, fill, blur_sigma=blur_sigma).cpu()
    H, W = X.shape[-2:]
    x = np.linspace(0.0, 1.0, steps + 1)
    names = list(maps)
    ranks = torch.stack([pixel_ranks(torch.as_tensor(np.asarray(maps[k])), seed=seed).int() for k in names])
    counts = torch.round(torch.linspace(0, 1, steps + 1, dtype=torch.float64) * H * W).long()
    S, img = steps - 1, torch.arange(N)
    # rows (method, image, step, insertion): the image and the fill once, then each method's inner steps
    ends = [torch.stack([torch.zeros(N, dtype=torch.long), img, torch.full((N,), k), torch.zeros(N, dtype=torch.long)],
                        1) for k in (0, steps)]
    grid_i, grid_k = img.repeat_interleave(S), torch.arange(1, steps).repeat(N)
    inner = [torch.stack([torch.full((N * S,), j), grid_i, grid_k, torch.full((N * S,), ins)], 1)
             for j in range(len(names)) for ins in (0, 1)]
    rows = torch.cat(ends + inner)
    with eval_mode(model):
        scores = _scores(model, X, filled, t, ranks, rows, counts, chunk_size=chunk_size).numpy()
    p_image, p_fill = scores[:N], scores[N:2 * N]
    out, pos = {}, 2 * N
    for k in names:
        d = scores[pos:pos + N * S].reshape(N, S)
        i = scores[pos + N * S:pos + 2 * N * S].reshape(N, S)
        pos += 2 * N * S
        out[k] = PerturbationCurves(x=x, deletion=np.column_stack([p_image, d, p_fill]),
                                    insertion=np.column_stack([p_fill, i, p_image]))
    return out


def completeness(
    model: nn.Module,
    X: Tensor,
    attr: Attribution,
    *,
    baseline: Tensor | None = None,
    linearise: bool | None = None,
) -> np.ndarray:
    """``|sum A - (F(x) - F(b))|`` per image, recomputed with plain fp32 forward passes.

    An independent check of Captum's convergence delta (``attr.delta``): the baseline
    is rebuilt from ``attr.baseline`` (pass ``baseline`` for a tensor or noise baseline). For
    saliency maps (``linearise``, default for them) the sum is over ``grad * (x - b)``.
    ``F`` is the logit, or the softmax probability for ``attr.output == "softmax"``. An
    average over several baselines has one gap per baseline: check each one's map instead.
    """
    if attr.n_baselines != 1:
        raise ValueError(f"this attribution averages {attr.n_baselines} baselines; check "
                         "attr.delta_per_baseline, or each baseline's own attribution")
    device = model_device(model)
    X = (X.unsqueeze(0) if X.ndim == 3 else X).float().to(device)
    if baseline is None:
        if attr.baseline in ("tensor", "uniform"):
            raise ValueError(f"this attribution used a {attr.baseline} baseline: pass it as baseline=")
        B = make_baseline(X, attr.baseline)  # type: ignore[arg-type]
    else:
        B = make_baseline(X, baseline)
    A = attr.attributions.to(device)
    if linearise if linearise is not None else attr.method == "saliency":
        A = A * (X - B)
    t = attr.target.to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            fx, fb = model(X).float(), model(B).float()
            if attr.output == "softmax":
                fx, fb = fx.softmax(dim=1), fb.softmax(dim=1)
            fx, fb = fx.gather(1, t[:, None])[:, 0], fb.gather(1, t[:, None])[:, 0]
    finally:
        model.train(was_training)
    gap = A.flatten(1).double().sum(1) - (fx - fb).double()
    return gap.abs().cpu().numpy()

