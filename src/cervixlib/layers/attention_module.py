"""The attention module of the Residual Attention Network, as a plug-in layer.

Wang, Jiang, Qian, Yang, Li, Zhang, Wang and Tang, "Residual Attention Network for Image
Classification", CVPR 2017. Wang et al. (2021), "Towards Interpretable Attention
Networks for Cervical Cancer Analysis", use it on ResNet-50;
:mod:`cervixlib.models.ran` inserts one :class:`AttentionModule` after each residual
stage.

A module has two branches on the same input x:

- trunk T(x): ``trunk_depth`` pre-activation bottleneck units (He et al., ECCV 2016);
- soft mask M(x): a 1x1 conv to a narrower mask width, then an hourglass: bottom-up,
  each level max-pools (3x3, stride 2) and applies a residual unit; top-down, each
  level up-samples by bilinear interpolation *to the runtime size of the matching
  bottom-up map*, adds it (skip connection) and applies a residual unit; finally
  BN-ReLU-1x1 conv, BN-ReLU-1x1 conv back to the module's channels, and a sigmoid.

and returns ``(1 + M(x)) * T(x)`` (attention residual learning). Nothing depends on a
fixed input size: a level skips its max-pool when the map is already smaller than 4
pixels on a side, so a module built for 56x56 maps also runs on 2x2 maps (layer4 of
ResNet-50 at 64 px input) without collapsing them to nothing.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PreActBottleneck", "AttentionModule"]

_MIN_POOL_SIZE = 4  # maps smaller than this on a side are not down-sampled further


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck residual unit: BN-ReLU-conv1x1, BN-ReLU-conv3x3,
    BN-ReLU-conv1x1, plus the input. Keeps the channel count and the resolution.

    Args:
        channels: input and output channels C.
        reduction: the bottleneck width is C // reduction (at least 1).
        zero_init_last: start the last conv at zero so the unit begins as the identity.
    """

    def __init__(self, channels: int, reduction: int = 4, *, zero_init_last: bool = True) -> None:
        super().__init__()
        mid = max(1, channels // reduction)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, mid, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, kernel_size=3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, channels, kernel_size=1, bias=False)
        for conv in (self.conv1, self.conv2, self.conv3):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_last:
            nn.init.zeros_(self.conv3.weight)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return x + out


def _downsample(x: Tensor) -> Tensor:
    """Max-pool 3x3/2 unless the map is already too small to be worth halving."""
    if min(x.shape[-2:]) < _MIN_POOL_SIZE:
        return x
    return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


def _upsample_to(x: Tensor, ref: Tensor) -> Tensor:
    """Bilinear up-sampling of ``x`` to the spatial size of ``ref`` (its runtime shape)."""
    if x.shape[-2:] == ref.shape[-2:]:
        return x
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class AttentionModule(nn.Module):
    """RAN attention module: ``(1 + M(x)) * T(x)`` with a trunk and a soft mask branch.

    Args:
        channels: C, input and output channels (the module keeps shape (B, C, H, W)).
        mask_depth: number of bottom-up down-samplings in the mask (>= 1); choose it for
            the stage's resolution (RAN pools until about 7x7 at 224 px input).
        trunk_depth: pre-activation units in the trunk (>= 1).
        mask_reduction: the mask branch works at C // mask_reduction channels; the last
            1x1 conv returns to C, so M(x) has one weight per channel and position
            (RAN's "mixed attention").
        unit_reduction: bottleneck reduction of every residual unit.

    The soft mask M(x), shape (B, C, H, W), is the output of the ``gate`` submodule; use
    :func:`cervixlib.models.collect_attention` to read it after a forward pass.
    """

    def __init__(
        self,
        channels: int,
        mask_depth: int,
        *,
        trunk_depth: int = 1,
        mask_reduction: int = 4,
        unit_reduction: int = 4,
    ) -> None:
        super().__init__()
        if mask_depth < 1 or trunk_depth < 1:
            raise ValueError(f"AttentionModule needs mask_depth >= 1 and trunk_depth >= 1, "
                             f"got {mask_depth} and {trunk_depth}")
        width = max(1, channels // mask_reduction)
        self.mask_depth = mask_depth
        self.trunk = nn.Sequential(
            *(PreActBottleneck(channels, unit_reduction) for _ in range(trunk_depth)))
        self.mask_in = nn.Conv2d(channels, width, kernel_size=1, bias=False)
        self.down = nn.ModuleList(
            PreActBottleneck(width, unit_reduction) for _ in range(mask_depth))
        self.up = nn.ModuleList(
            PreActBottleneck(width, unit_reduction) for _ in range(mask_depth - 1))
        self.mask_out = nn.Sequential(
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, kernel_size=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, channels, kernel_size=1),
        )
        self.gate = nn.Sigmoid()
        for conv in (self.mask_in, self.mask_out[2]):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")

    def soft_mask(self, x: Tensor) -> Tensor:
        """M(x) in (0, 1), shape (B, C, H, W)."""
        h = self.mask_in(x)
        skips = []
        for unit in self.down:  # bottom-up
            skips.append(h)
            h = unit(_downsample(h))
        for unit, skip in zip(self.up, reversed(skips[1:])):  # top-down
            h = unit(_upsample_to(h, skip) + skip)
        h = _upsample_to(h, skips[0]) + skips[0]
        return self.gate(self.mask_out(h))

    def forward(self, x: Tensor) -> Tensor:
        return (1 + self.soft_mask(x)) * self.trunk(x)
