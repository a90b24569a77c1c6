"""Graph models of multi-cell images: the future work of Wang et al. (2021), built on PyG.

The paper's discussion ends: "in future work, relations between cells in multi-cell
images can be analyzed through" graph representations, "modeling a tissue section as a
multi-attributed spatial graph of its constituent cells". Each image is a graph of its
annotated cells (:mod:`cervixlib.graphs`); these models read it with PyTorch Geometric's
layers (no message passing is written here):

- ``cell_graph_gat``: two GATv2 layers (Brody et al., ICLR 2022) with the edge features,
  then an attention-weighted readout (PyG's ``AttentionalAggregation``, Li et al. 2016:
  a softmax over the image's cells), which gives every cell a share of the decision
  (:meth:`CellGraphNet.cell_weights`), the graph's counterpart of RCAN's attention;
- ``cell_graph_gat_no_edges``: the same model with every edge removed, so each cell is
  read alone (GATv2's self-loops only) before the readout: claim 5's question, cell by cell;
- ``cell_graph_gin``: a baseline without attention: two GINE layers (Hu et al., ICLR 2020;
  GIN with edge features) and a mean readout;
- ``cell_graph_gat_cnn``: ``cell_graph_gat`` on node features of the other kind: each cell's
  crop as the DenseNet-121 trained on the isolated cells of the same fold sees it (its 1024
  pooled features, :mod:`cervixlib.graphs.embed`), in place of the morphometry.

A model takes a PyG ``Batch`` (:class:`cervixlib.graphs.CellGraphDataset` makes them) and
returns logits (B, num_classes); an image with no cell reads as a zero vector. They run
in fp32 whatever the training precision (they are small; PyG's scatter is not worth bf16).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch_geometric.nn import GATv2Conv, GINEConv
from torch_geometric.nn.aggr import AttentionalAggregation, MeanAggregation
from torch_geometric.utils import softmax

from cervixlib.graphs.build import EDGE_FEATURE_NAMES, FEATURE_NAMES
from cervixlib.models._base import CervixModel
from cervixlib.models._registry import register_model

__all__ = ["ENCODER_FEATURES", "CellGraphNet", "cell_graph_gat", "cell_graph_gat_cnn", "cell_graph_gat_no_edges",
           "cell_graph_gin"]

#: Pooled features of the CNNs that :data:`cervixlib.graphs.CELL_ENCODERS` names (a test checks them).
ENCODER_FEATURES: dict[str, int] = {"densenet121": 1024}

Conv = Literal["gatv2", "gin"]
Readout = Literal["attention", "mean"]


class CellGraphNet(CervixModel):
    """Node encoder, ``layers`` residual message-passing layers, a readout and a linear head.

    Args:
        num_classes: outputs of the head.
        model_name: the registry name.
        conv: ``"gatv2"`` (``heads`` attention heads, concatenated) or ``"gin"`` (GINE).
        readout: ``"attention"`` (softmax-weighted sum over the cells) or ``"mean"``.
        edges: False drops every edge before message passing (cells read alone).
        hidden: node state width (also :attr:`num_features`).
        layers, heads, dropout: as named; ``in_features`` and ``edge_dim`` match
            :data:`~cervixlib.graphs.FEATURE_NAMES` and :data:`~cervixlib.graphs.EDGE_FEATURE_NAMES`.
    """

    _head_name = "head"
    attribution_layer = "encoder"  # IG over node features attributes the input (cervixlib.graphs.graph_ig)

    def __init__(self, *, num_classes: int, model_name: str, conv: Conv = "gatv2", readout: Readout = "attention",
                 edges: bool = True, hidden: int = 64, layers: int = 2, heads: int = 4, dropout: float = 0.1,
                 in_features: int = len(FEATURE_NAMES), edge_dim: int = len(EDGE_FEATURE_NAMES)) -> None:
        super().__init__()
        if conv not in ("gatv2", "gin") or readout not in ("attention", "mean"):
            raise ValueError(f"conv must be 'gatv2' or 'gin' and readout 'attention' or 'mean', got {conv!r}, {readout!r}")
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
        self.model_name, self.num_classes, self.num_features = model_name, num_classes, hidden
        self.conv_kind, self.readout_kind, self.edges = conv, readout, edges
        self.encoder = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU())
        self.convs = nn.ModuleList()
        for _ in range(layers):
            if conv == "gatv2":
                self.convs.append(GATv2Conv(hidden, hidden // heads, heads=heads, edge_dim=edge_dim,
                                            add_self_loops=True, fill_value="mean", dropout=0.0))
            else:
                mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
                self.convs.append(GINEConv(mlp, edge_dim=edge_dim, train_eps=True))
        self.act, self.drop = nn.ELU(), nn.Dropout(dropout)
        self.gate = nn.Linear(hidden, 1) if readout == "attention" else None
        self.pool = AttentionalAggregation(self.gate) if self.gate is not None else MeanAggregation()
        self.head = nn.Linear(hidden, num_classes) if num_classes > 0 else nn.Identity()

    def _edges(self, data: Any) -> tuple[Tensor, Tensor]:
        ei, ea = data.edge_index, data.edge_attr.float()
        if not self.edges:
            ei, ea = ei[:, :0], ea[:0]
        return ei, ea

    def forward_nodes(self, data: Any, x: Tensor | None = None) -> Tensor:
        """Node states (N, hidden) of a batch; ``x`` (N, F) replaces ``data.x`` (IG over node features)."""
        with torch.autocast(device_type=data.edge_index.device.type, enabled=False):
            h = self.encoder((data.x if x is None else x).float())
            ei, ea = self._edges(data)
            for conv in self.convs:
                h = h + self.drop(self.act(conv(h, ei, ea)))
            return h

    def readout(self, h: Tensor, data: Any) -> Tensor:
        """Pool node states (N, hidden) into one vector per graph (B, hidden); a graph of no cell gives zeros."""
        return self.pool(h, index=data.batch, dim_size=data.num_graphs)

    def forward_features(self, data: Any, x: Tensor | None = None) -> Tensor:
        """A batch of graphs -> pooled features (B, hidden)."""
        return self.readout(self.forward_nodes(data, x), data)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """(B, hidden) pooled features -> logits (B, num_classes), or themselves with ``pre_logits``."""
        return x if pre_logits else self.head(x)

    def forward(self, data: Any, x: Tensor | None = None) -> Tensor:
        with torch.autocast(device_type=data.edge_index.device.type, enabled=False):  # fp32 throughout
            return self.forward_head(self.forward_features(data, x))

    @torch.no_grad()
    def cell_weights(self, data: Any) -> Tensor:
        """Each cell's weight in its graph's readout, (N,), summing to 1 per non-empty graph:
        the attention softmax, or ``1/K`` for the mean readout."""
        h = self.forward_nodes(data)
        if self.gate is None:
            ones = torch.ones(len(h), device=h.device)
            counts = torch.zeros(data.num_graphs, device=h.device).index_add_(0, data.batch, ones)
            return ones / counts[data.batch]
        return softmax(self.gate(h).squeeze(-1), data.batch, num_nodes=len(h))


def _create(name: str, num_classes: int, weights: str | Path | None, **kwargs: Any) -> CellGraphNet:
    if weights is not None:
        raise ValueError(f"{name}: a graph model has no pretrained weights (weights=None), got {weights!r}")
    return CellGraphNet(num_classes=num_classes, model_name=name, **kwargs)


@register_model
def cell_graph_gat(*, num_classes: int = 5, weights: str | Path | None = None, **kwargs: Any) -> CellGraphNet:
    """GATv2 over the cell graph, attention readout."""
    return _create("cell_graph_gat", num_classes, weights, **{"conv": "gatv2", "readout": "attention", **kwargs})


@register_model
def cell_graph_gat_no_edges(*, num_classes: int = 5, weights: str | Path | None = None,
                            **kwargs: Any) -> CellGraphNet:
    """``cell_graph_gat`` with its edges removed: each cell alone, then the attention readout."""
    return _create("cell_graph_gat_no_edges", num_classes, weights,
                   **{"conv": "gatv2", "readout": "attention", "edges": False, **kwargs})


@register_model
def cell_graph_gin(*, num_classes: int = 5, weights: str | Path | None = None, **kwargs: Any) -> CellGraphNet:
    """GINE over the cell graph, mean readout: no attention anywhere."""
    return _create("cell_graph_gin", num_classes, weights, **{"conv": "gin", "readout": "mean", **kwargs})


@register_model
def cell_graph_gat_cnn(*, num_classes: int = 5, weights: str | Path | None = None, **kwargs: Any) -> CellGraphNet:
    """``cell_graph_gat`` reading each cell's pooled features from the isolated-cell DenseNet-121."""
    from cervixlib.graphs import CELL_ENCODERS

    return _create("cell_graph_gat_cnn", num_classes, weights,
                   **{"conv": "gatv2", "readout": "attention",
                      "in_features": ENCODER_FEATURES[CELL_ENCODERS["cell_graph_gat_cnn"]], **kwargs})
