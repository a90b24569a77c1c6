"""Attention layers (RCAN channel attention, RAN attention module): shapes at any
size, the published formulas recomputed by hand, parameter counts from the layer
formulas, and identity-at-init where the blocks are zero-initialised."""

from __future__ import annotations

import cervixlib  # noqa: F401  (before torchvision)
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cervixlib.layers import (
    RCAB,
    AttentionModule,
    ChannelAttention,
    PreActBottleneck,
    RANAttentionModule,
    ResidualGroup,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _randomise(module: nn.Module, seed: int = 0) -> None:
    """Give every parameter random values (undoes zero-init) for non-trivial checks."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=gen))


# --- RCAN ---------------------------------------------------------------------------

def test_channel_attention_matches_formula():
    torch.manual_seed(0)
    ca = ChannelAttention(32, reduction=16)
    x = torch.randn(3, 32, 5, 7)
    # GAP -> W1 (2x32) + b1 -> ReLU -> W2 (32x2) + b2 -> sigmoid -> rescale, by hand.
    pooled = x.mean(dim=(2, 3))
    hidden = torch.relu(pooled @ ca.reduce.weight.view(2, 32).T + ca.reduce.bias)
    weights = torch.sigmoid(hidden @ ca.expand.weight.view(32, 2).T + ca.expand.bias)
    torch.testing.assert_close(ca(x), x * weights[:, :, None, None])
    assert n_params(ca) == 32 * 2 + 2 + 2 * 32 + 32


def test_channel_attention_keeps_one_hidden_unit_for_few_channels():
    ca = ChannelAttention(8, reduction=16)
    assert ca.reduce.out_channels == 1
    assert ca(torch.randn(2, 8, 3, 3)).shape == (2, 8, 3, 3)


def test_rcab_matches_formula_and_count():
    torch.manual_seed(0)
    block = RCAB(16, reduction=16)
    x = torch.randn(2, 16, 6, 6)
    body = block.conv2(F.relu(block.conv1(x)))
    torch.testing.assert_close(block(x), x + block.ca(body))
    assert n_params(block) == 2 * (9 * 16 * 16 + 16) + (16 * 1 + 1 + 1 * 16 + 16)


@pytest.mark.parametrize("width", [None, 8])
def test_residual_group_starts_as_identity_and_learns(width):
    torch.manual_seed(0)
    group = ResidualGroup(32, 2, width=width)
    x = torch.randn(2, 32, 9, 7)
    assert torch.equal(group(x), x)  # zero-initialised last conv: long skip only
    _randomise(group)
    y = group(x)
    assert y.shape == x.shape and not torch.allclose(y, x)
    (y * torch.randn_like(y)).sum().backward()
    grads = [p.grad for p in group.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    first = group.blocks[0].conv1 if width is None else group.reduce
    assert first.weight.grad.abs().sum() > 0  # the gradient crosses the whole body


def test_residual_group_parameter_count():
    def ca(w):
        h = max(1, w // 16)
        return w * h + h + h * w + w

    def rcab(w):
        return 2 * (9 * w * w + w) + ca(w)

    full = ResidualGroup(64, 3)  # RCAN's group: blocks + conv3x3, no projections
    assert n_params(full) == 3 * rcab(64) + 9 * 64 * 64 + 64
    assert isinstance(full.reduce, nn.Identity) and isinstance(full.expand, nn.Identity)
    narrow = ResidualGroup(256, 1, width=32)  # 1x1 in, RCAB, conv3x3, 1x1 out
    assert n_params(narrow) == (256 * 32 + 32) + rcab(32) + (9 * 32 * 32 + 32) + (32 * 256 + 256)


def test_residual_group_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_blocks"):
        ResidualGroup(16, 0)
    with pytest.raises(ValueError, match="width"):
        ResidualGroup(16, 1, width=32)


# --- RAN ----------------------------------------------------------------------------

def test_preact_bottleneck_identity_at_init_and_count():
    unit = PreActBottleneck(64, reduction=4)
    x = torch.randn(2, 64, 5, 5)
    assert torch.equal(unit(x), x)
    m = 16
    assert n_params(unit) == 64 * m + 9 * m * m + m * 64 + 2 * 64 + 4 * m


def _mask_of(module: AttentionModule, x: torch.Tensor) -> torch.Tensor:
    seen = {}
    handle = module.gate.register_forward_hook(lambda _m, _i, out: seen.update(mask=out))
    try:
        out = module(x)
    finally:
        handle.remove()
    return out, seen["mask"]


@pytest.mark.parametrize("shape,depth", [((56, 56), 3), ((7, 5), 3), ((2, 2), 1),
                                         ((7, 7), 1), ((1, 1), 2), ((13, 30), 2)])
def test_attention_module_any_size_and_residual_attention(shape, depth):
    torch.manual_seed(0)
    module = AttentionModule(32, depth).eval()
    x = torch.randn(2, 32, *shape)
    with torch.no_grad():
        out, mask = _mask_of(module, x)
    assert out.shape == x.shape and mask.shape == x.shape
    assert torch.isfinite(out).all() and (mask >= 0).all() and (mask <= 1).all()
    # trunk starts as the identity (zero-initialised last conv): out = (1 + M(x)) * x
    torch.testing.assert_close(out, (1 + mask) * x)
    _randomise(module)
    with torch.no_grad():
        out, mask = _mask_of(module, x)
        torch.testing.assert_close(out, (1 + mask) * module.trunk(x))


def test_attention_module_mask_downsamples_to_fit_the_map():
    module = AttentionModule(16, 3)
    sizes = []
    for unit in module.down:
        unit.register_forward_pre_hook(lambda _m, args: sizes.append(tuple(args[0].shape[-2:])))
    module(torch.randn(2, 16, 56, 56))
    assert sizes == [(28, 28), (14, 14), (7, 7)]  # RAN pools down to 7x7 at 224 px input
    sizes.clear()
    module(torch.randn(2, 16, 9, 6))
    assert sizes == [(5, 3), (5, 3), (5, 3)]  # never below 4 px: one pool, then none
    sizes.clear()
    module(torch.randn(2, 16, 2, 2))
    assert sizes == [(2, 2)] * 3  # layer4 at 64 px input: nothing to pool


def test_attention_module_gradient_reaches_input():
    torch.manual_seed(0)
    module = AttentionModule(16, 2)
    _randomise(module)
    x = torch.randn(2, 16, 12, 12, requires_grad=True)
    module(x).square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in module.parameters())


def test_attention_module_parameter_count():
    def unit(c):
        m = c // 4
        return c * m + 9 * m * m + m * c + 2 * c + 4 * m

    c, w, depth = 128, 32, 2
    module = AttentionModule(c, depth, trunk_depth=2, mask_reduction=4)
    mask_head = 2 * w + w * w + 2 * w + w * c + c
    assert n_params(module) == 2 * unit(c) + c * w + (2 * depth - 1) * unit(w) + mask_head


def test_attention_module_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mask_depth"):
        AttentionModule(16, 0)


# --- RAN-92's unit and module (the released design) ----------------------------------

@pytest.mark.parametrize("shape", [(8, 8), (7, 5)])
def test_preact_bottleneck_projection_matches_formula(shape):
    """A unit that changes width and stride: the 1x1 shortcut (with the stride) takes the
    pre-activated input, as in pre-activation ResNets and the released RAN-92."""
    torch.manual_seed(0)
    unit = PreActBottleneck(16, out_channels=32, stride=2)
    _randomise(unit)
    unit.eval()
    x = torch.randn(2, 16, *shape)
    pre = F.relu(unit.bn1(x))
    body = unit.conv1(pre)
    body = unit.conv2(F.relu(unit.bn2(body)))
    body = unit.conv3(F.relu(unit.bn3(body)))
    with torch.no_grad():
        out = unit(x)
        torch.testing.assert_close(out, body + unit.shortcut(pre))
    assert out.shape == (2, 32, (shape[0] + 1) // 2, (shape[1] + 1) // 2)
    m = 32 // 4  # bottleneck width from the output channels
    assert n_params(unit) == 2 * 16 + 16 * m + 2 * m + 9 * m * m + 2 * m + m * 32 + 16 * 32
    assert PreActBottleneck(16).shortcut is None


def _ran92_reference(mod: RANAttentionModule, x: torch.Tensor) -> torch.Tensor:
    """The released AttentionModule_stage2 (mask depth 2), written out step by step."""
    def up(h, ref):
        return F.interpolate(h, size=ref.shape[-2:], mode="bilinear", align_corners=True)

    def pool(h):
        return F.max_pool2d(h, 3, 2, 1)

    x = mod.pre(x)
    trunk = mod.trunk(x)
    softmax1 = mod.down[0](pool(x))
    skip1 = mod.skip[0](softmax1)
    softmax2 = mod.down[1](pool(softmax1))  # two units at the bottom
    out = up(softmax2, softmax1) + softmax1 + skip1
    softmax3 = mod.up[0](out)
    mask = torch.sigmoid(mod.mask_out(up(softmax3, trunk) + trunk))
    return mod.post((1 + mask) * trunk)


@pytest.mark.parametrize("shape", [(28, 28), (9, 14), (2, 2), (1, 1)])
def test_ran92_attention_module_matches_released_structure(shape):
    torch.manual_seed(0)
    module = RANAttentionModule(16, 2)
    _randomise(module)
    module.eval()
    x = torch.randn(2, 16, *shape)
    with torch.no_grad():
        out, mask = _mask_of(module, x)
        torch.testing.assert_close(out, _ran92_reference(module, x))
    assert out.shape == x.shape and mask.shape == x.shape
    assert ((mask >= 0) & (mask <= 1)).all()
    assert [len(level) for level in module.down] == [1, 2]
    assert (len(module.skip), len(module.up), len(module.pre), len(module.trunk),
            len(module.post)) == (1, 1, 1, 2, 1)


def test_ran92_attention_module_count_and_gradient():
    def unit(c):
        m = c // 4
        return c * m + 9 * m * m + m * c + 2 * c + 4 * m

    c = 32
    for depth, units in ((1, 6), (2, 9), (3, 12)):  # as the released stage3, 2, 1 modules
        assert n_params(RANAttentionModule(c, depth)) == units * unit(c) + 4 * c + 2 * c * c
    module = RANAttentionModule(c, 3)
    x = torch.randn(2, c, 14, 10, requires_grad=True)
    module(x).square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in module.parameters())
    with pytest.raises(ValueError, match="mask_depth"):
        RANAttentionModule(16, 0)
