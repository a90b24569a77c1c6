"""One meaning per reduction name, shared by the figures, the in-cell share and the explorer;
Fig. 2's scaling rule; IG's integration points; explain depends on no training code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import roots_legendre

from cervixlib.explain import in_cell_share
from cervixlib.explain.explorer import integration_alphas
from cervixlib.reductions import MASS_REDUCTIONS, REDUCTIONS, attribution_mass, reduce_channels
from cervixlib.figures import attribution_heatmap

# two channels of one 1x3 image: pixel 0 cancels out, pixel 1 is positive, pixel 2 negative
A = torch.tensor([[[[1.0, 2.0, -1.0]], [[-1.0, 1.0, -2.0]]]])  # (1, 2, 1, 3)
EXPECTED = {"abs": [2.0, 3.0, 3.0], "sum": [0.0, 3.0, -3.0], "abs_sum": [0.0, 3.0, 3.0], "positive": [0.0, 3.0, 0.0]}


@pytest.mark.parametrize("name", REDUCTIONS)
def test_each_reduction_is_the_map_its_name_says(name):
    assert reduce_channels(A, name)[0, 0].tolist() == EXPECTED[name]
    assert A.sum(dim=1)[0, 0].tolist() == EXPECTED["sum"]  # the reference: the plain channel sum


@pytest.mark.parametrize("name", MASS_REDUCTIONS)
def test_the_heat_map_and_the_in_cell_share_measure_the_same_mass(name):
    mask = np.array([[False, True, True]])
    mass = np.array(EXPECTED[name])
    share = in_cell_share(A, mask, reduce=name)[0]
    assert share == pytest.approx(mass[1:].sum() / mass.sum())
    heat = attribution_heatmap(A[0], reduce=name, clip_percentile=100)
    np.testing.assert_allclose(heat[0], mass / mass.max())


def test_a_signed_sum_is_no_mass():
    with pytest.raises(ValueError, match="abs_sum"):
        attribution_mass(A, "sum")
    with pytest.raises(ValueError, match="non-negative"):
        in_cell_share(A, np.ones((1, 3), bool), reduce="sum")
    with pytest.raises(ValueError, match="non-negative"):
        attribution_heatmap(A[0], reduce="sum")


def test_a_map_without_channels_counts_as_one_channel():
    flat = A.sum(dim=1)  # (1, 1, 3)
    assert in_cell_share(flat, np.array([[True, False, False]]), reduce="abs_sum")[0] == 0.0
    np.testing.assert_allclose(attribution_heatmap(flat[0], reduce="positive", clip_percentile=100)[0], [0, 1, 0])


def test_fig2_maps_are_divided_by_their_99th_percentile_and_clipped():
    values = np.arange(200, dtype=np.float32).reshape(10, 20)  # sorted: 0, 1, ..., 199
    p99 = 0.99 * 199  # linear interpolation between ranks: 197.01
    heat = attribution_heatmap(values)
    np.testing.assert_allclose(heat.ravel()[:198], np.arange(198) / p99, rtol=1e-5)
    assert heat.ravel()[198:].tolist() == [1.0, 1.0]
    assert attribution_heatmap(np.zeros((4, 4))).max() == 0.0


@pytest.mark.parametrize("n", [1, 2, 7, 50])
def test_gauss_legendre_points_are_the_legendre_roots_on_0_1(n):
    roots, _ = roots_legendre(n)
    np.testing.assert_allclose(integration_alphas("gausslegendre", n), (np.sort(roots) + 1) / 2, atol=1e-12)


def test_riemann_points_are_the_left_middle_right_ends_and_both_ends_for_the_trapezoid():
    assert integration_alphas("riemann_left", 4) == [0.0, 0.25, 0.5, 0.75]
    assert integration_alphas("riemann_middle", 4) == [0.125, 0.375, 0.625, 0.875]
    assert integration_alphas("riemann_right", 4) == [0.25, 0.5, 0.75, 1.0]
    assert integration_alphas("riemann_trapezoid", 5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError, match="unknown"):
        integration_alphas("simpson", 4)


def test_explain_imports_no_training_code():
    code = "import sys, cervixlib.explain; print('cervixlib.train' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_library_uses_no_private_module_of_captum():
    src = Path(__file__).resolve().parents[1] / "src" / "cervixlib"
    offenders = [str(p.relative_to(src)) for p in src.rglob("*.py")
                 if re.search(r"captum\.\w+(\.\w+)*\._", p.read_text(encoding="utf-8"))]
    assert offenders == []
