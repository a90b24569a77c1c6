"""One multi-cell image as a graph of its annotated cells: nodes, features, edges.

Wang et al. (2021) close their discussion with the open question this module answers:
CNNs on fixed-size patches "limit the model to capturing global contextual information",
and "in future work, relations between cells in multi-cell images can be analyzed
through" graph representations, "modeling a tissue section as a multi-attributed spatial
graph of its constituent cells". Here:

- a **node** is one annotated cell: one ``.dat`` cytoplasm polygon (with its nucleus), or
  one 8-connected component of a class-per-folder mask file (:func:`cervixlib.data.cell_components`);
- **node features** are morphometry (:data:`FEATURE_NAMES`): size, perimeter,
  eccentricity, nucleus-to-cytoplasm ratio, mean colour and optical density of the
  nucleus and of the cytoplasm; from the polygons exactly where there are polygons;
- **edges** join spatial neighbours: the Delaunay triangulation of the cell centroids,
  cut where two centroids lie further apart than ``cut`` times the sum of the two cells'
  equivalent radii. Delaunay rather than k nearest neighbours: it is symmetric, adapts to
  the local density of a sheet, and, cut, leaves a lone cell alone instead of tying it to
  k cells across the field, so an edge means "these cells are near each other";
- **edge features** (:data:`EDGE_FEATURE_NAMES`): the distance in units of the two radii
  (1 = touching circles) and the direction (cosine, sine).

Bad outlines are reported one line each, naming the file (:func:`cell_problems`); an
image with no annotated cell gives an empty graph, one with a single cell a graph of one
node and no edge, and :func:`graph_summary` names both kinds. numpy and scipy only.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cervixlib.data.errors import BadFilesError, DataError, display_path
from cervixlib.data.items import Item

__all__ = [
    "CUT", "EDGE_FEATURE_NAMES", "FEATURE_NAMES", "WORK_SIDE", "CellGraph", "Morphometry", "cell_graph",
    "cell_graphs", "cell_problems", "delaunay_edges", "edge_features", "graph_summary", "mask_morphometry",
    "node_features", "outlines_error", "polygon_morphometry", "self_crossing",
]

_log = logging.getLogger(__name__)

#: Edges longer than ``CUT * (r_i + r_j)`` (equivalent radii) are cut from the triangulation.
CUT = 2.0
#: Colours are measured on the image resized so that its longer side is at most this.
WORK_SIDE = 256
FEATURE_NAMES: tuple[str, ...] = (
    "area", "perimeter", "eccentricity", "nc_ratio", "has_nucleus",
    "nucleus_red", "nucleus_green", "nucleus_blue", "nucleus_od",
    "cytoplasm_red", "cytoplasm_green", "cytoplasm_blue", "cytoplasm_od",
)
EDGE_FEATURE_NAMES: tuple[str, ...] = ("distance", "cos", "sin")


@dataclass(frozen=True)
class Morphometry:
    """Shape of one region in image pixels: area (px²), perimeter (px), centroid (x, y),
    eccentricity of the ellipse with the same second moments (0 = circle)."""

    area: float
    perimeter: float
    centroid: tuple[float, float]
    eccentricity: float


@dataclass(frozen=True, eq=False)
class CellGraph:
    """One image's graph.

    ``centroids`` (K, 2) x,y in the image's pixels; ``features`` (K, F) float32 in the
    order of :data:`FEATURE_NAMES`; ``edge_index`` (2, E) int64, each undirected edge in
    both directions; ``edge_attr`` (E, 3) float32 (:data:`EDGE_FEATURE_NAMES`); ``radii``
    (K,) equivalent radii (px); ``boxes`` (K, 4) each cell's bounding box x0, y0, x1, y1 in the
    image's pixels (where its crop is cut, :func:`cervixlib.graphs.embed.cell_crops`; None in a
    graph made by hand). K may be 0 (no annotated cell) or 1 (no edge).
    """

    path: Path
    label: int
    size: tuple[int, int]
    centroids: np.ndarray
    features: np.ndarray
    edge_index: np.ndarray
    edge_attr: np.ndarray
    radii: np.ndarray
    boxes: np.ndarray | None = None

    @property
    def n_cells(self) -> int:
        return int(len(self.centroids))

    @property
    def n_edges(self) -> int:
        """Undirected edges."""
        return int(self.edge_index.shape[1] // 2)


# ------------------------------------------------------------------ shape
def _ellipse_eccentricity(cxx: float, cyy: float, cxy: float) -> float:
    """Eccentricity of the ellipse with central second moments ``cxx, cyy, cxy``."""
    half, root = (cxx + cyy) / 2, math.sqrt(max(((cxx - cyy) / 2) ** 2 + cxy ** 2, 0.0))
    big, small = half + root, max(half - root, 0.0)
    return float(math.sqrt(max(1.0 - small / big, 0.0))) if big > 0 else 0.0


def polygon_morphometry(polygon: np.ndarray) -> Morphometry:
    """Exact area, perimeter, centroid and eccentricity of a simple polygon (N, 2) x,y.

    Green's theorem gives the area and the region's second moments (not the vertices':
    a polygon sampled densely on one side would bias those).
    """
    x, y = np.asarray(polygon, dtype=np.float64).T
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    a = cross.sum() / 2
    perimeter = float(np.hypot(xn - x, yn - y).sum())
    if abs(a) < 1e-12:
        return Morphometry(0.0, perimeter, (float(x.mean()), float(y.mean())), 0.0)
    cx, cy = ((x + xn) * cross).sum() / (6 * a), ((y + yn) * cross).sum() / (6 * a)
    sxx = ((x * x + x * xn + xn * xn) * cross).sum() / (12 * a) - cx * cx
    syy = ((y * y + y * yn + yn * yn) * cross).sum() / (12 * a) - cy * cy
    sxy = ((x * yn + 2 * x * y + 2 * xn * yn + xn * y) * cross).sum() / (24 * a) - cx * cy
    return Morphometry(abs(float(a)), perimeter, (float(cx), float(cy)), _ellipse_eccentricity(sxx, syy, sxy))


def mask_morphometry(mask: np.ndarray, scale: tuple[float, float] = (1.0, 1.0)) -> Morphometry:
    """Area (pixels), perimeter (pixel edges between the region and the rest), centroid and
    eccentricity of a bool (H, W) region, in image pixels when the mask was drawn at
    ``1/scale`` of the image (``scale`` = image px per mask px along x and y)."""
    m = np.asarray(mask, dtype=bool)
    ys, xs = np.nonzero(m)
    sx, sy = scale
    if len(xs) == 0:
        return Morphometry(0.0, 0.0, (float("nan"), float("nan")), 0.0)
    padded = np.pad(m, 1)
    vertical = np.count_nonzero(padded[1:, :] != padded[:-1, :])  # horizontal pixel edges
    horizontal = np.count_nonzero(padded[:, 1:] != padded[:, :-1])
    px, py = (xs + 0.5) * sx - 0.5, (ys + 0.5) * sy - 0.5
    cx, cy = float(px.mean()), float(py.mean())
    cxx, cyy = float(((px - cx) ** 2).mean()) + sx * sx / 12, float(((py - cy) ** 2).mean()) + sy * sy / 12
    cxy = float(((px - cx) * (py - cy)).mean())
    return Morphometry(len(xs) * sx * sy, vertical * sx + horizontal * sy, (cx, cy),
                       _ellipse_eccentricity(cxx, cyy, cxy))


def self_crossing(polygon: np.ndarray) -> bool:
    """Whether two non-adjacent edges of the closed polygon (N, 2) cross (vectorised, O(N²))."""
    p = np.asarray(polygon, dtype=np.float64)
    if len(p) < 4:
        return False
    a, b = p, np.roll(p, -1, axis=0)
    d = b - a

    def orient(o: np.ndarray, u: np.ndarray, q: np.ndarray) -> np.ndarray:
        return np.sign(u[..., 0] * (q[..., 1] - o[..., 1]) - u[..., 1] * (q[..., 0] - o[..., 0]))

    A, D, B = a[:, None], d[:, None], b[:, None]
    C, E, F = a[None], d[None], b[None]
    cross = ((orient(A, D, C) * orient(A, D, F)) < 0) & ((orient(C, E, A) * orient(C, E, B)) < 0)
    n = len(p)
    i, j = np.triu_indices(n, 2)
    keep = ~((i == 0) & (j == n - 1))  # the first and the last edge share a vertex
    return bool(cross[i[keep], j[keep]].any())


# ------------------------------------------------------------------ bad outlines
def _dat_file(item: Item, index: int, part: str) -> Path:
    """The ``.dat`` file holding cell ``index``'s ``part`` ("cyt"/"nuc") polygon, else the image."""
    from cervixlib.data.io import read_dat

    poly = getattr(item.cells[index], "cytoplasm" if part == "cyt" else "nucleus")
    for dat in sorted(item.path.parent.glob(f"{item.path.stem}_{part}*.dat")) + sorted(
            item.path.parent.glob(f"{item.path.stem}_*_{part}.dat")):
        try:
            points = read_dat(dat)
            if points.shape == poly.shape and np.allclose(points, poly, atol=1e-3):
                return dat
        except DataError:
            continue
    return item.path


