"""The measured explanations of chapter 5 against known answers: a toy model that reads one
region (faithfulness and pointing near perfect, beating the random control), an untrained
network (no better than chance), hand-made masks (pointing game, concentration), NumPy's
trapezoid rule and SciPy's Spearman, Grad-CAM on every registered model, and the paired
verdict on constructed cases."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from cervixlib.data import MEAN, STD, cell_components, cell_mask
from cervixlib.explain import (
    ExplanationStudy,
    attention_map,
    cascading_randomisation,
    concentration,
    explanation_study,
    gradcam,
    ig_convergence,
    make_baseline,
    method_maps,
    part_shares,
    perturbation_curves,
    pointing_game,
    randomise_weights,
    spearman_per_image,
)
from cervixlib.explain.baselines import background_colour
from cervixlib.explain.faithfulness import curve_auc, perturbation_masks, pixel_ranks
from cervixlib.explain.maps import edge_map, random_map
from cervixlib.explain.randomisation import cascade_stages
from cervixlib.metrics import Interval

S = 32


# ------------------------------------------------------------------ a model that reads one region
def region_mask(size: int = S) -> torch.Tensor:
    m = torch.zeros(size, size, dtype=torch.bool)
    m[4:12, 18:26] = True  # 64 pixels = 1/16 of a 32 x 32 image
    return m


class RegionModel(nn.Module):
    """Logits ``[4 (mean_R x_0 - 1.5), 0]``: the answer depends on region R of channel 0 only."""

    def __init__(self, region: torch.Tensor):
        super().__init__()
        self.register_buffer("region", region.float())
        self.scale = nn.Parameter(torch.tensor(4.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = (x[:, 0] * self.region).flatten(1).sum(1) / self.region.sum()
        return torch.stack([self.scale * (m - 1.5), torch.zeros_like(m)], dim=1)


def region_images(n: int = 6, seed: int = 0) -> torch.Tensor:
    """Value 3 in R on every channel, a little noise elsewhere (normalised space)."""
    g = torch.Generator().manual_seed(seed)
    X = 0.05 * torch.randn(n, 3, S, S, generator=g)
    X[:, :, region_mask()] = 3.0
    return X


def test_a_map_of_the_region_the_model_reads_is_faithful_and_beats_random():
    R = region_mask()
    model, X = RegionModel(R).eval(), region_images()
    t = torch.zeros(len(X), dtype=torch.long)
    maps = {"region": R.float().expand(len(X), S, S) + 0.01 * torch.rand(len(X), S, S),
            "random": random_map((len(X), S, S), seed=1)}
    curves = perturbation_curves(model, X, maps, t, steps=16, fill="background")
    reg, rnd = curves["region"], curves["random"]
    assert reg.deletion_auc.max() < 0.1 and reg.insertion_auc.min() > 0.9
    assert np.all(reg.deletion_auc < rnd.deletion_auc - 0.2)
    assert np.all(reg.insertion_auc > rnd.insertion_auc + 0.2)
    # the model's own gradients find the region: saliency and IG point into it and are faithful
    for method in ("saliency", "ig"):
        m = method_maps(model, X, method, t, n_steps=16)
        assert np.all(pointing_game(m, R) == 1.0)
        own = perturbation_curves(model, X, {method: m}, t, steps=16, fill="background")[method]
        assert own.deletion_auc.max() < 0.1
    # the blur fill (the default) also ranks the region first, less sharply
    blur = perturbation_curves(model, X, maps, t, steps=16)
    assert np.all(blur["region"].deletion_auc < blur["random"].deletion_auc)


def test_an_untrained_network_sits_near_chance():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 5)).eval()
    X = region_images(8)
    t = net(X).argmax(1)
    maps = {"region": region_mask().float().expand(8, S, S).clone(), "random": random_map((8, S, S))}
    curves = perturbation_curves(net, X, maps, t, steps=8)
    for c in curves.values():  # flat curves: the order of removal makes no difference
        assert np.abs(c.deletion_auc - c.insertion_auc).max() < 0.05
    # a random map hits the cells at the rate of their area, not more
    cells = torch.zeros(S, S, dtype=torch.bool)
    cells[:, : S // 4] = True
    hits = pointing_game(random_map((400, S, S), seed=3), cells)
    assert abs(hits.mean() - 0.25) < 3 * np.sqrt(0.25 * 0.75 / 400)


# ------------------------------------------------------------------ pure metrics on hand-made cases
def test_curve_auc_is_the_trapezoid_rule():
    rng = np.random.default_rng(0)
    c = rng.random((5, 11))
    np.testing.assert_allclose(curve_auc(c), np.trapezoid(c, np.linspace(0, 1, 11), axis=1))
    x = np.sort(rng.random(11))
    np.testing.assert_allclose(curve_auc(c, x), np.trapezoid(c, x, axis=1))
    with pytest.raises(ValueError, match="points"):
        curve_auc(c, np.linspace(0, 1, 5))


def test_perturbation_steps_take_the_top_ranked_pixels():
    maps = torch.rand(3, 10, 10)
    maps[0, :5] = 1.0  # ties: broken at random, not by position
    ranks = pixel_ranks(maps, seed=0)
    assert all(sorted(r.flatten().tolist()) == list(range(100)) for r in ranks)
    order = ranks[1].flatten().argsort()
    assert torch.equal(order, maps[1].flatten().argsort(descending=True))
    masks = perturbation_masks(ranks, 4)
    assert masks.flatten(2).sum(2).tolist() == [[0, 25, 50, 75, 100]] * 3
    assert masks[0, 2].flatten().nonzero().numel() == 50 and masks[0, 2, :5].all()
    first_rows = masks[0, 1, :5].float().mean(0)  # the 25 pixels of the tied top half spread over columns
    assert first_rows.min() < 1.0 and torch.equal(pixel_ranks(maps, seed=0), ranks)


def test_pointing_game_ties_and_tolerance():
    cell = np.zeros((1, 9, 9), bool)
    cell[0, 2:5, 2:5] = True
    peak_outside = np.zeros((1, 9, 9))
    peak_outside[0, 3, 6] = 1.0  # 2 px right of the cell
    assert pointing_game(peak_outside, cell).tolist() == [0.0]
    assert pointing_game(peak_outside, cell, tolerance=2).tolist() == [1.0]
    tie = np.zeros((1, 9, 9))
    tie[0, 3, 3] = tie[0, 8, 8] = 1.0
    assert pointing_game(tie, cell, ties="all").tolist() == [0.0]
    assert pointing_game(tie, cell, ties="any").tolist() == [1.0]
    assert np.isnan(pointing_game(np.zeros((1, 9, 9)), cell)[0])
    with pytest.raises(ValueError, match="non-negative"):
        pointing_game(-tie, cell)


def test_concentration_counts_the_fewest_cells_holding_the_level():
    cells = np.zeros((3, 6, 6), bool)
    cells[0, :2], cells[1, 2:4], cells[2, 4:] = True, True, True
    m = np.zeros((6, 6))
    m[:2], m[2:4], m[4:] = 0.5 / 12, 0.2 / 12, 0.3 / 12  # cell masses 0.5, 0.2, 0.3
    assert concentration(m, cells) == (2.0, 2 / 3)  # 0.5 + 0.3 = 0.8 exactly: two cells
    assert concentration(m, cells, level=0.81) == (3.0, 1.0)
    assert concentration(m, cells, level=0.5) == (1.0, 1 / 3)
    one = np.zeros((6, 6))
    one[4:] = 1.0
    one[0, 0] = 0.0
    assert concentration(one, cells) == (1.0, 1 / 3)
    assert all(np.isnan(concentration(np.zeros((6, 6)), cells)))


def test_part_shares_add_up():
    rng = np.random.default_rng(1)
    maps = rng.random((4, 8, 8))
    cell = np.zeros((8, 8), bool)
    cell[2:6, 2:6] = True
    nucleus = np.zeros((8, 8), bool)
    nucleus[3:5, 3:5] = True
    s = part_shares(maps, cell, nucleus)
    np.testing.assert_allclose(s["nucleus"] + s["cytoplasm"], s["cell"])
    np.testing.assert_allclose(s["cell"], (maps * cell).sum((1, 2)) / maps.sum((1, 2)))
    np.testing.assert_allclose(s["nucleus_of_cell"], s["nucleus"] / s["cell"])


def test_per_cell_masks_are_the_image_mask_cell_by_cell(synth_index):
    item = next(it for it in synth_index.multi if len(it.cells) >= 2)
    per = cell_components(item, (48, 48))
    assert per.shape == (len(item.cells), 48, 48)
    np.testing.assert_array_equal(per.any(0), cell_mask(item, (48, 48)))
    one = replace(item, cells=item.cells[:1])
    np.testing.assert_array_equal(per[0], cell_mask(one, (48, 48)))


def test_white_and_background_baselines():
    X = torch.zeros(1, 3, 16, 16)
    pale = (torch.tensor([0.9, 0.88, 0.85]) - torch.tensor(MEAN)) / torch.tensor(STD)
    dark = (torch.tensor([0.3, 0.2, 0.4]) - torch.tensor(MEAN)) / torch.tensor(STD)
    X[0] = pale.view(3, 1, 1)
    X[0, :, 4:9, 4:9] = dark.view(3, 1, 1)  # a dark cell on a pale background
    torch.testing.assert_close(background_colour(X)[0, :, 0, 0], pale)
    white = make_baseline(X, "white")
    torch.testing.assert_close(white[0, :, 0, 0], (1 - torch.tensor(MEAN)) / torch.tensor(STD))
    assert make_baseline(X, "background").shape == X.shape


def test_edge_map_is_the_sobel_magnitude_of_the_grey_image():
    from scipy import ndimage

    rgb = torch.rand(2, 3, 12, 12)
    X = (rgb - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    grey = rgb.mean(1).numpy().astype(np.float64)
    ref = np.stack([np.hypot(ndimage.sobel(g, axis=1, mode="nearest"), ndimage.sobel(g, axis=0, mode="nearest"))
                    for g in grey])  # per image: ndimage.sobel smooths along every other axis
    np.testing.assert_allclose(edge_map(X).numpy(), ref, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ models
@pytest.mark.parametrize("name", ["resnet50", "densenet121", "ran_resnet50", "rcan_densenet121",
                                  "rcan_densenet121_released"])
def test_gradcam_on_the_registered_models(name):
    from cervixlib.models import create_model

    torch.manual_seed(0)
    model = create_model(name, num_classes=5).eval()
    X = torch.randn(2, 3, 64, 64)
    cam = gradcam(model, X, [1, 3])
    assert cam.shape == (2, 64, 64) and torch.isfinite(cam).all() and cam.min() >= 0
    assert not model.training
    if name == "ran_resnet50":
        att = attention_map(model, X)
        assert att.shape == (2, 64, 64) and att.min() > 0 and att.max() < 1


def test_cascading_randomisation_goes_head_first_and_ends_fully_random():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.Softplus(), nn.Conv2d(6, 6, 3, padding=1), nn.Tanh(),
                        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 3)).eval()
    X = torch.randn(3, 3, 16, 16)
    t = net(X).argmax(1)
    assert cascade_stages(net, X) == ["6", "2", "0"]
    res = cascading_randomisation(net, X, t, methods=("saliency",), seed=5)
    full = randomise_weights(net, seed=5, layers=["6", "2", "0"])
    a, b = method_maps(full, X, "saliency", t).numpy(), method_maps(net, X, "saliency", t).numpy()
    ref = [stats.spearmanr(a[i].ravel(), b[i].ravel()).statistic for i in range(3)]
    np.testing.assert_allclose(res.spearman["saliency"][-1], ref)
    np.testing.assert_allclose(spearman_per_image(a, b), ref)
    two = cascading_randomisation(net, X, t, methods=("saliency",), seed=5, max_stages=2)
    assert two.stages == ["6", "0"]  # the head, then the whole model
    np.testing.assert_allclose(two.spearman["saliency"], res.spearman["saliency"][[0, 2]])


def test_convergence_shrinks_with_steps():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.Softplus(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                        nn.Linear(24, 3)).eval()
    X = torch.randn(2, 3, 16, 16)
    c = ig_convergence(net, X, net(X).argmax(1), steps=(2, 8, 32))
    assert c.absolute.shape == (3, 2)
    assert np.all(c.relative[-1] <= c.relative[0] + 1e-9)
    np.testing.assert_allclose(c.relative, c.absolute / np.abs(c.absolute / c.relative), rtol=1e-6)


# ------------------------------------------------------------------ the study and the verdict
def test_explanation_study_on_synthetic_items(synth_index):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 5)).eval()
    items = [it for it in synth_index.multi if it.cells][:3]
    s = explanation_study(net, items, image_size=S, name="toy", methods=("saliency", "ig", "random", "edge",
                                                                          "ig_released"),
                          n_steps=4, perturbation_steps=4, released_images=1)
    assert s.methods == ("saliency", "ig", "random", "edge", "ig_released")
    assert s.images == [it.path.name for it in items]
    released = s.values.pop("ig_released")  # on the first image only
    assert all(np.isfinite(v[0]) and np.isnan(v[1:]).all() for k, v in released.items() if k != "nucleus_of_cell")
    assert s.curves["ig_released"].deletion.shape == (3, 5) and np.isnan(s.curves["ig_released"].deletion[1:]).all()
    for v in s.values.values():
        assert all(x.shape == (3,) for x in v.values())
        assert np.all((v["in_cell"] >= 0) & (v["in_cell"] <= 1))
        assert np.all((v["cells_80"] >= 1) & (v["cells_80"] <= s.n_cells))
    rows = s.rows(n_resamples=200)
    assert [r["method"] for r in rows] == ["saliency", "IG (ours)", "random (control)", "Sobel edges (control)"]
    assert all(isinstance(r["in-cell share"], Interval) for r in rows)


def _fake(model: str, in_cell: np.ndarray, cells: np.ndarray) -> ExplanationStudy:
    n = len(in_cell)
    return ExplanationStudy(model=model, images=[f"{i}.bmp" for i in range(n)], label=np.zeros(n),
                            target=np.zeros(n), probability=np.zeros((n, 5)), n_cells=np.full(n, 5),
                            area=np.full(n, 0.2), values={"ig": {"in_cell": in_cell, "cells_80": cells}}, curves={})


def test_fig2_claim_on_constructed_cases():
    """Claim 4 through the front page's one rule (cervixlib.claims): a clear win, a loss, a tie, too few images."""
    from cervixlib.claims import CONTRADICTED, SUPPORTED, UNDECIDED, fig2_claim

    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.4, 40)
    cells = rng.integers(2, 5, 40).astype(float)
    other = _fake("densenet121", base, cells)
    kw = {"synthetic": True, "n_resamples": 500}
    fewer = rng.choice([1, 2], 40, p=[0.8, 0.2])  # one or two cells fewer, image by image
    win = fig2_claim(_fake("rcan_densenet121", base + 0.1 + rng.normal(0, 0.01, 40), cells - fewer), other, **kw)
    assert win.verdict == SUPPORTED and [e.verdict for e in win.evidence] == [SUPPORTED, SUPPORTED]
    assert "+10." in win.details() and "RCAN-DenseNet-121 − DenseNet-121" in win.details()
    assert win.evidence[1].difference.mean == pytest.approx(-fewer.mean())  # cells, not scaled to points
    loss = fig2_claim(_fake("rcan_densenet121", base - 0.1, cells + fewer), other, **kw)
    assert loss.verdict == CONTRADICTED
    # one cell fewer on every image: no spread to put an interval on, so undecided, and the reason said
    same = fig2_claim(_fake("rcan_densenet121", base + 0.1 + rng.normal(0, 0.01, 40), cells - 1), other, **kw)
    assert same.evidence[1].verdict == UNDECIDED and "no spread" in same.details()
    tie = fig2_claim(_fake("rcan_densenet121", base + rng.normal(0, 0.05, 40), cells + rng.choice([-1, 1], 40)),
                     other, **kw)
    assert tie.verdict == UNDECIDED
    few = fig2_claim(_fake("rcan_densenet121", base[:5] + 0.1, cells[:5] - 1),
                     _fake("densenet121", base[:5], cells[:5]), **kw)
    assert few.verdict == UNDECIDED and not few.evidence[0].difference.has_interval
    with pytest.raises(ValueError, match="different images"):
        fig2_claim(_fake("rcan_densenet121", base[:10], cells[:10]), other, **kw)


