"""The four architectures of Wang et al. (2021), "Towards Interpretable Attention
Networks for Cervical Cancer Analysis", behind one registry, and beside our attention
variants the two as the authors' code released them (``ran92``,
``rcan_densenet121_released``), and the graph models of the paper's future work
(``cell_graph_*``, :mod:`cervixlib.models.cell_graph`: a multi-cell image as a graph of
its cells, read with PyTorch Geometric).

>>> from cervixlib.models import create_model, list_models
>>> list_models()
['densenet121', 'ran92', 'ran_resnet50', 'rcan_densenet121', 'rcan_densenet121_released', 'resnet50']
>>> list_models(graphs=True)[:4]
['cell_graph_gat', 'cell_graph_gat_cnn', 'cell_graph_gat_no_edges', 'cell_graph_gin']
>>> net = create_model("ran_resnet50", num_classes=5)  # weights=None: random init

Every model has ``forward_features``, ``forward_head``, ``get_classifier``,
``reset_classifier``, ``attribution_layer``, ``num_classes`` and ``model_name``;
:func:`collect_attention` returns the attention maps of one forward pass.
"""

from __future__ import annotations

# Importing the builder modules registers them.
from cervixlib.models import cell_graph, densenet, ran, ran92, rcan, resnet  # noqa: F401
from cervixlib.models._base import CervixModel, collect_attention
from cervixlib.models._registry import create_model, is_model, list_models, register_model
from cervixlib.models.weights import (
    CheckpointError,
    WeightsNotFoundError,
    imagenet_weight_files,
    load_checkpoint,
)

__all__ = [
    "CervixModel",
    "CheckpointError",
    "WeightsNotFoundError",
    "collect_attention",
    "create_model",
    "imagenet_weight_files",
    "is_model",
    "list_models",
    "load_checkpoint",
    "register_model",
]
