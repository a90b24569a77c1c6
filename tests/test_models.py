"""The model registry: the four architectures and the two released designs at any input
size from 64 px, gradients to the input (Integrated Gradients needs them), checkpoints,
ImageNet weights from the hub cache (never downloaded here), and parameter counts
against independent references (torchvision, layer formulas)."""

from __future__ import annotations

import functools
from pathlib import Path
import urllib.error

import cervixlib  # noqa: F401  (before torchvision)
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from cervixlib.layers import PreActBottleneck
from cervixlib.models import (
    CheckpointError,
    WeightsNotFoundError,
    collect_attention,
    create_model,
    list_models,
    load_checkpoint,
)

NAMES = ["densenet121", "ran92", "ran_resnet50", "rcan_densenet121",
         "rcan_densenet121_released", "resnet50"]
BACKBONE = {"resnet50": "resnet50", "densenet121": "densenet121",
            "ran_resnet50": "resnet50", "rcan_densenet121": "densenet121",
            "rcan_densenet121_released": "densenet121"}  # ran92 has no pretrained backbone
# Independent references: torchvision's builders with a 5-class head ...
RESNET50_5 = 23_518_277
DENSENET121_5 = 6_958_981
# ... and the additions stated in docs/models.md, recomputed below from layer formulas.
RAN_ADDED = 9_497_920
RCAN_ADDED = 1_638_518

pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@functools.cache
def _shared(name: str) -> nn.Module:
    """One eval-mode model per name for the read-only tests (built once)."""
    torch.manual_seed(0)
    return create_model(name).eval()


def test_registry_names_and_unknown_name():
    assert list_models() == NAMES
    with pytest.raises(ValueError, match="unknown model 'vgg16'.*resnet50"):
        create_model("vgg16")


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("size", [(64, 64), (128, 128), (224, 224), (96, 64)])
def test_output_shape_at_any_size(name, size):
    model = _shared(name)
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 5) and not torch.isnan(out).any()


@pytest.mark.parametrize("name", list_models())
def test_backward_reaches_input_and_every_parameter(name):
    torch.manual_seed(0)
    model = create_model(name).train()
    X = torch.randn(2, 3, 64, 64, requires_grad=True)
    F.cross_entropy(model(X), torch.tensor([0, 3])).backward()
    assert torch.isfinite(X.grad).all() and X.grad.abs().sum() > 0
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused, f"parameters outside the graph: {unused[:3]}"
    # and in eval mode, as Integrated Gradients uses it, for a non-square image
    model.eval().zero_grad()
    X = torch.randn(1, 3, 64, 96, requires_grad=True)
    model(X)[0, 2].backward()
    assert torch.isfinite(X.grad).all() and X.grad.abs().sum() > 0


@pytest.mark.parametrize("name", list_models())
def test_common_surface(name):
    model = _shared(name)
    X = torch.randn(2, 3, 96, 96)
    captured = {}
    layer = dict(model.named_modules())[model.attribution_layer]
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.update(out=out))
    try:
        with torch.no_grad():
            feats = model.forward_features(X)
            pooled = model.forward_head(feats, pre_logits=True)
            logits = model.forward_head(feats)
            full = model(X)
    finally:
        handle.remove()
    assert model.model_name == name and model.num_classes == 5
    assert feats.shape == (2, model.num_features, 3, 3)
    assert torch.equal(captured["out"], feats)  # the attribution layer gives the features
    assert pooled.shape == (2, model.num_features)
    torch.testing.assert_close(pooled, feats.mean(dim=(2, 3)))
    torch.testing.assert_close(logits, full)
    head = model.get_classifier()
    assert isinstance(head, nn.Linear) and head.out_features == 5
    torch.testing.assert_close(logits, head(pooled))


@pytest.mark.parametrize("name", ["resnet50", "rcan_densenet121",
                                  "rcan_densenet121_released", "ran92"])
