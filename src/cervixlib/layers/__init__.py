"""Attention blocks that :mod:`cervixlib.models` plugs into torchvision backbones.

- :mod:`~cervixlib.layers.attention_module`: the Residual Attention Network module
  (Wang et al., CVPR 2017), used after each stage of ResNet-50 (``AttentionModule``),
  and at full width as in RAN-92 (``RANAttentionModule``).
- :mod:`~cervixlib.layers.channel_attention`: RCAN's residual channel attention
  (Zhang et al., ECCV 2018), used after each dense block of DenseNet-121.

Both as in Wang et al. (2021), "Towards Interpretable Attention Networks for Cervical
Cancer Analysis". The blocks keep the shape of their input, so they can be inserted
anywhere in a backbone by composition.
"""

from __future__ import annotations

from cervixlib.layers.attention_module import (
    AttentionModule,
    PreActBottleneck,
    RANAttentionModule,
)
from cervixlib.layers.channel_attention import RCAB, ChannelAttention, ResidualGroup

__all__ = [
    "AttentionModule",
    "PreActBottleneck",
    "RANAttentionModule",
    "ChannelAttention",
    "RCAB",
    "ResidualGroup",
]
