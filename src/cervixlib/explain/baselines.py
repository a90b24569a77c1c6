"""Where Integrated Gradients starts: baselines by name, in the model's normalised space.

Integrated Gradients (Sundararajan et al. 2017) explains the change of the output from
a baseline image to the input, and Wang et al. (2021) do not say which baseline they
used (their released code draws uniform noise). :func:`make_baseline` builds each
choice a reader of the IG literature expects (black, white, the dataset mean, a blurred
copy as in Sturmfels et al., Distill 2020, each image's background colour, uniform
noise) for normalised images; the deletion and insertion fills
(:mod:`~cervixlib.explain.faithfulness`) reuse the blur and the background colour.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from cervixlib.config import BASELINES, BaselineName

__all__ = ["BASELINES", "background_colour", "gaussian_blur", "make_baseline", "normalisation"]


def normalisation() -> tuple[Tensor, Tensor]:
    """The per-channel ``(mean, std)`` the datasets normalise with, as ``(C,)`` tensors."""
    from cervixlib.data import MEAN, STD

    return torch.as_tensor(MEAN, dtype=torch.float32), torch.as_tensor(STD, dtype=torch.float32)


def gaussian_blur(X: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` with reflected borders.

    The kernel sums to one, so blurring commutes with the per-channel affine
    normalisation: blurring the normalised tensor equals normalising the blurred image.
    """
    if sigma <= 0:
        return X.clone()
    H, W = X.shape[-2:]
    radius = max(1, min(int(math.ceil(3 * sigma)), H - 1, W - 1))
    coords = torch.arange(-radius, radius + 1, dtype=torch.float32, device=X.device)
    kernel = torch.exp(-0.5 * (coords / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(X.dtype)
    C = X.shape[1]
    out = F.pad(X, (radius, radius, 0, 0), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    out = F.pad(out, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)


def _mean_std(X: Tensor, mean: Tensor | Sequence[float] | None,
              std: Tensor | Sequence[float] | None) -> tuple[Tensor, Tensor]:
    """``(1, C, 1, 1)`` mean and std on ``X``'s device (default: the datasets')."""
    d_mean, d_std = normalisation()
    m = torch.as_tensor(d_mean if mean is None else mean, dtype=X.dtype, device=X.device).view(1, -1, 1, 1)
    s = torch.as_tensor(d_std if std is None else std, dtype=X.dtype, device=X.device).view(1, -1, 1, 1)
    if m.shape[1] != X.shape[1] or s.shape[1] != X.shape[1]:
        raise ValueError(f"mean/std have {m.shape[1]}/{s.shape[1]} channels, images have {X.shape[1]}")
    return m, s


def background_colour(X: Tensor, *, mean: Tensor | Sequence[float] | None = None,
                      std: Tensor | Sequence[float] | None = None) -> Tensor:
    """Each image's background colour ``(N, C, 1, 1)``, normalised like ``X``.

    Per image and channel, the median of the brighter half of the pixels (grey value
    at or above the image's median): a Pap-smear background is pale and covers most
    of a field, and the cells are darker, so this is the colour of the glass and light
    around them, without needing the cell masks.
    """
    m, s = _mean_std(X, mean, std)
    pixels = X * s + m
    grey = pixels.mean(1).flatten(1)  # (N, HW)
    bright = grey >= grey.median(dim=1, keepdim=True).values
    flat = pixels.flatten(2)  # (N, C, HW)
    out = torch.stack([flat[i][:, bright[i]].median(dim=1).values for i in range(X.shape[0])])
    return ((out[:, :, None, None] - m) / s).to(X.dtype)


def make_baseline(
    X: Tensor,
    baseline: BaselineName | Tensor = "black",
    *,
    mean: Tensor | Sequence[float] | None = None,
    std: Tensor | Sequence[float] | None = None,
    blur_sigma: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The IG starting point for normalised images ``X`` ``(N, C, H, W)``.

    - ``"black"``: pixel value 0, i.e. ``-mean / std`` after normalisation;
    - ``"white"``: pixel value 1 (255), i.e. ``(1 - mean) / std``;
    - ``"background"``: each image's own background colour (:func:`background_colour`),
      the colour of "no cell here" on a Pap smear;
    - ``"blur"``: ``X`` blurred with a Gaussian of ``blur_sigma`` px (default
      ``min(H, W) / 16``: 14 px at 224 px, wider than a nucleus), which keeps colour
      and illumination but removes cell detail (Sturmfels et al., Distill 2020);
    - ``"mean"``: the dataset-mean colour, i.e. 0 after normalisation;
    - ``"uniform"``: noise, each pixel and channel uniform in [0, 255] in pixel space
      (uniform in [0, 1], then normalised), as in the authors' released IG; drawn on
      the CPU from ``generator`` (a new draw on each call), so a seed repeats it on any device;
    - a tensor broadcastable to ``X``: used as given.

    ``mean``/``std`` default to :data:`cervixlib.data.MEAN` / ``STD``.
    """
    if isinstance(baseline, Tensor):
        return baseline.to(device=X.device, dtype=X.dtype).expand_as(X).clone()
    if baseline == "mean":
        return torch.zeros_like(X)
    if baseline in ("black", "white"):
        m, s = _mean_std(X, mean, std)
        return (((1.0 if baseline == "white" else 0.0) - m) / s).expand_as(X).clone()
    if baseline == "background":
        return background_colour(X, mean=mean, std=std).expand_as(X).clone()
    if baseline == "uniform":
        m, s = _mean_std(X, mean, std)
        noise = torch.rand(X.shape, generator=generator, dtype=torch.float32)
        return (noise.to(device=X.device, dtype=X.dtype) - m) / s
    if baseline == "blur":
        sigma = min(X.shape[-2:]) / 16 if blur_sigma is None else float(blur_sigma)
        return gaussian_blur(X, sigma)
    raise ValueError(f"baseline must be one of {BASELINES} or a tensor, got {baseline!r}")
