"""Data layer: SIPaKMeD (and class-per-folder) indexing, splits, datasets, masks and
the procedural SIPaKMeD-compatible generator.

For Wang et al. (2021), "Towards Interpretable Attention Networks for Cervical Cancer
Analysis". See ``docs/ARCHITECTURE.md`` for the contract these names fulfil.

The names are imported from their modules on first use (PEP 562), so that reading a
dataset's index (``cervix info``) does not import torch, which only the datasets and
transforms need.
"""

from __future__ import annotations

from cervixlib._lazy import lazy_exports

#: Each public name, by the module that defines it.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "datasets": ("CACHE_MAX_BYTES", "MEAN", "STD", "CellImageDataset", "denormalize", "input_pixels", "normalize"),
    "errors": ("BadFilesError", "DataError"),
    "index": ("CLASSES", "SUBSETS", "SYNTHETIC_MARKER", "Cell", "DatasetIndex", "Item", "default_subset",
              "load_index"),
    "io": ("IMAGE_EXTENSIONS", "probe_image", "read_dat", "read_image", "read_mask"),
    "masks": ("cell_components", "cell_mask"),
    "prepared": ("PreparedData", "data_root", "prepare", "split_items"),
    "splits": ("PAPER_SPLIT_SEED", "RELEASED_SPLIT_SEED", "Split", "fold_of_groups", "fold_split", "make_split",
               "paper_split", "released_split", "repeated_splits", "siblings_in_train"),
    "synth": ("DEFAULT_IMAGE_SIZE", "default_data_root", "synthesize"),
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
