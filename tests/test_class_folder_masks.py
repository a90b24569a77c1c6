"""Mask files of a class-per-folder set: ``<class>/masks/<stem>.png`` (cells) and
``<stem>_nucleus.png`` (nuclei), read into the index, drawn at any size, split into
cells, checked for problems and included in the fingerprint.

References are independent of the code under test: PIL's nearest-neighbour resize of
the mask file, shapes drawn by hand for the connected components, and a set built with
``tests/conftest.py``'s builder from the synthetic SIPaKMeD crops.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from cervixlib.data import BadFilesError, CellImageDataset, DataError, cell_components, cell_mask, load_index
from conftest import build_class_folder_set


@pytest.fixture(scope="module")
def masked_root(tmp_path_factory, synth_index):
    """A 6-class set with a cell mask per image (read-only)."""
    return build_class_folder_set(tmp_path_factory.mktemp("masked") / "cells", synth_index, n_classes=6, masks=True)


@pytest.fixture(scope="module")
def masked_index(masked_root):
    return load_index(masked_root)


@pytest.fixture
def masked_copy(tmp_path, masked_root):
    """A private copy of :func:`masked_root`, for tests that damage it."""
    return shutil.copytree(masked_root, tmp_path / "cells")


def _reference(path, size):
    """The mask file resized to ``size`` by PIL's nearest neighbour, non-zero = inside."""
    with Image.open(path) as img:
        return np.asarray(img.resize(size, Image.Resampling.NEAREST)).reshape(size[1], size[0], -1).any(axis=-1)


def _save(path, mask):
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


def _one_image_set(root, image, cell=None, nucleus=None, name="cells"):
    """``root/<name>/a.png`` and ``root/other/b.png`` with ``a``'s masks; returns ``a``'s item."""
    for cls, stem in ((name, "a"), ("other", "b")):
        (root / cls / "masks").mkdir(parents=True)
        Image.fromarray(image).save(root / cls / f"{stem}.png")
    if cell is not None:
        _save(root / name / "masks" / "a.png", cell)
    if nucleus is not None:
        _save(root / name / "masks" / "a_nucleus.png", nucleus)
    index = load_index(root)
    return next(it for it in index.images if it.path.stem == "a")


# ----------------------------------------------------------------------------- index
def test_masks_are_not_images_and_each_item_has_its_mask(tmp_path, synth_index, masked_root, masked_index):
    plain = load_index(build_class_folder_set(tmp_path / "plain", synth_index, n_classes=6))
    assert masked_index.layout == plain.layout == "class-folders"
    assert masked_index.classes == plain.classes and len(masked_index.classes) == 6
    assert masked_index.class_counts("images") == plain.class_counts("images")
    assert [it.path.relative_to(masked_root) for it in masked_index.images] == \
           [it.path.relative_to(plain.root) for it in plain.images]
    assert masked_index.skipped == [] and masked_index.warnings == []
    assert all(it.mask_path is None and not it.has_mask for it in plain.images)
    n_files = 0
    for it in masked_index.images:
        expected = it.path.parent / "masks" / f"{it.path.stem}.png"
        assert it.mask_path == (expected if expected.exists() else None)
        assert it.nucleus_mask_path is None and not it.has_nucleus and it.cells == ()
        n_files += expected.exists()
    assert n_files == len(list(masked_root.glob("*/masks/*.png"))) > 0
    total = next(ln for ln in masked_index.describe().splitlines() if ln.startswith("total"))
    assert total.split()[1:] == [str(len(masked_index.images)), str(n_files)]
    assert "with masks" in plain.describe() and plain.describe().splitlines()[-3].split()[-1] == "0"


