"""cervixlib.explain against independent references: closed-form IG of a linear model,
completeness by plain forward passes, autograd for saliency, masks built by hand for
the in-cell share, a trained-vs-randomised toy for the sanity check, and the explorer's
figure after a slider moves (no browser)."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

from cervixlib.data import MEAN, STD, CellImageDataset, denormalize
from cervixlib.explain import (
    Attribution,
    attribute,
    cascading_randomisation,
    completeness,
    ig_explorer,
    in_cell_share,
    make_baseline,
    randomise_weights,
    spearman_per_image,
    static_ig_slider,
)
from cervixlib.explain.command import explain_command, load_input
from cervixlib.explain.localisation import area_share
from cervixlib.explain.randomisation import cascade_stages
from cervixlib.metrics import bootstrap_mean
from cervixlib.explain import attributions as attr_mod
from cervixlib.explain import explorer as explorer_mod


# ------------------------------------------------------------------ toy models and images
def smooth_net(seed: int = 0, classes: int = 3) -> nn.Module:
    """A small CNN with smooth activations: IG converges fast, so deltas must be tiny."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.Softplus(), nn.Conv2d(6, 6, 3, padding=1, stride=2), nn.Tanh(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, classes),
    ).eval()


def relu_net(seed: int = 0, classes: int = 2) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, classes),
    )


def images(n: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g)


def disc_image(size: int = 64) -> torch.Tensor:
    """A pink disc on a pale background, normalised like the datasets: image-like input."""
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    disc = (((yy - size * 0.45) ** 2 + (xx - size * 0.55) ** 2) < (size * 0.25) ** 2).float()
    rgb = torch.stack([0.9 - 0.1 * disc, 0.9 - 0.5 * disc, 0.85 - 0.3 * disc])
    return ((rgb - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1))[None]


# ------------------------------------------------------------------ attributions
def test_ig_of_a_linear_model_is_closed_form():
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    X = images(2, 8)
    a = attribute(lin, X, target=[1, 3], n_steps=5, baseline="mean")
    w = lin[1].weight.detach().view(4, 3, 8, 8)
    expected = X * torch.stack([w[1], w[3]])  # (x - b) * dF/dx with b = 0
    torch.testing.assert_close(a.attributions, expected, rtol=1e-4, atol=1e-6)
    assert a.delta.abs().max() < 1e-4
    assert a.target.tolist() == [1, 3]


def test_completeness_on_a_toy_model_is_tight_and_matches_plain_forward_passes():
    net = smooth_net()
    X = images(3, 16)
    for baseline in ("black", "blur", "mean"):
        a = attribute(net, X, n_steps=32, baseline=baseline)
        assert a.attributions.shape == X.shape and a.delta.shape == (3,)
        assert (a.relative_delta < 1e-3).all(), (baseline, a.relative_delta)
        # independent recomputation: F(x) - F(b) by plain forwards, not Captum's delta
        gap = completeness(net, X, a)
        np.testing.assert_allclose(gap, a.delta.abs().numpy(), atol=1e-4)
        with torch.no_grad():
            B = make_baseline(X, baseline)
            diff = (net(X) - net(B)).gather(1, a.target[:, None])[:, 0]
        torch.testing.assert_close(a.output_diff, diff, rtol=1e-4, atol=1e-5)


def _registered_models() -> list[str]:
    from cervixlib.models import list_models

    return list_models()


@pytest.mark.parametrize("name", _registered_models())
def test_completeness_on_each_registered_architecture(name):
    """Every architecture is complete: the attributions account for F(x) - F(b).

    From the dataset-mean baseline (0 after normalisation) at 16 Gauss-Legendre steps,
    measured relative deltas at random init were 1e-7 (ResNet-50, DenseNet-121, RCAN:
    bias-free ReLU/BN paths are linear along a ray from 0, so IG is exact once the
    gradient reaches the input through every branch) and 0.4% (RAN, whose sigmoid
    masks are not). A detached branch, a non-differentiable op or a wrong delta shows
    up here as a gap of the size of that branch's contribution. The convergence of the
    integral itself on a curved path is the toy model's test above; from black, random
    init makes the path rough (0.3-6.5% at 64 steps), which says nothing about our code.
    """
    from cervixlib.models import create_model

    torch.manual_seed(0)
    net = create_model(name, num_classes=5).eval()
    X = disc_image(64)
    a = attribute(net, X, n_steps=16, baseline="mean")
    assert torch.isfinite(a.attributions).all()
    assert a.output_diff.abs().item() > 0.1  # a non-trivial F(x) - F(b) to be complete about
    assert a.relative_delta.item() < 0.02, a.relative_delta
    np.testing.assert_allclose(completeness(net, X, a), a.delta.abs().numpy(), rtol=1e-3, atol=1e-4)


