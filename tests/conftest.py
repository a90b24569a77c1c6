"""Shared pytest fixtures. Each section belongs to one part of the library; keep them grouped."""

from __future__ import annotations

import cervixlib  # noqa: F401  (must precede any torchvision import)

import pytest


# ============================================================================ data
# A tiny generated SIPaKMeD-compatible set, built once per test session:
# scale 0.02 -> 19 multi-cell fields and 81 isolated cells, fields of 256x192 px.
SYNTH_SCALE = 0.02
SYNTH_SEED = 0
SYNTH_IMAGE_SIZE = (256, 192)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """Root folder of a tiny synthetic SIPaKMeD set (read-only: do not modify it)."""
    from cervixlib.data import synthesize

    out = tmp_path_factory.mktemp("synth") / "sipakmed"
    return synthesize(out, scale=SYNTH_SCALE, seed=SYNTH_SEED, image_size=SYNTH_IMAGE_SIZE, progress=False)


@pytest.fixture(scope="session")
def synth_index(synth_root):
    """``load_index`` of :func:`synth_root`."""
    from cervixlib.data import load_index

    return load_index(synth_root)


def _circle(cx: float, cy: float, r: float, n: int = 12):
    import numpy as np

    t = np.arange(n) * (2 * np.pi / n)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def _write_dat(path, points, sep: str = ",") -> None:
    path.write_text("".join(f"{x:.3f}{sep}{y:.3f}\n" for x, y in points))


def build_sipakmed_tree(root, *, nested: bool = False, classes=None, n_images: int = 2, n_cells: int = 2,
                        size: tuple[int, int] = (48, 36), space_dat: bool = False, seed: int = 0):
    """Write a small SIPaKMeD tree by hand (the real layout, not the generator's code).

    ``root/im_<C>/NNN.bmp`` (or ``root/im_<C>/im_<C>/...`` when ``nested``) with
    ``NNN_cytMM.dat``/``NNN_nucMM.dat``, and ``CROPPED/NNN_MM.bmp`` cut around each cell
    with ``NNN_MM_cyt.dat``/``NNN_MM_nuc.dat`` in crop coordinates. With ``space_dat``
    the first class's boundary files use a space instead of the comma. Returns the
    expected ``{(class, "multi"|"isolated"): count}``.
    """
    import numpy as np
    from PIL import Image

    from cervixlib.data import CLASSES

    rng = np.random.default_rng(seed)
    W, H = size
    expected = {}
    for ci, cls in enumerate(classes if classes is not None else CLASSES):
        folder = root / f"im_{cls}"
        if nested:
            folder = folder / f"im_{cls}"
        (folder / "CROPPED").mkdir(parents=True)
        sep = " " if (space_dat and ci == 0) else ","
        for n in range(1, n_images + 1):
            pixels = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{n:03d}.bmp")
            for m in range(1, n_cells + 1):
                cx, cy = W * m / (n_cells + 1), H / 2
                cyt, nuc = _circle(cx, cy, 6.0), _circle(cx, cy, 2.5, 8)
                _write_dat(folder / f"{n:03d}_cyt{m:02d}.dat", cyt, sep)
                _write_dat(folder / f"{n:03d}_nuc{m:02d}.dat", nuc, sep)
                x0, y0 = int(cx) - 9, int(cy) - 9
                Image.fromarray(pixels[y0:y0 + 18, x0:x0 + 18]).save(folder / "CROPPED" / f"{n:03d}_{m:02d}.bmp")
                _write_dat(folder / "CROPPED" / f"{n:03d}_{m:02d}_cyt.dat", cyt - [x0, y0], sep)
                _write_dat(folder / "CROPPED" / f"{n:03d}_{m:02d}_nuc.dat", nuc - [x0, y0], sep)
        expected[(cls, "multi")] = n_images
        expected[(cls, "isolated")] = n_images * n_cells
    return expected


@pytest.fixture
def build_tree():
    """:func:`build_sipakmed_tree`, for tests that need other shapes of tree."""
    return build_sipakmed_tree


@pytest.fixture
def sipakmed_tree(tmp_path):
    """A fresh hand-built SIPaKMeD tree (single nesting) at ``tmp_path / "sipakmed"``."""
    root = tmp_path / "sipakmed"
    build_sipakmed_tree(root)
    return root
#: Class names of the class-per-folder sets the tests build: Bethesda-like names, one with
#: spaces (as CRIC Cervix names its folders), none of them SIPaKMeD's.
CLASS_FOLDER_NAMES = ("Negative for intraepithelial lesion", "ASC-US", "LSIL", "HSIL", "SCC", "Metaplastic cells")


def build_class_folder_set(root, synth_index, *, n_classes: int = 5, per_class: int = 12, masks: bool = False,
                           seed: int = 0):
    """A class-per-folder set ``root/<class name>/<image>`` made from the synthetic set's crops.

    The isolated cells of the synthetic SIPaKMeD set, re-laid into ``n_classes`` folders
    named :data:`CLASS_FOLDER_NAMES` (the first has spaces; 6 gives a sixth class), with
    mixed formats (PNG, JPEG, BMP) and sizes (each crop saved at its own size, every third
    one rescaled by 1.5), ``per_class`` images a class. With ``masks``, each image gets a
    cell mask ``<class>/masks/<stem>.png`` (white inside the annotated cell), the
    convention of ``cervixlib.data`` for class-per-folder sets. Returns ``root``.
    """
    import numpy as np
    from PIL import Image

    from cervixlib.data import cell_mask

    rng = np.random.default_rng(seed)
    crops = [it for it in synth_index.isolated]
    by_label: dict[int, list] = {}
    for it in crops:
        by_label.setdefault(it.label, []).append(it)
    labels = sorted(by_label)
    for k, name in enumerate(CLASS_FOLDER_NAMES[:n_classes]):
        pool = by_label[labels[k % len(labels)]]
        folder = root / name
        folder.mkdir(parents=True)
        for j in range(per_class):
            item = pool[(j + (k // len(labels)) * 3) % len(pool)]
            img = Image.open(item.path).convert("RGB")
            mask = Image.fromarray(cell_mask(item, img.size, "cell").astype(np.uint8) * 255) if item.cells else None
            if j % 3 == 2:
                size = (int(img.width * 1.5), int(img.height * 1.5))
                img = img.resize(size, Image.Resampling.BILINEAR)
                mask = mask.resize(size, Image.Resampling.NEAREST) if mask is not None else None
            if k >= len(labels):  # the sixth class: the same cells, seen darker
                img = Image.fromarray((np.asarray(img) * 0.8).astype(np.uint8))
            ext = (".png", ".jpg", ".bmp")[int(rng.integers(0, 3))]
            stem = f"{name.split()[0].lower()}_{j:03d}"
            img.save(folder / f"{stem}{ext}", **({"quality": 95} if ext == ".jpg" else {}))
            if masks and mask is not None:
                (folder / "masks").mkdir(exist_ok=True)
                mask.save(folder / "masks" / f"{stem}.png")
    return root


@pytest.fixture(scope="session")
def class_folder_root(tmp_path_factory, synth_index):
    """A 5-class class-per-folder set built from the synthetic crops (read-only)."""
    return build_class_folder_set(tmp_path_factory.mktemp("classfolders") / "cervix-cells", synth_index)


# ========================================================================= end data


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module (use with ``pytest.mark.usefixtures``): on a shared,
    busy CPU, OpenMP threads spinning against other processes made the model tests several
    times slower than a single thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
