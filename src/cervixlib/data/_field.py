"""What goes into one synthetic field, read from the class table (see :mod:`cervixlib.data.synth`).

One drawing path for every class: :func:`_cell` draws a cell as its
:class:`~cervixlib.data.synth_classes.ClassLook` says, :func:`_class_cells` lays a
field's cells out as the class arranges them, :func:`_render_field` adds borderline
cells, the context every class shares (normal squamous cells, inflammatory cells,
debris, mucus) and renders the field, and :func:`_write_field` writes it with its
boundary files and crops. Random draws happen in a fixed order, so a seed gives the
same bytes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from cervixlib.data._draw import (_TWO_PI, _Canvas, _Cell, _ellipse_r, _polygon_r, _Shape, _spikes, _Stain,
                                  _union_r, _wobble)
from cervixlib.data.synth_classes import (CLASS_LOOKS, DEBRIS, PALE_BLUE_GREEN, PINK, ClassLook, Halo, Nucleus,
                                          Outline)

__all__: list[str] = []  # internal to the generator

_REF_SIZE = (512, 384)
# Normal superficial cells appear, out of place, in fields of every other class.
_DISTRACTOR = CLASS_LOOKS["Superficial-Intermediate"]


# ----------------------------------------------------------------------------- cells
def _nucleus(rng: np.random.Generator, cx: float, cy: float, Rn: float, aspect: float,
             wobble: float) -> _Shape:
    r = _ellipse_r(Rn, aspect, rng.uniform(0, np.pi)) * _wobble(rng, wobble)
    return _Shape(cx, cy, r)


def _two_nuclei(rng: np.random.Generator, cx: float, cy: float, Rn: float) -> _Shape:
    """Binucleate cell: two touching, overlapping nuclei, as one outline."""
    a = rng.uniform(0, np.pi)
    d = 0.6 * Rn
    lobes = [(cx + s * d * math.cos(a), cy + s * d * math.sin(a),
              _ellipse_r(Rn * 0.85, rng.uniform(1.0, 1.4), rng.uniform(0, np.pi)) * _wobble(rng, 0.1))
             for s in (-1, 1)]
    return _Shape(cx, cy, _union_r(cx, cy, lobes))


def _offset(rng: np.random.Generator, cx: float, cy: float, dist: float) -> tuple[float, float]:
    a, d = rng.uniform(0, _TWO_PI), rng.uniform(0, dist)
    return cx + d * math.cos(a), cy + d * math.sin(a)


def _outline(o: Outline, rng: np.random.Generator, R: float) -> np.ndarray:
    """Radius function of a cytoplasm of radius about ``R``."""
    if o.kind == "polygon":
        r = _polygon_r(rng, R, int(rng.integers(*o.vertices)), o.vertex_jitter, rng.uniform(*o.aspect),
                       rng.uniform(0, np.pi))
        r = r * _wobble(rng, o.polygon_wobble)
    else:
        aspect, rot = rng.uniform(*o.aspect), rng.uniform(0, np.pi)
        if o.kind == "polygon_or_ellipse" and rng.random() < o.polygon_share:
            r = _polygon_r(rng, R, int(rng.integers(*o.vertices)), o.vertex_jitter, aspect, rot) * _wobble(
                rng, o.polygon_wobble)
        else:
            r = _ellipse_r(R, aspect, rot) * _wobble(rng, o.wobble)
    if o.processes and rng.random() < o.processes:
        r = r + _spikes(rng, R, int(rng.integers(*o.process_count)))
    return r


def _nucleus_shape(spec: Nucleus, rng: np.random.Generator, k: float, R: float, nx: float, ny: float
                   ) -> tuple[float, _Shape]:
    """The drawn nucleus radius and outline."""
    Rn = R * rng.uniform(*spec.radius) if spec.relative else rng.uniform(*spec.radius) * k
    if spec.binucleate and rng.random() < spec.binucleate:
        return Rn, _two_nuclei(rng, nx, ny, Rn)
    return Rn, _nucleus(rng, nx, ny, Rn, rng.uniform(*spec.aspect), spec.wobble)


def _add_halo(cell: _Cell, halo: Halo, rng: np.random.Generator, k: float, R: float, Rn: float,
              nx: float, ny: float) -> None:
    rn_max = float(cell.nuclei[0].r.max())
    base = {"cell": R, "nucleus": Rn, "nucleus_max": rn_max}[halo.of]
    Rh = rng.uniform(*halo.radius) * base
    if halo.min_nucleus:
        Rh = max(Rh, halo.min_nucleus * rn_max)
    cell.halo = _Shape(nx, ny, _ellipse_r(Rh, rng.uniform(*halo.aspect), rng.uniform(0, np.pi))
                       * _wobble(rng, halo.wobble))
    cell.halo_factor, cell.halo_edge = rng.uniform(*halo.clear), halo.edge * k
    if halo.ring is not None:
        cell.ring_factor = rng.uniform(*halo.ring) if isinstance(halo.ring, tuple) else halo.ring
        cell.ring_width = halo.ring_width * R


def _cell(look: ClassLook, rng: np.random.Generator, k: float, st: _Stain, cx: float, cy: float,
          R0: float | None = None, kind: str | None = None) -> _Cell:
    """One cell of ``look``'s class centred at ``(cx, cy)``.

    ``k`` scales reference lengths to the field; ``R0`` is the field's cell radius
    (classes with ``per_field`` sizes); ``kind`` overrides the class name.
    """
    if look.per_field:
        dist, a, b = look.jitter
        R = R0 * (rng.normal(a, b) if dist == "normal" else rng.uniform(a, b))
    else:
        R = rng.uniform(*look.radius) * k
    r = _outline(look.outline, rng, R)
    colour = look.colour.pick(rng)
    nx, ny = _offset(rng, cx, cy, look.nucleus_offset * R)
    spec = look.nucleus.pick(rng)
    Rn, nuc = _nucleus_shape(spec, rng, k, R, nx, ny)
    nd = rng.uniform(*spec.density) if spec.density is not None else None
    folds = []
    if look.folds:
        for _ in range(int(rng.choice(len(look.folds), p=list(look.folds)))):
            a = rng.uniform(0, _TWO_PI)
            folds.append((math.cos(a), math.sin(a), rng.uniform(*look.fold_depth) * R))
    density = rng.uniform(*look.density)
    if nd is None:
        nd = rng.uniform(*look.nucleus_density)
    style = spec.style or look.nucleus_style.pick(rng)
    cell = _Cell(kind or look.name, _Shape(cx, cy, r), st.cyt(colour), density, [nuc], nd, style,
                 rim=look.rim, texture=look.texture, folds=folds)
    halo = look.halo.pick(rng)
    if halo is not None:
        _add_halo(cell, halo, rng, k, R, Rn, nx, ny)
    return cell


def _inflammatory(rng, k, st, cx, cy) -> _Cell:
    R = rng.uniform(4.0, 6.0) * k
    lobes = []
    for _ in range(int(rng.integers(2, 5))):
        lx, ly = _offset(rng, cx, cy, 0.4 * R)
        lobes.append(_Shape(lx, ly, _ellipse_r(rng.uniform(1.2, 1.9) * k, rng.uniform(1.0, 1.6),
                                                rng.uniform(0, np.pi))))
    return _Cell("inflammatory", _Shape(cx, cy, _ellipse_r(R, 1.15, rng.uniform(0, np.pi)) * _wobble(rng, 0.1)),
                 st.cyt(PALE_BLUE_GREEN), rng.uniform(0.4, 0.7), lobes, rng.uniform(1.0, 1.5), "hyper",
                 rim=0.3, texture=0.1)


def _debris(rng, k, st, cx, cy) -> _Cell:
    if rng.random() < 0.85:  # specks
        R = rng.uniform(0.6, 2.5) * k
        r = _ellipse_r(R, rng.uniform(1.0, 2.0), rng.uniform(0, np.pi)) * _wobble(rng, 0.3)
        return _Cell("debris", _Shape(cx, cy, r), DEBRIS, rng.uniform(0.6, 1.6), rim=0.0, texture=0.2)
    R = rng.uniform(5, 14) * k  # amorphous pale patch
    r = _ellipse_r(R, rng.uniform(1.0, 2.0), rng.uniform(0, np.pi)) * _wobble(rng, 0.25)
    colour = PINK if rng.random() < 0.5 else PALE_BLUE_GREEN
    return _Cell("debris", _Shape(cx, cy, r), st.cyt(colour), rng.uniform(0.1, 0.3), rim=0.0, texture=0.3)


# ----------------------------------------------------------------------------- layout
def _scatter(rng, n, W, H, min_dist, taken: list[tuple[float, float]], margin: float = 0.0
             ) -> list[tuple[float, float]]:
    """Up to ``n`` points at least ``min_dist`` from each other and from ``taken``."""
    out: list[tuple[float, float]] = []
    pts = np.asarray(taken, dtype=np.float64).reshape(-1, 2)
    for _ in range(40 * n):
        if len(out) == n:
            break
        p = np.array([rng.uniform(margin, W - margin), rng.uniform(margin, H - margin)])
        if len(pts) == 0 or np.min(np.hypot(*(pts - p).T)) >= min_dist:
            out.append((float(p[0]), float(p[1])))
            pts = np.vstack([pts, p])
    return out


def _hex_sheet(rng, cx, cy, n, spacing, jitter) -> list[tuple[float, float]]:
    """About ``n`` hexagonally packed centres in a random ellipse around (cx, cy)."""
    area = n * spacing * spacing * 0.866
    aspect, rot = rng.uniform(1.0, 2.2), rng.uniform(0, np.pi)
    a, b = math.sqrt(area / math.pi * aspect), math.sqrt(area / (math.pi * aspect))
    m = int(max(a, b) / spacing) + 2
    i, j = np.meshgrid(np.arange(-m, m + 1), np.arange(-m, m + 1))
    x = (i + 0.5 * (j % 2)) * spacing
    y = j * spacing * 0.866
    c, s = math.cos(rot), math.sin(rot)
    u, v = x * c + y * s, -x * s + y * c
    keep = (u / a) ** 2 + (v / b) ** 2 <= 1.0
    x, y = x[keep], y[keep]
    x = x + rng.normal(0, jitter, x.shape)
    y = y + rng.normal(0, jitter, y.shape)
    return list(zip((cx + x).tolist(), (cy + y).tolist()))


def _class_cells(look: ClassLook, rng, k, st, W, H) -> list[_Cell]:
    """The cells of one field of ``look``'s class, arranged as that class arranges."""
    a = look.arrangement
    cells: list[_Cell] = []
    R0 = rng.uniform(*look.radius) * k if look.per_field else None
    if a.group is not None:
        for _ in range(int(rng.integers(*a.groups))):
            cx, cy = rng.uniform(a.centres[0] * W, a.centres[1] * W), rng.uniform(a.centres[0] * H, a.centres[1] * H)
            if a.group == "sheet":
                for px, py in _hex_sheet(rng, cx, cy, int(rng.integers(*a.group_size)),
                                         2 * R0 * rng.uniform(*a.spacing), a.jitter * 2 * R0):
                    cells.append(_cell(look, rng, k, st, px, py, R0))
            else:  # a three-dimensional cluster
                sigma = R0 * rng.uniform(*a.spread)
                for _ in range(int(rng.integers(*a.group_size))):
                    cells.append(_cell(look, rng, k, st, cx + rng.normal(0, sigma), cy + rng.normal(0, sigma), R0))
    taken = [(c.cyt.cx, c.cyt.cy) for c in cells]
    unit = R0 if look.per_field else k
    for cx, cy in _scatter(rng, int(rng.integers(*a.loose)), W, H, a.loose_distance * unit, taken):
        cells.append(_cell(look, rng, k, st, cx, cy, R0))
        if a.neighbour_share and rng.random() < a.neighbour_share:  # a neighbour overlapping it
            t, d = rng.uniform(0, _TWO_PI), a.neighbour_distance
            cells.append(_cell(look, rng, k, st, cx + d * k * math.cos(t), cy + d * k * math.sin(t), R0))
    return cells