def test_reset_classifier(name):
    model = create_model(name).eval()
    model.reset_classifier(3)
    X = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert model(X).shape == (2, 3) and model.num_classes == 3
        model.reset_classifier(0)
        assert model(X).shape == (2, model.num_features)
    assert create_model(name, num_classes=0)(X).shape == (2, model.num_features)


@pytest.mark.parametrize("name", list_models())
def test_state_dict_round_trip(name, tmp_path):
    torch.manual_seed(0)
    source = create_model(name).eval()
    torch.manual_seed(1)
    target = create_model(name).eval()
    X = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = source(X)
        assert not torch.equal(target(X), expected)
        path = tmp_path / "model.pt"
        torch.save(source.state_dict(), path)
        assert torch.equal(load_checkpoint(target, path)(X), expected)
        torch.manual_seed(2)
        other = load_checkpoint(create_model(name).eval(), source.state_dict())
        assert torch.equal(other(X), expected)


def test_load_checkpoint_wrong_architecture_names_the_right_one():
    state = create_model("resnet50").state_dict()
    with pytest.raises(CheckpointError, match=r"not for 'ran_resnet50'; it fits 'resnet50'"):
        load_checkpoint(create_model("ran_resnet50"), state)
    with pytest.raises(CheckpointError, match=r"not for 'densenet121'; it fits 'resnet50'"):
        load_checkpoint(create_model("densenet121"), state)


