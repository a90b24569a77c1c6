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

:class:`RANAttentionModule` is the module as the RAN paper defines it (p, t, r) and as
the authors' released Attention-92 builds it, for :mod:`cervixlib.models.ran92`: full
width, p = 1 unit before and after, t = 2 trunk units, r = 1 unit per mask level, a
residual unit on every skip connection.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PreActBottleneck", "AttentionModule", "RANAttentionModule"]

_MIN_POOL_SIZE = 4  # maps smaller than this on a side are not down-sampled further


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck residual unit (He et al., "Identity Mappings in Deep
    Residual Networks", ECCV 2016): BN-ReLU-conv1x1, BN-ReLU-conv3x3 (with the stride),
    BN-ReLU-conv1x1, plus the input.

    Args:
        channels: input channels C.
        reduction: the bottleneck width is out_channels // reduction (at least 1).
        out_channels: output channels (default C). When they differ from C, or the
            stride is not 1, the shortcut is a 1x1 conv (with the stride) applied to the
            pre-activated input, as in pre-activation ResNets and RAN-92; otherwise the
            shortcut is the identity and the unit keeps shape.
        stride: stride of the 3x3 conv (2 halves the resolution).
        zero_init_last: start the last conv at zero so the unit begins as its shortcut.
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 4,
        *,
        out_channels: int | None = None,
        stride: int = 1,
        zero_init_last: bool = True,
    ) -> None:
        super().__init__()
        out_channels = channels if out_channels is None else out_channels
        mid = max(1, out_channels // reduction)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, mid, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_channels, kernel_size=1, bias=False)
        self.shortcut: nn.Module | None = None
        convs = [self.conv1, self.conv2, self.conv3]
        if out_channels != channels or stride != 1:
            self.shortcut = nn.Conv2d(channels, out_channels, kernel_size=1, stride=stride,
                                      bias=False)
            convs.append(self.shortcut)
        for conv in convs:
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_last:
            nn.init.zeros_(self.conv3.weight)

    def forward(self, x: Tensor) -> Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + (x if self.shortcut is None else self.shortcut(pre))


def _downsample(x: Tensor) -> Tensor:
    """Max-pool 3x3/2 unless the map is already too small to be worth halving."""
    if min(x.shape[-2:]) < _MIN_POOL_SIZE:
        return x
    return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


def _upsample_to(x: Tensor, ref: Tensor, align_corners: bool = False) -> Tensor:
    """Bilinear up-sampling of ``x`` to the spatial size of ``ref`` (its runtime shape)."""
    if x.shape[-2:] == ref.shape[-2:]:
        return x
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=align_corners)


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


class RANAttentionModule(nn.Module):
    """RAN attention module at full width, as in the paper and the released Attention-92.

    ``post((1 + M(x')) * T(x'))`` with ``x' = pre(x)``, where (Wang et al., CVPR 2017,
    Sec. 3 and Fig. 2; p, t, r are the paper's hyperparameters):

    - ``pre``/``post``: p pre-activation units before the split and after the product;
    - trunk T: t units;
    - soft mask M: bottom-up, ``mask_depth`` levels of max-pool 3x3/2 then r units
      (2r at the bottom); a residual unit on each level above the bottom is the skip
      connection; top-down, each level up-samples to the runtime size of the matching
      bottom-up map and adds that map and its skip unit's output, then r units; the
      last up-sampling (to the trunk's size) adds T(x'); then BN-ReLU-1x1 conv,
      BN-ReLU-1x1 conv (no biases), sigmoid. These additions follow the released code.

    Up-sampling is bilinear with ``align_corners=True`` (the released code's
    ``nn.UpsamplingBilinear2d``), but to the runtime shape instead of sizes fixed for
    224 px input, so any input size works; max-pooling always runs (a 1x1 map stays 1x1).

    Args:
        channels: C, input and output channels (all units keep C; bottleneck C/4).
        mask_depth: down-samplings in the mask (Attention-92: 3, 2, 1 at stages 1-3,
            which pool 56, 28, 14 px maps down to 7 px at 224 px input).
        p, t, r: units as above (paper and Attention-92: 1, 2, 1).
        zero_init_last: passed to every unit (:class:`PreActBottleneck`): each starts as
            its shortcut, so a fresh module computes ``(1 + M) * x`` and a deep stack of
            them keeps its scale (the released code uses PyTorch's default init).

    The soft mask M, shape (B, C, H, W), is the output of the ``gate`` submodule; use
    :func:`cervixlib.models.collect_attention` to read it.
    """

    def __init__(
        self,
        channels: int,
        mask_depth: int,
        *,
        p: int = 1,
        t: int = 2,
        r: int = 1,
        zero_init_last: bool = True,
    ) -> None:
        super().__init__()
        if mask_depth < 1 or min(p, t, r) < 1:
            raise ValueError(f"RANAttentionModule needs mask_depth, p, t, r >= 1, "
                             f"got {mask_depth}, {p}, {t}, {r}")

        def units(n: int) -> nn.Sequential:
            return nn.Sequential(*(PreActBottleneck(channels, zero_init_last=zero_init_last)
                                   for _ in range(n)))

        self.pre = units(p)
        self.trunk = units(t)
        self.down = nn.ModuleList(units(2 * r if i == mask_depth - 1 else r)
                                  for i in range(mask_depth))
        self.skip = nn.ModuleList(units(1) for _ in range(mask_depth - 1))
        self.up = nn.ModuleList(units(r) for _ in range(mask_depth - 1))
        self.mask_out = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size=1, bias=False),
        )
        self.gate = nn.Sigmoid()
        self.post = units(p)
        for conv in (self.mask_out[2], self.mask_out[5]):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")

    def soft_mask(self, x: Tensor, trunk: Tensor) -> Tensor:
        """M in (0, 1), shape (B, C, H, W), from the pre-processed input and T(x)."""
        h, levels = x, []
        for level in self.down:  # bottom-up
            h = level(F.max_pool2d(h, kernel_size=3, stride=2, padding=1))
            levels.append(h)
        for i in reversed(range(len(self.up))):  # top-down, with skip connections
            ref = levels[i]
            h = self.up[i](_upsample_to(h, ref, align_corners=True) + ref + self.skip[i](ref))
        h = _upsample_to(h, trunk, align_corners=True) + trunk
        return self.gate(self.mask_out(h))

    def forward(self, x: Tensor) -> Tensor:
        x = self.pre(x)
        trunk = self.trunk(x)
        return self.post((1 + self.soft_mask(x, trunk)) * trunk)
