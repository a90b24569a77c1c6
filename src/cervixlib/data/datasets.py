"""torch ``Dataset`` of cell images with resizing, normalisation, microscopy
augmentation and, on request, the aligned cell mask.

For Wang et al. (2021), "Towards Interpretable Attention Networks for Cervical Cancer
Analysis" (SIPaKMeD, five classes). Choices and why:

* Resize: the whole image is resized to ``image_size`` x ``image_size`` (bilinear with
  PIL's antialiasing), so non-square images are stretched, not cropped: a multi-cell
  field keeps every cell in view, which is where part of its class information lies.
  Masks are drawn from the polygons scaled by the same factors (or a mask file is
  resized to the same size, nearest neighbour), so they stay aligned.
* Normalisation: ImageNet mean and standard deviation (:data:`MEAN`, :data:`STD`),
  which the ImageNet-pretrained backbones expect.
* Train-time augmentation suited to microscopy, in plain tensor ops: a random element
  of the eight symmetries of the square (rotation by 0/90/180/270 degrees, optionally
  mirrored: this covers horizontal and vertical flips), since a slide has no "up";
  and mild colour jitter (brightness, contrast, saturation by up to +-``jitter``) for
  stain and illumination variation. No hue change: stain colour is a class cue
  (orange keratinised dyskeratotic cytoplasm). Geometry is applied to the mask too.
* Speed: per-item work (symmetries, jitter, normalisation) is plain numpy on the
  decoded uint8 array, converted to a tensor at the end: single-threaded on purpose,
  since torch's intra-op threads make such small per-sample ops ~10x slower on a
  busy 2-core machine. Random draws still come from torch's generator, so
  ``torch.manual_seed`` and DataLoader worker seeding govern them.
* Cache: decoded, resized uint8 images (and masks) are kept in one preallocated array
  so later epochs skip BMP decoding and resizing. By default (``cache=None``) the cache
  is on when it takes at most :data:`CACHE_MAX_BYTES` (1 GiB: all 4,049 isolated cells
  at 224 px take 0.6 GiB). Caching happens in the process that reads an item; inside
  DataLoader worker processes the cache is only read, since a worker's copy would be
  lost with it, so call :meth:`CellImageDataset.preload` before starting workers (they
  then share the filled cache copy-on-write) or use ``num_workers=0``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, get_worker_info

from cervixlib.data.index import Item
from cervixlib.data.io import read_image
from cervixlib.data.masks import cell_mask

__all__ = ["MEAN", "STD", "CACHE_MAX_BYTES", "CellImageDataset", "denormalize", "input_pixels", "normalize"]

_log = logging.getLogger(__name__)

#: ImageNet channel means and standard deviations (RGB, images scaled to 0..1).
MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: Largest decoded cache that ``cache=None`` turns on by itself.
CACHE_MAX_BYTES = 1 << 30

_MEAN_T = torch.tensor(MEAN, dtype=torch.float32).view(3, 1, 1)
_STD_T = torch.tensor(STD, dtype=torch.float32).view(3, 1, 1)
_MEAN_NP = np.asarray(MEAN, dtype=np.float32).reshape(3, 1, 1)
_STD_NP = np.asarray(STD, dtype=np.float32).reshape(3, 1, 1)


def normalize(X: torch.Tensor) -> torch.Tensor:
    """Float image(s) in 0..1, shape (3, H, W) or (B, 3, H, W), to normalised inputs."""
    return (X - _MEAN_T.to(X.device)) / _STD_T.to(X.device)


def denormalize(X: torch.Tensor) -> torch.Tensor:
    """Undo the normalisation: (3, H, W) or (B, 3, H, W) back to 0..1 (clamped), for display."""
    return (X * _STD_T.to(X.device, X.dtype) + _MEAN_T.to(X.device, X.dtype)).clamp(0.0, 1.0)


def input_pixels(img: Image.Image, side: int) -> np.ndarray:
    """An RGB image as a network sees it before normalisation: resized to ``side`` x ``side``
    (bilinear, stretched, not cropped), uint8 (3, side, side). The one resize of every input,
    so that a cell cut from a multi-cell image (:func:`cervixlib.graphs.cell_embeddings`) reaches
    an isolated-cell CNN as its training crops did."""
    if img.size != (side, side):
        img = img.resize((side, side), Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))


def _grey(X: np.ndarray) -> np.ndarray:
    return 0.299 * X[0] + 0.587 * X[1] + 0.114 * X[2]


def _colour_jitter(X: np.ndarray, strength: float) -> np.ndarray:
    """Random brightness, contrast and saturation factors in [1 - s, 1 + s]; X float 0..1, in place."""
    b, c, s = (1.0 + (torch.rand(3) * 2.0 - 1.0) * strength).tolist()
    X *= b
    mean = float(_grey(X).mean())
    X -= mean
    X *= c
    X += mean
    grey = _grey(X)
    X -= grey
    X *= s
    X += grey
    return np.clip(X, 0.0, 1.0, out=X)


class _Decoded(Dataset):
    """``(index, image, mask)`` of the given items of a dataset, decoded and resized (for
    :meth:`CellImageDataset.preload` in worker processes)."""

    def __init__(self, dataset: CellImageDataset, indices: np.ndarray) -> None:
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[int, np.ndarray, np.ndarray | None]:
        i = int(self.indices[k])
        return (i, *self.dataset._load(i))


class CellImageDataset(Dataset):
    """Cell images as normalised tensors for training and evaluation.

    Args:
        items: indexed images (``DatasetIndex.subset(...)``, or a split's part of it).
        image_size: side ``S`` of the square network input.
        train: apply random augmentation (symmetries of the square, colour jitter).
        return_mask: also return the cell mask (:func:`~cervixlib.data.masks.cell_mask`;
            needs ``item.has_mask``: boundaries or a mask file).
        cache: keep decoded, resized images in memory; ``None`` decides by size (see
            the module docstring).
        jitter: colour-jitter strength for ``train`` (0 turns it off).

    ``dataset[i]`` is ``(X, y)`` with ``X`` float32 (3, S, S) normalised and ``y`` an
    int, or ``(X, y, mask)`` with ``mask`` float32 (1, S, S) in {0, 1}.
    """

    def __init__(self, items: Sequence[Item], *, image_size: int, train: bool,
                 return_mask: bool = False, cache: bool | None = None, jitter: float = 0.1) -> None:
        if int(image_size) < 8:
            raise ValueError(f"image_size must be >= 8, got {image_size}")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.items = list(items)
        self.image_size = int(image_size)
        self.train = bool(train)
        self.return_mask = bool(return_mask)
        self.jitter = float(jitter)
        self.targets = np.asarray([it.label for it in self.items], dtype=np.int64)
        side = self.image_size
        per_item = 3 * side * side + (side * side if self.return_mask else 0)
        self.cache = (len(self.items) * per_item <= CACHE_MAX_BYTES) if cache is None else bool(cache)
        self._images: np.ndarray | None = None
        self._masks: np.ndarray | None = None
        self._filled = np.zeros(len(self.items), dtype=bool)
        if self.cache:
            self._images = np.empty((len(self.items), 3, side, side), dtype=np.uint8)
            if self.return_mask:
                self._masks = np.empty((len(self.items), 1, side, side), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Decoded, resized uint8 image (3, S, S) and mask (1, S, S) or None."""
        item = self.items[index]
        side = self.image_size
        X = input_pixels(read_image(item.path), side)
        mask = None
        if self.return_mask:
            mask = cell_mask(item, (side, side)).astype(np.uint8)[None]
        return X, mask

    def _get(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        if self.cache and self._filled[index]:
            return self._images[index], (self._masks[index] if self._masks is not None else None)
        X, mask = self._load(index)
        if self.cache and get_worker_info() is None:
            self._images[index] = X
            if self._masks is not None:
                self._masks[index] = mask
            self._filled[index] = True
        return X, mask

    def preload(self, progress: bool = False, workers: int = 0) -> CellImageDataset:
        """Fill the cache now (no-op without cache); returns ``self``.

        ``workers`` > 0 decodes in that many DataLoader worker processes and fills the cache
        here, in the process that owns it: a multi-cell field (2048 x 1536 px in SIPaKMeD) is
        decoded once per run instead of once per epoch in every loader worker.
        """
        if not self.cache:
            return self
        todo = np.flatnonzero(~self._filled)
        if workers > 0 and len(todo) > 1:
            from torch.utils.data import DataLoader

            decoded = DataLoader(_Decoded(self, todo), batch_size=None, num_workers=min(workers, len(todo)))
        else:
            decoded = ((int(i), *self._load(int(i))) for i in todo)
        if progress:
            from tqdm.auto import tqdm
            decoded = tqdm(decoded, total=len(todo), desc="decoding images", unit="img")
        for i, X, mask in decoded:
            self._images[i] = X
            if self._masks is not None:
                self._masks[i] = mask
            self._filled[i] = True
        return self

    def __getitem__(self, index: int):
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        X, mask = self._get(index)
        if self.train:
            k, flip = torch.randint(4, (2,)).tolist()
            if k:
                X = np.rot90(X, k, axes=(1, 2))
                mask = np.rot90(mask, k, axes=(1, 2)) if mask is not None else None
            if flip % 2:
                X = X[:, :, ::-1]
                mask = mask[:, :, ::-1] if mask is not None else None
        Xf = X.astype(np.float32, order="C")  # a fresh contiguous array: safe to modify in place
        Xf /= 255.0  # the same float32 ops as normalize(X / 255), bit for bit
        if self.train and self.jitter > 0:
            Xf = _colour_jitter(Xf, self.jitter)
        Xf -= _MEAN_NP
        Xf /= _STD_NP
        y = int(self.targets[index])
        if self.return_mask:
            return torch.from_numpy(Xf), y, torch.from_numpy(mask.astype(np.float32, order="C"))
        return torch.from_numpy(Xf), y
