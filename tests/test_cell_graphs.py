"""Cell graphs (cervixlib.graphs) and the graph models (cervixlib.models.cell_graph).

Checked against independent answers: hand-made outlines of known area, perimeter and
eccentricity; the Delaunay triangulation by its defining property (no point inside any
triangle's circumcircle), found by brute force; Captum's completeness for IG over node
features; and a toy whose class depends on the arrangement of the cells only.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.usefixtures("one_thread")


def _circle(cx, cy, r, n=64):
    t = np.arange(n) * (2 * np.pi / n)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1).astype(np.float32)


def _write_dat(path: Path, points) -> None:
    path.write_text("".join(f"{x:.4f},{y:.4f}\n" for x, y in points))


def _item(tmp_path: Path, cells, *, size=(120, 80), name="001", colour=(200, 180, 190)):
    """A multi-cell image with ``cells`` [(cytoplasm, nucleus or None)], its .dat files written."""
    from cervixlib.data import Cell, Item

    W, H = size
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"{name}.bmp"
    Image.fromarray(np.full((H, W, 3), colour, np.uint8)).save(path)
    out = []
    for k, (cyt, nuc) in enumerate(cells, start=1):
        _write_dat(tmp_path / f"{name}_cyt{k:02d}.dat", cyt)
        if nuc is not None:
            _write_dat(tmp_path / f"{name}_nuc{k:02d}.dat", nuc)
        out.append(Cell(np.asarray(cyt, np.float32), None if nuc is None else np.asarray(nuc, np.float32)))
    return Item(path, 0, f"C/{name}", tuple(out), size)


# ------------------------------------------------------------------ shape
def test_polygon_morphometry_of_known_shapes():
    from cervixlib.graphs import polygon_morphometry

    square = np.array([[10, 10], [20, 10], [20, 20], [10, 20]], float)
    m = polygon_morphometry(square)
    assert m.area == pytest.approx(100) and m.perimeter == pytest.approx(40)
    assert m.centroid == pytest.approx((15, 15)) and m.eccentricity == pytest.approx(0, abs=1e-9)
    # an ellipse with semi-axes 20 and 10, rotated by 30 degrees: e = sqrt(1 - (b/a)^2)
    t = np.linspace(0, 2 * np.pi, 2000, endpoint=False)
    rot = np.deg2rad(30)
    x, y = 20 * np.cos(t), 10 * np.sin(t)
    ellipse = np.stack([50 + x * np.cos(rot) - y * np.sin(rot), 40 + x * np.sin(rot) + y * np.cos(rot)], 1)
    m = polygon_morphometry(ellipse)
    assert m.area == pytest.approx(math.pi * 200, rel=1e-4)
    assert m.eccentricity == pytest.approx(math.sqrt(1 - 0.25), rel=1e-4)
    assert m.centroid == pytest.approx((50, 40), abs=1e-6)
    # clockwise order gives the same answer, and dense sampling on one side does not bias it
    lopsided = np.vstack([np.linspace([10, 10], [20, 10], 200), [[20, 20], [10, 20]]])
    assert polygon_morphometry(lopsided[::-1]).centroid == pytest.approx((15, 15))


def test_mask_morphometry_of_a_square_and_at_half_resolution():
    from cervixlib.graphs import mask_morphometry

    mask = np.zeros((30, 40), bool)
    mask[5:15, 10:20] = True
    m = mask_morphometry(mask)
    assert (m.area, m.perimeter) == (100, 40) and m.centroid == pytest.approx((14.5, 9.5))
    assert m.eccentricity == pytest.approx(0, abs=1e-9)
    half = mask_morphometry(mask[::2, ::2], scale=(2.0, 2.0))  # the same square drawn at half size
    assert (half.area, half.perimeter) == (100, 40)


def test_self_crossing():
    from cervixlib.graphs import self_crossing

    assert not self_crossing(_circle(0, 0, 5))
    assert self_crossing(np.array([[0, 0], [10, 10], [10, 0], [0, 10]], float))  # a bow tie


# ------------------------------------------------------------------ edges
def _brute_force_delaunay(p: np.ndarray) -> set[tuple[int, int]]:
    """Edges of the triangles whose circumcircle holds no other point (points in general position)."""
    edges = set()
    for i, j, k in itertools.combinations(range(len(p)), 3):
        a, b, c = p[i], p[j], p[k]
        d = 2 * (a[0] * (b[1] - c[1]) + b[0] * (c[1] - a[1]) + c[0] * (a[1] - b[1]))
        if abs(d) < 1e-12:
            continue
        ux = ((a @ a) * (b[1] - c[1]) + (b @ b) * (c[1] - a[1]) + (c @ c) * (a[1] - b[1])) / d
        uy = ((a @ a) * (c[0] - b[0]) + (b @ b) * (a[0] - c[0]) + (c @ c) * (b[0] - a[0])) / d
        r2 = (a[0] - ux) ** 2 + (a[1] - uy) ** 2
        others = np.delete(p, [i, j, k], axis=0)
        if np.all(((others - [ux, uy]) ** 2).sum(1) > r2 + 1e-9):
            edges |= {(i, j), (i, k), (j, k)}
    return edges


def test_delaunay_edges_match_the_empty_circumcircle_property():
    from cervixlib.graphs import delaunay_edges

    rng = np.random.default_rng(3)
    for n in (3, 5, 9, 14):
        p = rng.uniform(0, 100, (n, 2))
        got = {tuple(e) for e in delaunay_edges(p, cut=None).T.tolist()}
        assert got == _brute_force_delaunay(p), n


def test_delaunay_cut_and_degenerate_layouts():
    from cervixlib.graphs import delaunay_edges

    p = np.array([[0, 0], [25, 0], [75, 0], [25, 20]], float)
    r = np.full(4, 10.0)
    kept = {tuple(e) for e in delaunay_edges(p, r, cut=2.0).T.tolist()}
    assert kept == {(0, 1), (0, 3), (1, 3)}  # every edge to cell 2 is longer than 2 * (10 + 10)
    line = np.array([[30, 5], [0, 5], [10, 5], [20, 5]], float)  # collinear, given out of order
    assert {tuple(e) for e in delaunay_edges(line, cut=None).T.tolist()} == {(1, 2), (2, 3), (0, 3)}
    assert delaunay_edges(p[:2], cut=None).T.tolist() == [[0, 1]]
    assert delaunay_edges(p[:1]).shape == (2, 0) and delaunay_edges(np.zeros((0, 2))).shape == (2, 0)


def test_edge_features_give_distance_in_radii_and_direction_both_ways():
    from cervixlib.graphs import edge_features

    both, attr = edge_features(np.array([[0, 0], [30, 40]], float), np.array([10.0, 15.0]), np.array([[0], [1]]))
    assert both.tolist() == [[0, 1], [1, 0]]
    np.testing.assert_allclose(attr, [[2.0, 0.6, 0.8], [2.0, -0.6, -0.8]], rtol=1e-6)


# ------------------------------------------------------------------ one image
def test_cell_graph_of_hand_made_outlines(tmp_path):
    from cervixlib.graphs import FEATURE_NAMES, cell_graph

    a = (_circle(30, 40, 12), _circle(30, 40, 4))
    b = (_circle(60, 40, 12), None)  # no nucleus
    c = (_circle(105, 40, 8), _circle(105, 40, 3))  # 45 px from b: further than 2 * (12 + 8)
    g = cell_graph(_item(tmp_path, [a, b, c]))
    assert g.n_cells == 3 and g.edge_index.shape == (2, 2) and g.n_edges == 1
    assert sorted(g.edge_index.T.tolist()) == [[0, 1], [1, 0]]
    np.testing.assert_allclose(g.centroids, [[30, 40], [60, 40], [105, 40]], atol=1e-4)
    f = dict(zip(FEATURE_NAMES, g.features[0]))
    area = 0.5 * 64 * 12 ** 2 * math.sin(2 * math.pi / 64)  # the 64-gon's area
    nuc = 0.5 * 64 * 4 ** 2 * math.sin(2 * math.pi / 64)
    assert f["area"] == pytest.approx(10 * math.sqrt(area / (120 * 80)), rel=1e-5)
    assert f["nc_ratio"] == pytest.approx(nuc / (area - nuc), rel=1e-5)
    assert f["eccentricity"] == pytest.approx(0, abs=1e-4) and f["has_nucleus"] == 1
    assert f["cytoplasm_red"] == pytest.approx(200 / 255, abs=1e-6)  # a flat image: its colour
    assert f["cytoplasm_od"] == pytest.approx(np.mean(-np.log10(np.array([200, 180, 190]) / 255)), abs=1e-5)
    assert dict(zip(FEATURE_NAMES, g.features[1]))["has_nucleus"] == 0
    assert g.edge_attr[0, 0] == pytest.approx(30 / 24, rel=1e-3)


def test_empty_and_single_cell_images_are_named_and_kept(tmp_path):
    from cervixlib.graphs import cell_graph, graph_summary

    empty = cell_graph(_item(tmp_path / "a", []))
    single = cell_graph(_item(tmp_path / "b", [(_circle(30, 40, 12), None)]))
    assert empty.n_cells == 0 and empty.features.shape == (0, 13) and single.n_edges == 0
    text = graph_summary([empty, single])
    assert "1 image with no annotated cell (a/001.bmp)" in text and "an empty graph" in text
    assert "1 image with one annotated cell (b/001.bmp)" in text and "\n" not in text


# ------------------------------------------------------------------ bad outlines
def test_bad_outlines_each_get_one_line_naming_the_file(tmp_path):
    from cervixlib.data import BadFilesError, DataError
    from cervixlib.graphs import cell_graph
    from cervixlib.graphs.dataset import CellGraphDataset

    bow_tie = np.array([[10, 10], [30, 30], [30, 10], [10, 30]], np.float32)
    crossing = _item(tmp_path / "x", [(_circle(60, 40, 10), None), (bow_tie, None)])
    outside = _item(tmp_path / "o", [(_circle(300, 40, 10), None)])
    with pytest.raises(DataError) as exc:
        cell_graph(crossing)
    assert str(exc.value) == (f"{tmp_path / 'x' / '001_cyt02.dat'}: the cytoplasm outline of cell 2 of 001.bmp "
                              "crosses itself, so its area and shape are undefined")
    with pytest.raises(DataError, match=r"001_cyt01\.dat: the cytoplasm of cell 1 lies outside its image 001\.bmp"):
        cell_graph(outside)
    with pytest.raises(BadFilesError) as exc:  # all at once, one line each
        CellGraphDataset([crossing, outside])
    lines = str(exc.value).splitlines()
    assert len(lines) == 3 and "001_cyt02.dat" in lines[1] and "001_cyt01.dat" in lines[2]
    kept = CellGraphDataset([crossing, outside], skip_bad=True)  # skip_bad: logged, never dropped
    assert [g.n_cells for g in kept.graphs] == [2, 1]


def test_an_empty_mask_file_is_named(tmp_path):
    from cervixlib.data import DataError, Item
    from cervixlib.graphs import cell_graph

    (tmp_path / "masks").mkdir()
    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((40, 60), np.uint8)).save(tmp_path / "masks" / "a.png")
    item = Item(tmp_path / "a.png", 0, "c/a", (), (60, 40), mask_path=tmp_path / "masks" / "a.png")
    with pytest.raises(DataError, match=r"masks/a\.png: empty mask: no cell pixel, so image a\.png has no cell"):
        cell_graph(item)


def test_mask_file_cells_become_nodes(tmp_path):
    from cervixlib.data import Item
    from cervixlib.graphs import cell_graph

    (tmp_path / "masks").mkdir()
    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(tmp_path / "a.png")
    mask = np.zeros((40, 60), np.uint8)
    mask[5:15, 5:15] = 255
    mask[5:15, 20:30] = 255
    mask[30:38, 50:58] = 255
    Image.fromarray(mask).save(tmp_path / "masks" / "a.png")
    g = cell_graph(Item(tmp_path / "a.png", 0, "c/a", (), (60, 40), mask_path=tmp_path / "masks" / "a.png"))
    assert g.n_cells == 3
    np.testing.assert_allclose(sorted(g.centroids.tolist()), [[9.5, 9.5], [24.5, 9.5], [53.5, 33.5]])
    assert g.n_edges == 1  # the two squares 15 px apart; the third is far from both


# ------------------------------------------------------------------ models
def _toy_graph(rng, label: int, n: int = 6):
    """Six cells on a line, half of one type (feature 5 = 1), half of the other, in both
    classes: class 0 alternates the types along the line, class 1 puts them in two blocks.
    Every cell is alike in distribution across the classes: only the arrangement differs."""
    from cervixlib.graphs import FEATURE_NAMES, CellGraph, delaunay_edges, edge_features

    centres = np.stack([np.arange(n) * 20.0 + rng.normal(0, 1, n), 50 + rng.normal(0, 1, n)], 1).astype(np.float32)
    radii = np.full(n, 10.0, np.float32)
    types = np.array([0, 1] * (n // 2)) if label == 0 else np.repeat([0, 1], n // 2)
    if rng.random() < 0.5:
        types = 1 - types
    features = rng.normal(0.5, 0.05, (n, len(FEATURE_NAMES))).astype(np.float32)
    features[:, 5] = types
    ei, ea = edge_features(centres, radii, delaunay_edges(centres, radii))
    return CellGraph(Path(f"toy{label}.png"), label, (200, 100), centres, features, ei, ea, radii)


class _Graphs:
    def __init__(self, graphs):
        from cervixlib.graphs.dataset import collate_graphs, to_data

        self.collate = collate_graphs
        self.data = [(to_data(g), g.label) for g in graphs]

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.data[i]


def test_toy_arrangement_needs_the_edges():
    """The class is the arrangement of the cells: with edges the GAT learns it, without it cannot."""
    import torch

    from cervixlib.models import create_model
    from cervixlib.train import evaluate, make_loader, train_one_epoch

    rng = np.random.default_rng(0)
    train = _Graphs([_toy_graph(rng, i % 2) for i in range(160)])
    test = _Graphs([_toy_graph(rng, i % 2) for i in range(100)])
    acc = {}
    for name in ("cell_graph_gat", "cell_graph_gat_no_edges"):
        torch.manual_seed(0)
        model = create_model(name, num_classes=2)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        loader = make_loader(train, batch_size=16, train=True, seed=0)
        for _ in range(25):
            train_one_epoch(model, loader, opt, device=torch.device("cpu"))
        acc[name] = evaluate(model, make_loader(test, batch_size=64, train=False)).accuracy
    assert acc["cell_graph_gat"] > 0.9, acc
    assert abs(acc["cell_graph_gat_no_edges"] - 0.5) <= 0.15, acc


def test_models_read_empty_graphs_and_attention_is_the_readout():
    import torch

    from cervixlib.graphs.dataset import graph_batch
    from cervixlib.models import create_model, is_model, list_models

    assert "cell_graph_gat" not in list_models() and {"cell_graph_gat", "cell_graph_gin"} <= set(list_models(graphs=True))
    assert is_model("cell_graph_gat_no_edges")
    rng = np.random.default_rng(1)
    graphs = [_toy_graph(rng, 0), _toy_graph(rng, 1, n=4)]
    from cervixlib.graphs import CellGraph

    empty = CellGraph(Path("e.png"), 0, (10, 10), np.zeros((0, 2), np.float32), np.zeros((0, 13), np.float32),
                      np.zeros((2, 0), np.int64), np.zeros((0, 3), np.float32), np.zeros(0, np.float32))
    batch = graph_batch([graphs[0], empty, graphs[1]])
    for name in ("cell_graph_gat", "cell_graph_gat_no_edges", "cell_graph_gin"):
        torch.manual_seed(0)
        model = create_model(name).eval()
        with torch.no_grad():
            logits = model(batch)
            w = model.cell_weights(batch)
            h = model.forward_nodes(batch)
        assert logits.shape == (3, 5) and torch.isfinite(logits).all()
        torch.testing.assert_close(logits[1], model.head.bias)  # no cell: the readout is zero
        sums = torch.zeros(3).index_add_(0, batch.batch, w)
        torch.testing.assert_close(sums, torch.tensor([1.0, 0.0, 1.0]))
        pooled = torch.zeros(3, h.shape[1]).index_add_(0, batch.batch, w[:, None] * h)
        torch.testing.assert_close(model.forward_features(batch), pooled, rtol=1e-5, atol=1e-6)
        model.train()
        torch.nn.functional.cross_entropy(model(batch), torch.tensor([0, 1, 2])).backward()
        assert not [n for n, p in model.named_parameters() if p.grad is None], name
    with pytest.raises(ValueError, match="no pretrained weights"):
        create_model("cell_graph_gat", weights="imagenet")


def test_ig_over_node_features_is_complete_and_shares_sum_to_one():
    import torch

    from cervixlib.graphs import cells_holding, explain_graphs, graph_ig
    from cervixlib.models import create_model

    torch.manual_seed(0)
    model = create_model("cell_graph_gat", num_classes=3).eval()
    g = _toy_graph(np.random.default_rng(2), 1)
    attr, delta, diff = graph_ig(model, g, target=1, n_steps=128)
    assert attr.shape == (6, 13)
    # completeness: sum IG = F(x) - F(baseline), F recomputed by plain forward passes; Captum's delta agrees
    assert abs(attr.sum() - diff) <= 2e-3 * max(1.0, abs(diff))
    assert delta == pytest.approx(float(attr.sum()) - diff, abs=1e-5)
    e = explain_graphs(model, [g, g], n_steps=16)
    for shares in (*e.attention, *e.ig):
        assert shares.shape == (6,) and shares.sum() == pytest.approx(1, abs=1e-5)
    assert cells_holding(np.array([0.5, 0.1, 0.3, 0.1])) == (2.0, 0.5)  # 0.5 + 0.3 reach 80%
    assert cells_holding(np.array([0.6, 0.1, 0.15, 0.15])) == (3.0, 0.75)
    assert np.isnan(cells_holding(np.zeros(3))[0])


def test_cells_holding_agrees_with_chapter_5s_concentration():
    from cervixlib.explain.localisation import concentration
    from cervixlib.graphs import cell_shares_of_map, cells_holding

    rng = np.random.default_rng(0)
    cells = np.zeros((4, 20, 20), bool)
    for k in range(4):
        cells[k, 5 * k:5 * k + 4, 2:18] = True
    for _ in range(5):
        m = rng.gamma(0.5, 1.0, (20, 20))
        shares = cell_shares_of_map(m, cells)
        assert shares.sum() == pytest.approx(1)
        assert cells_holding(shares) == concentration(m, cells)


# ------------------------------------------------------------------ through fit
def test_fit_trains_a_graph_model_on_the_synthetic_set(synth_root, tmp_path):
    """The one fit trains a graph model: every test image predicted (none dropped), cached."""
    from cervixlib.config import get_profile
    from cervixlib.train import fit

    cfg = get_profile("smoke").config("cell_graph_gat", root=str(synth_root), subset="multi", folds=2, fold=0)
    assert cfg.epochs == get_profile("smoke").graph_epochs
    run = fit(cfg, runs_dir=tmp_path, progress=False)
    assert len(run.y_true) == len(run.test_items()) == len(run.split().test)
    assert np.isfinite(run.predictions["test_prob"]).all()
    assert fit(cfg, runs_dir=tmp_path, progress=False).dir == run.dir  # cached
    assert run.load_model().model_name == "cell_graph_gat"


# ------------------------------------------------------------------ node features from an isolated-cell CNN
def test_cell_crops_cut_each_cell_by_its_outline_box(tmp_path):
    """A crop is the cell's outline box grown by CROP_MARGIN of its longer side plus 2 px, clipped
    to the image, cut from the image's own pixels, in node order."""
    from cervixlib.graphs import CROP_MARGIN, cell_crops, cell_graph

    item = _item(tmp_path, [(_circle(30, 40, 10), None), (_circle(100, 20, 15), None)], size=(120, 80))
    pixels = np.random.default_rng(0).integers(0, 255, (80, 120, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(item.path)
    g = cell_graph(item)
    crops = cell_crops(item, g)
    assert len(crops) == g.n_cells == 2
    for crop, cyt in zip(crops, (_circle(30, 40, 10), _circle(100, 20, 15))):
        (x0, y0), (x1, y1) = cyt.min(0), cyt.max(0)
        pad = CROP_MARGIN * max(x1 - x0, y1 - y0) + 2
        box = (max(0, math.floor(x0 - pad)), max(0, math.floor(y0 - pad)),
               min(120, math.ceil(x1 + pad) + 1), min(80, math.ceil(y1 + pad) + 1))
        assert crop.size == (box[2] - box[0], box[3] - box[1])
        np.testing.assert_array_equal(np.asarray(crop), pixels[box[1]:box[3], box[0]:box[2]])
    assert 20 - 15 - (CROP_MARGIN * 30 + 2) < 0 and 100 + 15 + (CROP_MARGIN * 30 + 2) > 120  # the second is clipped
    assert cell_crops(_item(tmp_path / "e", []), cell_graph(_item(tmp_path / "e", []))) == []


def test_node_features_from_a_cnn_are_its_pooled_features_of_the_crop_as_a_file(tmp_path):
    """A cell's CNN features are what the CNN gives for the same crop read as an isolated-cell
    image file by the training dataset (CellImageDataset), at the CNN's input size."""
    import torch

    from cervixlib.data import CellImageDataset, Item
    from cervixlib.graphs import cell_crops, cell_embeddings, cell_graph
    from cervixlib.models import create_model
    from cervixlib.models.cell_graph import ENCODER_FEATURES

    torch.manual_seed(0)
    model = create_model("densenet121", num_classes=5).eval()
    assert model.num_features == ENCODER_FEATURES["densenet121"]
    item = _item(tmp_path, [(_circle(30, 40, 10), None), (_circle(80, 40, 14), None)], size=(120, 80))
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (80, 120, 3), dtype=np.uint8)).save(item.path)
    crops = cell_crops(item, cell_graph(item))
    files = []
    for k, crop in enumerate(crops):
        files.append(tmp_path / f"crop{k}.png")
        crop.save(files[-1])
    ds = CellImageDataset([Item(f, 0, "C/001", (), crop.size) for f, crop in zip(files, crops)], image_size=64,
                          train=False)
    with torch.no_grad():
        X = torch.stack([ds[i][0] for i in range(len(ds))])
        expected = model.forward_head(model.forward_features(X), pre_logits=True).numpy()
    got = cell_embeddings(model, crops, image_size=64)
    assert got.shape == (2, 1024)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_a_graph_on_cnn_features_reads_the_isolated_cell_cnn_of_its_fold(synth_root, tmp_path):
    """cell_graph_gat_cnn: its config names the DenseNet-121 of the same fold on isolated cells,
    fit trains that first, the nodes carry its 1024 features, and the saved predictions come back
    from the checkpoint (cervix evaluate)."""
    from cervixlib.graphs.dataset import CellGraphDataset
    from cervixlib.study import Study
    from cervixlib.train import encoder_run, evaluate_run

    study = Study(profile="smoke", data_root=str(synth_root), runs_dir=str(tmp_path))
    cfg = study.config("cell_graph_gat_cnn", fold=1)
    enc = cfg.cell_encoder
    assert enc == study.fold_configs(["densenet121"], "isolated")["densenet121"][1]  # chapter 4's run, not another
    run = study.run("cell_graph_gat_cnn", fold=1)
    encoder = encoder_run(run.config, runs_dir=tmp_path)
    assert encoder.config == enc and encoder.dir.parent == tmp_path
    test = {it.group for it in run.test_items()}
    assert test and not test & {it.group for it in encoder.data.part("train")}  # never trained on their crops
    graphs = CellGraphDataset(run.test_items(), encoder=encoder).graphs
    assert all(g.features.shape == (g.n_cells, 1024) for g in graphs)
    assert len(run.y_true) == len(run.split().test)
    assert evaluate_run(run)["agreement"] == 1.0


