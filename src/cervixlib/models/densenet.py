"""DenseNet-121 (Huang et al., CVPR 2017) from torchvision, with optional attention
after each dense block.

One of the four architectures of Wang et al. (2021), "Towards Interpretable Attention
Networks for Cervical Cancer Analysis". :class:`DenseNet` adopts torchvision's
``features`` and ``classifier`` (same names, so the plain model's state_dict is
torchvision's) and can run an attention module right after each ``denseblockN``,
before the transition layer that follows it (after block 4: before ``norm5``); that is
how :mod:`cervixlib.models.rcan` builds RCAN-DenseNet-121. It can also rescale the output
of any one layer inside ``features`` (the released RCAN's attention on the 32 new
channels of ``denseblock4.denselayer16``), without renaming torchvision's modules, so
ImageNet files still load.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import densenet as tv_densenet

from cervixlib.models._base import CervixModel
from cervixlib.models._registry import register_model
from cervixlib.models.weights import load_backbone_weights

__all__ = ["DenseNet", "densenet121", "block_channels"]


def _block_names(backbone: tv_densenet.DenseNet) -> list[str]:
    return [n for n, _ in backbone.features.named_children() if n.startswith("denseblock")]


def block_channels(backbone: tv_densenet.DenseNet) -> list[int]:
    """Output channels of each dense block (256, 512, 1024, 1024 for DenseNet-121):
    the input width of the module that follows it (transition or final norm)."""
    names = [n for n, _ in backbone.features.named_children()]
    out = []
    for block in _block_names(backbone):
        nxt = backbone.features.get_submodule(names[names.index(block) + 1])
        out.append(getattr(nxt, "norm", nxt).num_features)  # transition.norm or norm5
    return out


class DenseNet(CervixModel):
    """A torchvision DenseNet with the common cervixlib surface.

    Args:
        backbone: a torchvision DenseNet; ``features`` and ``classifier`` are adopted.
        model_name: registry name.
        block_attn: optional modules, one per dense block, run right after it
            (registered as ``attn1``, ``attn2``, ...); each must keep its input's shape.
        layer_attn: optional modules applied to the output of a module inside
            ``features``, by dotted name (e.g. ``"denseblock4.denselayer16"``); registered
            as the next ``attnN`` and run by a forward hook, so torchvision's module names
            and state_dict keys stay as they are. Each must keep its input's shape.
        drop_rate: dropout before the classifier (0: none).

    The final ReLU (functional in torchvision) is the module ``final_act``, which is the
    ``attribution_layer``: its output is the last feature map, after any attention.
    """

    _head_name = "classifier"

    def __init__(
        self,
        backbone: tv_densenet.DenseNet,
        *,
        model_name: str,
        block_attn: Sequence[nn.Module] | None = None,
        layer_attn: Mapping[str, nn.Module] | None = None,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.model_name = model_name
        self.features = backbone.features
        self.final_act = nn.ReLU()
        self.head_drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.classifier = backbone.classifier
        self.num_features = self.classifier.in_features
        self.num_classes = self.classifier.out_features
        self.attribution_layer = "final_act"
        blocks = _block_names(backbone)
        self._attn_after: dict[str, str] = {}
        if block_attn is not None:
            if len(block_attn) != len(blocks):
                raise ValueError(f"block_attn needs {len(blocks)} modules, got {len(block_attn)}")
            for i, (block, module) in enumerate(zip(blocks, block_attn), start=1):
                self._attn_after[block] = f"attn{i}"
                self.add_module(f"attn{i}", module)
        for i, (target, module) in enumerate((layer_attn or {}).items(),
                                             start=len(self._attn_after) + 1):
            self.add_module(f"attn{i}", module)
            self.features.get_submodule(target).register_forward_hook(
                functools.partial(self._rescale_output, f"attn{i}"))

    def _rescale_output(self, attn: str, _module: nn.Module, _args: tuple,
                        out: Tensor) -> Tensor:
        """Forward hook: a layer's output replaced by ``attn(output)``."""
        return getattr(self, attn)(out)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Global average pool, dropout (``drop_rate``), classifier; see CervixModel."""
        x = self.head_drop(F.adaptive_avg_pool2d(x, 1).flatten(1))
        return x if pre_logits else self.classifier(x)

    def forward_features(self, x: Tensor) -> Tensor:
        for name, module in self.features.named_children():
            x = module(x)
            if name in self._attn_after:
                x = getattr(self, self._attn_after[name])(x)
        return self.final_act(x)


def _create_densenet(
    model_name: str,
    *,
    num_classes: int,
    weights: str | Path | None,
    block_attn: Callable[[int, int], nn.Module] | None = None,
    layer_attn: Mapping[str, Callable[[nn.Module], nn.Module]] | None = None,
    drop_rate: float = 0.0,
) -> DenseNet:
    """Build torchvision's DenseNet-121, wrap it, then load backbone weights.

    ``block_attn(block_index, channels)`` makes the module for dense block 0..3;
    ``layer_attn[name](layer)`` the module for ``features.<name>``, given that layer.
    """
    backbone = tv_densenet.densenet121(weights=None, num_classes=max(num_classes, 1))
    attn = None
    if block_attn is not None:
        attn = [block_attn(i, c) for i, c in enumerate(block_channels(backbone))]
    after_layer = {name: make(backbone.features.get_submodule(name))
                   for name, make in (layer_attn or {}).items()}
    model = DenseNet(backbone, model_name=model_name, block_attn=attn,
                     layer_attn=after_layer, drop_rate=drop_rate)
    if num_classes == 0:
        model.reset_classifier(0)
    load_backbone_weights(model, "densenet121", weights)
    return model


@register_model
def densenet121(*, num_classes: int = 5, weights: str | Path | None = None) -> DenseNet:
    """DenseNet-121 with a new ``num_classes`` head; ``attribution_layer = "final_act"``."""
    return _create_densenet("densenet121", num_classes=num_classes, weights=weights)
