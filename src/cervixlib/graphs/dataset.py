"""Cell graphs as PyTorch Geometric data, for the one training loop (:func:`cervixlib.train.fit`).

For the graph models of Wang et al.'s (2021) future work ("relations between cells in
multi-cell images can be analyzed through" graphs of "its constituent cells"): a
:class:`CellGraphDataset` gives ``(torch_geometric.data.Data, label)`` pairs, and its
``collate`` makes ``(Batch, labels)``, the ``(X, y)`` that ``fit`` moves to the device
and feeds to the model. A graph with no cell stays in the batch as a graph of zero nodes
(the readout gives it a zero vector), so that a graph model predicts every image a CNN
predicts and the two are compared on the same test images.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset
from torch_geometric.data import Batch, Data

from cervixlib.data.items import Item
from cervixlib.data.errors import display_path
from cervixlib.graphs.build import CUT, CellGraph, cell_graph, cell_problems, graph_summary, outlines_error

if TYPE_CHECKING:
    from cervixlib.runs import Run

__all__ = ["CellGraphDataset", "collate_graphs", "graph_batch", "one_thread", "to_data"]

_log = logging.getLogger(__name__)
_CACHE: dict[str, CellGraph] = {}  # built graphs by item content, for the runs of one process
_PROBLEMS: dict[str, list[tuple[Path, str]]] = {}  # cell_problems of the same items
_EMBEDDED: dict[tuple[str, str], CellGraph] = {}  # graphs with an encoder's node features, by (run key, item)
_CACHE_MAX = 20000


def to_data(graph: CellGraph) -> Data:
    """A PyG ``Data``: ``x`` (K, F), ``edge_index`` (2, E), ``edge_attr`` (E, 3), ``pos`` (K, 2)
    in image pixels, ``y`` (1,), ``num_nodes`` K (also when K = 0)."""
    return Data(x=torch.from_numpy(graph.features.copy()), edge_index=torch.from_numpy(graph.edge_index.copy()),
                edge_attr=torch.from_numpy(graph.edge_attr.copy()), pos=torch.from_numpy(graph.centroids.copy()),
                y=torch.tensor([graph.label]), num_nodes=graph.n_cells)


def collate_graphs(samples: Sequence[tuple[Data, int]]) -> tuple[Batch, torch.Tensor]:
    """``[(Data, label), ...]`` -> ``(Batch, labels (B,))``; the batch keeps empty graphs."""
    batch = Batch.from_data_list([s[0] for s in samples])
    return batch, torch.tensor([int(s[1]) for s in samples], dtype=torch.long)


def graph_batch(graphs: Sequence[CellGraph]) -> Batch:
    """Graphs as one PyG ``Batch`` (for a model outside a loader: the chapter, the tests)."""
    return Batch.from_data_list([to_data(g) for g in graphs])


def _key(item: Item, cut: float | None) -> str:
    h = hashlib.sha1(f"{item.path}|{item.label}|{item.size}|{item.mask_path}|{item.nucleus_mask_path}|{cut}".encode())
    for path in (item.path, item.mask_path, item.nucleus_mask_path):
        if path is not None:
            st = path.stat()
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    for cell in item.cells:
        h.update(np.ascontiguousarray(cell.cytoplasm).tobytes())
        if cell.nucleus is not None:
            h.update(np.ascontiguousarray(cell.nucleus).tobytes())
    return h.hexdigest()


class CellGraphDataset(Dataset):
    """One graph per item (:func:`cervixlib.graphs.cell_graph`), built at once.

    ``__getitem__ -> (Data, label)``; ``collate`` is what a DataLoader needs
    (:func:`cervixlib.train.make_loader` uses it); ``.graphs``, ``.targets``. Bad outlines
    raise one :class:`~cervixlib.data.BadFilesError` naming every file unless ``skip_bad``;
    images with no cell or one cell are named in one logged line (:func:`graph_summary`).
    ``train`` is accepted for the same call as :class:`~cervixlib.data.CellImageDataset`
    (graphs have no augmentation). ``encoder``: an isolated-cell CNN's run, whose pooled features
    of each cell's crop replace the morphometry (:func:`~cervixlib.graphs.embedded_graphs`, on
    ``device``).
    """

    collate = staticmethod(collate_graphs)

    def __init__(self, items: Sequence[Item], *, train: bool = False, skip_bad: bool = False,
                 cut: float | None = CUT, encoder: Run | None = None, device: torch.device | str | None = None) -> None:
        self.items = list(items)
        keys = [_key(it, cut) for it in self.items]
        todo = [i for i, k in enumerate(keys) if k not in _CACHE]
        if len(_CACHE) + len(todo) > _CACHE_MAX:
            _CACHE.clear()
            todo = list(range(len(keys)))
        for i in todo:  # check first, so that every bad file is reported at once
            _PROBLEMS[keys[i]] = cell_problems(self.items[i])
        bad = [p for k in keys for p in _PROBLEMS[k]]
        if bad and not skip_bad:
            raise outlines_error(bad)
        for path, problem in bad:
            _log.warning("%s: %s (kept, as skip_bad asks)", display_path(path), problem)
        for i in todo:
            _CACHE[keys[i]] = cell_graph(self.items[i], cut=cut, check=False)
        self.graphs = [_CACHE[k] for k in keys]
        if encoder is not None:
            self.graphs = _embedded(self.graphs, self.items, keys, encoder, device)
        self._data = [to_data(g) for g in self.graphs]
        self.targets = np.asarray([it.label for it in self.items], dtype=np.int64)
        summary = graph_summary(self.graphs)
        if summary:
            _log.info("cell graphs: %s", summary)

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, i: int) -> tuple[Data, int]:
        return self._data[i], int(self.targets[i])


def _embedded(graphs: list[CellGraph], items: list[Item], keys: list[str], encoder: Run,
              device: torch.device | str | None) -> list[CellGraph]:
    """``graphs`` with ``encoder``'s node features, each image embedded once a process."""
    from cervixlib.graphs.embed import embedded_graphs

    todo = [i for i, k in enumerate(keys) if (encoder.key, k) not in _EMBEDDED]
    if len(_EMBEDDED) + len(todo) > _CACHE_MAX:
        _EMBEDDED.clear()
        todo = list(range(len(keys)))
    if todo:
        done = embedded_graphs([graphs[i] for i in todo], [items[i] for i in todo], encoder, device=device)
        for i, g in zip(todo, done):
            _EMBEDDED[(encoder.key, keys[i])] = g
    return [_EMBEDDED[(encoder.key, k)] for k in keys]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread for graph-sized work, then the caller's count again: a graph batch is
    many tiny tensors, for which OpenMP's start-up outweighs the work (see :func:`cervixlib.train.fit`)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
