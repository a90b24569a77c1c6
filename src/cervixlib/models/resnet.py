"""ResNet-50 (He et al., CVPR 2016) from torchvision, with optional attention per stage.

One of the four architectures of Wang et al. (2021), "Towards Interpretable Attention
Networks for Cervical Cancer Analysis". :class:`ResNet` adopts the modules of a
torchvision ResNet (same names, so the state_dict of the plain model is torchvision's)
and can run an attention module after each of ``layer1`` to ``layer4``; that is how
:mod:`cervixlib.models.ran` builds RAN-ResNet-50. The backbone code is torchvision's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from torch import Tensor, nn
from torchvision.models import resnet as tv_resnet

from cervixlib.models._base import CervixModel
from cervixlib.models._registry import register_model
from cervixlib.models.weights import load_backbone_weights

__all__ = ["ResNet", "resnet50", "stage_channels"]

_STAGES = ("layer1", "layer2", "layer3", "layer4")


def stage_channels(backbone: tv_resnet.ResNet) -> list[int]:
    """Output channels of layer1..layer4 (256, 512, 1024, 2048 for ResNet-50)."""
    out = []
    for name in _STAGES:
        block = getattr(backbone, name)[-1]
        out.append(block.bn3.num_features if hasattr(block, "bn3") else block.bn2.num_features)
    return out


class ResNet(CervixModel):
    """A torchvision ResNet with the common cervixlib surface.

    Args:
        backbone: a torchvision ResNet; its modules are adopted, not copied.
        model_name: registry name.
        stage_attn: optional four modules, run after layer1..layer4 (registered as
            ``attn1``..``attn4``); each must keep its input's shape.
    """

    _head_name = "fc"

    def __init__(
        self,
        backbone: tv_resnet.ResNet,
        *,
        model_name: str,
        stage_attn: Sequence[nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.model_name = model_name
        self.conv1, self.bn1 = backbone.conv1, backbone.bn1
        self.relu, self.maxpool = backbone.relu, backbone.maxpool
        self.layer1, self.layer2 = backbone.layer1, backbone.layer2
        self.layer3, self.layer4 = backbone.layer3, backbone.layer4
        self.fc = backbone.fc
        self.num_features = self.fc.in_features
        self.num_classes = self.fc.out_features
        self._attn_names: list[str | None] = [None] * len(_STAGES)
        if stage_attn is not None:
            if len(stage_attn) != len(_STAGES):
                raise ValueError(f"stage_attn needs {len(_STAGES)} modules, got {len(stage_attn)}")
            for i, module in enumerate(stage_attn):
                self._attn_names[i] = f"attn{i + 1}"
                self.add_module(f"attn{i + 1}", module)
        self.attribution_layer = self._attn_names[-1] or _STAGES[-1]

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage, attn in zip(_STAGES, self._attn_names):
            x = getattr(self, stage)(x)
            if attn is not None:
                x = getattr(self, attn)(x)
        return x


def _create_resnet(
    model_name: str,
    *,
    num_classes: int,
    weights: str | Path | None,
    stage_attn: Callable[[int, int], nn.Module] | None = None,
) -> ResNet:
    """Build torchvision's ResNet-50, wrap it, then load backbone weights.

    ``stage_attn(stage_index, channels)`` makes the module for stage 0..3.
    """
    backbone = tv_resnet.resnet50(weights=None, num_classes=max(num_classes, 1))
    attn = None
    if stage_attn is not None:
        attn = [stage_attn(i, c) for i, c in enumerate(stage_channels(backbone))]
    model = ResNet(backbone, model_name=model_name, stage_attn=attn)
    if num_classes == 0:
        model.reset_classifier(0)
    load_backbone_weights(model, "resnet50", weights)
    return model


@register_model
def resnet50(*, num_classes: int = 5, weights: str | Path | None = None) -> ResNet:
    """ResNet-50 with a new ``num_classes`` head; ``attribution_layer = "layer4"``."""
    return _create_resnet("resnet50", num_classes=num_classes, weights=weights)
