"""Data layer: SIPaKMeD (and class-per-folder) indexing, splits, datasets, masks and
the procedural SIPaKMeD-compatible generator.

For Wang et al. (2021), "Towards Interpretable Attention Networks for Cervical Cancer
Analysis". See ``docs/ARCHITECTURE.md`` for the contract these names fulfil.
"""

from __future__ import annotations

from cervixlib.data.datasets import CACHE_MAX_BYTES, MEAN, STD, CellImageDataset, denormalize, normalize
from cervixlib.data.errors import BadFilesError, DataError
from cervixlib.data.index import (CLASSES, SUBSETS, SYNTHETIC_MARKER, Cell, DatasetIndex, Item, default_subset,
                                 load_index)
from cervixlib.data.io import IMAGE_EXTENSIONS, probe_image, read_dat, read_image
from cervixlib.data.masks import cell_mask
from cervixlib.data.prepared import PreparedData, data_root, prepare, split_items
from cervixlib.data.splits import (PAPER_SPLIT_SEED, Split, fold_of_groups, fold_split, make_split, paper_split,
                                  repeated_splits, siblings_in_train)
from cervixlib.data.synth import DEFAULT_IMAGE_SIZE, default_data_root, synthesize

__all__ = [
    "CACHE_MAX_BYTES", "CLASSES", "DEFAULT_IMAGE_SIZE", "IMAGE_EXTENSIONS", "MEAN", "PAPER_SPLIT_SEED", "STD",
    "SUBSETS", "SYNTHETIC_MARKER", "BadFilesError", "Cell", "CellImageDataset", "DataError", "DatasetIndex", "Item",
    "PreparedData", "Split", "cell_mask", "data_root", "default_data_root", "default_subset", "denormalize",
    "fold_of_groups", "fold_split", "load_index", "make_split", "normalize", "paper_split", "prepare", "probe_image", "read_dat", "read_image",
    "repeated_splits", "siblings_in_train", "split_items", "synthesize",
]