def test_a_cell_encoder_must_be_the_same_fold_and_is_part_of_the_runs_key(tmp_path):
    from cervixlib.config import TrainConfig
    from cervixlib.runs import run_key
    from cervixlib.study import Study
    from cervixlib.train import encoder_run

    study = Study(profile="smoke")
    cfg = study.config("cell_graph_gat_cnn", fold=0)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # as config.json stores it
    moved = cfg.replace(root=str(tmp_path))
    assert moved.cell_encoder.data.root == str(tmp_path)  # the encoder reads the graph's data
    assert run_key(moved, "fp", "v") == run_key(cfg, "fp", "v")  # no path in the key, the encoder's neither
    other = cfg.replace(cell_encoder=cfg.cell_encoder.replace(epochs=3))
    assert run_key(other, "fp", "v") != run_key(cfg, "fp", "v")
    plain = study.config("cell_graph_gat")
    assert "cell_encoder" not in plain.to_dict() or plain.to_dict()["cell_encoder"] is None
    with pytest.raises(ValueError, match="same fold"):
        cfg.replace(cell_encoder=study.config("densenet121", "isolated", fold=1))
    with pytest.raises(ValueError, match="cell_encoder is for"):
        plain.replace(cell_encoder=cfg.cell_encoder)
    with pytest.raises(ValueError, match="needs cell_encoder"):
        encoder_run(cfg.replace(cell_encoder=None), runs_dir=tmp_path)
    assert "folds > 1" in Study(profile="smoke", folds=1).cannot_train("cell_graph_gat_cnn")
    assert Study(profile="smoke").cannot_train("cell_graph_gat_cnn") is None


