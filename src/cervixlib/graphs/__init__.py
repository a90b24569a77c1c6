"""Cell graphs of multi-cell images: the future work of Wang et al. (2021), built.

The paper ends on "relations between cells in multi-cell images can be analyzed through"
graph representations, "modeling a tissue section as a multi-attributed spatial graph of
its constituent cells". :mod:`~cervixlib.graphs.build` turns an image's annotated cells
into such a graph (numpy and scipy only), :mod:`~cervixlib.graphs.dataset` hands graphs
to PyTorch Geometric, the models are ``cell_graph_*`` in :mod:`cervixlib.models.cell_graph`,
and :mod:`~cervixlib.graphs.explain` and :mod:`~cervixlib.graphs.figures` read what a
trained graph model attends to. Names load on first use (PEP 562): importing this
package imports neither torch nor torch_geometric.
"""

from __future__ import annotations

from cervixlib._lazy import lazy_exports

#: The registered graph models (``cervixlib.models.create_model`` builds them): the GATv2
#: with an attention readout, the same model with its edges removed (cells only), a GIN with
#: a mean readout (no attention anywhere), and the GATv2 reading each cell as an isolated-cell
#: CNN sees it (:data:`CELL_ENCODERS`). Here for code that must not import torch.
GRAPH_MODELS: tuple[str, ...] = ("cell_graph_gat", "cell_graph_gat_no_edges", "cell_graph_gin",
                                 "cell_graph_gat_cnn")
#: The graph models whose node features are not morphometry but the pooled features of each
#: cell's crop in a CNN trained on the isolated cells of the same fold, and that CNN's registry
#: name (a run's :attr:`cervixlib.config.TrainConfig.cell_encoder` is its run).
CELL_ENCODERS: dict[str, str] = {"cell_graph_gat_cnn": "densenet121"}

_EXPORTS: dict[str, tuple[str, ...]] = {
    "build": ("CUT", "EDGE_FEATURE_NAMES", "FEATURE_NAMES", "CellGraph", "Morphometry", "cell_graph", "cell_graphs",
              "outlines_error",
              "cell_problems", "delaunay_edges", "edge_features", "graph_summary", "mask_morphometry",
              "node_features", "polygon_morphometry", "self_crossing"),
    "dataset": ("CellGraphDataset", "collate_graphs", "graph_batch", "to_data"),
    "embed": ("CROP_MARGIN", "cell_crops", "cell_embeddings", "embedded_graphs"),
    "explain": ("GraphExplanation", "cell_shares_of_map", "cells_holding", "cnn_cell_shares", "explain_graphs",
                "graph_ig", "same_top_cell", "share_rows"),
    "claim": ("CLAIM6", "GRAPH_MODEL_NAMES", "graph_claim", "model_title"),
    "report": ("cells_note", "graph_fold_rows", "graph_size_rows", "pick_examples", "pooled_accuracy_rows",
               "top_cell_rows"),
    "figures": ("graph_attention_explorer", "graph_figure", "graph_traces", "static_graph_slider"),
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted([*__all__, "CELL_ENCODERS", "GRAPH_MODELS", "is_graph_model"])


def is_graph_model(name: str) -> bool:
    """Whether the registry name ``name`` is a graph model (it reads :class:`CellGraph` batches)."""
    return name in GRAPH_MODELS
