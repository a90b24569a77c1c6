"""A procedural, SIPaKMeD-compatible dataset: the embedded default data.

SIPaKMeD (Plissiti et al., ICIP 2018), the data of Wang et al. (2021), "Towards
Interpretable Attention Networks for Cervical Cancer Analysis", cannot be shipped, so
``cervix synth`` writes a stand-in in its exact layout: multi-cell BMP fields with
per-cell ``NNN_cytMM.dat`` / ``NNN_nucMM.dat`` boundaries, and ``CROPPED/`` single-cell
crops cut from those fields with their own ``.dat`` files in crop coordinates. At
``scale=1`` it has the real class counts (966 fields, 4031 cells); otherwise
``round(count * scale)`` per class (Python rounding), at least 1. It is labelled
synthetic by a ``SYNTHETIC.json`` marker in its root, which the loader reports.

How the images are made (the cytology cues of the project's DATA.md):

* Optics: stained cells absorb light, so each object adds optical density (OD, per RGB
  channel) and the field is ``illumination * exp(-OD)``; overlapping cells therefore
  darken where they overlap, as in real three-dimensional clusters. Illumination is
  pale, tinted and uneven (off-centre vignette, gradient); focus varies across the
  field (sharp and blurred renderings blended along a random direction); sensor noise.
* Shapes are star-shaped outlines (a radius per angle): ellipses with harmonic
  wobble, straight-edged polygons (flat squamous cells), cytoplasmic processes.
* Per class (lengths at the 512x384 reference size, scaled with the image):
  Superficial-Intermediate: large (radius 24-40 px) flat polygonal cells, thin pink or
  pale blue-green cytoplasm, folded edges, small pyknotic or vesicular nucleus (lowest
  N/C), spread out. Parabasal: small round cells (11-18 px), dense blue-green
  cytoplasm, large central nucleus (high N/C), in sheets. Koilocytotic: mature
  squamous cells (20-32 px) with an enlarged, dark, irregular nucleus (sometimes two)
  in a clear perinuclear halo ringed by condensed cytoplasm; scattered.
  Dyskeratotic: small (9-15 px) dense orange keratinised cells, small dark nuclei, in
  overlapping three-dimensional clusters. Metaplastic: uniform round-oval cells
  (14-23 px) with dense, well-defined cytoplasm, some with processes, central nucleus,
  in cobblestone sheets.
* Deliberate overlap: a quarter of koilocytes have only a faint, small halo, a quarter
  of metaplastic cells are vacuolated (a pale perinuclear zone), and their sizes and
  colours overlap, so single cells of the two classes are confusable (as in the
  paper's results); 3-7% of each class's cells are borderline cells drawn with the
  look of a neighbouring class (koilocytotic <-> metaplastic, parabasal ->
  metaplastic, superficial -> koilocytotic, dyskeratotic -> parabasal), which caps
  single-cell accuracy below 100% while the rest of their field still shows its
  class; per-field stain, focus and illumination vary within each class;
  normal superficial cells, inflammatory cells, debris and mucus appear in every
  class. Arrangement (sheets, cobblestone, 3-D clusters, scattered cells) is visible
  only in the multi-cell fields, so fields carry class information that crops lack.

Every field ``NNN`` of class ``c`` is drawn from its own random stream
``(seed, c, NNN)``, so a seed gives the same bytes whatever the number of worker
processes, and smaller scales give (nearly) the first fields of larger ones.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

from cervixlib.data.errors import DataError
from cervixlib.data.index import SYNTHETIC_MARKER
from cervixlib.facts import CLASSES, ISOLATED_COUNTS, MULTI_COUNTS

__all__ = ["DEFAULT_IMAGE_SIZE", "GENERATOR_NAME", "GENERATOR_VERSION", "synthesize", "default_data_root",
           "synthetic_counts"]

_log = logging.getLogger(__name__)

GENERATOR_NAME = "cervixlib.data.synth"
#: Bump when the images change for a given seed (names the default_data_root cache).
GENERATOR_VERSION = "1"
#: Default multi-cell field size (width, height): a quarter of SIPaKMeD's 2048x1536 a
#: side, so the default book trains fast on a CPU.
DEFAULT_IMAGE_SIZE: tuple[int, int] = (512, 384)

_REF_SIZE = (512, 384)
_MIN_SIDE = 96
_K = 128  # samples of a star-shaped outline's radius
_THETA = np.arange(_K) * (2 * np.pi / _K)
_TWO_PI = 2 * np.pi
# Most annotated cells one field may carry, per class (parabasal sheets carry many).
_ANNOTATION_CAP = dict(zip(CLASSES, (8, 8, 7, 14, 12)))
# Ambiguous cells: the share of a class's cells drawn with the look of another class
# (as real borderline cells are), which bounds single-cell accuracy below 100%.
_LOOKALIKE = {"Dyskeratotic": "Parabasal", "Koilocytotic": "Metaplastic", "Metaplastic": "Koilocytotic",
              "Parabasal": "Metaplastic", "Superficial-Intermediate": "Koilocytotic"}
_AMBIGUOUS = dict(zip(CLASSES, (0.03, 0.07, 0.07, 0.04, 0.03)))


def _od(rgb: tuple[float, float, float]) -> np.ndarray:
    """Optical density of a stain that transmits ``rgb`` (0..1) at unit thickness."""
    return -np.log(np.asarray(rgb, dtype=np.float32))


_PINK = _od((0.93, 0.66, 0.76))
_ORANGE = _od((0.97, 0.60, 0.33))
_RED_ORANGE = _od((0.92, 0.52, 0.42))
_BLUE_GREEN = _od((0.58, 0.80, 0.80))
_PALE_BLUE_GREEN = _od((0.76, 0.89, 0.88))
_MAUVE = _od((0.76, 0.67, 0.82))
_HEMATOXYLIN = _od((0.40, 0.33, 0.58))
_MUCUS = _od((0.82, 0.87, 0.94))
_DEBRIS = _od((0.72, 0.63, 0.56))


# ----------------------------------------------------------------------------- shapes
@dataclass
class _Shape:
    """Star-shaped outline: centre and radius at angles ``_THETA``."""

    cx: float
    cy: float
    r: np.ndarray

    def radius_at(self, theta: np.ndarray) -> np.ndarray:
        pos = theta * (_K / _TWO_PI)
        i0 = np.floor(pos)
        w = (pos - i0).astype(np.float32)
        i0 = i0.astype(np.int64) % _K
        return self.r[i0] * (1 - w) + self.r[(i0 + 1) % _K] * w

    def bbox(self, pad: float = 2.0) -> tuple[float, float, float, float]:
        xs = self.cx + self.r * np.cos(_THETA)
        ys = self.cy + self.r * np.sin(_THETA)
        return xs.min() - pad, ys.min() - pad, xs.max() + pad, ys.max() + pad

    def polygon(self, n: int) -> np.ndarray:
        theta = np.arange(n) * (_TWO_PI / n)
        r = self.radius_at(theta)
        return np.stack([self.cx + r * np.cos(theta), self.cy + r * np.sin(theta)], axis=1)


def _ellipse_r(R: float, aspect: float, rot: float, theta: np.ndarray = _THETA) -> np.ndarray:
    a, b = R * math.sqrt(aspect), R / math.sqrt(aspect)
    t = theta - rot
    return (a * b / np.sqrt((b * np.cos(t)) ** 2 + (a * np.sin(t)) ** 2)).astype(np.float32)


def _wobble(rng: np.random.Generator, amp: float, harmonics: int = 6) -> np.ndarray:
    """Multiplicative outline irregularity: 1 + sum of random harmonics 2..h."""
    out = np.ones(_K, dtype=np.float32)
    for h in range(2, harmonics + 1):
        out += rng.normal(0.0, amp / h) * np.cos(h * _THETA + rng.uniform(0, _TWO_PI))
    return np.clip(out, 0.55, 1.6)


def _polygon_r(rng: np.random.Generator, R: float, n_vertices: int, jitter: float,
               aspect: float, rot: float) -> np.ndarray:
    """Radius function of a straight-edged polygon (flat squamous cells)."""
    phi = (np.arange(n_vertices) + rng.uniform(-0.3, 0.3, n_vertices)) * (_TWO_PI / n_vertices)
    phi = np.sort((phi + rng.uniform(0, _TWO_PI)) % _TWO_PI)
    radii = _ellipse_r(R, aspect, rot, phi) * rng.uniform(1 - jitter, 1 + jitter, n_vertices)
    px, py = radii * np.cos(phi), radii * np.sin(phi)
    j = (np.searchsorted(phi, _THETA, side="right") - 1) % n_vertices
    k = (j + 1) % n_vertices
    ux, uy = np.cos(_THETA), np.sin(_THETA)
    dx, dy = px[k] - px[j], py[k] - py[j]
    num = px[j] * py[k] - py[j] * px[k]
    den = ux * dy - uy * dx
    return np.clip(num / np.where(np.abs(den) < 1e-9, 1e-9, den), 0.3 * R, 2.5 * R).astype(np.float32)


def _spikes(rng: np.random.Generator, R: float, n: int) -> np.ndarray:
    """Narrow cytoplasmic processes added to a radius function."""
    out = np.zeros(_K, dtype=np.float32)
    for _ in range(n):
        centre, width = rng.uniform(0, _TWO_PI), rng.uniform(0.10, 0.2)
        d = np.angle(np.exp(1j * (_THETA - centre)))
        out += rng.uniform(0.25, 0.55) * R * np.exp(-0.5 * (d / width) ** 2)
    return out


def _union_r(cx: float, cy: float, lobes: list[tuple[float, float, np.ndarray]]) -> np.ndarray:
    """Radius about (cx, cy) of a union of star shapes that all contain (cx, cy)."""
    r = np.zeros(_K, dtype=np.float32)
    ux, uy = np.cos(_THETA), np.sin(_THETA)
    for lx, ly, lr in lobes:
        shape = _Shape(lx, ly, lr)
        # march along each ray from the centre; keep the farthest point inside the lobe
        for t in np.linspace(0, 3 * float(lr.max()), 48):
            x, y = cx + t * ux - lx, cy + t * uy - ly
            inside = np.hypot(x, y) <= shape.radius_at(np.arctan2(y, x) % _TWO_PI)
            r = np.where(inside, np.maximum(r, t), r)
    return np.maximum(r, 0.5)


# ----------------------------------------------------------------------------- cells
@dataclass
class _Cell:
    kind: str                     # a class name, "distractor", "inflammatory", "debris"
    cyt: _Shape
    cyt_od: np.ndarray
    density: float
    nuclei: list[_Shape] = field(default_factory=list)
    nuc_density: float = 1.5
    nuc_style: str = "vesicular"  # "pyknotic" | "vesicular" | "hyper"
    rim: float = 0.5
    texture: float = 0.15
    folds: list[tuple[float, float, float]] = field(default_factory=list)
    halo: _Shape | None = None
    halo_factor: float = 1.0
    halo_edge: float = 1.0
    ring_factor: float = 1.0
    ring_width: float = 2.0
    annotatable: bool = False


@dataclass
class _Stain:
    """Per-field stain batch: colour shifts and hematoxylin strength."""

    shift: np.ndarray
    hema: float

    def cyt(self, od: np.ndarray) -> np.ndarray:
        return (od * self.shift).astype(np.float32)

    def nuc(self) -> np.ndarray:
        return (_HEMATOXYLIN * self.hema).astype(np.float32)


def _nucleus(rng: np.random.Generator, cx: float, cy: float, Rn: float, aspect: float,
             wobble: float) -> _Shape:
    r = _ellipse_r(Rn, aspect, rng.uniform(0, np.pi)) * _wobble(rng, wobble)
    return _Shape(cx, cy, r)


def _offset(rng: np.random.Generator, cx: float, cy: float, dist: float) -> tuple[float, float]:
    a, d = rng.uniform(0, _TWO_PI), rng.uniform(0, dist)
    return cx + d * math.cos(a), cy + d * math.sin(a)


def _superficial(rng, k, st, cx, cy, kind="Superficial-Intermediate") -> _Cell:
    R = rng.uniform(24, 40) * k
    r = _polygon_r(rng, R, int(rng.integers(5, 9)), 0.15, rng.uniform(1.0, 1.5), rng.uniform(0, np.pi))
    r = r * _wobble(rng, 0.02)
    u = rng.random()
    colour = _PINK if u < 0.5 else (_PALE_BLUE_GREEN if u < 0.9 else _ORANGE)
    nx, ny = _offset(rng, cx, cy, 0.25 * R)
    if rng.random() < 0.55:
        nuc = _nucleus(rng, nx, ny, rng.uniform(2.2, 3.4) * k, rng.uniform(1.0, 1.2), 0.04)
        style, nd = "pyknotic", rng.uniform(1.7, 2.3)
    else:
        nuc = _nucleus(rng, nx, ny, rng.uniform(3.2, 4.8) * k, rng.uniform(1.0, 1.3), 0.05)
        style, nd = "vesicular", rng.uniform(0.9, 1.25)
    folds = []
    for _ in range(int(rng.choice([0, 1, 2], p=[0.45, 0.4, 0.15]))):
        a = rng.uniform(0, _TWO_PI)
        folds.append((math.cos(a), math.sin(a), rng.uniform(0.45, 0.8) * R))
    return _Cell(kind, _Shape(cx, cy, r), st.cyt(colour), rng.uniform(0.4, 0.8), [nuc], nd, style,
                 rim=0.5, texture=0.3, folds=folds)


def _parabasal(rng, k, st, cx, cy, R0) -> _Cell:
    R = R0 * rng.normal(1.0, 0.1)
    r = _ellipse_r(R, rng.uniform(1.0, 1.3), rng.uniform(0, np.pi)) * _wobble(rng, 0.03)
    nx, ny = _offset(rng, cx, cy, 0.08 * R)
    nuc = _nucleus(rng, nx, ny, R * rng.uniform(0.42, 0.56), rng.uniform(1.0, 1.2), 0.03)
    return _Cell("Parabasal", _Shape(cx, cy, r), st.cyt(_BLUE_GREEN), rng.uniform(1.0, 1.45), [nuc],
                 rng.uniform(1.0, 1.3), "vesicular", rim=0.6, texture=0.12)


def _metaplastic(rng, k, st, cx, cy, R0) -> _Cell:
    R = R0 * rng.normal(1.0, 0.06)
    r = _ellipse_r(R, rng.uniform(1.0, 1.3), rng.uniform(0, np.pi)) * _wobble(rng, 0.04)
    if rng.random() < 0.35:
        r = r + _spikes(rng, R, int(rng.integers(1, 4)))
    colour = _BLUE_GREEN if rng.random() < 0.7 else _MAUVE
    nx, ny = _offset(rng, cx, cy, 0.1 * R)
    Rn = R * rng.uniform(0.26, 0.36)
    nuc = _nucleus(rng, nx, ny, Rn, rng.uniform(1.0, 1.2), 0.04)
    cell = _Cell("Metaplastic", _Shape(cx, cy, r), st.cyt(colour), rng.uniform(1.0, 1.35), [nuc],
                 rng.uniform(1.1, 1.45), "vesicular" if rng.random() < 0.6 else "hyper", rim=1.0, texture=0.12)
    if rng.random() < 0.25:  # vacuolated: pale perinuclear zone, confusable with a faint halo
        cell.halo = _Shape(nx, ny, _ellipse_r(Rn * rng.uniform(1.5, 2.0), rng.uniform(1.0, 1.3),
                                              rng.uniform(0, np.pi)) * _wobble(rng, 0.06))
        cell.halo_factor, cell.halo_edge = rng.uniform(0.45, 0.65), 1.8 * k
    return cell


def _koilocyte(rng, k, st, cx, cy) -> _Cell:
    R = rng.uniform(20, 32) * k
    aspect, rot = rng.uniform(1.0, 1.4), rng.uniform(0, np.pi)
    if rng.random() < 0.6:
        r = _polygon_r(rng, R, int(rng.integers(6, 10)), 0.1, aspect, rot) * _wobble(rng, 0.02)
    else:
        r = _ellipse_r(R, aspect, rot) * _wobble(rng, 0.05)
    colour = _PINK if rng.random() < 0.5 else (_PALE_BLUE_GREEN if rng.random() < 0.5 else _BLUE_GREEN)
    nx, ny = _offset(rng, cx, cy, 0.2 * R)
    Rn = rng.uniform(4.5, 7.5) * k
    if rng.random() < 0.25:  # binucleate: two touching, overlapping nuclei
        a = rng.uniform(0, np.pi)
        d = 0.6 * Rn
        lobes = [(nx + s * d * math.cos(a), ny + s * d * math.sin(a),
                  _ellipse_r(Rn * 0.85, rng.uniform(1.0, 1.4), rng.uniform(0, np.pi)) * _wobble(rng, 0.1))
                 for s in (-1, 1)]
        nuc = _Shape(nx, ny, _union_r(nx, ny, lobes))
    else:
        nuc = _nucleus(rng, nx, ny, Rn, rng.uniform(1.0, 1.5), 0.12)
    cell = _Cell("Koilocytotic", _Shape(cx, cy, r), st.cyt(colour), rng.uniform(0.75, 1.1), [nuc],
                 rng.uniform(1.5, 2.0), "hyper", rim=0.6, texture=0.15)
    rn_max = float(nuc.r.max())
    if rng.random() < 0.75:  # the koilocytic halo: clear cavity, condensed rim
        Rh = max(rng.uniform(0.45, 0.68) * R, 1.6 * rn_max)
        cell.halo = _Shape(nx, ny, _ellipse_r(Rh, rng.uniform(1.0, 1.3), rng.uniform(0, np.pi))
                           * _wobble(rng, 0.10))
        cell.halo_factor, cell.halo_edge = rng.uniform(0.04, 0.18), 0.8 * k
        cell.ring_factor, cell.ring_width = rng.uniform(1.4, 1.8), 0.12 * R
    else:  # faint, small halo
        cell.halo = _Shape(nx, ny, _ellipse_r(rn_max * rng.uniform(1.5, 2.2), rng.uniform(1.0, 1.3),
                                              rng.uniform(0, np.pi)) * _wobble(rng, 0.06))
        cell.halo_factor, cell.halo_edge = rng.uniform(0.45, 0.65), 1.8 * k
        cell.ring_factor, cell.ring_width = 1.1, 0.1 * R
    return cell


def _dyskeratotic(rng, k, st, cx, cy, R0) -> _Cell:
    R = R0 * rng.uniform(0.8, 1.2)
    r = _ellipse_r(R, rng.uniform(1.0, 1.7), rng.uniform(0, np.pi)) * _wobble(rng, 0.10)
    u = rng.random()
    colour = _ORANGE if u < 0.65 else (_RED_ORANGE if u < 0.9 else _PINK)
    nx, ny = _offset(rng, cx, cy, 0.2 * R)
    nuc = _nucleus(rng, nx, ny, R * rng.uniform(0.2, 0.32), rng.uniform(1.0, 1.4), 0.08)
    return _Cell("Dyskeratotic", _Shape(cx, cy, r), st.cyt(colour), rng.uniform(1.2, 1.7), [nuc],
                 rng.uniform(1.8, 2.4), "pyknotic", rim=0.8, texture=0.14)


def _inflammatory(rng, k, st, cx, cy) -> _Cell:
    R = rng.uniform(4.0, 6.0) * k
    lobes = []
    for _ in range(int(rng.integers(2, 5))):
        lx, ly = _offset(rng, cx, cy, 0.4 * R)
        lobes.append(_Shape(lx, ly, _ellipse_r(rng.uniform(1.2, 1.9) * k, rng.uniform(1.0, 1.6),
                                                rng.uniform(0, np.pi))))
    return _Cell("inflammatory", _Shape(cx, cy, _ellipse_r(R, 1.15, rng.uniform(0, np.pi)) * _wobble(rng, 0.1)),
                 st.cyt(_PALE_BLUE_GREEN), rng.uniform(0.4, 0.7), lobes, rng.uniform(1.0, 1.5), "hyper",
                 rim=0.3, texture=0.1)


def _debris(rng, k, st, cx, cy) -> _Cell:
    if rng.random() < 0.85:  # specks
        R = rng.uniform(0.6, 2.5) * k
        r = _ellipse_r(R, rng.uniform(1.0, 2.0), rng.uniform(0, np.pi)) * _wobble(rng, 0.3)
        return _Cell("debris", _Shape(cx, cy, r), _DEBRIS, rng.uniform(0.6, 1.6), rim=0.0, texture=0.2)
    R = rng.uniform(5, 14) * k  # amorphous pale patch
    r = _ellipse_r(R, rng.uniform(1.0, 2.0), rng.uniform(0, np.pi)) * _wobble(rng, 0.25)
    colour = _PINK if rng.random() < 0.5 else _PALE_BLUE_GREEN
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


def _class_cells(cls: str, rng, k, st, W, H) -> list[_Cell]:
    """The cells of one field of class ``cls``, arranged as that class arranges."""
    cells: list[_Cell] = []
    if cls == "Superficial-Intermediate":
        for cx, cy in _scatter(rng, int(rng.integers(9, 18)), W, H, 34 * k, []):
            cells.append(_superficial(rng, k, st, cx, cy))
    elif cls == "Parabasal":
        R0 = rng.uniform(12.5, 16.5) * k
        for _ in range(int(rng.integers(1, 3))):
            cx, cy = rng.uniform(0.2 * W, 0.8 * W), rng.uniform(0.2 * H, 0.8 * H)
            for px, py in _hex_sheet(rng, cx, cy, int(rng.integers(8, 23)), 2 * R0 * rng.uniform(0.88, 1.0),
                                     0.12 * 2 * R0):
                cells.append(_parabasal(rng, k, st, px, py, R0))
        taken = [(c.cyt.cx, c.cyt.cy) for c in cells]
        for cx, cy in _scatter(rng, int(rng.integers(3, 11)), W, H, 2.2 * R0, taken):
            cells.append(_parabasal(rng, k, st, cx, cy, R0))
    elif cls == "Metaplastic":
        R0 = rng.uniform(15, 22) * k
        for _ in range(int(rng.integers(1, 3))):
            cx, cy = rng.uniform(0.2 * W, 0.8 * W), rng.uniform(0.2 * H, 0.8 * H)
            for px, py in _hex_sheet(rng, cx, cy, int(rng.integers(8, 21)), 2 * R0 * rng.uniform(0.95, 1.05),
                                     0.06 * 2 * R0):
                cells.append(_metaplastic(rng, k, st, px, py, R0))
        taken = [(c.cyt.cx, c.cyt.cy) for c in cells]
        for cx, cy in _scatter(rng, int(rng.integers(2, 7)), W, H, 2.4 * R0, taken):
            cells.append(_metaplastic(rng, k, st, cx, cy, R0))
    elif cls == "Koilocytotic":
        for cx, cy in _scatter(rng, int(rng.integers(8, 16)), W, H, 36 * k, []):
            cells.append(_koilocyte(rng, k, st, cx, cy))
            if rng.random() < 0.25:  # a neighbour overlapping it
                a = rng.uniform(0, _TWO_PI)
                cells.append(_koilocyte(rng, k, st, cx + 40 * k * math.cos(a), cy + 40 * k * math.sin(a)))
    elif cls == "Dyskeratotic":
        R0 = rng.uniform(10, 14) * k
        for _ in range(int(rng.integers(1, 4))):
            cx, cy = rng.uniform(0.15 * W, 0.85 * W), rng.uniform(0.15 * H, 0.85 * H)
            sigma = R0 * rng.uniform(1.0, 1.8)
            for _ in range(int(rng.integers(7, 22))):
                cells.append(_dyskeratotic(rng, k, st, cx + rng.normal(0, sigma), cy + rng.normal(0, sigma), R0))
        taken = [(c.cyt.cx, c.cyt.cy) for c in cells]
        for cx, cy in _scatter(rng, int(rng.integers(3, 10)), W, H, 2.5 * R0, taken):
            cells.append(_dyskeratotic(rng, k, st, cx, cy, R0))
    else:  # pragma: no cover - CLASSES is fixed
        raise ValueError(cls)
    return cells


def _extra_cell(cls: str, rng, k, st, cx, cy) -> _Cell:
    R0 = {"Parabasal": 14.0, "Metaplastic": 19.0, "Dyskeratotic": 12.0}.get(cls, 0.0) * k
    if cls == "Superficial-Intermediate":
        return _superficial(rng, k, st, cx, cy)
    if cls == "Koilocytotic":
        return _koilocyte(rng, k, st, cx, cy)
    return {"Parabasal": _parabasal, "Metaplastic": _metaplastic, "Dyskeratotic": _dyskeratotic}[cls](
        rng, k, st, cx, cy, R0)


def _fits(cell: _Cell, W: int, H: int) -> bool:
    x0, y0, x1, y1 = cell.cyt.bbox(pad=0.0)
    m = 0.15 * max(x1 - x0, y1 - y0) + 3
    return x0 - m >= 0 and y0 - m >= 0 and x1 + m <= W - 1 and y1 + m <= H - 1


# ----------------------------------------------------------------------------- rendering
def _smooth_noise(rng, H, W, cell: float) -> np.ndarray:
    gh, gw = max(2, int(H / cell) + 2), max(2, int(W / cell) + 2)
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    up = np.asarray(Image.fromarray(grid).resize((W, H), Image.Resampling.BICUBIC))
    up = up / (up.std() + 1e-6)
    return np.clip(up, -2.5, 2.5).astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class _Canvas:
    """Accumulates optical density for one field."""

    def __init__(self, rng, W: int, H: int, k: float, nuc_od: np.ndarray) -> None:
        self.W, self.H, self.k = W, H, k
        self._nuc_od = nuc_od
        self.od = np.zeros((H, W, 3), dtype=np.float32)
        self.lo = _smooth_noise(rng, H, W, 10 * k)
        hi = rng.standard_normal((H, W)).astype(np.float32)
        self.hi = np.clip(hi, -2.5, 2.5) / 2.5
        chrom = gaussian_filter(hi, 0.7 * k)
        self.chrom = np.clip(chrom / (chrom.std() + 1e-6), -2.5, 2.5) / 2.5

    def _grid(self, shape: _Shape, pad: float = 2.0):
        x0, y0, x1, y1 = shape.bbox(pad)
        x0, y0 = max(0, int(math.floor(x0))), max(0, int(math.floor(y0)))
        x1, y1 = min(self.W, int(math.ceil(x1)) + 1), min(self.H, int(math.ceil(y1)) + 1)
        if x1 <= x0 or y1 <= y0:
            return None
        xs = np.arange(x0, x1, dtype=np.float32)
        ys = np.arange(y0, y1, dtype=np.float32)
        return (slice(y0, y1), slice(x0, x1)), xs[None, :], ys[:, None]

    @staticmethod
    def _polar(shape: _Shape, xs, ys):
        dx, dy = xs - shape.cx, ys - shape.cy
        rho = np.hypot(dx, dy)
        theta = np.arctan2(dy, dx) % _TWO_PI
        return dx, dy, rho - shape.radius_at(theta)

    def draw(self, cell: _Cell) -> None:
        grid = self._grid(cell.cyt)
        if grid is None:
            return
        region, xs, ys = grid
        dx, dy, d = self._polar(cell.cyt, xs, ys)
        cover = np.clip(0.5 - d, 0.0, 1.0)
        if not cover.any():
            return
        dens = cell.density * (1.0 + cell.texture * (0.7 * self.lo[region] + 0.3 * self.hi[region]))
        if cell.rim:
            dens = dens * (1.0 + cell.rim * np.exp(np.minimum(d, 0.0) / (1.2 * self.k)))
        for nx, ny, t in cell.folds:
            s = dx * nx + dy * ny - t
            dens = dens * (1.0 + 0.8 * _sigmoid(s / 0.7)) + 0.6 * cell.density * np.exp(-s * s / 1.5)
        if cell.halo is not None:
            _, _, u = self._polar(cell.halo, xs, ys)
            inside = _sigmoid(-u / max(cell.halo_edge, 0.3))
            dens = dens * (1.0 - inside * (1.0 - cell.halo_factor))
            if cell.ring_factor != 1.0:
                ring = _sigmoid(u / 0.7) * _sigmoid((cell.ring_width - u) / 0.7)
                dens = dens * (1.0 + (cell.ring_factor - 1.0) * ring)
        self.od[region] += (cover * dens)[..., None] * cell.cyt_od
        for nucleus in cell.nuclei:
            self._draw_nucleus(cell, nucleus)

    def _draw_nucleus(self, cell: _Cell, nucleus: _Shape) -> None:
        grid = self._grid(nucleus)
        if grid is None:
            return
        region, xs, ys = grid
        _, _, d = self._polar(nucleus, xs, ys)
        cover = np.clip(0.5 - d, 0.0, 1.0)
        chrom = self.chrom[region]
        if cell.nuc_style == "pyknotic":
            dens = cell.nuc_density * (1.0 + 0.08 * self.hi[region])
        elif cell.nuc_style == "vesicular":
            rim = np.exp(np.minimum(d, 0.0) / (1.5 * self.k))
            dens = cell.nuc_density * (0.55 + 0.45 * rim + 0.35 * chrom)
        else:  # hyperchromatic, coarse chromatin
            dens = cell.nuc_density * (0.85 + 0.35 * chrom)
        self.od[region] += (cover * np.maximum(dens, 0.0))[..., None] * self._nuc_od

    def mucus(self, rng, n: int) -> None:
        if n == 0:
            return
        canvas = Image.new("L", (self.W, self.H), 0)
        draw = ImageDraw.Draw(canvas)
        for _ in range(n):
            x, y = rng.uniform(0, self.W), rng.uniform(0, self.H)
            a = rng.uniform(0, _TWO_PI)
            pts = [(x, y)]
            for _ in range(24):
                a += rng.normal(0, 0.3)
                x, y = x + 22 * self.k * math.cos(a), y + 22 * self.k * math.sin(a)
                pts.append((x, y))
            draw.line(pts, fill=int(rng.integers(90, 200)), width=max(1, int(rng.uniform(1.5, 5) * self.k)),
                      joint="curve")
        strands = gaussian_filter(np.asarray(canvas, dtype=np.float32) / 255.0, 1.5 * self.k)
        self.od += (strands * rng.uniform(0.4, 0.9))[..., None] * _MUCUS

    def finish(self, rng) -> np.ndarray:
        """Light through the stained field: illumination, focus, noise; uint8 (H, W, 3)."""
        H, W = self.H, self.W
        yy = np.linspace(-1, 1, H, dtype=np.float32)[:, None]
        xx = np.linspace(-1, 1, W, dtype=np.float32)[None, :]
        hx, hy = rng.uniform(-0.5, 0.5, 2)
        light = rng.uniform(215, 245) * (1 - rng.uniform(0.08, 0.3) * ((xx - hx) ** 2 + (yy - hy) ** 2) / 2)
        light = light * (1 + rng.uniform(-0.05, 0.05) * xx + rng.uniform(-0.05, 0.05) * yy)
        tint = np.array([1.0, 0.985, 0.95], dtype=np.float32) * np.exp(rng.normal(0, 0.03, 3)).astype(np.float32)
        # faint granular background (proteinaceous film), then light through the stain
        self.od += (0.03 * rng.uniform(0.5, 2.0) * (1.2 + self.lo + 0.5 * self.hi))[..., None] * _MUCUS
        rgb = light[..., None] * tint * np.exp(-self.od)
        sharp_sigma = rng.uniform(0.3, 1.2) * self.k
        blur_sigma = sharp_sigma + rng.uniform(0.8, 2.2) * self.k
        a = rng.uniform(0, _TWO_PI)
        focus = np.clip(0.5 + (xx * math.cos(a) + yy * math.sin(a)) * rng.uniform(0.3, 1.0), 0, 1)
        focus = (focus * rng.uniform(0.2, 1.0))[..., None]
        sharp = gaussian_filter(rgb, (sharp_sigma, sharp_sigma, 0))
        blurred = gaussian_filter(rgb, (blur_sigma, blur_sigma, 0))
        rgb = sharp * (1 - focus) + blurred * focus
        rgb += rng.normal(0, rng.uniform(1.0, 3.0), rgb.shape).astype(np.float32)
        return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _render_field(cls: str, seed: int, class_index: int, number: int, size: tuple[int, int],
                  n_annotated: int) -> tuple[np.ndarray, list[_Cell]]:
    """One multi-cell field and the cells chosen for annotation."""
    W, H = size
    k = math.sqrt(W * H / (_REF_SIZE[0] * _REF_SIZE[1]))
    rng = np.random.default_rng([seed, class_index, number])
    stain = _Stain(np.exp(rng.normal(0, 0.08, 3)).astype(np.float32), float(rng.uniform(0.85, 1.2)))
    cells = _class_cells(cls, rng, k, stain, W, H)
    for i, c in enumerate(cells):
        if rng.random() < _AMBIGUOUS[cls]:
            cells[i] = _extra_cell(_LOOKALIKE[cls], rng, k, stain, c.cyt.cx, c.cyt.cy)
            cells[i].kind = cls
        cells[i].annotatable = True
    # make sure enough class cells lie wholly inside the field to be cropped
    for _ in range(200):
        if sum(_fits(c, W, H) for c in cells) >= n_annotated:
            break
        extra = _extra_cell(cls, rng, k, stain, rng.uniform(0.1 * W, 0.9 * W), rng.uniform(0.1 * H, 0.9 * H))
        extra.annotatable = True
        cells.append(extra)
    # context every class shares: normal squamous cells, inflammation, debris, mucus
    if cls != "Superficial-Intermediate" and rng.random() < 0.4:
        for cx, cy in _scatter(rng, int(rng.integers(1, 3)), W, H, 30 * k, []):
            cells.append(_superficial(rng, k, stain, cx, cy, kind="distractor"))
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
    for m, cell in enumerate(annotated, start=1):
        n_cyt = 96 if cls == "Superficial-Intermediate" else 64
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


# ----------------------------------------------------------------------------- public API
def synthetic_counts(scale: float) -> tuple[dict[str, int], dict[str, int]]:
    """Multi-cell and isolated counts per class at ``scale`` (``round``, at least 1)."""
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    multi = {c: max(1, round(n * scale)) for c, n in MULTI_COUNTS.items()}
    isolated = {c: max(1, round(n * scale)) for c, n in ISOLATED_COUNTS.items()}
    return multi, isolated


def _annotation_counts(rng: np.random.Generator, n_fields: int, n_cells: int, cap: int) -> np.ndarray:
    """Annotated cells per field: at least one each where possible, summing to ``n_cells``."""
    cap = max(cap, -(-n_cells // n_fields))
    counts = np.zeros(n_fields, dtype=np.int64)
    first = rng.permutation(n_fields)[:min(n_fields, n_cells)]
    counts[first] = 1
    weights = rng.gamma(2.0, 1.0, n_fields)
    for _ in range(n_cells - int(counts.sum())):
        open_ = counts < cap
        p = np.where(open_, weights, 0.0)
        counts[rng.choice(n_fields, p=p / p.sum())] += 1
    return counts


def _check_size(out: Path, image_size: tuple[int, int] | None) -> tuple[int, int]:
    if image_size is None:
        return DEFAULT_IMAGE_SIZE
    W, H = (int(v) for v in image_size)
    if min(W, H) < _MIN_SIDE:
        raise DataError(out, f"image size {W}x{H} is too small for the generator; use sides of at "
                             f"least {_MIN_SIDE} px (default {DEFAULT_IMAGE_SIZE[0]}x{DEFAULT_IMAGE_SIZE[1]})")
    return W, H


def _mp_context():
    """``fork`` on Linux: works from scripts without a ``__main__`` guard, and the
    workers only run numpy/scipy/PIL code (no torch threads). ``spawn`` elsewhere."""
    import sys

    return get_context("fork" if sys.platform.startswith("linux") else "spawn")


def synthesize(out: str | os.PathLike[str], *, scale: float = 1.0, seed: int = 0,
               image_size: tuple[int, int] | None = None, workers: int | None = None,
               progress: bool | None = None) -> Path:
    """Write a synthetic SIPaKMeD-compatible dataset into ``out`` and return its path.

    Args:
        out: a new (or empty) folder.
        scale: fraction of SIPaKMeD's class counts; 1.0 gives 966 fields and 4031 cells.
        seed: random seed; a seed gives byte-identical files.
        image_size: multi-cell field ``(width, height)``; default :data:`DEFAULT_IMAGE_SIZE`.
            Cells scale with the field, like a lower-resolution capture of the same view.
        workers: processes to render with; default the CPU count (one process for
            small sets, where starting workers costs more than it saves).
        progress: show a progress bar (default: when writing to a terminal).

    Returns:
        ``out``, holding ``im_<Class>/`` folders and ``SYNTHETIC.json``.
    """
    out = Path(out).expanduser()
    size = _check_size(out, image_size)
    multi, isolated = synthetic_counts(scale)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(out, "already exists and is not an empty folder; give a new output folder")
    tasks = []
    for ci, cls in enumerate(CLASSES):
        class_dir = out / f"im_{cls}"
        (class_dir / "CROPPED").mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([int(seed), 1000 + ci])
        counts = _annotation_counts(rng, multi[cls], isolated[cls], _ANNOTATION_CAP[cls])
        tasks += [(cls, ci, n + 1, int(seed), size, int(counts[n]), str(class_dir)) for n in range(multi[cls])]
    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    n_workers = max(1, min(n_workers, len(tasks) // 12))
    _log.info("writing %d synthetic fields (%dx%d) and %d cells to %s with %d process(es)",
              len(tasks), size[0], size[1], sum(isolated.values()), out, n_workers)
    from tqdm.auto import tqdm
    bar = tqdm(total=len(tasks), desc="synth", unit="field", disable=(None if progress is None else not progress))
    written = 0
    with bar:
        if n_workers == 1:
            for task in tasks:
                written += _write_field(task)
                bar.update()
        else:
            with ProcessPoolExecutor(n_workers, mp_context=_mp_context()) as pool:
                for n in pool.map(_write_field, tasks, chunksize=4):
                    written += n
                    bar.update()
    if written != sum(isolated.values()):  # pragma: no cover - guarded by _render_field
        raise RuntimeError(f"generator wrote {written} cells, expected {sum(isolated.values())}")
    marker = {
        "generator": GENERATOR_NAME, "version": GENERATOR_VERSION, "synthetic": True,
        "seed": int(seed), "scale": float(scale), "image_size": list(size),
        "counts": {"multi": multi, "isolated": isolated},
        "note": "Procedurally generated stand-in in the SIPaKMeD layout; NOT real Pap-smear images. "
                "Results on it are not SIPaKMeD results.",
    }
    (out / SYNTHETIC_MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock on ``path`` (POSIX ``flock``; no-op where unavailable)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: atomic rename still protects
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def default_data_root(scale: float = 1.0, seed: int = 0, *,
                      image_size: tuple[int, int] | None = None) -> Path:
    """The cached synthetic set for ``(scale, seed, image_size)``, generated on first use.

    The cache lives in ``$CERVIX_DATA_HOME`` (default ``~/.cache/cervixlib``), in a
    folder named for the generator version, scale, seed and image size. Safe when
    several processes ask at once: one generates into a temporary folder under a file
    lock and renames it into place atomically; the others wait and reuse it.
    """
    home = Path(os.environ.get("CERVIX_DATA_HOME") or "~/.cache/cervixlib").expanduser()
    size = _check_size(home, image_size)
    synthetic_counts(scale)  # validates scale
    name = f"sipakmed-synth-v{GENERATOR_VERSION}-scale{scale:g}-seed{seed}-{size[0]}x{size[1]}"
    final = home / name
    if (final / SYNTHETIC_MARKER).is_file():
        return final
    home.mkdir(parents=True, exist_ok=True)
    with _file_lock(home / f".{name}.lock"):
        if (final / SYNTHETIC_MARKER).is_file():
            return final
        if final.exists():
            raise DataError(final, f"exists but has no {SYNTHETIC_MARKER}; it is not a finished "
                                   "synthetic set: remove it and try again")
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=home))
        try:
            synthesize(tmp, scale=scale, seed=seed, image_size=size)
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / SYNTHETIC_MARKER).is_file():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final