def test_a_plan_trains_a_cell_encoder_before_the_graph_runs_that_read_it():
    from cervixlib.parallel import _next_ready
    from cervixlib.plan import PlannedRun, with_encoders
    from cervixlib.study import Study

    study = Study(profile="smoke")
    graphs = study.fold_configs(["cell_graph_gat_cnn"])["cell_graph_gat_cnn"]
    cnn = study.fold_configs(["densenet121"], "isolated")["densenet121"]
    ordered = with_encoders([graphs[0], cnn[1], graphs[1], cnn[0]])
    assert ordered == [cnn[0], graphs[0], cnn[1], graphs[1]]  # added or moved up, each once
    queue = [PlannedRun(c, ()) for c in ordered]
    assert _next_ready(queue, []) == 0
    running = [queue.pop(0)]  # the fold-1 encoder is training: the fold-2 encoder may start, not its graph
    assert queue[_next_ready(queue, running)].config == cnn[1]
    assert _next_ready([PlannedRun(graphs[0], ())], running) is None
    assert _next_ready([PlannedRun(graphs[0], ())], []) == 0


# ------------------------------------------------------------------ data without and with masks
def test_without_outlines_the_chapter_is_a_note_and_plans_no_graph_run(class_folder_root):
    from cervixlib.graphs import GRAPH_MODELS, cells_note
    from cervixlib.study import Study

    study = Study(profile="smoke", data_root=str(class_folder_root))
    note = cells_note(study.data().items)
    assert "none of this set's" in note and "masks/" in note
    planned = study.needed_configs("folds", ["densenet121", *GRAPH_MODELS])
    assert planned and {c.model for c in planned} == {"densenet121"}