def cell_problems(item: Item) -> list[tuple[Path, str]]:
    """What would make ``item``'s graph wrong, one ``(file, problem)`` each: a cell whose
    centroid lies outside the image, a self-crossing outline, a nucleus outside its cell,
    an empty mask file. An image with no outline at all is not a problem here (its graph
    is empty, and :func:`graph_summary` names it)."""
    problems: list[tuple[Path, str]] = []
    W, H = item.size
    if item.mask_path is not None:
        from cervixlib.data.io import read_mask

        if not read_mask(item.mask_path).any():
            problems.append((item.mask_path, f"empty mask: no cell pixel, so image {item.path.name} has no "
                                             "cell to make a graph of"))
        return problems
    for k, cell in enumerate(item.cells):
        for part, poly in (("cyt", cell.cytoplasm), ("nuc", cell.nucleus)):
            if poly is None:
                continue
            word = "cytoplasm" if part == "cyt" else "nucleus"
            if self_crossing(poly):
                problems.append((_dat_file(item, k, part), f"the {word} outline of cell {k + 1} of "
                                 f"{item.path.name} crosses itself, so its area and shape are undefined"))
                continue
            cx, cy = polygon_morphometry(poly).centroid
            if not (-0.5 <= cx <= W - 0.5 and -0.5 <= cy <= H - 0.5):
                problems.append((_dat_file(item, k, part), f"the {word} of cell {k + 1} lies outside its image "
                                 f"{item.path.name} ({W}x{H}): centroid at ({cx:.0f}, {cy:.0f})"))
    return problems


