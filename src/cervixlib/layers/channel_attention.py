"""Residual channel attention from RCAN, as plug-in layers.

Zhang, Li, Li, Wang, Zhong and Fu, "Image Super-Resolution Using Very Deep Residual
Channel Attention Networks", ECCV 2018. Wang et al. (2021), "Towards Interpretable
Attention Networks for Cervical Cancer Analysis", add this attention to DenseNet-121;
:mod:`cervixlib.models.rcan` inserts one :class:`ResidualGroup` after each dense block.

The three pieces, smallest first:

- :class:`ChannelAttention`: global average pool, 1x1 conv reducing the channels by
  ``reduction`` (16 in RCAN), ReLU, 1x1 conv expanding back, sigmoid; the input is
  rescaled channel-wise by the resulting weights.
- :class:`RCAB` (residual channel attention block): conv3x3, ReLU, conv3x3, channel
  attention, plus the block's input.
- :class:`ResidualGroup`: ``num_blocks`` RCABs and a conv3x3, plus a long skip from the
  group's input (RCAN's "residual in residual"). Optionally the group works at a
  reduced ``width`` between a 1x1 projection in and out, which is how cervixlib keeps
  3x3 convs affordable on DenseNet's wide, high-resolution feature maps.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["ChannelAttention", "RCAB", "ResidualGroup"]


class ChannelAttention(nn.Module):
    """Squeeze a (B, C, H, W) map to per-channel weights in (0, 1) and rescale by them.

    Args:
        channels: C, the number of input (and output) channels.
        reduction: the bottleneck divides C by this (RCAN: 16); at least one hidden unit.

    The weights are the output of the ``gate`` submodule (shape (B, C, 1, 1)); hook it,
    or use :func:`cervixlib.models.collect_attention`, to inspect them.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, hidden, kernel_size=1)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(hidden, channels, kernel_size=1)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        weights = self.gate(self.expand(self.act(self.reduce(self.pool(x)))))
        return x * weights


class RCAB(nn.Module):
    """Residual channel attention block: ``x + CA(conv3x3(relu(conv3x3(x))))``.

    Args:
        channels: input and output channels (the convs keep the width, as in RCAN).
        reduction: channel-attention reduction (RCAN: 16).
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.ca = ChannelAttention(channels, reduction)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.ca(self.conv2(self.act(self.conv1(x))))


class ResidualGroup(nn.Module):
    """``num_blocks`` RCABs and a conv3x3 with a long skip: ``x + body(x)``.

    Args:
        channels: input and output channels C of the group.
        num_blocks: number of :class:`RCAB` in the body (at least 1).
        width: channels inside the body. ``None`` (default) keeps C, exactly RCAN's
            group. A smaller width wraps the body in a 1x1 conv C->width and a 1x1 conv
            width->C, so the 3x3 convs cost (width/C)^2 of the full-width ones.
        reduction: channel-attention reduction inside every RCAB (RCAN: 16).
        zero_init_last: start the body's last conv at zero, so the group begins as the
            identity and leaves (pretrained) backbone features untouched until trained.
    """

    def __init__(
        self,
        channels: int,
        num_blocks: int,
        *,
        width: int | None = None,
        reduction: int = 16,
        zero_init_last: bool = True,
    ) -> None:
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"ResidualGroup needs num_blocks >= 1, got {num_blocks}")
        width = channels if width is None else width
        if not 1 <= width <= channels:
            raise ValueError(f"ResidualGroup width must be in [1, {channels}], got {width}")
        projected = width != channels
        self.reduce = nn.Conv2d(channels, width, kernel_size=1) if projected else nn.Identity()
        self.blocks = nn.Sequential(*(RCAB(width, reduction) for _ in range(num_blocks)))
        self.conv = nn.Conv2d(width, width, kernel_size=3, padding=1)
        self.expand = nn.Conv2d(width, channels, kernel_size=1) if projected else nn.Identity()
        if zero_init_last:
            last = self.expand if projected else self.conv
            assert isinstance(last, nn.Conv2d)
            nn.init.zeros_(last.weight)
            if last.bias is not None:
                nn.init.zeros_(last.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.expand(self.conv(self.blocks(self.reduce(x))))