def test_cell_mask_is_the_file_resized(masked_index):
    items = [it for it in masked_index.images if it.mask_path is not None]
    assert {it.path.suffix for it in items} == {".png", ".jpg", ".bmp"}
    for it in items[::5]:
        for size in (it.size, (37, 29), (2 * it.size[0] + 1, it.size[1] // 2 + 3)):
            np.testing.assert_array_equal(cell_mask(it, size, "cell"), _reference(it.mask_path, size))
        np.testing.assert_array_equal(cell_mask(it), _reference(it.mask_path, it.size))
        np.testing.assert_array_equal(cell_mask(it, (20, 20), "cytoplasm"), _reference(it.mask_path, (20, 20)))
        with pytest.raises(DataError) as err:
            cell_mask(it, (20, 20), "nucleus")
        assert err.value.path == it.mask_path.with_name(f"{it.path.stem}_nucleus.png")
        assert "no such nucleus mask" in str(err.value)


def test_rgb_masks_nucleus_and_any_mask_size(tmp_path):
    rng = np.random.default_rng(0)
    cell = np.zeros((40, 60), bool)
    cell[5:30, 10:50] = True
    nucleus = np.zeros((20, 30), bool)  # half size: the same aspect ratio
    nucleus[6:10, 12:18] = True
    nucleus[0:2, 0:2] = True  # outside the cell file: still inside the cell
    item = _one_image_set(tmp_path, rng.integers(0, 256, (40, 60, 3), dtype=np.uint8), cell=cell)
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[..., 2] = cell * 3  # any non-zero channel counts (grey would round it to 0)
    Image.fromarray(rgb).save(item.mask_path)
    _save(item.mask_path.with_name("a_nucleus.png"), nucleus)
    item = next(it for it in load_index(tmp_path).images if it.path.stem == "a")
    assert item.has_nucleus and item.nucleus_mask_path.name == "a_nucleus.png"
    for size in ((60, 40), (24, 16), (90, 61)):
        c, n = _reference(item.mask_path, size), _reference(item.nucleus_mask_path, size)
        np.testing.assert_array_equal(cell_mask(item, size, "nucleus"), n)
        np.testing.assert_array_equal(cell_mask(item, size, "cell"), c | n)
        np.testing.assert_array_equal(cell_mask(item, size, "cytoplasm"), c & ~n)


def test_dataset_gives_aligned_masks(tmp_path, masked_index):
    items = [it for it in masked_index.images if it.mask_path is not None][:8]
    ds = CellImageDataset(items, image_size=24, train=False, return_mask=True)
    for i, it in enumerate(items):
        X, y, mask = ds[i]
        assert mask.shape == (1, 24, 24) and y == it.label
        np.testing.assert_array_equal(mask[0].numpy().astype(bool), _reference(it.mask_path, (24, 24)))
    # Alignment through resizing and the random symmetries: an image that shows its own
    # mask (an asymmetric L), the mask file at twice its size.
    shape = np.zeros((32, 32), bool)
    shape[4:28, 4:10] = True
    shape[22:28, 4:20] = True
    image = np.repeat((shape * 255).astype(np.uint8)[..., None], 3, axis=2)
    item = _one_image_set(tmp_path, image, cell=shape.repeat(2, 0).repeat(2, 1))
    ds = CellImageDataset([item], image_size=32, train=True, jitter=0.0, return_mask=True)
    seen = set()
    for _ in range(24):
        X, _, mask = ds[0]
        bright = X[0].numpy() > 0  # normalised: white > 0, black < 0
        np.testing.assert_array_equal(bright, mask[0].numpy().astype(bool))
        seen.add(bright.tobytes())
    assert len(seen) > 1  # the symmetries were applied


# ----------------------------------------------------------------------------- cells
def test_connected_components_are_the_cells(tmp_path):
    cell = np.zeros((80, 120), bool)
    blobs = [(slice(5, 25), slice(5, 30)), (slice(5, 25), slice(31, 50)),  # one pixel apart
             (slice(40, 70), slice(60, 100)), (slice(70, 75), slice(100, 110)),  # touching at a corner
             (slice(78, 80), slice(0, 2))]  # too small to keep a pixel at a quarter size
    for rows, cols in blobs:
        cell[rows, cols] = True
    item = _one_image_set(tmp_path, np.zeros((80, 120, 3), np.uint8), cell=cell)
    full = cell_components(item)
    assert full.shape == (4, 80, 120) and full.dtype == bool
    expected = [np.zeros_like(cell) for _ in range(4)]
    for k, (rows, cols) in zip((0, 1, 2, 2, 3), blobs):
        expected[k][rows, cols] = True
    np.testing.assert_array_equal(full, np.stack(expected))
    for size in ((60, 40), (30, 20)):
        parts = cell_components(item, size)
        np.testing.assert_array_equal(parts.any(axis=0), cell_mask(item, size))
        assert parts.sum(axis=0).max() == 1  # disjoint
    assert len(cell_components(item, (60, 40))) == 4  # the blobs one pixel apart stay apart
    assert len(cell_components(item, (30, 20))) == 3  # the tiny one vanished


def test_components_with_a_nucleus_and_for_boundaries(tmp_path, synth_index):
    cell = np.zeros((40, 40), bool)
    cell[2:18, 2:18] = cell[22:38, 22:38] = True
    nucleus = np.zeros((40, 40), bool)
    nucleus[8:12, 8:12] = True
    item = _one_image_set(tmp_path, np.zeros((40, 40, 3), np.uint8), cell=cell, nucleus=nucleus)
    nuc = cell_components(item, part="nucleus")
    cyt = cell_components(item, part="cytoplasm")
    assert nuc.shape == cyt.shape == (2, 40, 40)
    np.testing.assert_array_equal(nuc[0], nucleus)
    assert not nuc[1].any()
    np.testing.assert_array_equal(cyt.any(axis=0), cell & ~nucleus)
    multi = [it for it in synth_index.multi if len(it.cells) > 1][0]
    parts = cell_components(multi, (64, 48))
    assert len(parts) == len(multi.cells)
    np.testing.assert_array_equal(parts.any(axis=0), cell_mask(multi, (64, 48)))
    with pytest.raises(DataError, match="no cell boundaries"):
        cell_components(next(it for it in load_index(tmp_path).images if it.path.stem == "b"))


# ----------------------------------------------------------------------------- problems
def test_bad_masks_are_listed_together_and_skip_bad_leaves_them_off(masked_copy):
    items = load_index(masked_copy).images
    wide = next(it for it in items if it.mask_path is not None)
    broken, lone = [it for it in items if it.mask_path is not None and it is not wide][:2]
    with Image.open(wide.mask_path) as img:
        img.resize((img.width * 2, img.height)).save(wide.mask_path)
    broken.mask_path.write_bytes(b"\x89PNG not really")
    ghost = wide.mask_path.with_name("ghost.png")
    shutil.copy(wide.mask_path, ghost)
    lone_nucleus = lone.mask_path.with_name(f"{lone.path.stem}_nucleus.png")
    lone.mask_path.rename(lone_nucleus)
    with pytest.raises(BadFilesError) as err:
        load_index(masked_copy)
    problems = dict(err.value.problems)
    assert set(problems) == {wide.mask_path, broken.mask_path, ghost, lone_nucleus}
    assert "aspect ratio" in problems[wide.mask_path] and wide.path.name in problems[wide.mask_path]
    assert "mask without an image" in problems[ghost]
    assert "without the cell mask" in problems[lone_nucleus]
    assert "--skip-bad" in str(err.value) and str(ghost) in str(err.value)
    index = load_index(masked_copy, skip_bad=True)
    assert {p for p, _ in index.skipped} == set(problems)
    assert len(index.images) == len(items)  # the images stay, without their masks
    by_path = {it.path: it for it in index.images}
    assert all(by_path[it.path].mask_path is None for it in (wide, broken, lone))
    assert sum(it.mask_path is not None for it in index.images) == sum(it.mask_path is not None for it in items) - 3


def test_masks_folder_beside_the_classes_is_refused(masked_copy):
    (masked_copy / "masks").mkdir()
    shutil.copy(next(masked_copy.glob("*/masks/*.png")), masked_copy / "masks" / "x.png")
    with pytest.raises(DataError, match="masks go inside each class folder"):
        load_index(masked_copy)


def test_sipakmed_masks_folder_is_an_unknown_folder_as_before(sipakmed_tree):
    before = load_index(sipakmed_tree)
    (sipakmed_tree / "im_Parabasal" / "masks").mkdir()
    _save(sipakmed_tree / "im_Parabasal" / "masks" / "001.png", np.ones((36, 48), bool))
    after = load_index(sipakmed_tree)
    assert [it.path for it in after.multi] == [it.path for it in before.multi]
    assert all(it.mask_path is None for it in after.multi + after.isolated)
    assert after.fingerprint() == before.fingerprint()
    assert (sipakmed_tree / "im_Parabasal" / "masks", "unknown folder in a class folder (only CROPPED is read); "
            "ignored") in after.warnings


# ----------------------------------------------------------------------------- fingerprint
def test_fingerprint_sees_the_masks(tmp_path, masked_copy):
    first = load_index(masked_copy).fingerprint()
    assert load_index(shutil.copytree(masked_copy, tmp_path / "moved")).fingerprint() == first
    mask = next(masked_copy.glob("*/masks/*.png"))
    pixels = np.asarray(Image.open(mask)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]  # one pixel: the file may keep its byte size
    Image.fromarray(pixels).save(mask)
    second = load_index(masked_copy).fingerprint()
    assert second != first
    mask.unlink()
    assert load_index(masked_copy).fingerprint() not in (first, second)
