"""cervixlib.figures: the Fig. 2 layout as plotly and matplotlib figures, from known pixels."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from cervixlib.figures import (
    FIG2_COLUMNS,
    Fig2Row,
    attribution_heatmap,
    colorize,
    fig2_matplotlib,
    fig2_plotly,
    fig2_rows,
    overlay,
    png_data_uri,
    to_rgb,
)


def _decode(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def _row(size: int = 20, with_ig: bool = True, label: str = "net") -> Fig2Row:
    image = np.zeros((size, size, 3), np.float32)
    image[..., 1] = 0.5
    grad = np.zeros((3, size, size), np.float32)
    grad[:, :5, :5] = 1.0  # top-left corner
    ig = np.zeros((size, size), np.float32)
    ig[-5:, -5:] = -2.0  # bottom-right corner (sign ignored)
    return Fig2Row(image, grad, ig if with_ig else None, label=label, note="delta +0.001")


def test_to_rgb_accepts_chw_hwc_float_and_uint8():
    chw = torch.rand(3, 6, 7)
    np.testing.assert_allclose(to_rgb(chw), chw.permute(1, 2, 0).numpy())
    u8 = np.full((6, 7, 3), 255, np.uint8)
    np.testing.assert_allclose(to_rgb(u8), np.ones((6, 7, 3)))
    with pytest.raises(ValueError, match="image must be"):
        to_rgb(np.zeros((4, 5, 6, 7)))


def test_heatmap_reduces_channels_and_clips_at_a_percentile():
    a = np.zeros((3, 20, 20), np.float32)
    a[0, 0, 0] = 100.0  # one extreme pixel in 400
    a[:, 10:, :] = -1.0  # |A| summed over channels: 3
    h = attribution_heatmap(a, clip_percentile=99)
    assert h.shape == (20, 20) and h.max() == 1.0 and h.min() == 0.0
    assert np.allclose(h[10:, :], 1.0)  # the outlier does not wash the rest out
    assert np.allclose(h[1:10, :], 0.0)
    assert np.all(attribution_heatmap(np.zeros((4, 4))) == 0)


def test_overlay_keeps_the_image_where_the_map_is_zero():
    image = np.full((4, 4, 3), 0.3, np.float32)
    heat = np.zeros((4, 4), np.float32)
    heat[0, 0] = 1.0
    out = overlay(image, heat, alpha=1.0)
    np.testing.assert_allclose(out[1:, :], image[1:, :])
    np.testing.assert_allclose(out[0, 0], colorize(heat)[0, 0])


def test_png_data_uri_round_trips():
    rgb = np.random.default_rng(0).random((5, 6, 3)).astype(np.float32)
    back = _decode(png_data_uri(rgb))
    assert back.shape == (5, 6, 3)
    np.testing.assert_allclose(back / 255.0, rgb, atol=1 / 255)


def test_fig2_plotly_has_the_five_panels_of_the_paper():
    rows = [_row(label="DenseNet-121"), _row(label="RCAN-DenseNet-121")]
    fig = fig2_plotly(rows, title="Fig. 2")
    assert len(fig.data) == 10 and all(t.type == "image" for t in fig.data)
    titles = [a.text for a in fig.layout.annotations]
    assert list(FIG2_COLUMNS) == titles[:5]
    assert any("RCAN-DenseNet-121" in t and "delta" in t for t in titles)
    original, grad_overlay, ig_overlay, grad, ig = (_decode(t.source) for t in fig.data[:5])
    np.testing.assert_allclose(original[..., 1], 128, atol=1)
    # the gradient panel is bright where the gradient is, the IG panel where IG is
    assert grad[:5, :5].mean() > grad[-5:, -5:].mean() + 100
    assert ig[-5:, -5:].mean() > ig[:5, :5].mean() + 100
    assert np.abs(grad_overlay[10:15, 10:15].astype(int) - original[10:15, 10:15]).max() <= 1
    assert fig.to_html(include_plotlyjs=False).count("iVBORw0KGgo") == 10


def test_fig2_matplotlib_exports_a_png(tmp_path):
    fig, axes = fig2_matplotlib([_row(), _row()], title="Fig. 2")
    assert axes.shape == (2, 5)
    assert [ax.get_title() for ax in axes[0]] == list(FIG2_COLUMNS)
    fig.savefig(tmp_path / "fig2.png")
    with Image.open(tmp_path / "fig2.png") as im:
        assert im.width > im.height > 100


def test_fig2_without_ig_has_three_columns_and_rows_must_agree():
    fig, axes = fig2_matplotlib(_row(with_ig=False))
    assert axes.shape == (1, 3)
    assert len(fig2_plotly(_row(with_ig=False)).data) == 3
    with pytest.raises(ValueError, match="all have IG"):
        fig2_plotly([_row(), _row(with_ig=False)])


def test_fig2_rows_from_attributions_carry_the_delta():
    from cervixlib.explain import attribute

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 5)).eval()
    X = torch.randn(2, 3, 12, 12)
    grad = attribute(net, X, method="saliency")
    ig = attribute(net, X, n_steps=8)
    rows = fig2_rows(torch.rand(2, 3, 12, 12), grad, ig, label="toy", class_names=list("ABCDE"))
    assert len(rows) == 2 and "IG 8 steps" in rows[0].note and "delta" in rows[0].note
    assert rows[0].note.startswith("explained: " + "ABCDE"[int(grad.target[0])])
    told = fig2_rows(torch.rand(2, 3, 12, 12), grad, ig, class_names=list("ABCDE"), true_labels=[3, 4])
    assert told[1].note.startswith(f"true: E, predicted and explained: {'ABCDE'[int(grad.target[1])]}")
    fig, axes = fig2_matplotlib(rows)
    assert axes.shape == (2, 5)


# ------------------------------------------------------------------ classes by short name
HERLEV = ("carcinoma_in_situ", "light_dysplastic", "moderate_dysplastic", "normal_columnar",
          "normal_intermediate", "normal_superficiel", "severe_dysplastic")


def test_channel_weights_name_seven_classes_by_short_name_with_a_key():
    from cervixlib.figures import channel_weights

    labels = np.arange(14) % 7
    fig = channel_weights({"unit": torch.rand(14, 8)}, labels, HERLEV, title="t")
    (heat,) = fig.data
    assert list(heat.y) == list(HERLEV)  # the hover text's full names
    assert list(fig.layout.yaxis.ticktext) == ["CIS", "LD", "MD", "NC", "NI", "NS", "SD"]
    keys = [a.text for a in fig.layout.annotations if "CIS (carcinoma_in_situ)" in a.text]
    assert len(keys) == 1 and fig.layout.margin.b >= 60


def test_confusion_matrices_keep_sipakmeds_short_names(tmp_path):
    from cervixlib.config import make_config
    from cervixlib.facts import CLASSES
    from cervixlib.figures import confusion_matrices
    from cervixlib.metrics import classification_metrics
    from cervixlib.runs import Run

    y = np.arange(10) % 5
    run = Run(dir=tmp_path, config=make_config("resnet50", profile="smoke"), key="k", info={}, history=[],
              metrics={"test": classification_metrics(y, np.eye(5)[y], CLASSES)}, predictions={})
    fig = confusion_matrices({"resnet50": run})
    assert list(fig.layout.xaxis.ticktext) == ["Dys", "Koi", "Met", "Par", "Sup"]
    assert list(fig.data[0].y) == list(CLASSES) and "true: %{y}" in fig.data[0].hovertemplate


def test_attention_overlays_wrap_long_row_labels():
    from cervixlib.figures import attention_overlays

    fig = attention_overlays(torch.rand(2, 3, 16, 16), {"attn1": torch.rand(2, 4, 4, 4)},
                             labels=["Negative for intraepithelial lesion", "SCC"])
    assert fig.layout.yaxis.title.text == "Negative for<br>intraepithelial<br>lesion"
    assert fig.layout.yaxis3.title.text == "SCC"
