"""The surface every cervixlib model shares, and a helper to read attention maps.

Models for Wang et al. (2021), "Towards Interpretable Attention Networks for Cervical
Cancer Analysis", follow timm's interface: ``forward_features`` returns the last
feature map (B, C, h, w), ``forward_head`` pools it and applies the linear classifier,
``get_classifier``/``reset_classifier`` expose the head, and ``attribution_layer``
names a module (``dict(model.named_modules())[model.attribution_layer]``) whose output
is that final feature map, for layer-wise attribution (e.g. Grad-CAM).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cervixlib.layers import AttentionModule, ChannelAttention, RANAttentionModule

__all__ = ["CervixModel", "collect_attention"]


class CervixModel(nn.Module):
    """Base class: subclasses set the attributes below and implement forward_features.

    Attributes:
        model_name: the registry name.
        num_classes: outputs of the classifier (0 means no classifier: features only).
        num_features: channels C of the final feature map and inputs of the classifier.
        attribution_layer: dotted name of the module that outputs the final feature map.
        weights_source: path of the pretrained file loaded into the backbone, or None.
    """

    model_name: str
    num_classes: int
    num_features: int
    attribution_layer: str
    weights_source: str | None = None
    _head_name: str  # attribute holding the classifier ("fc" or "classifier")

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) images -> (B, num_features, h, w) feature map."""
        raise NotImplementedError

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Global average pool then classify: (B, C, h, w) -> (B, num_classes).

        With ``pre_logits=True`` return the pooled (B, C) features instead.
        """
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return x if pre_logits else self.get_classifier()(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The classifier head (an ``nn.Linear``, or ``nn.Identity`` if num_classes=0)."""
        return getattr(self, self._head_name)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head by a freshly initialised one with ``num_classes`` outputs."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        ref = next(self.parameters())  # the new head goes to the model's device and dtype
        head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        setattr(self, self._head_name, head.to(device=ref.device, dtype=ref.dtype))
        self.num_classes = num_classes

    def extra_repr(self) -> str:
        return f"model_name={self.model_name!r}, num_classes={self.num_classes}"


def collect_attention(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """Run ``model(x)`` without gradients and return its attention maps by module name.

    Returns:
        For each :class:`~cervixlib.layers.AttentionModule` or
        :class:`~cervixlib.layers.RANAttentionModule` (RAN, RAN-92), its soft mask M(x),
        shape (B, C, h, w), values in (0, 1); for each
        :class:`~cervixlib.layers.ChannelAttention` (RCAN), its channel weights, shape
        (B, C). Tensors are detached, on the model's device. The dict is empty for
        models without attention.

    The model's train/eval mode is left as it is; call ``model.eval()`` first for
    the maps a trained model produces at inference (BatchNorm running statistics).
    """
    maps: dict[str, Tensor] = {}
    handles = []

    def _keep(name: str, flatten: bool):
        def hook(_module: nn.Module, _args: tuple[Tensor, ...], out: Tensor) -> None:
            maps[name] = (out.flatten(1) if flatten else out).detach()
        return hook

    for name, module in model.named_modules():
        if isinstance(module, (AttentionModule, RANAttentionModule)):
            handles.append(module.gate.register_forward_hook(_keep(name, flatten=False)))
        elif isinstance(module, ChannelAttention):
            handles.append(module.gate.register_forward_hook(_keep(name, flatten=True)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return maps