# ------------------------------------------------------------------ features
def _work_size(size: tuple[int, int]) -> tuple[int, int]:
    f = min(1.0, WORK_SIDE / max(size))
    return max(1, round(size[0] * f)), max(1, round(size[1] * f))


def _colours(values: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Mean of ``values`` (h*w, 4: red, green, blue in 0..1, optical density) over each of
    the (K, h, w) masks, (K, 4); zeros for an empty mask."""
    m = masks.reshape(len(masks), -1).astype(np.float32)
    counts = m.sum(1, keepdims=True)
    return np.where(counts > 0, (m @ values) / np.maximum(counts, 1), 0.0)


def node_features(item: Item, *, cells: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features (K, F), centroids (K, 2), equivalent radii (K,) and bounding boxes (K, 4: x0, y0,
    x1, y1 in the image's pixels) of ``item``'s cells.

    Size and perimeter are given relative to the image (``10 * sqrt(area / image area)``,
    ``10 * perimeter / (2 sqrt(pi * image area))``: the two agree for a circle), so that
    a 2048 px SIPaKMeD image and a 512 px synthetic one speak the same units; colours are
    means in [0, 1] and optical density ``-log10(I / 255)`` averaged over the channels.
    A cell without a nucleus has ``has_nucleus = 0`` and its nucleus colour zero.
    ``cells``: the (K, h, w) masks already drawn at the working size (else drawn here).
    """
    from cervixlib.data.io import read_image
    from cervixlib.data.masks import cell_components

    W, H = item.size
    if not item.has_mask:
        return (np.zeros((0, len(FEATURE_NAMES)), np.float32), np.zeros((0, 2), np.float32),
                np.zeros(0, np.float32), np.zeros((0, 4), np.float32))
    w, h = _work_size(item.size)
    rgb = np.asarray(read_image(item.path).resize((w, h)), dtype=np.float32).reshape(-1, 3) / 255.0
    values = np.column_stack([rgb, (-np.log10(np.clip(rgb, 1 / 255, 1.0))).mean(-1)])
    cells = cell_components(item, (w, h)) if cells is None else cells
    nuclei = (cell_components(item, (w, h), "nucleus") if item.has_nucleus
              else np.zeros_like(cells))
    scale = (W / w, H / h)
    nuclei = nuclei & cells
    cytoplasm = cells & ~nuclei
    cytoplasm = np.where(cytoplasm.reshape(len(cells), -1).any(1)[:, None, None], cytoplasm, cells)
    nucleus_colour, cytoplasm_colour = _colours(values, nuclei), _colours(values, cytoplasm)
    rows, centres, radii, boxes = [], [], [], []
    image_area = float(W * H)
    for k in range(len(cells)):
        if item.mask_path is None and not self_crossing(item.cells[k].cytoplasm):
            cell = item.cells[k]
            shape = polygon_morphometry(cell.cytoplasm)
            nucleus_area = polygon_morphometry(cell.nucleus).area if cell.nucleus is not None else 0.0
            has_nucleus = cell.nucleus is not None
            box = [*cell.cytoplasm.min(axis=0), *cell.cytoplasm.max(axis=0)]
        else:  # a mask file's cell, or an outline that crosses itself (kept with skip_bad): its pixels
            shape = mask_morphometry(cells[k], scale)
            nucleus_area = float(nuclei[k].sum()) * scale[0] * scale[1]
            has_nucleus = bool(nuclei[k].any())
            ys, xs = np.nonzero(cells[k])
            box = ([xs.min() * scale[0], ys.min() * scale[1], (xs.max() + 1) * scale[0], (ys.max() + 1) * scale[1]]
                   if len(xs) else [np.nan] * 4)
        nc = nucleus_area / max(shape.area - nucleus_area, 1e-9) if has_nucleus else 0.0
        rows.append([10 * math.sqrt(shape.area / image_area),
                     10 * shape.perimeter / (2 * math.sqrt(math.pi * image_area)),
                     shape.eccentricity, min(nc, 10.0), float(has_nucleus),
                     *nucleus_colour[k], *cytoplasm_colour[k]])
        centres.append(shape.centroid)
        radii.append(math.sqrt(shape.area / math.pi))
        boxes.append(box)
    return (np.asarray(rows, np.float32).reshape(-1, len(FEATURE_NAMES)),
            np.asarray(centres, np.float32).reshape(-1, 2), np.asarray(radii, np.float32),
            np.asarray(boxes, np.float32).reshape(-1, 4))


# ------------------------------------------------------------------ edges
def delaunay_edges(centroids: np.ndarray, radii: np.ndarray | None = None, *, cut: float | None = CUT) -> np.ndarray:
    """Undirected edges (2, E) of the Delaunay triangulation of ``centroids`` (K, 2), each pair once
    (i < j), sorted; without those longer than ``cut * (r_i + r_j)`` (``cut=None``: keep all).

    Two cells: their one edge; collinear cells: consecutive pairs along the line (scipy's
    Qhull cannot triangulate them); fewer than two: none.
    """
    from scipy.spatial import Delaunay, QhullError

    p = np.asarray(centroids, dtype=np.float64).reshape(-1, 2)
    n = len(p)
    if n < 2:
        return np.zeros((2, 0), dtype=np.int64)
    pairs: set[tuple[int, int]] = set()
    try:
        if n < 3:
            raise QhullError("two points")
        for tri in Delaunay(p).simplices:
            for a, b in ((tri[0], tri[1]), (tri[1], tri[2]), (tri[0], tri[2])):
                pairs.add((int(min(a, b)), int(max(a, b))))
    except QhullError:  # two points, or all on one line: neighbours along it
        order = np.argsort(p @ (p[-1] - p[0] if np.any(p[-1] != p[0]) else np.array([1.0, 0.0])), kind="stable")
        pairs = {(int(min(a, b)), int(max(a, b))) for a, b in zip(order[:-1], order[1:])}
    edges = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2).T
    if cut is not None and radii is not None and edges.size:
        r = np.asarray(radii, dtype=np.float64)
        length = np.linalg.norm(p[edges[0]] - p[edges[1]], axis=1)
        edges = edges[:, length <= cut * (r[edges[0]] + r[edges[1]])]
    return edges