def test_batched_equals_unbatched():
    net = smooth_net()
    X = images(4, 16, seed=1)
    together = attribute(net, X, n_steps=12)
    chunked = attribute(net, X, n_steps=12, batch_size=3, internal_batch_size=10)
    singles = Attribution.cat([attribute(net, X[i], n_steps=12) for i in range(4)])
    for other in (chunked, singles):
        torch.testing.assert_close(other.attributions, together.attributions, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(other.delta, together.delta, rtol=1e-3, atol=1e-6)
        assert other.target.tolist() == together.target.tolist()


def test_target_defaults_to_the_prediction_and_can_be_given():
    net = smooth_net()
    X = images(5, 16, seed=2)
    with torch.no_grad():
        pred = net(X).argmax(1)
    assert attribute(net, X, n_steps=4).target.tolist() == pred.tolist()
    assert attribute(net, X, n_steps=4, target=2).target.tolist() == [2] * 5
    with pytest.raises(ValueError, match="targets for 5 images"):
        attribute(net, X, target=[0, 1])


def test_saliency_is_the_autograd_input_gradient():
    net = smooth_net()
    X = images(2, 16, seed=3)
    a = attribute(net, X, method="saliency", target=[0, 2])
    Xg = X.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net(Xg)[[0, 1], [0, 2]].sum(), Xg)
    torch.testing.assert_close(a.attributions, grad)
    # its delta is the completeness gap of the linearisation grad * (x - b)
    np.testing.assert_allclose(completeness(net, X, a), a.delta.abs().numpy(), rtol=1e-4, atol=1e-5)


def test_baselines_mean_what_they_say():
    X = images(2, 32)
    black = make_baseline(X, "black")
    torch.testing.assert_close(denormalize(black), torch.zeros_like(X), atol=1e-6, rtol=0)
    mean = make_baseline(X, "mean")
    rgb = mean * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
    torch.testing.assert_close(rgb, torch.tensor(MEAN).view(1, 3, 1, 1).expand_as(X))
    blur = make_baseline(X, "blur")
    assert blur.std() < 0.5 * X.std()  # detail removed
    flat = torch.full((1, 3, 32, 32), 0.7)
    torch.testing.assert_close(make_baseline(flat, "blur"), flat)  # a flat image stays flat
    with pytest.raises(ValueError, match="baseline must be one of"):
        make_baseline(X, "grey")  # type: ignore[arg-type]


def _target_output(net, X, t, output="logit"):
    with torch.no_grad():
        out = net(X).float()
    out = out.softmax(1) if output == "softmax" else out
    return out.gather(1, t[:, None])[:, 0]


