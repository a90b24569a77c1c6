"""The SIPaKMeD loader, masks and torch dataset, on a generated set and on hand-built trees."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from matplotlib.path import Path as MplPath
from PIL import Image

from cervixlib.cli import main as cli_main
from cervixlib.data import (CLASSES, MEAN, STD, CellImageDataset, DataError, cell_mask, denormalize,
                            load_index, read_dat, read_image)
from cervixlib.data import datasets as datasets_module
from cervixlib.data.synth import synthetic_counts


# ----------------------------------------------------------------------------- generated set
def test_generated_set_counts_labels_and_marker(synth_index, synth_root):
    scale, size = synth_index.synthetic_info["scale"], tuple(synth_index.synthetic_info["image_size"])
    multi, isolated = synthetic_counts(scale)
    assert synth_index.layout == "sipakmed"
    assert synth_index.synthetic is True
    assert (scale, size) == (0.02, (256, 192))  # as tests/conftest.py asks
    assert synth_index.classes == CLASSES
    assert synth_index.class_counts("multi") == multi
    assert synth_index.class_counts("isolated") == isolated
    assert synth_index.skipped == [] and synth_index.warnings == []
    for item in synth_index.multi + synth_index.isolated:
        folder = item.path.parent.parent if item.path.parent.name == "CROPPED" else item.path.parent
        assert folder.name == f"im_{CLASSES[item.label]}"
        assert item.group.split("/")[0] == CLASSES[item.label]
    for item in synth_index.multi:
        assert item.size == size
    # every field's annotated cells are exactly the crops cut from it
    crops_per_group = {}
    for item in synth_index.isolated:
        assert len(item.cells) == 1
        crops_per_group[item.group] = crops_per_group.get(item.group, 0) + 1
    for item in synth_index.multi:
        assert len(item.cells) == crops_per_group.get(item.group, 0)


def test_polygons_lie_inside_their_images(synth_index):
    for item in synth_index.multi + synth_index.isolated:
        w, h = item.size
        for cell in item.cells:
            for poly in (cell.cytoplasm, cell.nucleus):
                assert poly.dtype == np.float32 and poly.ndim == 2 and poly.shape[1] == 2
                assert (poly >= 0).all() and (poly[:, 0] <= w - 1).all() and (poly[:, 1] <= h - 1).all()
            # the nucleus lies inside its cell
            inside = MplPath(cell.cytoplasm).contains_points(cell.nucleus)
            assert inside.mean() > 0.9


def _reference_mask(polygons, size):
    """Independent rasterisation: pixel centres inside any polygon (matplotlib)."""
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w]
    centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
    out = np.zeros(h * w, dtype=bool)
    for poly in polygons:
        out |= MplPath(poly).contains_points(centres)
    return out.reshape(h, w)


def test_masks_not_empty_and_match_a_reference_rasteriser(synth_index):
    for item in synth_index.isolated[::7] + synth_index.multi[::3]:
        if not item.cells:
            continue
        cell = cell_mask(item)
        nucleus = cell_mask(item, part="nucleus")
        cytoplasm = cell_mask(item, part="cytoplasm")
        assert cell.shape == (item.size[1], item.size[0]) and cell.dtype == bool
        assert nucleus.any() and cytoplasm.any()
        assert not (nucleus & ~cell).any()
        assert (cytoplasm == (cell & ~nucleus)).all()
        ref = _reference_mask([c.cytoplasm for c in item.cells] + [c.nucleus for c in item.cells], item.size)
        assert (ref != cell).sum() <= max(2, 0.01 * ref.sum()), item.path
        assert (_reference_mask([c.nucleus for c in item.cells], item.size) == nucleus).mean() > 0.999
        small = cell_mask(item, (32, 32))
        assert small.shape == (32, 32) and small.any()
        assert abs(small.mean() - cell.mean()) < 0.05  # same share of the image at any size


def test_crops_are_cut_from_their_source_field(synth_index):
    fields = {it.group: it for it in synth_index.multi}
    for crop in synth_index.isolated[::5]:
        source = fields[crop.group]
        offsets = [c.cytoplasm - crop.cells[0].cytoplasm for c in source.cells
                   if len(c.cytoplasm) == len(crop.cells[0].cytoplasm)]
        match = [o for o in offsets if np.ptp(o, axis=0).max() < 0.02]
        assert len(match) == 1, crop.path
        dx, dy = np.rint(match[0][0]).astype(int)
        big = np.asarray(read_image(source.path))
        small = np.asarray(read_image(crop.path))
        h, w = small.shape[:2]
        assert (big[dy:dy + h, dx:dx + w] == small).all()


# ----------------------------------------------------------------------------- real layout, by hand
@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("one_level_up", [False, True])
def test_real_layout_tree(tmp_path, build_tree, nested, one_level_up):
    root = tmp_path / "download"
    base = root / "SIPaKMeD" if one_level_up else root
    expected = build_tree(base, nested=nested, space_dat=True, n_images=2, n_cells=2)
    index = load_index(root)
    assert index.layout == ("sipakmed-nested" if nested else "sipakmed")
    assert index.root == base
    assert index.synthetic is False
    for (cls, subset), count in expected.items():
        assert index.class_counts(subset)[cls] == count
    assert index.skipped == [] and index.warnings == []
    # groups: a crop shares its source image's group
    fields = {it.group: it for it in index.multi}
    assert len(fields) == len(index.multi)
    for crop in index.isolated:
        assert crop.group in fields and fields[crop.group].label == crop.label
        stem = crop.path.stem.split("_")[0]
        assert fields[crop.group].path.stem == stem
    # the space-separated .dat of the first class parses like the comma-separated ones
    dys = [it for it in index.multi if it.label == 0][0]
    koi = [it for it in index.multi if it.label == 1][0]
    assert dys.cells[0].cytoplasm.shape == (12, 2)
    np.testing.assert_allclose(dys.cells[0].cytoplasm, koi.cells[0].cytoplasm, atol=1e-3)
    np.testing.assert_allclose(dys.cells[1].nucleus, koi.cells[1].nucleus, atol=1e-3)


def test_read_dat_formats(tmp_path):
    (tmp_path / "a.dat").write_text("1.5,2\n3,4.25\n\n5,6\n")
    (tmp_path / "b.dat").write_text("1.5 2\n3\t4.25\n5 6\n")
    (tmp_path / "c.dat").write_text("1.5, 2\r\n3, 4.25\r\n5, 6\r\n")
    for name in ("a.dat", "b.dat", "c.dat"):
        pts = read_dat(tmp_path / name)
        assert pts.dtype == np.float32
        np.testing.assert_array_equal(pts, [[1.5, 2], [3, 4.25], [5, 6]])


def test_class_folder_collection(tmp_path):
    rng = np.random.default_rng(1)
    for folder, ext in (("parabasal", "png"), ("DYSKERATOTIC", "jpg"), ("Zeta cells", "tif")):
        (tmp_path / folder).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(tmp_path / folder / f"c{i}.{ext}")
    (tmp_path / "notes.txt").write_text("not an image")
    index = load_index(tmp_path)
    assert index.layout == "class-folders"
    assert index.classes == ("Dyskeratotic", "Parabasal", "Zeta cells")  # canonical SIPaKMeD names
    # not known to be single cells: the neutral subset "images", the set's only and default one
    assert index.multi == [] and index.isolated == [] and len(index.images) == 9
    assert index.subsets == ("images",) and index.default_subset == "images"
    assert index.class_counts("images") == {"Dyskeratotic": 3, "Parabasal": 3, "Zeta cells": 3}
    assert all(it.cells == () and it.size == (30, 20) for it in index.images)
    assert len({it.group for it in index.images}) == 9
    assert index.subset() == index.subset("images") == index.images
    for other in ("multi", "isolated"):
        with pytest.raises(DataError, match="a class-per-folder set has one subset, 'images'"):
            index.subset(other)
    with pytest.raises(DataError, match="no cell boundaries"):
        cell_mask(index.images[0])
    ds = CellImageDataset(index.images, image_size=16, train=True)
    X, y = ds[0]
    assert X.shape == (3, 16, 16) and y == 0


# ----------------------------------------------------------------------------- index object
def test_fingerprint_is_stable_and_location_independent(tmp_path, sipakmed_tree):
    first = load_index(sipakmed_tree).fingerprint()
    assert first == load_index(sipakmed_tree).fingerprint()
    assert len(first) == 16 and int(first, 16) >= 0
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(sipakmed_tree, moved)
    assert load_index(moved).fingerprint() == first
    crop = next((moved / "im_Metaplastic" / "CROPPED").glob("*.bmp"))
    with open(crop, "ab") as fh:  # a changed file size changes the fingerprint
        fh.write(b"\0\0\0\0")
    assert load_index(moved).fingerprint() != first


def test_describe_and_cli_info(synth_root, synth_index, capsys):
    text = synth_index.describe()
    for cls in CLASSES:
        assert cls in text
    assert "Synthetic    YES" in text and "Layout       sipakmed" in text
    assert f"{len(synth_index.multi):>10}  {len(synth_index.isolated):>8}" in text
    assert cli_main(["info", str(synth_root)]) == 0
    assert capsys.readouterr().out.strip() == text


# ----------------------------------------------------------------------------- torch dataset
def test_dataset_output_and_normalisation(synth_index):
    items = synth_index.subset("isolated")[:6]
    ds = CellImageDataset(items, image_size=40, train=False, return_mask=True)
    assert len(ds) == 6
    for i, item in enumerate(items):
        X, y, mask = ds[i]
        assert X.dtype == torch.float32 and X.shape == (3, 40, 40)
        assert isinstance(y, int) and y == item.label
        assert mask.dtype == torch.float32 and mask.shape == (1, 40, 40)
        assert set(mask.unique().tolist()) == {0.0, 1.0}
        # reference: PIL resize of the file, normalised by hand
        ref = np.asarray(Image.open(item.path).convert("RGB").resize((40, 40), Image.Resampling.BILINEAR))
        ref = (torch.from_numpy(ref.astype(np.float32) / 255).permute(2, 0, 1)
               - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
        torch.testing.assert_close(X, ref)
        torch.testing.assert_close(denormalize(X), ref * torch.tensor(STD).view(3, 1, 1)
                                   + torch.tensor(MEAN).view(3, 1, 1), atol=1e-6, rtol=0)
        assert torch.equal(mask[0].bool(), torch.from_numpy(cell_mask(item, (40, 40))))
    batch = torch.stack([ds[i][0] for i in range(3)])
    assert denormalize(batch).shape == batch.shape and 0 <= denormalize(batch).min() <= denormalize(batch).max() <= 1


def _dihedral(t: torch.Tensor):
    for k in range(4):
        r = torch.rot90(t, k, dims=(-2, -1))
        yield r
        yield r.flip(-1)


def test_augmentation_transforms_image_and_mask_together(synth_index):
    items = synth_index.subset("isolated")[:2]
    plain = CellImageDataset(items, image_size=24, train=False, return_mask=True)
    aug = CellImageDataset(items, image_size=24, train=True, return_mask=True, jitter=0.0)
    X0, _, M0 = plain[1]
    torch.manual_seed(0)
    seen = set()
    for _ in range(40):
        X, _, M = aug[1]
        matches = [j for j, (Xt, Mt) in enumerate(zip(_dihedral(X0), _dihedral(M0)))
                   if torch.allclose(Xt, X) and torch.equal(Mt, M)]
        assert matches, "augmented image and mask are not one symmetry of the originals"
        seen.add(matches[0])
    assert len(seen) >= 6  # rotations and flips both happen
    jittered = CellImageDataset(items, image_size=24, train=True, jitter=0.1)
    Xj = jittered[1][0]
    assert Xj.shape == X0.shape and not any(torch.allclose(Xt, Xj) for Xt in _dihedral(X0))
    assert (denormalize(Xj) - denormalize(X0)).abs().mean() < 0.15


def test_cache_skips_decoding_after_first_read(synth_index, monkeypatch):
    items = synth_index.subset("multi")[:3]
    ds = CellImageDataset(items, image_size=32, train=False)
    assert ds.cache is True  # small set: on by default
    first = [ds[i][0] for i in range(3)]
    def fail(path):
        raise AssertionError(f"decoded {path} again")
    monkeypatch.setattr(datasets_module, "read_image", fail)
    for i in range(3):
        assert torch.equal(ds[i][0], first[i])
    monkeypatch.setattr(datasets_module, "CACHE_MAX_BYTES", 100)
    assert CellImageDataset(items, image_size=32, train=False).cache is False
    assert CellImageDataset(items, image_size=32, train=False, cache=True).cache is True


def test_preload_fills_cache(synth_index):
    ds = CellImageDataset(synth_index.subset("multi")[:4], image_size=16, train=True, return_mask=True)
    assert ds.preload() is ds
    assert ds._filled.all()
    X, y, M = ds[3]
    assert X.shape == (3, 16, 16) and M.shape == (1, 16, 16)


def test_dataset_reports_a_bad_file_by_name(tmp_path, synth_index):
    item = synth_index.isolated[0]
    bad = tmp_path / "001_01.bmp"
    data = item.path.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    from dataclasses import replace
    ds = CellImageDataset([replace(item, path=bad)], image_size=16, train=False)
    with pytest.raises(DataError, match="001_01.bmp: truncated image"):
        ds[0]


# ----------------------------------------------------------------------------- subsets
def test_subset_names_agree_between_config_and_data():
    from cervixlib import config, data

    assert config.SUBSETS == data.SUBSETS


def test_a_root_one_level_above_is_found_and_two_equal_roots_are_refused(tmp_path, build_tree):
    from cervixlib.data import default_subset

    build_tree(tmp_path / "above" / "SIPaKMeD")
    assert load_index(tmp_path / "above").root == tmp_path / "above" / "SIPaKMeD"
    build_tree(tmp_path / "above" / "copy")
    with pytest.raises(DataError, match=r"several SIPaKMeD roots inside \(SIPaKMeD, copy\); point to one"):
        load_index(tmp_path / "above")
    assert default_subset(tmp_path / "above") == "multi"  # load_index says why it cannot be used


def test_each_layout_has_its_own_default_subset(tmp_path, sipakmed_tree, capsys):
    from cervixlib.config import make_config
    from cervixlib.data import default_subset

    folders = tmp_path / "folders"
    for name in ("a", "b"):
        (folders / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folders / name / f"{i}.png")
    assert default_subset(sipakmed_tree) == "multi" and default_subset(folders) == "images"
    assert default_subset(tmp_path / "missing") == "multi"  # load_index reports it later
    assert make_config("resnet50", profile="smoke", root=str(folders)).data.subset == "images"
    assert make_config("resnet50", profile="smoke", root=str(sipakmed_tree)).data.subset == "multi"
    assert make_config("resnet50", profile="smoke").data.subset == "multi"  # the synthetic set
    assert make_config("resnet50", profile="smoke", root=str(sipakmed_tree),
                       subset="isolated").data.subset == "isolated"
    sipakmed = load_index(sipakmed_tree)
    assert sipakmed.subset() == sipakmed.multi
    with pytest.raises(DataError, match="'images' belongs to class-per-folder sets"):
        sipakmed.subset("images")
    # `cervix info` names the images neutrally, not as isolated cells
    assert cli_main(["info", str(folders)]) == 0
    out = capsys.readouterr().out
    assert "Subsets      images (default)" in out and "isolated" not in out and "multi" not in out
    assert "total                4" in out
    # `cervix train --data <class-per-folder set>` without --subset: the data path training uses
    from cervixlib.train import prepare_data

    config = make_config("resnet50", profile="smoke", root=str(folders), fractions=(0.5, 0.25, 0.25))
    assert len(prepare_data(config.data).items) == 4