def edge_features(centroids: np.ndarray, radii: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both directions of each undirected edge (2, 2E) and their features (2E, 3): distance
    over ``r_i + r_j``, and the unit direction from source to target (cos, sin)."""
    e = np.asarray(edges, dtype=np.int64).reshape(2, -1)
    both = np.concatenate([e, e[::-1]], axis=1)
    p, r = np.asarray(centroids, np.float64), np.asarray(radii, np.float64)
    if both.shape[1] == 0:
        return both, np.zeros((0, len(EDGE_FEATURE_NAMES)), np.float32)
    d = p[both[1]] - p[both[0]]
    length = np.linalg.norm(d, axis=1)
    unit = d / np.maximum(length, 1e-9)[:, None]
    attr = np.column_stack([length / np.maximum(r[both[0]] + r[both[1]], 1e-9), unit])
    return both, attr.astype(np.float32)


# ------------------------------------------------------------------ graphs
def cell_graph(item: Item, *, cut: float | None = CUT, check: bool = True) -> CellGraph:
    """``item`` as a :class:`CellGraph`; ``check`` raises the first of :func:`cell_problems`
    as a one-line :class:`~cervixlib.data.DataError` naming the file."""
    if check:
        problems = cell_problems(item)
        if problems:
            raise DataError(*problems[0])
    features, centroids, radii, boxes = node_features(item)
    keep = np.isfinite(centroids).all(1) & (radii > 0)  # a mask cell that vanished at the working size
    if not keep.all():
        _log.info("%s: %d cell(s) too small to measure at %d px; left out", display_path(item.path),
                  int((~keep).sum()), WORK_SIDE)
        features, centroids, radii, boxes = features[keep], centroids[keep], radii[keep], boxes[keep]
    edges, attr = edge_features(centroids, radii, delaunay_edges(centroids, radii, cut=cut))
    return CellGraph(item.path, item.label, item.size, centroids, features, edges, attr, radii, boxes)


def cell_graphs(items: Sequence[Item], *, cut: float | None = CUT, skip_bad: bool = False) -> list[CellGraph]:
    """One graph per item, in order. Bad outlines are all reported at once in one
    :class:`~cervixlib.data.BadFilesError` (one line per file), unless ``skip_bad``: then
    each is logged in one line and the image is built without its bad cells checked
    (an empty mask gives an empty graph), never left out."""
    bad = [p for item in items for p in cell_problems(item)]
    if bad and not skip_bad:
        raise outlines_error(bad)
    for path, problem in bad:
        _log.warning("%s: %s (kept: --skip-bad)", display_path(path), problem)
    return [cell_graph(item, cut=cut, check=False) for item in items]


def outlines_error(bad: Sequence[tuple[Path, str]]) -> BadFilesError:
    """One error for every bad outline: the one line of that file, or a count then a line each."""
    if len(bad) == 1:
        return BadFilesError(bad[0][0], bad[0][1] + "; fix or remove it, or keep it with --skip-bad", list(bad))
    root = Path(os.path.commonpath([str(p) for p, _ in bad]))
    return BadFilesError(root, f"{len(bad)} bad cell outlines, listed below; fix or remove them, or keep them "
                               "with --skip-bad (skip_bad=True: logged, and the image keeps every cell)", list(bad))


def graph_summary(graphs: Sequence[CellGraph], *, root: Path | None = None) -> str:
    """One line naming the images with no annotated cell and those with one (or ``""``):
    what their graphs are and how the model reads them."""
    def names(gs: list[CellGraph]) -> str:
        shown = [display_path(g.path.relative_to(root) if root else Path(g.path.parent.name) / g.path.name)
                 for g in gs[:5]]
        return ", ".join(shown) + (f" and {len(gs) - 5} more" if len(gs) > 5 else "")

    empty = [g for g in graphs if g.n_cells == 0]
    single = [g for g in graphs if g.n_cells == 1]
    parts = []
    if empty:
        parts.append(f"{len(empty)} image{'s' * (len(empty) != 1)} with no annotated cell ({names(empty)}): "
                     "an empty graph, which the model reads as a readout of no cells (a zero vector), so it "
                     "predicts from what its classifier learned without cells")
    if single:
        parts.append(f"{len(single)} image{'s' * (len(single) != 1)} with one annotated cell ({names(single)}): "
                     "one node and no edge, so only that cell's features reach the model")
    return "; ".join(parts) + ("." if parts else "")
