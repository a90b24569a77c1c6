"""Node features of a second kind: each cell as the isolated-cell CNN of the same fold sees it.

The morphometry of :mod:`cervixlib.graphs.build` is what the outlines say of a cell. The
other kind asks what a CNN trained on SIPaKMeD's isolated cells makes of it: every cell of a
multi-cell image is cut out as the isolated cells were (its outline's bounding box with a
margin, :func:`cell_crops`), resized as the CNN's inputs were
(:func:`cervixlib.data.input_pixels`), and read by that CNN up to its pooled features
(``forward_head(..., pre_logits=True)``: 1024 numbers for DenseNet-121), which become the
node's features (:func:`embedded_graphs`). The CNN is the run of the same fold on the
isolated cells (:attr:`cervixlib.config.TrainConfig.cell_encoder`): the folds of the two
subsets are dealt together (a multi-cell image and its crops share a test fold), so it never
saw a crop of the graph's test images; :func:`cervixlib.train.fit` checks that before training.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from cervixlib.data.items import Item
from cervixlib.graphs.build import CellGraph

if TYPE_CHECKING:
    from cervixlib.runs import Run

__all__ = ["CROP_MARGIN", "cell_crops", "cell_embeddings", "embedded_graphs"]

#: A crop is the cell's bounding box grown on every side by this share of its longer side, plus
#: 2 px: the middle of the embedded generator's margins (8% to 25%), which cut its isolated cells.
CROP_MARGIN = 0.15


def cell_crops(item: Item, graph: CellGraph, *, margin: float = CROP_MARGIN) -> list[Image.Image]:
    """Each node of ``graph`` (made from ``item``) cut out of the image, in node order: its
    bounding box (:attr:`CellGraph.boxes`) grown by ``margin`` of its longer side plus 2 px,
    clipped to the image."""
    from cervixlib.data.io import read_image

    if graph.n_cells == 0:
        return []
    if graph.boxes is None:
        raise ValueError(f"{item.path.name}: this graph has no cell boxes (made by hand?); build it with cell_graph")
    image = read_image(item.path)
    W, H = image.size
    crops = []
    for x0, y0, x1, y1 in np.asarray(graph.boxes, dtype=np.float64):
        pad = margin * max(x1 - x0, y1 - y0) + 2
        box = (max(0, math.floor(x0 - pad)), max(0, math.floor(y0 - pad)),
               min(W, math.ceil(x1 + pad) + 1), min(H, math.ceil(y1 + pad) + 1))
        crops.append(image.crop(box))
    return crops


@torch.no_grad()
def cell_embeddings(model: torch.nn.Module, crops: Sequence[Image.Image], *, image_size: int,
                    device: torch.device | str | None = None, batch_size: int = 64) -> np.ndarray:
    """The pooled features (N, C) of ``model`` (a CNN of the registry, in eval mode) for each crop,
    resized to ``image_size`` and normalised as its inputs were; fp32."""
    from cervixlib.data.datasets import input_pixels, normalize

    device = torch.device(device) if device is not None else next(model.parameters()).device
    out = []
    for start in range(0, len(crops), batch_size):
        pixels = np.stack([input_pixels(c, image_size) for c in crops[start:start + batch_size]])
        X = normalize(torch.from_numpy(pixels).float() / 255.0).to(device)
        out.append(model.forward_head(model.forward_features(X), pre_logits=True).float().cpu())
    width = getattr(model, "num_features", 0)
    return torch.cat(out).numpy() if out else np.zeros((0, width), np.float32)


def _chunks(graphs: Sequence[CellGraph], size: int) -> Iterator[list[int]]:
    """Indices of graphs, in order, a chunk holding about ``size`` cells (so crops stay few in memory)."""
    chunk: list[int] = []
    cells = 0
    for i, g in enumerate(graphs):
        chunk.append(i)
        cells += g.n_cells
        if cells >= size:
            yield chunk
            chunk, cells = [], 0
    if chunk:
        yield chunk


def embedded_graphs(graphs: Sequence[CellGraph], items: Sequence[Item], encoder: Run, *,
                    device: torch.device | str | None = None) -> list[CellGraph]:
    """``graphs`` with each node's features replaced by ``encoder``'s pooled features of the
    cell's crop (:func:`cell_crops`, :func:`cell_embeddings` at the encoder's input size)."""
    if len(graphs) != len(items):
        raise ValueError(f"{len(graphs)} graphs for {len(items)} items")
    model = encoder.load_model(device)
    side = encoder.config.data.image_size
    out: list[CellGraph] = list(graphs)
    for chunk in _chunks(graphs, 256):
        crops = [c for i in chunk for c in cell_crops(items[i], graphs[i])]
        features = cell_embeddings(model, crops, image_size=side, device=device)
        start = 0
        for i in chunk:
            k = graphs[i].n_cells
            out[i] = dataclasses.replace(graphs[i], features=np.ascontiguousarray(features[start:start + k]))
            start += k
    return out
