"""Geometry and optics of the synthetic SIPaKMeD fields (see :mod:`cervixlib.data.synth`).

Cells are star-shaped outlines (a radius per angle): ellipses with harmonic wobble,
straight-edged polygons, cytoplasmic processes, unions of lobes. A :class:`_Canvas`
accumulates each object's optical density (OD, per RGB channel) and renders the field
as ``illumination * exp(-OD)``, so overlapping cells darken where they overlap, then
adds uneven tinted illumination, a focus gradient and sensor noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

from cervixlib.data.synth_classes import HEMATOXYLIN, MUCUS

__all__: list[str] = []  # internal to the generator

_K = 128  # samples of a star-shaped outline's radius
_THETA = np.arange(_K) * (2 * np.pi / _K)
_TWO_PI = 2 * np.pi

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
        return (HEMATOXYLIN * self.hema).astype(np.float32)


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
        self.od += (strands * rng.uniform(0.4, 0.9))[..., None] * MUCUS

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
        self.od += (0.03 * rng.uniform(0.5, 2.0) * (1.2 + self.lo + 0.5 * self.hi))[..., None] * MUCUS
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
