"""RCAN-DenseNet-121: DenseNet-121 with residual channel attention after each dense block.

Residual groups of residual channel attention blocks from Zhang et al., "Image
Super-Resolution Using Very Deep Residual Channel Attention Networks" (ECCV 2018),
inserted after each dense block of torchvision's DenseNet-121 (the transition layers
follow), as in Wang et al. (2021), "Towards Interpretable Attention Networks for
Cervical Cancer Analysis". See :class:`cervixlib.layers.ResidualGroup` and
docs/models.md for the chosen groups, blocks and widths and their measured cost.

``rcan_densenet121_released`` is the design of the authors' released code instead: one
RCAN channel-attention layer (32 -> 2 -> 32) on the 32 channels that the last dense
layer of the last dense block adds, and dropout 0.5 before the linear head.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from cervixlib.layers import ChannelAttention, ResidualGroup
from cervixlib.models._registry import register_model
from cervixlib.models.densenet import DenseNet, _create_densenet

__all__ = [
    "rcan_densenet121",
    "rcan_densenet121_released",
    "RCAN_GROUPS",
    "RCAN_BLOCKS",
    "RCAN_WIDTH_DIVISORS",
    "RELEASED_ATTN_LAYER",
]

# Per insertion point (after dense blocks 1..4, with 256, 512, 1024, 1024 channels at
# 1/4, 1/8, 1/16, 1/32 of the input size): residual groups, RCABs per group, and the
# divisor of the channels that gives the groups' inner width. docs/models.md has the
# measured cost of these and of the alternatives.
RCAN_GROUPS = (1, 1, 1, 1)
RCAN_BLOCKS = (1, 1, 1, 1)
RCAN_WIDTH_DIVISORS = (8, 8, 8, 8)

# The released code wraps this torchvision module (inside ``features``) with its channel
# attention; it outputs the growth rate, 32 new channels.
RELEASED_ATTN_LAYER = "denseblock4.denselayer16"


def _per_point(name: str, value: int | Sequence[int]) -> tuple[int, ...]:
    values = (value,) * 4 if isinstance(value, int) else tuple(value)
    if len(values) != 4 or min(values) < 1:
        raise ValueError(f"{name} needs 4 positive values (dense blocks 1..4), got {values}")
    return values


@register_model
def rcan_densenet121(
    *,
    num_classes: int = 5,
    weights: str | Path | None = None,
    num_groups: int | Sequence[int] = RCAN_GROUPS,
    num_blocks: int | Sequence[int] = RCAN_BLOCKS,
    width_divisors: int | Sequence[int] = RCAN_WIDTH_DIVISORS,
    reduction: int = 16,
) -> DenseNet:
    """DenseNet-121 with residual groups after each dense block (``attn1``..``attn4``).

    Args:
        num_classes: classifier outputs.
        weights: backbone weights (None, "imagenet" or a path); the attention layers
            always start fresh.
        num_groups: residual groups per insertion point.
        num_blocks: RCABs per group, per insertion point.
        width_divisors: groups work at channels // divisor (1 = RCAN's full width).
        reduction: channel-attention reduction (RCAN: 16).

    ``attribution_layer = "final_act"``, the last feature map after attention.
    """
    groups = _per_point("num_groups", num_groups)
    blocks = _per_point("num_blocks", num_blocks)
    divisors = _per_point("width_divisors", width_divisors)

    def make(point: int, channels: int) -> nn.Module:
        width = channels // divisors[point]
        return nn.Sequential(*(
            ResidualGroup(channels, blocks[point], width=width, reduction=reduction)
            for _ in range(groups[point])))

    return _create_densenet("rcan_densenet121", num_classes=num_classes, weights=weights,
                            block_attn=make)


@register_model
def rcan_densenet121_released(
    *,
    num_classes: int = 5,
    weights: str | Path | None = None,
    reduction: int = 16,
    drop_rate: float = 0.5,
) -> DenseNet:
    """DenseNet-121 with the released code's single channel attention (``attn1``).

    RCAN's channel attention (pool, 1x1 conv 32 -> 32 // ``reduction``, ReLU, 1x1 conv
    back, sigmoid, rescale) on the output of ``features.denseblock4.denselayer16``, the
    last 32 of the 1024 channels that dense block 4 concatenates; ``drop_rate`` dropout
    before the classifier. ``weights="imagenet"`` loads torchvision's DenseNet-121 into
    the backbone, as the released code did; ``attribution_layer = "final_act"``.
    """

    def make(layer: nn.Module) -> ChannelAttention:  # its conv2 gives the growth rate
        return ChannelAttention(layer.get_submodule("conv2").out_channels, reduction)

    return _create_densenet("rcan_densenet121_released", num_classes=num_classes,
                            weights=weights, layer_attn={RELEASED_ATTN_LAYER: make},
                            drop_rate=drop_rate)
