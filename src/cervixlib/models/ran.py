"""RAN-ResNet-50: ResNet-50 with a Residual Attention Network module after each stage.

Attention modules of Wang et al., "Residual Attention Network for Image
Classification" (CVPR 2017), inserted after layer1..layer4 of torchvision's ResNet-50,
as in Wang et al. (2021), "Towards Interpretable Attention Networks for Cervical Cancer
Analysis". See :class:`cervixlib.layers.AttentionModule` and docs/models.md for the
widths, the mask depths and their cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cervixlib.layers import AttentionModule
from cervixlib.models._registry import register_model
from cervixlib.models.resnet import ResNet, _create_resnet

__all__ = ["ran_resnet50", "RAN_MASK_DEPTHS"]

# Down-samplings in the soft mask of the modules after layer1..layer4. As in RAN, the
# hourglass pools down to about 7x7 at 224 px input (56 -> 7, 28 -> 7, 14 -> 7); layer4's
# 7x7 map still gets one level (-> 4x4) so that its mask sees context. Smaller inputs
# are handled at run time (no pooling below 4x4).
RAN_MASK_DEPTHS = (3, 2, 1, 1)


@register_model
def ran_resnet50(
    *,
    num_classes: int = 5,
    weights: str | Path | None = None,
    mask_depths: Sequence[int] = RAN_MASK_DEPTHS,
    trunk_depth: int = 1,
    mask_reduction: int = 4,
) -> ResNet:
    """ResNet-50 with an :class:`AttentionModule` after each stage (``attn1``..``attn4``).

    Args:
        num_classes: classifier outputs.
        weights: backbone weights (None, "imagenet" or a path); the attention modules
            always start fresh.
        mask_depths: soft-mask down-samplings per stage.
        trunk_depth: pre-activation units in each module's trunk.
        mask_reduction: the soft mask works at C // mask_reduction channels.

    ``attribution_layer = "attn4"``, the attention-weighted last feature map.
    """
    if len(mask_depths) != 4:
        raise ValueError(f"mask_depths needs 4 values (layer1..layer4), got {tuple(mask_depths)}")

    def make(stage: int, channels: int) -> AttentionModule:
        return AttentionModule(channels, mask_depths[stage], trunk_depth=trunk_depth,
                               mask_reduction=mask_reduction)

    return _create_resnet("ran_resnet50", num_classes=num_classes, weights=weights,
                          stage_attn=make)
