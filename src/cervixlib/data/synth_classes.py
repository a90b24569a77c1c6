"""The generator's table of SIPaKMeD classes: one frozen :class:`ClassLook` per class.

What a cell of each class looks like and how a field of it is arranged (the cytology
cues of the project's DATA.md, after Plissiti et al., ICIP 2018), as data read by one
drawing path (:mod:`cervixlib.data._field`). Lengths are in pixels at the 512x384
reference field and scale with the image; ``(lo, hi)`` pairs are uniform ranges.

The order of random draws is part of the output (a seed gives byte-identical files), so
the fields say where a class draws something and where it does not: a feature a class
lacks (``None``, share ``0``) draws nothing, and a :class:`Choice` draws once, or once
per option when ``coins`` is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Generic, Literal, TypeVar

import numpy as np

from cervixlib.facts import CLASSES

__all__ = ["ClassLook", "Outline", "Nucleus", "Halo", "Arrangement", "Choice", "fixed", "CLASS_LOOKS",
           "PINK", "ORANGE", "RED_ORANGE", "BLUE_GREEN", "PALE_BLUE_GREEN", "MAUVE", "HEMATOXYLIN",
           "MUCUS", "DEBRIS"]

T = TypeVar("T")
Range = tuple[float, float]


def _od(rgb: tuple[float, float, float]) -> np.ndarray:
    """Optical density of a stain that transmits ``rgb`` (0..1) at unit thickness."""
    return -np.log(np.asarray(rgb, dtype=np.float32))


# Stains (Papanicolaou): optical density per RGB channel at unit thickness.
PINK = _od((0.93, 0.66, 0.76))
ORANGE = _od((0.97, 0.60, 0.33))
RED_ORANGE = _od((0.92, 0.52, 0.42))
BLUE_GREEN = _od((0.58, 0.80, 0.80))
PALE_BLUE_GREEN = _od((0.76, 0.89, 0.88))
MAUVE = _od((0.76, 0.67, 0.82))
HEMATOXYLIN = _od((0.40, 0.33, 0.58))
MUCUS = _od((0.82, 0.87, 0.94))
DEBRIS = _od((0.72, 0.63, 0.56))


@dataclass(frozen=True, eq=False)
class Choice(Generic[T]):
    """Pick one of ``options`` at random.

    ``below[i]`` is the bound under which a uniform draw picks ``options[i]``; the last
    option takes the rest. Without ``coins`` one draw is compared with the cumulative
    bounds; with ``coins`` each bound gets its own fresh draw (a chain of coin flips).
    One option draws nothing.
    """

    options: tuple[T, ...]
    below: tuple[float, ...] = ()
    coins: bool = False

    def __post_init__(self) -> None:
        if len(self.below) != len(self.options) - 1:
            raise ValueError("a Choice needs one bound fewer than options")

    def pick(self, rng: np.random.Generator) -> T:
        u = None
        for option, bound in zip(self.options, self.below):
            if u is None or self.coins:
                u = rng.random()
            if u < bound:
                return option
        return self.options[-1]


def fixed(option: T) -> Choice[T]:
    """A :class:`Choice` of one option (draws nothing)."""
    return Choice((option,))


@dataclass(frozen=True)
class Outline:
    """The cytoplasm's outline: a star-shaped radius function about the cell centre.

    ``kind``: ``"ellipse"`` (aspect, rotation, wobble); ``"polygon"`` (vertex count,
    aspect, rotation: straight-edged flat squamous cells); ``"polygon_or_ellipse"``
    (aspect and rotation first, then a polygon with probability ``polygon_share``).
    """

    kind: Literal["ellipse", "polygon", "polygon_or_ellipse"]
    aspect: Range
    wobble: float                       # harmonic irregularity of an ellipse
    vertices: tuple[int, int] = (0, 0)  # polygon vertex count, numpy ``integers`` bounds
    vertex_jitter: float = 0.0          # polygon vertex radii vary by this fraction
    polygon_wobble: float = 0.0
    polygon_share: float = 0.0
    processes: float = 0.0              # share of cells with cytoplasmic processes
    process_count: tuple[int, int] = (1, 4)
    points: int = 64                    # boundary points written to ``.dat`` files


@dataclass(frozen=True)
class Nucleus:
    """A nucleus: size (in reference px, or a fraction of the cell radius when
    ``relative``), shape and chromatin. ``density`` and ``style`` set here override the
    class's (and ``density`` is then drawn with the shape, before the cytoplasm's)."""

    radius: Range
    aspect: Range
    wobble: float
    relative: bool = False
    style: Literal["pyknotic", "vesicular", "hyper"] | None = None
    density: Range | None = None
    binucleate: float = 0.0             # share of cells with two overlapping nuclei


@dataclass(frozen=True)
class Halo:
    """A pale perinuclear zone centred on the nucleus.

    Its radius is ``radius`` times the cell radius (``of="cell"``), the drawn nucleus
    radius (``"nucleus"``) or the nucleus outline's largest radius (``"nucleus_max"``),
    at least ``min_nucleus`` times the latter. ``clear`` is the density left inside,
    ``edge`` the softness of its border (px), and a ``ring`` of condensed cytoplasm
    ``ring_width`` (a fraction of the cell radius) wide can ring it: a range is drawn,
    a number is fixed, ``None`` is no ring.
    """

    radius: Range
    of: Literal["cell", "nucleus", "nucleus_max"]
    wobble: float
    clear: Range
    edge: float
    aspect: Range = (1.0, 1.3)
    min_nucleus: float = 0.0
    ring: Range | float | None = None
    ring_width: float = 0.0


@dataclass(frozen=True)
class Arrangement:
    """How a field of the class lays its cells out.

    Optional ``groups`` of cells (hexagonal ``"sheet"`` or Gaussian 3-D ``"cluster"``)
    centred in the middle of the field, then ``loose`` cells scattered at least
    ``loose_distance`` apart (in reference px, or in field cell radii for classes with
    a per-field cell size); a scattered cell has an overlapping neighbour
    ``neighbour_distance`` px away with probability ``neighbour_share``.
    """

    loose: tuple[int, int]
    loose_distance: float
    group: Literal["sheet", "cluster"] | None = None
    groups: tuple[int, int] = (0, 0)
    group_size: tuple[int, int] = (0, 0)
    centres: Range = (0.2, 0.8)     # group centres: this span of the field's width and height
    spacing: Range = (1.0, 1.0)     # sheet: centre spacing in cell diameters
    jitter: float = 0.0             # sheet: position noise in cell diameters
    spread: Range = (1.0, 1.0)      # cluster: standard deviation in cell radii
    neighbour_share: float = 0.0
    neighbour_distance: float = 0.0


@dataclass(frozen=True)
class ClassLook:
    """Everything the generator draws differently for one SIPaKMeD class."""

    name: str
    #: Cell radius range. With ``per_field`` a field draws one radius from it and each
    #: cell's is that times a ``jitter`` factor (``("normal", mean, sd)`` or
    #: ``("uniform", lo, hi)``); otherwise each cell draws its own from the range.
    radius: Range
    outline: Outline
    colour: Choice[np.ndarray]
    nucleus: Choice[Nucleus]
    nucleus_offset: float               # nucleus centre's distance, a fraction of the radius
    density: Range                      # cytoplasm optical thickness
    nucleus_density: Range | None
    nucleus_style: Choice[str]
    rim: float                          # denser cell border
    texture: float
    arrangement: Arrangement
    per_field: bool = False
    jitter: tuple[Literal["normal", "uniform"], float, float] = ("normal", 1.0, 0.0)
    typical_radius: float = 0.0         # radius of a lone cell added to a field (per_field classes)
    #: Probabilities of 0, 1, 2, ... folded edges (flat squamous cells); ``()``: none.
    folds: tuple[float, ...] = ()
    fold_depth: Range = (0.0, 0.0)      # fold line's distance from the centre, in radii
    halo: Choice[Halo | None] = fixed(None)
    annotation_cap: int = 8             # most annotated cells in one field
    lookalike: str = ""                 # the class its borderline cells look like
    ambiguous: float = 0.0              # share of borderline cells


_SUPERFICIAL = ClassLook(
    "Superficial-Intermediate",
    radius=(24, 40),
    outline=Outline("polygon", aspect=(1.0, 1.5), wobble=0.0, vertices=(5, 9), vertex_jitter=0.15,
                    polygon_wobble=0.02, points=96),
    colour=Choice((PINK, PALE_BLUE_GREEN, ORANGE), (0.5, 0.9)),
    nucleus=Choice((Nucleus((2.2, 3.4), (1.0, 1.2), 0.04, style="pyknotic", density=(1.7, 2.3)),
                    Nucleus((3.2, 4.8), (1.0, 1.3), 0.05, style="vesicular", density=(0.9, 1.25))), (0.55,)),
    nucleus_offset=0.25, density=(0.4, 0.8), nucleus_density=None, nucleus_style=fixed("vesicular"),
    rim=0.5, texture=0.3,
    folds=(0.45, 0.4, 0.15), fold_depth=(0.45, 0.8),
    arrangement=Arrangement(loose=(9, 18), loose_distance=34),
    annotation_cap=12, lookalike="Koilocytotic", ambiguous=0.03,
)

_PARABASAL = ClassLook(
    "Parabasal",
    radius=(12.5, 16.5), per_field=True, jitter=("normal", 1.0, 0.1), typical_radius=14.0,
    outline=Outline("ellipse", aspect=(1.0, 1.3), wobble=0.03),
    colour=fixed(BLUE_GREEN),
    nucleus=fixed(Nucleus((0.42, 0.56), (1.0, 1.2), 0.03, relative=True)),
    nucleus_offset=0.08, density=(1.0, 1.45), nucleus_density=(1.0, 1.3), nucleus_style=fixed("vesicular"),
    rim=0.6, texture=0.12,
    arrangement=Arrangement(group="sheet", groups=(1, 3), group_size=(8, 23), spacing=(0.88, 1.0), jitter=0.12,
                            loose=(3, 11), loose_distance=2.2),
    annotation_cap=14, lookalike="Metaplastic", ambiguous=0.04,
)

_METAPLASTIC = ClassLook(
    "Metaplastic",
    radius=(15, 22), per_field=True, jitter=("normal", 1.0, 0.06), typical_radius=19.0,
    outline=Outline("ellipse", aspect=(1.0, 1.3), wobble=0.04, processes=0.35, process_count=(1, 4)),
    colour=Choice((BLUE_GREEN, MAUVE), (0.7,)),
    nucleus=fixed(Nucleus((0.26, 0.36), (1.0, 1.2), 0.04, relative=True)),
    nucleus_offset=0.1, density=(1.0, 1.35), nucleus_density=(1.1, 1.45),
    nucleus_style=Choice(("vesicular", "hyper"), (0.6,)),
    rim=1.0, texture=0.12,
    # vacuolated cells: a pale perinuclear zone, confusable with a koilocyte's faint halo
    halo=Choice((Halo((1.5, 2.0), of="nucleus", wobble=0.06, clear=(0.45, 0.65), edge=1.8), None), (0.25,)),
    arrangement=Arrangement(group="sheet", groups=(1, 3), group_size=(8, 21), spacing=(0.95, 1.05), jitter=0.06,
                            loose=(2, 7), loose_distance=2.4),
    annotation_cap=7, lookalike="Koilocytotic", ambiguous=0.07,
)

_KOILOCYTOTIC = ClassLook(
    "Koilocytotic",
    radius=(20, 32),
    outline=Outline("polygon_or_ellipse", aspect=(1.0, 1.4), wobble=0.05, vertices=(6, 10), vertex_jitter=0.1,
                    polygon_wobble=0.02, polygon_share=0.6),
    colour=Choice((PINK, PALE_BLUE_GREEN, BLUE_GREEN), (0.5, 0.5), coins=True),
    nucleus=fixed(Nucleus((4.5, 7.5), (1.0, 1.5), 0.12, binucleate=0.25)),
    nucleus_offset=0.2, density=(0.75, 1.1), nucleus_density=(1.5, 2.0), nucleus_style=fixed("hyper"),
    rim=0.6, texture=0.15,
    # the koilocytic halo (clear cavity, condensed rim), or only a faint, small one
    halo=Choice((Halo((0.45, 0.68), of="cell", min_nucleus=1.6, wobble=0.10, clear=(0.04, 0.18), edge=0.8,
                      ring=(1.4, 1.8), ring_width=0.12),
                 Halo((1.5, 2.2), of="nucleus_max", wobble=0.06, clear=(0.45, 0.65), edge=1.8,
                      ring=1.1, ring_width=0.1)), (0.75,)),
    arrangement=Arrangement(loose=(8, 16), loose_distance=36, neighbour_share=0.25, neighbour_distance=40),
    annotation_cap=8, lookalike="Metaplastic", ambiguous=0.07,
)

_DYSKERATOTIC = ClassLook(
    "Dyskeratotic",
    radius=(10, 14), per_field=True, jitter=("uniform", 0.8, 1.2), typical_radius=12.0,
    outline=Outline("ellipse", aspect=(1.0, 1.7), wobble=0.10),
    colour=Choice((ORANGE, RED_ORANGE, PINK), (0.65, 0.9)),
    nucleus=fixed(Nucleus((0.2, 0.32), (1.0, 1.4), 0.08, relative=True)),
    nucleus_offset=0.2, density=(1.2, 1.7), nucleus_density=(1.8, 2.4), nucleus_style=fixed("pyknotic"),
    rim=0.8, texture=0.14,
    arrangement=Arrangement(group="cluster", groups=(1, 4), group_size=(7, 22), centres=(0.15, 0.85),
                            spread=(1.0, 1.8), loose=(3, 10), loose_distance=2.5),
    annotation_cap=8, lookalike="Parabasal", ambiguous=0.03,
)

#: The class table, in label order.
CLASS_LOOKS: Mapping[str, ClassLook] = MappingProxyType(
    {look.name: look for look in (_DYSKERATOTIC, _KOILOCYTOTIC, _METAPLASTIC, _PARABASAL, _SUPERFICIAL)})
if tuple(CLASS_LOOKS) != CLASSES:  # pragma: no cover - a guard for whoever edits the table
    raise RuntimeError(f"CLASS_LOOKS must list {CLASSES} in label order")