def test_uniform_noise_baselines_are_seeded_pixel_noise():
    X = images(2, 32)
    B = make_baseline(X, "uniform", generator=torch.Generator().manual_seed(5))
    rgb = denormalize(B)  # pixel space / 255
    assert rgb.min() >= -1e-6 and rgb.max() <= 1 + 1e-6 and abs(float(rgb.mean()) - 0.5) < 0.05
    again = make_baseline(X, "uniform", generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(B, again)
    assert not torch.equal(B, make_baseline(X, "uniform", generator=torch.Generator().manual_seed(6)))


def test_ig_over_ten_noise_baselines_is_complete_for_each_and_is_their_average():
    net = smooth_net()
    X = images(3, 16)
    a = attribute(net, X, n_steps=32, baseline="uniform", n_baselines=10, seed=0)
    assert a.attributions.shape == X.shape and a.delta.shape == a.output_diff.shape == (3,)
    assert a.delta_per_baseline.shape == a.output_diff_per_baseline.shape == (3, 10)
    assert (a.n_baselines, a.baseline, a.output) == (10, "uniform", "logit")
    # each baseline is complete, within the tolerance of the single-baseline test above
    assert (a.relative_delta_per_baseline < 1e-3).all(), a.relative_delta_per_baseline
    # independent references: the k-th draw of the seeded generator, plain forwards, one IG per baseline
    g = torch.Generator().manual_seed(0)
    maps = []
    for k in range(10):
        B = make_baseline(X, "uniform", generator=g)
        diff = _target_output(net, X, a.target) - _target_output(net, B, a.target)
        torch.testing.assert_close(a.output_diff_per_baseline[:, k], diff, rtol=1e-4, atol=1e-5)
        one = attribute(net, X, n_steps=32, baseline=B, target=a.target)
        np.testing.assert_allclose(completeness(net, X, one, baseline=B), a.delta_per_baseline[:, k].abs().numpy(),
                                   atol=1e-4)
        maps.append(one.attributions)
    torch.testing.assert_close(a.attributions, torch.stack(maps).mean(0), rtol=1e-4, atol=1e-6)
    assert a.output_diff_per_baseline.std(dim=1).min() > 0  # ten different baselines
    torch.testing.assert_close(a.output_diff, a.output_diff_per_baseline.mean(1))
    torch.testing.assert_close(a.attributions.flatten(1).sum(1), a.output_diff + a.delta, rtol=1e-4, atol=1e-5)
    # indexing and concatenation carry the per-baseline columns
    assert a[1].delta_per_baseline.shape == (1, 10)
    torch.testing.assert_close(Attribution.cat([a[0], a[1:]]).delta_per_baseline, a.delta_per_baseline)
    # the same seed repeats, another seed draws other baselines
    two = dict(n_steps=8, baseline="uniform", n_baselines=2)
    first = attribute(net, X, seed=0, **two).attributions
    torch.testing.assert_close(attribute(net, X, seed=0, **two).attributions, first)
    assert not torch.allclose(attribute(net, X, seed=1, **two).attributions, first)
    with pytest.raises(ValueError, match="averages 10 baselines"):
        completeness(net, X, a)


def test_softmax_output_attributions_sum_to_the_probability_difference():
    net = smooth_net()
    X = images(3, 16, seed=4)
    a = attribute(net, X, n_steps=32, baseline="uniform", n_baselines=4, seed=2, output="softmax")
    assert (a.relative_delta_per_baseline < 1e-3).all(), a.relative_delta_per_baseline
    g = torch.Generator().manual_seed(2)
    for k in range(4):
        B = make_baseline(X, "uniform", generator=g)
        p_diff = _target_output(net, X, a.target, "softmax") - _target_output(net, B, a.target, "softmax")
        torch.testing.assert_close(a.output_diff_per_baseline[:, k], p_diff, rtol=1e-4, atol=1e-6)
        one = attribute(net, X, n_steps=32, baseline=B, target=a.target, output="softmax")
        torch.testing.assert_close(one.attributions.flatten(1).sum(1), p_diff, rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(completeness(net, X, one, baseline=B), one.delta.abs().numpy(), atol=1e-5)
    # the target is still the predicted class, and the map is not the logit's
    assert a.target.tolist() == attribute(net, X, n_steps=4).target.tolist()
    logit = attribute(net, X, n_steps=32, baseline="uniform", n_baselines=4, seed=2)
    assert not torch.allclose(logit.attributions, a.attributions)
    sal = attribute(net, X, method="saliency", target=[0, 1, 2], output="softmax")
    Xg = X.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net(Xg).softmax(1)[[0, 1, 2], [0, 1, 2]].sum(), Xg)
    torch.testing.assert_close(sal.attributions, grad)


def test_released_ig_is_the_left_riemann_sum_of_softmax_gradients():
    """RELEASED_IG against the released procedure written out with autograd: gradients of the
    predicted class's probability at alphas 0, 1/50, ..., 49/50, averaged, times (x - b)."""
    from cervixlib.explain import RELEASED_IG

    net = smooth_net()
    X = images(1, 16, seed=6)
    assert RELEASED_IG == {"output": "softmax", "baseline": "uniform", "n_baselines": 10, "n_steps": 50,
                           "integration": "riemann_left"}
    settings = {**RELEASED_IG, "n_baselines": 3}  # three of the ten suffice to check the averaging
    a = attribute(net, X, **settings)  # type: ignore[arg-type]
    assert (a.n_baselines, a.n_steps, a.integration, a.output) == (3, 50, "riemann_left", "softmax")
    g = torch.Generator().manual_seed(0)
    maps = []
    alphas = torch.arange(50, dtype=torch.float32).view(-1, 1, 1, 1) / 50
    for _ in range(3):
        B = make_baseline(X, "uniform", generator=g)
        Z = (B + alphas * (X - B)).requires_grad_(True)  # the 50 points of the path, one batch
        (grad,) = torch.autograd.grad(net(Z).softmax(1)[:, int(a.target)].sum(), Z)
        maps.append(grad.mean(0, keepdim=True) * (X - B))
    torch.testing.assert_close(a.attributions, torch.stack(maps).mean(0), rtol=1e-3, atol=1e-7)


def test_several_baselines_need_noise_and_ig():
    net = smooth_net()
    X = images(1, 16)
    for bad in (dict(baseline="black"), dict(baseline=torch.zeros(1, 3, 16, 16)),
                dict(baseline="uniform", method="saliency")):
        with pytest.raises(ValueError, match="n_baselines > 1"):
            attribute(net, X, n_baselines=3, **bad)
    with pytest.raises(ValueError, match="n_baselines must be"):
        attribute(net, X, n_baselines=0)
    with pytest.raises(ValueError, match="output must be"):
        attribute(net, X, output="probability")  # type: ignore[arg-type]


def test_model_runs_in_eval_mode_and_keeps_its_own_mode():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten(), nn.LazyLinear(3))
    X = images(2, 12)
    net(X)  # materialise the lazy layer
    net.train()
    a1 = attribute(net, X, n_steps=8, target=0)
    a2 = attribute(net, X, n_steps=8, target=0)
    torch.testing.assert_close(a1.attributions, a2.attributions)  # no dropout, no batch statistics
    assert net.training and all(m.training for m in net.modules())