# ------------------------------------------------------------------ every measure at every profile's sizes
def _three_cells(size: int = S) -> tuple[np.ndarray, np.ndarray]:
    """Three square cells ``(3, S, S)`` and the nucleus of the first ``(S, S)``: the model reads that nucleus."""
    cells = np.zeros((3, size, size), bool)
    cells[0, 4:12, 18:26] = cells[1, 20:28, 2:10] = cells[2, 20:28, 20:28] = True
    nucleus = np.zeros((size, size), bool)
    nucleus[6:10, 20:24] = True
    return cells, nucleus


@pytest.mark.parametrize("profile", ["smoke", "default", "paper"])
def test_every_measure_ranks_a_faithful_map_above_the_random_control(profile):
    """At each profile's chapter-5 sizes (its images a model, its deletion/insertion steps, the
    chapter's blur fill), each measure of METRICS ranks the map of a model that reads one
    nucleus (the model's own saliency) above the random control; where the profile explains
    enough images for an interval, the paired interval of the difference excludes 0."""
    from cervixlib.comparison import paired_bootstrap
    from cervixlib.config import get_profile
    from cervixlib.explain.evaluation import BETTER, METRICS
    from cervixlib.explain.localisation import stack_concentration
    from cervixlib.metrics import MIN_IMAGES

    prof = get_profile(profile)
    n, steps = prof.explain_images, prof.explain.perturbation_steps
    cells, nucleus = _three_cells()
    model = RegionModel(torch.from_numpy(nucleus)).eval()
    g = torch.Generator().manual_seed(0)
    X = 0.05 * torch.randn(n, 3, S, S, generator=g)
    X[:, :, torch.from_numpy(nucleus)] = 3.0
    t = model(X).argmax(1)
    maps = {"faithful": method_maps(model, X, "saliency", t), "random": random_map((n, S, S), seed=1)}
    curves = perturbation_curves(model, X, maps, t, steps=steps, fill="blur")
    cell = cells.any(0)
    values = {}
    for name, m in maps.items():
        a = m.numpy()
        shares = part_shares(a, cell, nucleus)
        count, fraction = stack_concentration(a, [cells] * n)
        values[name] = {"deletion_auc": curves[name].deletion_auc, "insertion_auc": curves[name].insertion_auc,
                        "pointing": pointing_game(a, cell), "in_cell": shares["cell"],
                        "nucleus_of_cell": shares["nucleus_of_cell"], "cells_80": count,
                        "cells_80_fraction": fraction}
    assert set(values["faithful"]) == set(METRICS) == set(BETTER)
    for metric, side in BETTER.items():
        f, r = values["faithful"][metric], values["random"][metric]
        assert side * (np.nanmean(f) - np.nanmean(r)) > 0, (metric, np.nanmean(f), np.nanmean(r))
        if n >= MIN_IMAGES:
            d = paired_bootstrap(f, r, n_resamples=500)
            if d.has_interval:
                assert min(side * d.low, side * d.high) > 0, (metric, d)
            else:  # the same difference on every image (no spread): each image must favour the map
                ok = np.isfinite(f) & np.isfinite(r)
                assert np.all(side * (f[ok] - r[ok]) > 0), (metric, d)