def _extra_cell(look: ClassLook, rng, k, st, cx, cy) -> _Cell:
    """A lone cell of ``look``'s class, of its typical size."""
    return _cell(look, rng, k, st, cx, cy, look.typical_radius * k if look.per_field else None)


def _fits(cell: _Cell, W: int, H: int) -> bool:
    x0, y0, x1, y1 = cell.cyt.bbox(pad=0.0)
    m = 0.15 * max(x1 - x0, y1 - y0) + 3
    return x0 - m >= 0 and y0 - m >= 0 and x1 + m <= W - 1 and y1 + m <= H - 1


# ----------------------------------------------------------------------------- fields
def _render_field(cls: str, seed: int, class_index: int, number: int, size: tuple[int, int],
                  n_annotated: int) -> tuple[np.ndarray, list[_Cell]]:
    """One multi-cell field and the cells chosen for annotation."""
    W, H = size
    k = math.sqrt(W * H / (_REF_SIZE[0] * _REF_SIZE[1]))
    rng = np.random.default_rng([seed, class_index, number])
    stain = _Stain(np.exp(rng.normal(0, 0.08, 3)).astype(np.float32), float(rng.uniform(0.85, 1.2)))
    look = CLASS_LOOKS[cls]
    cells = _class_cells(look, rng, k, stain, W, H)
    for i, c in enumerate(cells):
        if rng.random() < look.ambiguous:  # a borderline cell: the look of a neighbouring class
            cells[i] = _extra_cell(CLASS_LOOKS[look.lookalike], rng, k, stain, c.cyt.cx, c.cyt.cy)
            cells[i].kind = cls
        cells[i].annotatable = True
    # make sure enough class cells lie wholly inside the field to be cropped
    for _ in range(200):
        if sum(_fits(c, W, H) for c in cells) >= n_annotated:
            break
        extra = _extra_cell(look, rng, k, stain, rng.uniform(0.1 * W, 0.9 * W), rng.uniform(0.1 * H, 0.9 * H))
        extra.annotatable = True
        cells.append(extra)
    # context every class shares: normal squamous cells, inflammation, debris, mucus
    if look is not _DISTRACTOR and rng.random() < 0.4:
        for cx, cy in _scatter(rng, int(rng.integers(1, 3)), W, H, 30 * k, []):
            cells.append(_cell(_DISTRACTOR, rng, k, stain, cx, cy, kind="distractor"))
    n_inflam = int(rng.poisson(rng.choice([3.0, 10.0, 30.0], p=[0.5, 0.35, 0.15])))
    cells += [_inflammatory(rng, k, stain, rng.uniform(0, W), rng.uniform(0, H)) for _ in range(n_inflam)]
    cells += [_debris(rng, k, stain, rng.uniform(0, W), rng.uniform(0, H))
              for _ in range(int(rng.poisson(rng.uniform(10, 40))))]
    canvas = _Canvas(rng, W, H, k, stain.nuc())
    for c in cells:
        canvas.draw(c)
    canvas.mucus(rng, int(rng.integers(0, 4)))
    pixels = canvas.finish(rng)
    candidates = [c for c in cells if c.annotatable and c.kind == cls and _fits(c, W, H)]
    pick = np.random.default_rng([seed, class_index, number, 1]).permutation(len(candidates))[:n_annotated]
    return pixels, [candidates[i] for i in pick]