def test_bad_inputs_fail_with_one_clear_line():
    net = smooth_net()
    with pytest.raises(ValueError, match="shape"):
        attribute(net, torch.zeros(16, 16))
    with pytest.raises(ValueError, match="NaN"):
        attribute(net, torch.full((1, 3, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="method"):
        attribute(net, images(1, 8), method="lrp")  # type: ignore[arg-type]


# ------------------------------------------------------------------ bf16 only where faithful
def test_auto_precision_keeps_bf16_only_within_tolerance(monkeypatch):
    net = smooth_net()
    X = images(3, 16, seed=4)
    fp32 = attribute(net, X, n_steps=16, precision="fp32")
    monkeypatch.setattr(attr_mod, "resolve_precision", lambda precision, device: "bf16")
    kept = attribute(net, X, n_steps=16, precision="auto", bf16_tolerance=0.05)
    assert kept.precision == ("bf16",) * 3
    assert not torch.equal(kept.attributions, fp32.attributions)  # it really ran in bf16
    assert (kept.relative_delta <= 0.05).all()
    # the delta of a bf16 map is measured with fp32 forward passes
    np.testing.assert_allclose(completeness(net, X, kept), kept.delta.abs().numpy(), rtol=1e-3, atol=1e-5)
    # a tolerance bf16 cannot meet: every image is recomputed in fp32
    strict = attribute(net, X, n_steps=16, precision="auto", bf16_tolerance=1e-9)
    assert strict.precision == ("fp32",) * 3
    torch.testing.assert_close(strict.attributions, fp32.attributions)
    # a device without native bf16: auto does not try it
    monkeypatch.setattr(attr_mod, "resolve_precision", lambda precision, device: "fp32")
    assert attribute(net, X, n_steps=16, precision="auto").precision == ("fp32",) * 3


def test_auto_precision_falls_back_per_image(monkeypatch):
    net = smooth_net()
    X = images(4, 16, seed=5)
    monkeypatch.setattr(attr_mod, "resolve_precision", lambda precision, device: "bf16")
    probe = attribute(net, X, n_steps=16, precision="bf16")
    rel = probe.relative_delta
    tol = float(rel.median())  # half the images pass, half fail
    mixed = attribute(net, X, n_steps=16, precision="auto", bf16_tolerance=tol)
    expect = tuple("bf16" if r <= tol else "fp32" for r in rel.tolist())
    assert mixed.precision == expect and set(expect) == {"bf16", "fp32"}


# ------------------------------------------------------------------ in-cell share
def test_in_cell_share_on_maps_known_by_construction():
    mask = torch.zeros(2, 20, 20, dtype=torch.bool)
    mask[:, 5:10, 5:15] = True  # area share 50 / 400
    inside_only = torch.zeros(2, 3, 20, 20)
    inside_only[:, :, 5:10, 5:15] = -1.5  # sign does not matter for |A|
    np.testing.assert_allclose(in_cell_share(inside_only, mask), [1.0, 1.0])
    uniform = torch.ones(2, 3, 20, 20)
    np.testing.assert_allclose(in_cell_share(uniform, mask), area_share(mask))
    np.testing.assert_allclose(area_share(mask), [0.125, 0.125])
    weighted = torch.ones(1, 20, 20)
    weighted[0, 5:10, 5:15] = 3.0  # inside 150, outside 350
    np.testing.assert_allclose(in_cell_share(weighted, mask[0]), [150 / 500])
    assert np.isnan(in_cell_share(torch.zeros(1, 20, 20), mask[0])[0])
    # positive evidence only: a negative inside cancels nothing, it is simply not counted
    signed = torch.ones(1, 1, 20, 20)
    signed[0, 0, 5:10, 5:15] = -1.0
    np.testing.assert_allclose(in_cell_share(signed, mask[0], reduce="positive"), [0.0])
    with pytest.raises(ValueError, match="does not match"):
        in_cell_share(uniform, torch.ones(10, 10))


def test_bootstrap_mean_interval():
    rng = np.random.default_rng(0)
    v = rng.normal(0.4, 0.1, size=200)
    iv = bootstrap_mean(v, seed=1)
    assert iv.low < v.mean() < iv.high
    assert abs((iv.high - iv.low) - 2 * 1.96 * v.std() / np.sqrt(200)) < 0.01  # about the normal width
    same = bootstrap_mean([0.25] * 12)  # no spread: no interval (never a zero-width one), and why
    assert same.value == 0.25 and np.isnan(same.low) and same.reason == "every image gave the same value"
    few = bootstrap_mean([0.2, 0.4, 0.3])  # under MIN_IMAGES values: the mean alone
    assert few.value == pytest.approx(0.3) and np.isnan(few.low) and np.isnan(few.high)
    assert str(few) == "0.300 (no interval: fewer than 10 images)"
    assert np.isnan(bootstrap_mean([np.nan]).value)


# ------------------------------------------------------------------ sanity check
def _square_task(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise with a bright 4x4 square; the class says in which half of the image it is."""
    X = torch.randn(n, 3, 16, 16, generator=g) * 0.5
    y = torch.randint(0, 2, (n,), generator=g)
    rows = torch.randint(0, 12, (n,), generator=g)
    cols = torch.randint(0, 5, (n,), generator=g) + 8 * y
    for i in range(n):
        X[i, :, rows[i]:rows[i] + 4, cols[i]:cols[i] + 4] += 2.0
    return X, y


def _trained(seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(100 + seed)
    net = relu_net(seed)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(60):
        X, y = _square_task(32, g)
        loss = nn.functional.cross_entropy(net(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    X, y = _square_task(200, g)
    with torch.no_grad():
        assert (net(X).argmax(1) == y).float().mean() > 0.9  # it learnt the task
    return net.eval()


@pytest.fixture(scope="module")
def trained_pair():
    return _trained(0), _trained(1)


def test_full_randomisation_lowers_the_similarity(trained_pair):
    """Two independently trained models explain the square alike; the fully randomised copy
    (the cascade's last stage) does not. If randomisation were a no-op the correlation would
    be 1 and this fails."""
    net, twin = trained_pair
    X, _ = _square_task(8, torch.Generator().manual_seed(5))
    targets = net(X).argmax(1)
    res = cascading_randomisation(net, X, targets, methods=("ig", "saliency"), n_steps=16, seed=0,
                                  max_stages=None, baseline="mean")
    assert res.stages[-1] == cascade_stages(net, X)[-1]  # the last stage measured randomises the whole model
    for method in ("ig", "saliency"):
        ours = attribute(net, X, method=method, baseline="mean", n_steps=16, target=targets).heatmap()
        other = attribute(twin, X, method=method, baseline="mean", n_steps=16, target=targets).heatmap()
        reference = spearman_per_image(ours, other).mean()
        full = np.nanmean(res.full[method])
        assert reference > 0.7, (method, reference)
        assert full < reference - 0.2, (method, full, reference)
        assert res.full[method].shape == (8,)


def test_randomise_weights_changes_every_weight_and_leaves_the_model_alone():
    net = relu_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rand = randomise_weights(net, seed=3)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])  # the original is untouched
    for (k, v), (_, r) in zip(net.named_parameters(), rand.named_parameters()):
        assert not torch.equal(v, r), k
    torch.testing.assert_close(randomise_weights(net, seed=3).state_dict(), rand.state_dict())  # seeded
    only_head = randomise_weights(net, seed=3, layers=["6"])
    assert torch.equal(only_head[0].weight, net[0].weight) and not torch.equal(only_head[6].weight, net[6].weight)

    class Scale(nn.Module):  # a parameter no reset_parameters knows about
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(4))

        def forward(self, x):
            return x * self.w

    with pytest.raises(ValueError, match="not re-initialised"):
        randomise_weights(nn.Sequential(nn.Linear(4, 4), Scale()))


# ------------------------------------------------------------------ explorer
def test_moving_an_explorer_slider_changes_the_figure(monkeypatch):
    net = relu_net(classes=3).eval()
    x = images(1, 16, seed=6)
    ex = ig_explorer(net, x, n_steps=2, alpha=0.5, warm_steps=(1,))
    fig0 = ex.figure
    ig0, scaled0 = fig0.data[2].source, fig0.data[0].source
    assert list(fig0.data[6].x) == [1, 2]  # the delta curve holds the cached step counts

    ex.steps_slider.value = 32  # recomputes IG live
    fig1 = ex.figure
    assert fig1 is not fig0 and fig1.data[2].source != ig0
    assert fig1.data[0].source == scaled0  # alpha did not move
    assert list(fig1.data[6].x) == [1, 2, 32] and list(fig1.data[7].x) == [32]
    assert "n_steps=32" in ex.status.value
    deltas = list(fig1.data[6].y)
    assert deltas[-1] < deltas[0]  # the convergence delta falls as the steps grow

    ex.alpha_slider.value = 0.1
    fig2 = ex.figure
    assert fig2.data[0].source != scaled0 and fig2.data[2].source == fig1.data[2].source
    assert list(fig2.data[4].x) == [pytest.approx(0.1)]

    calls: list[int] = []
    real = explorer_mod.attribute
    monkeypatch.setattr(explorer_mod, "attribute", lambda *a, **k: calls.append(k["n_steps"]) or real(*a, **k))
    ex.steps_slider.value = 2  # cached: no new IG computation
    assert calls == [] and ex.figure.data[2].source == ig0
    ex.steps_slider.value = 3
    assert calls == [3]


def test_static_slider_figure_works_without_a_kernel():
    net = relu_net(classes=3).eval()
    x = images(1, 16, seed=7)
    steps, alphas = (1, 4, 16), (0.0, 0.5, 1.0)
    fig = static_ig_slider(net, x, steps=steps, alphas=alphas)
    sliders = fig.layout.sliders
    assert len(sliders) == 2
    names = {f.name for f in fig.frames}
    assert names == {"steps=1", "steps=4", "steps=16", "alpha=0", "alpha=0.5", "alpha=1"}
    for slider in sliders:  # every position animates to an existing frame
        for step in slider.steps:
            assert step.method == "animate" and step.args[0][0] in names
    by_name = {f.name: f for f in fig.frames}
    assert len({by_name[f"steps={n}"].data[0].source for n in steps}) == 3  # different IG maps
    assert len({by_name[f"alpha={a:g}"].data[0].source for a in alphas}) == 3  # different scaled inputs
    assert list(by_name["steps=16"].traces) == [2, 5, 7]
    html = fig.to_html(include_plotlyjs=False, full_html=False)
    assert "sliders" in html and "steps=16" in html


def _assert_fits_its_column(fig) -> None:
    """No fixed width (the figure fills the output area or the book's column), a fixed height,
    and the three image panels keep square pixels however narrow it gets."""
    layout = fig.to_plotly_json()["layout"]
    assert "width" not in layout and layout["autosize"] is True and layout["height"] > 0
    images = [t for t in fig.data if t.type == "image"]
    assert len(images) == 3
    for t in images:
        xa, ya = fig.layout[t.xaxis.replace("x", "xaxis")], fig.layout[t.yaxis.replace("y", "yaxis")]
        assert ya.scaleanchor == t.xaxis and ya.scaleratio == 1
        assert xa.constrain == ya.constrain == "domain"  # the panel shrinks inside its cell, not its range


def test_explorer_figures_fit_the_column_they_are_shown_in():
    # chapter 5's explorer was 900 px wide: in JupyterLab's 844 px output area (1280 px window,
    # file browser open) its IG panel and the delta plot scrolled out of view
    net = relu_net(classes=3).eval()
    x = images(1, 16, seed=6)
    ex = ig_explorer(net, x, n_steps=2, warm_steps=(1,))
    _assert_fits_its_column(ex.figure)
    assert ex.widget.layout.width == "100%"
    for child in ex.widget.children:  # they stretch to the box; 100% plus their margins would overflow it
        assert child.layout.width is None
    assert ex.widget.children[0].layout.flex_flow == "row wrap"  # the two sliders wrap when narrow
    ex.steps_slider.value = 4
    _assert_fits_its_column(ex.figure)  # and so does every redrawn figure

    fig = static_ig_slider(net, x, steps=(1, 4), alphas=(0.0, 1.0))
    _assert_fits_its_column(fig)
    for slider in fig.layout.sliders:  # inside the plot's width
        assert 0 <= slider.x and slider.x + slider.len <= 1


# ------------------------------------------------------------------ cervix explain
def test_load_input_matches_the_evaluation_dataset(synth_index):
    item = synth_index.subset("multi")[0]
    X = load_input(item.path, 64)
    torch.testing.assert_close(X, CellImageDataset([item], image_size=64, train=False)[0][0])


@pytest.fixture(scope="module")
def smoke_run(synth_root, tmp_path_factory):
    from cervixlib.config import make_config
    from cervixlib.train import fit

    # one 70/20/10 split (folds=1), the run the completeness bound below was measured on
    cfg = make_config("resnet50", profile="smoke", root=str(synth_root), folds=1)
    return fit(cfg, runs_dir=tmp_path_factory.mktemp("explain_runs"), progress=False)


def test_explain_command_writes_the_fig2_panel(smoke_run, tmp_path):
    item = smoke_run.test_items()[0]
    res = explain_command(smoke_run.dir, item.path, out=tmp_path / "fig2.png", steps=16)
    assert (tmp_path / "fig2.png").stat().st_size > 10_000
    assert res.ig is not None and res.ig.n_steps == 16 and res.gradient.method == "saliency"
    assert res.ig.relative_delta.item() < 0.05  # a trained model from black: measured 0.4% at 8 steps
    assert res.target == res.predicted
    assert 0 <= res.in_cell["IG cell share"] <= 1  # the image is in the run's dataset
    assert "delta" in res.summary() and "fig2.png" in res.summary()
    html = explain_command(smoke_run.dir, item.path, out=tmp_path / "fig2.html", steps=4, target=1)
    page = (tmp_path / "fig2.html").read_text()
    assert html.target == 1 and page.count("iVBORw0KGgo") >= 5 and "Plotly.newPlot" in page  # 5 PNG panels
    with pytest.raises(ValueError, match="unknown figure type"):
        explain_command(smoke_run.dir, item.path, out=tmp_path / "fig.txt")
    with pytest.raises(ValueError, match="target"):
        explain_command(smoke_run.dir, item.path, out=tmp_path / "f.png", target=9)