def test_load_checkpoint_wrong_class_count(tmp_path):
    path = tmp_path / "three.pt"
    torch.save(create_model("densenet121", num_classes=3).state_dict(), path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(create_model("densenet121"), path)
    msg = str(info.value)
    assert "3 classes" in msg and "num_classes=3" in msg and str(path) in msg
    assert "\n" not in msg


def test_load_checkpoint_bad_files(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    model = create_model("resnet50")
    with pytest.raises(CheckpointError, match=f"{junk}: cannot read"):
        load_checkpoint(model, junk)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(model, tmp_path / "missing.pt")


# --- parameter counts ----------------------------------------------------------------

def test_backbone_parameter_counts_match_torchvision():
    assert n_params(create_model("resnet50")) == RESNET50_5
    assert n_params(torchvision.models.resnet50(num_classes=5)) == RESNET50_5
    assert n_params(create_model("densenet121")) == DENSENET121_5
    assert n_params(torchvision.models.densenet121(num_classes=5)) == DENSENET121_5


def _preact_unit(c: int) -> int:  # BN(c), 1x1 c->c/4, BN, 3x3, BN, 1x1 c/4->c
    m = c // 4
    return 2 * c + c * m + 2 * m + 9 * m * m + 2 * m + m * c


def _ran_module(c: int, depth: int) -> int:
    w = c // 4  # mask width
    trunk = _preact_unit(c)
    mask = c * w + (2 * depth - 1) * _preact_unit(w)  # 1x1 in; down and up units
    mask += 2 * w + w * w + 2 * w + w * c + c  # BN, 1x1, BN, 1x1 (+bias) to c
    return trunk + mask


def _rcan_group(c: int, w: int, blocks: int) -> int:
    h = max(1, w // 16)
    ca = w * h + h + h * w + w
    rcab = 2 * (9 * w * w + w) + ca
    return (c * w + w) + blocks * rcab + (9 * w * w + w) + (w * c + c)


def test_attention_additions_match_layer_formulas_and_docs():
    ran = sum(_ran_module(c, d) for c, d in zip((256, 512, 1024, 2048), (3, 2, 1, 1)))
    rcan = sum(_rcan_group(c, c // 8, 1) for c in (256, 512, 1024, 1024))
    assert (ran, rcan) == (RAN_ADDED, RCAN_ADDED)
    assert n_params(_shared("ran_resnet50")) == RESNET50_5 + RAN_ADDED
    assert n_params(_shared("rcan_densenet121")) == DENSENET121_5 + RCAN_ADDED


# The released designs. RCAN as released: torchvision's DenseNet-121 with a 5-class head
# and one channel attention 32 -> 2 -> 32 (weights and biases of two 1x1 convs).
RCAN_RELEASED_ADDED = 32 * 2 + 2 + 2 * 32 + 32
# RAN-92 (Attention-92), counted from its definition in the RAN paper (Table 2) and the
# released ResidualAttentionModel_92, 5-class head; see _ran92_count.
RAN92_5 = 50_427_589
# The released code builds a 1x1 shortcut conv in every residual unit and uses it only
# where the shape changes: 32,768,000 parameters that never run (docs/models.md).
RAN92_RELEASED_UNUSED = 32_768_000


def _unit(cin: int, cout: int, stride: int = 1) -> int:
    """Pre-activation bottleneck, width cout/4; a 1x1 shortcut where the shape changes."""
    m = cout // 4
    body = 2 * cin + cin * m + 2 * m + 9 * m * m + 2 * m + m * cout
    return body + (cin * cout if (cin != cout or stride != 1) else 0)


def _ran92_module_units(depth: int) -> int:
    """Residual units of one attention module with p=1, t=2, r=1 and ``depth`` poolings:
    1 before, 2 trunk, 1 per level down with 2 at the bottom, 1 per skip connection and
    1 per level up (the levels above the bottom), 1 after."""
    return 1 + 2 + (depth + 1) + (depth - 1) + (depth - 1) + 1


def _ran92_count(num_classes: int) -> int:
    total = 3 * 64 * 7 * 7 + 2 * 64  # stem conv7x7 (no bias) and BN
    c_in = 64
    for c, n, depth, stride in ((256, 1, 3, 1), (512, 2, 2, 2), (1024, 3, 1, 2)):
        mask_out = 2 * (2 * c) + 2 * c * c  # BN, 1x1, BN, 1x1 (no biases)
        total += _unit(c_in, c, stride) + n * (_ran92_module_units(depth) * _unit(c, c)
                                               + mask_out)
        c_in = c
    total += _unit(1024, 2048, 2) + 2 * _unit(2048, 2048)  # stage 4
    return total + 2 * 2048 + 2048 * num_classes + num_classes  # final BN, head


def test_released_designs_parameter_counts():
    assert _ran92_module_units(3) == 12  # stage 1 of Attention-92, as released
    assert _ran92_count(5) == RAN92_5
    assert n_params(_shared("ran92")) == RAN92_5
    assert n_params(create_model("ran92", num_classes=1000)) == _ran92_count(1000)
    assert n_params(_shared("rcan_densenet121_released")) == (
        DENSENET121_5 + RCAN_RELEASED_ADDED) == 6_959_143
    # the released RAN-92 also builds a shortcut conv (C x C) in every identity unit
    identity_units = [m for m in _shared("ran92").modules()
                      if isinstance(m, PreActBottleneck) and m.shortcut is None]
    unused = sum(m.bn1.num_features ** 2 for m in identity_units)
    assert len(identity_units) == 12 + 2 * 9 + 3 * 6 + 2 and unused == RAN92_RELEASED_UNUSED


@pytest.mark.parametrize("name", ["ran_resnet50", "rcan_densenet121",
                                  "rcan_densenet121_released"])
def test_attention_variant_contains_backbone_unchanged(name):
    plain = _shared(BACKBONE[name]).state_dict()
    variant = _shared(name).state_dict()
    assert {k: v.shape for k, v in plain.items()} == {
        k: variant[k].shape for k in plain}
    assert all(k.startswith("attn") for k in set(variant) - set(plain))


# --- attention maps ------------------------------------------------------------------

def test_collect_attention_ran_masks():
    model = _shared("ran_resnet50")
    X = torch.randn(2, 3, 64, 64)
    io = {}
    handle = model.attn4.register_forward_hook(lambda _m, i, o: io.update(x=i[0], y=o))
    try:
        maps = collect_attention(model, X)
    finally:
        handle.remove()
    assert list(maps) == ["attn1", "attn2", "attn3", "attn4"]
    shapes = [tuple(m.shape) for m in maps.values()]
    assert shapes == [(2, 256, 16, 16), (2, 512, 8, 8), (2, 1024, 4, 4), (2, 2048, 2, 2)]
    assert all(((m >= 0) & (m <= 1)).all() and not m.requires_grad for m in maps.values())
    # fresh trunk is the identity, so the module output is (1 + M) * input
    torch.testing.assert_close(io["y"], (1 + maps["attn4"]) * io["x"])
    assert not model.attn4.gate._forward_hooks  # hooks removed


def test_collect_attention_rcan_channel_weights():
    model = _shared("rcan_densenet121")
    X = torch.randn(2, 3, 64, 64)
    io = {}
    ca = model.attn3[0].blocks[0].ca
    handle = ca.register_forward_hook(lambda _m, i, o: io.update(x=i[0], y=o))
    try:
        maps = collect_attention(model, X)
    finally:
        handle.remove()
    assert {k: tuple(v.shape) for k, v in maps.items()} == {
        f"attn{i}.0.blocks.0.ca": (2, c // 8) for i, c in enumerate((256, 512, 1024, 1024), 1)}
    torch.testing.assert_close(io["y"], io["x"] * maps["attn3.0.blocks.0.ca"][:, :, None, None])
    assert collect_attention(_shared("resnet50"), X) == {}


def test_collect_attention_ran92_masks():
    model = _shared("ran92")
    X = torch.randn(2, 3, 64, 96)
    maps = collect_attention(model, X)
    expected = {"stage1.attn1": (256, 16, 24), "stage2.attn1": (512, 8, 12),
                "stage2.attn2": (512, 8, 12), "stage3.attn1": (1024, 4, 6),
                "stage3.attn2": (1024, 4, 6), "stage3.attn3": (1024, 4, 6)}
    assert {k: tuple(v.shape[1:]) for k, v in maps.items()} == expected
    assert all(((m >= 0) & (m <= 1)).all() and not m.requires_grad for m in maps.values())


def test_released_rcan_rescales_the_last_32_channels_of_block4():
    """Against plain DenseNet-121 with the same weights: dense block 4's output is the
    same except its last 32 channels (those of denselayer16), which are rescaled by the
    attention weights collect_attention returns."""
    released = _shared("rcan_densenet121_released")
    plain = create_model("densenet121").eval()
    plain.load_state_dict({k: v for k, v in released.state_dict().items()
                           if not k.startswith("attn")})
    X = torch.randn(2, 3, 64, 64)
    outs = {}
    hooks = [m.features.denseblock4.register_forward_hook(
        lambda _m, _i, o, key=key: outs.update({key: o})) for key, m in
        (("released", released), ("plain", plain))]
    try:
        weights = collect_attention(released, X)
        with torch.no_grad():
            plain(X)
    finally:
        for hook in hooks:
            hook.remove()
    assert list(weights) == ["attn1"] and weights["attn1"].shape == (2, 32)
    assert outs["released"].shape == outs["plain"].shape == (2, 1024, 2, 2)
    torch.testing.assert_close(outs["released"][:, :992], outs["plain"][:, :992])
    torch.testing.assert_close(outs["released"][:, 992:],
                               outs["plain"][:, 992:] * weights["attn1"][:, :, None, None])


def test_released_rcan_dropout_before_the_head():
    model = create_model("rcan_densenet121_released")
    assert isinstance(model.head_drop, nn.Dropout) and model.head_drop.p == 0.5
    feats = torch.randn(4, model.num_features, 2, 2)
    with torch.no_grad():
        assert torch.equal(model.eval().forward_head(feats), model.forward_head(feats))
        model.train()
        assert not torch.equal(model.forward_head(feats), model.forward_head(feats))
    assert isinstance(create_model("densenet121").head_drop, nn.Identity)


# --- pretrained weights (tests never download) ---------------------------------------

RESNET50_FILE = "resnet50-0676ba61.pth"  # torchvision's IMAGENET1K_V1 file names
DENSENET121_FILE = "densenet121-a639ec97.pth"


@pytest.fixture
def no_download(monkeypatch):
    """Fail loudly if anything tries to fetch weights."""
    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def _check_loaded(model, name, file_state, seed):
    """Backbone tensors equal the file's; attention layers and head equal a fresh build."""
    torch.manual_seed(seed)
    fresh = create_model(name).state_dict()
    own = model.state_dict()
    head = model._head_name + "."
    backbone = [k for k in own if not k.startswith(("attn", head))]
    assert backbone and all(torch.equal(own[k], file_state[k]) for k in backbone)
    assert not all(torch.equal(own[k], fresh[k]) for k in backbone)
    new = [k for k in own if k not in backbone]
    assert any(k.startswith("attn") for k in new) == name.startswith(("ran", "rcan"))
    assert all(torch.equal(own[k], fresh[k]) for k in new)


def test_imagenet_weights_from_a_path(tmp_path, no_download):
    torch.manual_seed(123)
    state = torchvision.models.resnet50().state_dict()  # 1000-class head, like the file
    path = tmp_path / RESNET50_FILE
    torch.save(state, path)
    torch.manual_seed(7)
    model = create_model("ran_resnet50", weights=str(path))
    _check_loaded(model, "ran_resnet50", state, seed=7)
    assert model.weights_source == str(path)


def test_imagenet_weights_from_the_hub_cache(tmp_path, monkeypatch, no_download):
    assert torchvision.models.DenseNet121_Weights.IMAGENET1K_V1.url.endswith(DENSENET121_FILE)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    torch.manual_seed(123)
    state = torchvision.models.densenet121().state_dict()
    old = _old_densenet_keys(state)
    assert old.keys() != state.keys()
    (tmp_path / "checkpoints").mkdir()
    torch.save(old, tmp_path / "checkpoints" / DENSENET121_FILE)
    torch.manual_seed(7)
    model = create_model("rcan_densenet121", weights="imagenet")
    _check_loaded(model, "rcan_densenet121", state, seed=7)
    assert model.weights_source == str(tmp_path / "checkpoints" / DENSENET121_FILE)


def _old_densenet_keys(state):
    """torchvision's real DenseNet files use the old names: "denselayer1.norm.1.weight"."""
    return {k.replace(".norm1.", ".norm.1.").replace(".conv1.", ".conv.1.")
            .replace(".norm2.", ".norm.2.").replace(".conv2.", ".conv.2."): v
            for k, v in state.items()}


def test_imagenet_weights_missing_offline_says_where_and_how(tmp_path, monkeypatch):
    """No file and no network (torch.hub's loader raises URLError): one line naming the
    file, the URL and the folder."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsNotFoundError) as info:
        create_model("resnet50", weights="imagenet")
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError) and "\n" not in msg
    assert str(tmp_path / "checkpoints" / RESNET50_FILE) in msg  # where it looked
    assert f"https://download.pytorch.org/models/{RESNET50_FILE}" in msg  # what to get
    assert f"put {RESNET50_FILE} in {tmp_path / 'checkpoints'}/" in msg  # where to put it
    assert "URLError" in msg and "name resolution" in msg  # why the download failed
    assert "weights=" in msg  # how to pass a file instead
    with pytest.raises(WeightsNotFoundError, match="nowhere.pth: weights file not found"):
        create_model("densenet121", weights=str(tmp_path / "nowhere.pth"))


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """A fresh $TORCH_HOME: torch.hub.get_dir() is <it>/hub, the cache <it>/hub/checkpoints."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # as if torch.hub.set_dir was never called
    assert torch.hub.get_dir() == str(tmp_path / "torch" / "hub")
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_imagenet_downloaded_into_the_hub_cache_as_torchvision_does(torch_home, monkeypatch):
    """The real torch.hub.load_state_dict_from_url runs; only its transfer is replaced by
    writing a file made from the backbone's own state_dict (so nothing is downloaded)."""
    url = torchvision.models.DenseNet121_Weights.IMAGENET1K_V1.url
    torch.manual_seed(123)
    state = torchvision.models.densenet121().state_dict()
    calls = []

    def fake_transfer(src, dst, hash_prefix=None, progress=True):
        calls.append((src, dst, hash_prefix, progress))
        torch.save(_old_densenet_keys(state), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_transfer)
    torch.manual_seed(7)
    model = create_model("rcan_densenet121_released", weights="imagenet")
    path = torch_home / DENSENET121_FILE
    # torchvision's URL, into the hub cache, with the file name's SHA-256 prefix checked
    assert calls == [(url, str(path), "a639ec97", True)]
    _check_loaded(model, "rcan_densenet121_released", state, seed=7)
    assert model.weights_source == str(path)
    # the second time, the cached file is read and nothing is fetched
    create_model("densenet121", weights="imagenet")
    assert len(calls) == 1


def test_imagenet_download_unreachable_network(torch_home, monkeypatch):
    def unreachable(src, dst, hash_prefix=None, progress=True):
        raise urllib.error.URLError(OSError(101, "Network is unreachable"))

    monkeypatch.setattr(torch.hub, "download_url_to_file", unreachable)
    with pytest.raises(WeightsNotFoundError) as info:
        create_model("rcan_densenet121_released", weights="imagenet")
    msg = str(info.value)
    assert "\n" not in msg and "Network is unreachable" in msg
    assert torchvision.models.DenseNet121_Weights.IMAGENET1K_V1.url in msg
    assert f"put {DENSENET121_FILE} in {torch_home}/" in msg
    assert not (torch_home / DENSENET121_FILE).exists()


def test_released_rcan_imagenet_from_the_hub_cache(torch_home, no_download):
    torch.manual_seed(123)
    state = torchvision.models.densenet121().state_dict()
    torch_home.mkdir(parents=True)
    torch.save(_old_densenet_keys(state), torch_home / DENSENET121_FILE)
    torch.manual_seed(7)
    model = create_model("rcan_densenet121_released", weights="imagenet")
    _check_loaded(model, "rcan_densenet121_released", state, seed=7)


def test_ran92_has_no_imagenet_weights(no_download):
    with pytest.raises(WeightsNotFoundError, match=r"no ImageNet weights exist for ran92") as info:
        create_model("ran92", weights="imagenet")
    assert "\n" not in str(info.value) and "weights=None" in str(info.value)


def test_weights_file_of_the_wrong_backbone(tmp_path):
    path = tmp_path / "densenet.pth"
    torch.save(torchvision.models.densenet121().state_dict(), path)
    with pytest.raises(CheckpointError, match=r"densenet.pth: not a torchvision resnet50"):
        create_model("resnet50", weights=path)


def test_cli_trains_the_released_rcan_on_the_released_split_from_cached_imagenet_weights(
        torch_home, no_download, synth_root, tmp_path, capsys):
    """End to end: `cervix train --model rcan_densenet121_released --split released --weights imagenet`
    with the file in the cache (made from the backbone's own state_dict); the summary names
    the design, the split and the weights, and the run records the file it started from."""
    from cervixlib.cli import main as cli_main
    from cervixlib.runs import load_run

    torch_home.mkdir(parents=True)
    torch.save(_old_densenet_keys(torchvision.models.densenet121().state_dict()), torch_home / DENSENET121_FILE)
    rc = cli_main(["train", "--model", "rcan_densenet121_released", "--split", "released", "--weights", "imagenet",
                   "--profile", "smoke", "--subset", "isolated", "--data", str(synth_root),
                   "--runs", str(tmp_path / "runs"), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "model     rcan_densenet121_released" in out
    assert "split released  weights ImageNet" in out
    run = load_run(next(p for p in (tmp_path / "runs").iterdir() if p.is_dir()))
    assert (run.config.model, run.config.data.split, run.config.weights) == (
        "rcan_densenet121_released", "released", "imagenet")
    assert Path(run.info["weights_source"]).name == DENSENET121_FILE