def test_measure_tables_put_the_models_side_by_side_and_say_when_a_measure_separates_nothing():
    from cervixlib.explain.evaluation import measure_rows, separation_text

    rng = np.random.default_rng(0)
    n = 20

    def study(model: str, ig: np.ndarray) -> ExplanationStudy:
        values = {m: {k: rng.uniform(0.3, 0.5, n) for k in ("deletion_auc", "in_cell")} for m in ("ig", "random")}
        values["ig"]["in_cell"] = ig
        return ExplanationStudy(model=model, images=[f"{i}.bmp" for i in range(n)], label=np.zeros(n),
                                target=np.zeros(n), probability=np.zeros((n, 5)), n_cells=np.full(n, 3),
                                area=np.full(n, 0.2), values=values, curves={})

    studies = {"densenet121": study("densenet121", rng.uniform(0.8, 0.9, n)),
               "rcan_densenet121": study("rcan_densenet121", rng.uniform(0.3, 0.5, n))}
    rows = measure_rows(studies, "in_cell", n_resamples=200)
    assert [r["method"] for r in rows] == ["IG (ours)", "random (control)",
                                           "the cells' share of the image (a map blind to the cells)"]
    assert list(rows[0]) == ["method", "DenseNet-121", "RCAN-DenseNet-121"]
    assert rows[0]["DenseNet-121"].value == pytest.approx(studies["densenet121"].values["ig"]["in_cell"].mean())
    assert separation_text(studies, "in_cell", n_resamples=200) == ""  # IG beats random on DenseNet-121
    text = separation_text(studies, "deletion_auc", n_resamples=200)
    assert text.startswith("Here the deletion AUC tells no method from the random control") and "20 images" in text