@pytest.mark.slow
def test_chapter_6_on_a_class_folder_set_with_masks(tmp_path, synth_index):
    """`cervix book --data <set with masks> --only 06`: the graph runs are planned and trained,
    and the chapter draws graphs, compares the models and shares the cells (no error, no note)."""
    import nbformat

    from cervixlib import book
    from conftest import build_class_folder_set
    from test_book import REPO, make_project

    data = build_class_folder_set(tmp_path / "masked-cells", synth_index, n_classes=5, masks=True)
    root = make_project(tmp_path / "proj", toc=REPO / "_toc.yml", notebooks=REPO / "notebooks",
                        manifest=REPO / "book" / "manifest.yml")
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    try:
        result = book.run_book("smoke", data=str(data), runs_dir=str(root / "runs"), only=["06"], build=False,
                               params={"models": ["densenet121", "cell_graph_gat", "cell_graph_gat_no_edges",
                                                  "cell_graph_gat_cnn"], "explain_images": 3})
    finally:
        mp.undo()
    assert sum("cell_graph_gat-" in r for r in result.planned) == 2  # both folds of the smoke profile
    nb = nbformat.read(root / "book" / "06_cell_graphs.ipynb", as_version=4)
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = str(outputs)
    assert "none of this set's" not in text and "Claim 6:" in text and "cells holding 80%" in text
    # no isolated cells to train the encoder on: the graph on CNN features is left out, and the page says why
    assert not any("cell_graph_gat_cnn-" in r for r in result.planned)
    assert "trained on isolated cells, and this set has none" in text


def test_graph_models_are_not_planned_on_isolated_cells(synth_root):
    from cervixlib.study import Study

    study = Study(profile="smoke", data_root=str(synth_root))
    assert {c.model for c in study.needed_configs("folds@isolated", ["densenet121", "cell_graph_gat"])} == {"densenet121"}
    assert {c.model for c in study.needed_configs("folds", ["densenet121", "cell_graph_gat"])} == {"densenet121",
                                                                                                  "cell_graph_gat"}