def _write_dat(path: Path, points: np.ndarray) -> None:
    path.write_text("".join(f"{x:.2f},{y:.2f}\n" for x, y in points.tolist()), encoding="ascii")


def _write_field(task: tuple[str, int, int, int, tuple[int, int], int, str]) -> int:
    """Render field ``number`` of one class, write it, its boundaries and its crops."""
    cls, class_index, number, seed, size, n_annotated, class_dir = task
    pixels, annotated = _render_field(cls, seed, class_index, number, size, n_annotated)
    folder = Path(class_dir)
    stem = f"{number:03d}"
    Image.fromarray(pixels).save(folder / f"{stem}.bmp", format="BMP")
    rng = np.random.default_rng([seed, class_index, number, 2])
    H, W = pixels.shape[:2]
    n_cyt = CLASS_LOOKS[cls].outline.points
    for m, cell in enumerate(annotated, start=1):
        cyt, nuc = cell.cyt.polygon(n_cyt), cell.nuclei[0].polygon(32)
        _write_dat(folder / f"{stem}_cyt{m:02d}.dat", cyt)
        _write_dat(folder / f"{stem}_nuc{m:02d}.dat", nuc)
        (x0, y0), (x1, y1) = cyt.min(axis=0), cyt.max(axis=0)
        margin = rng.uniform(0.08, 0.25) * max(x1 - x0, y1 - y0) + 2
        cx0, cy0 = max(0, int(math.floor(x0 - margin))), max(0, int(math.floor(y0 - margin)))
        cx1, cy1 = min(W, int(math.ceil(x1 + margin)) + 1), min(H, int(math.ceil(y1 + margin)) + 1)
        crop = pixels[cy0:cy1, cx0:cx1]
        Image.fromarray(np.ascontiguousarray(crop)).save(
            folder / "CROPPED" / f"{stem}_{m:02d}.bmp", format="BMP")
        offset = np.array([cx0, cy0], dtype=np.float64)
        _write_dat(folder / "CROPPED" / f"{stem}_{m:02d}_cyt.dat", cyt - offset)
        _write_dat(folder / "CROPPED" / f"{stem}_{m:02d}_nuc.dat", nuc - offset)
    return len(annotated)
