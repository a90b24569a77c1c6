"""A procedural, SIPaKMeD-compatible dataset: the embedded default data.

SIPaKMeD (Plissiti et al., ICIP 2018), the data of Wang et al. (2021), "Towards
Interpretable Attention Networks for Cervical Cancer Analysis", cannot be shipped, so
``cervix synth`` writes a stand-in in its exact layout: multi-cell BMP fields with
per-cell ``NNN_cytMM.dat`` / ``NNN_nucMM.dat`` boundaries, and ``CROPPED/`` single-cell
crops cut from those fields with their own ``.dat`` files in crop coordinates. At
``scale=1`` it has the real class counts (966 fields, 4,049 cells); otherwise
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

The class table (sizes, colours, nucleus, halo, arrangement per class) is
:mod:`cervixlib.data.synth_classes`; one drawing path reads it (:mod:`cervixlib.data._field`
for what a field holds, :mod:`cervixlib.data._draw` for the geometry and optics).
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
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from cervixlib.data._field import _write_field
from cervixlib.data.errors import DataError
from cervixlib.data.index import SYNTHETIC_MARKER
from cervixlib.data.synth_classes import CLASS_LOOKS
from cervixlib.facts import CLASSES, ISOLATED_COUNTS, MULTI_COUNTS

__all__ = ["DEFAULT_IMAGE_SIZE", "GENERATOR_NAME", "GENERATOR_VERSION", "synthesize", "default_data_root",
           "synthetic_counts"]

_log = logging.getLogger(__name__)

GENERATOR_NAME = "cervixlib.data.synth"
#: Bump when the images change for a given seed (names the default_data_root cache).
#: "2": 831 isolated Superficial-Intermediate cells, as SIPaKMeD holds (was the paper's 813).
GENERATOR_VERSION = "2"
#: Default multi-cell field size (width, height): a quarter of SIPaKMeD's 2048x1536 a
#: side, so the default book trains fast on a CPU.
DEFAULT_IMAGE_SIZE: tuple[int, int] = (512, 384)

_MIN_SIDE = 96


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
        scale: fraction of SIPaKMeD's class counts; 1.0 gives 966 fields and 4,049 cells.
        seed: random seed; a seed gives byte-identical files.
        image_size: multi-cell field ``(width, height)``; default :data:`DEFAULT_IMAGE_SIZE`.
            Cells scale with the field, like a lower-resolution capture of the same view.
        workers: processes to render with; default the CPU count (one process for
            small sets, where starting workers costs more than it saves).
        progress: show a progress bar (default: tqdm.auto decides: on a terminal, and as a
            widget in a Jupyter kernel, which is why cervix book generates the set first).

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
        counts = _annotation_counts(rng, multi[cls], isolated[cls], CLASS_LOOKS[cls].annotation_cap)
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
                      image_size: tuple[int, int] | None = None, generate: bool = True) -> Path:
    """The cached synthetic set for ``(scale, seed, image_size)``, generated on first use.

    ``generate=False`` returns its path without generating it (``cervix plan`` looks, and
    does not wait minutes for a set it only lists).

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
    if (final / SYNTHETIC_MARKER).is_file() or not generate:
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
