"""One study of every explanation method on one model, per image, and Fig. 2's claim tested.

Wang et al. (2021) claim (Fig. 2) that RCAN-DenseNet-121 "attends to a few cells" while
DenseNet-121 also looks at the background. :func:`explanation_study` runs a model on
test images and measures, per image and per method (:mod:`~cervixlib.explain.maps`):

- faithfulness: deletion and insertion areas (:mod:`~cervixlib.explain.faithfulness`;
  the score is the softmax probability of the explained class, the predicted one);
- localisation (:mod:`~cervixlib.explain.localisation`): the pointing game, the share
  of the map in the cells, the nucleus and the cytoplasm, and the concentration (the
  fewest annotated cells holding 80% of the in-cell mass, and their fraction).

Everything is kept per image, so two models explained on the same images are
compared *paired*: :func:`cervixlib.claims.fig2_claim` tests Fig. 2's claim from two
such studies with the one verdict rule of the front page (:mod:`cervixlib.claims`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from cervixlib.explain.attributions import model_device
from cervixlib.explain.faithfulness import Fill, PerturbationCurves, perturbation_curves
from cervixlib.explain.localisation import area_share, part_shares, pointing_game, stack_concentration
from cervixlib.explain.maps import CONTROLS, METHOD_LABELS, available_methods, method_maps
from cervixlib.metrics import MIN_IMAGES, Interval, bootstrap_mean
from cervixlib.runtime import eval_mode

if TYPE_CHECKING:
    from cervixlib.data import Item

__all__ = ["BETTER", "METRICS", "ExplanationStudy", "explanation_study", "localisable", "measure_rows",
           "separation_text", "study_images"]

#: The per-image metrics of :class:`ExplanationStudy` and their names in tables.
METRICS: dict[str, str] = {
    "deletion_auc": "deletion AUC (lower: faithful)", "insertion_auc": "insertion AUC (higher: faithful)",
    "pointing": "pointing game", "in_cell": "in-cell share", "nucleus_of_cell": "nucleus share of in-cell",
    "cells_80": "cells holding 80%", "cells_80_fraction": "fraction of cells holding 80%",
}
#: The metrics of :data:`METRICS` that need no cell outlines.
FAITHFULNESS_METRICS = ("deletion_auc", "insertion_auc")
#: Which way each metric of :data:`METRICS` is better for a map that follows the model and the
#: cells: +1 higher, -1 lower (the random control should lose on each).
BETTER: dict[str, int] = {"deletion_auc": -1, "insertion_auc": 1, "pointing": 1, "in_cell": 1,
                          "nucleus_of_cell": 1, "cells_80": -1, "cells_80_fraction": -1}


@dataclass
class ExplanationStudy:
    """Per-image results of every method on one model's test images.

    ``values[method][metric]`` is ``(N,)`` for each metric of :data:`METRICS` (NaN where
    undefined: a map without mass, a method computed on fewer images); ``curves[method]``
    the :class:`PerturbationCurves`; ``area`` the share of each image the cells cover,
    ``n_cells`` its annotated cells; ``images`` the file names, in order.
    """

    model: str
    images: list[str]
    label: np.ndarray
    target: np.ndarray
    probability: np.ndarray
    n_cells: np.ndarray
    area: np.ndarray
    values: dict[str, dict[str, np.ndarray]]
    curves: dict[str, PerturbationCurves]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.values)

    def summary(self, method: str, metric: str, **kwargs: Any) -> Interval:
        """The mean of one metric over the images, with its bootstrap interval."""
        return bootstrap_mean(self.values[method][metric], **kwargs)

    def rows(self, **kwargs: Any) -> list[dict[str, Any]]:
        """One row per method: each metric of :data:`METRICS` as an :class:`Interval` (mean,
        95% bootstrap over images), beside the share of the images the cells cover; without
        cell outlines (``settings["localisation"]`` false), the faithfulness metrics only."""
        local = self.settings.get("localisation", True)
        return [{"model": self.model, "method": METHOD_LABELS.get(m, m),
                 "images": int(np.isfinite(v["deletion_auc"]).sum()),
                 **{label: bootstrap_mean(v[k], **kwargs) for k, label in METRICS.items()
                    if local or k in FAITHFULNESS_METRICS},
                 **({"cells' area share": bootstrap_mean(self.area[np.isfinite(v["in_cell"])], **kwargs)}
                    if local else {})}
                for m, v in self.values.items()]


def measure_rows(studies: Mapping[str, ExplanationStudy], metric: str, **kwargs: Any) -> list[dict[str, Any]]:
    """One measure of :data:`METRICS` for every model side by side: a row per method, a column
    per model (the paper's names), each the mean over that model's images with its 95%
    bootstrap interval (:func:`cervixlib.metrics.bootstrap_mean`; ``kwargs`` are its). The
    in-cell share gets a last row, the cells' share of the image: what a map blind to the
    cells would get."""
    from cervixlib.facts import model_title

    if metric not in METRICS:
        raise ValueError(f"unknown measure {metric!r}; one of {list(METRICS)}")
    methods = list(dict.fromkeys(m for s in studies.values() for m in s.methods))
    rows = [{"method": METHOD_LABELS.get(m, m),
             **{model_title(name): bootstrap_mean(s.values[m][metric], **kwargs) if m in s.values else None
                for name, s in studies.items()}} for m in methods]
    if metric == "in_cell":
        rows.append({"method": "the cells' share of the image (a map blind to the cells)",
                     **{model_title(name): bootstrap_mean(s.area, **kwargs) for name, s in studies.items()}})
    return rows


def separation_text(studies: Mapping[str, ExplanationStudy], metric: str, *, n_resamples: int = 2000,
                    seed: int = 0) -> str:
    """A sentence for a measure that tells no method from the random control on any model
    (every paired bootstrap interval of method − random, image by image, contains 0, or there
    is none and the images do not all agree), saying it is not informative here; ``""``
    where it separates one, or where too few images were explained for any interval."""
    from cervixlib.comparison import paired_bootstrap

    for s in studies.values():
        if "random" not in s.values:
            continue
        random = s.values["random"][metric]
        for m, v in s.values.items():
            if m in CONTROLS or not np.isfinite(v[metric]).any():
                continue
            d = paired_bootstrap(v[metric], random, n_resamples=n_resamples, seed=seed)
            if d.has_interval and (d.low > 0 or d.high < 0):
                return ""
            diff = (v[metric] - random)[np.isfinite(v[metric]) & np.isfinite(random)]
            if not d.has_interval and diff.size >= MIN_IMAGES and (np.all(diff > 0) or np.all(diff < 0)):
                return ""  # the same difference on every image: no interval, but no doubt either
    name = METRICS[metric].split(" (")[0]
    n = max((int(np.isfinite(s.values["random"][metric]).sum()) for s in studies.values()
             if "random" in s.values), default=0)
    if n < MIN_IMAGES:
        return ""  # no interval at all: the table's caption says so, and why
    return (f"Here the {name} tells no method from the random control on any model (paired bootstrap "
            f"over {n} image{'s' * (n != 1)}): at these settings it is not informative about the maps.")


def localisable(items: Sequence[Item]) -> bool:
    """Whether the localisation measures apply: every item has cell outlines (SIPaKMeD's
    ``.dat`` boundaries, or a class-per-folder set's mask files, :attr:`cervixlib.data.Item.has_mask`)."""
    items = list(items)
    return bool(items) and all(it.has_mask for it in items)


def study_images(items: Sequence[Item], image_size: int) -> torch.Tensor:
    """The evaluation-transform tensors ``(N, 3, S, S)`` of ``items`` (as training evaluated them)."""
    from cervixlib.data import CellImageDataset

    ds = CellImageDataset(list(items), image_size=image_size, train=False)
    return torch.stack([ds[i][0] for i in range(len(ds))])


def explanation_study(
    model: nn.Module,
    items: Sequence[Item],
    *,
    image_size: int,
    name: str | None = None,
    methods: Sequence[str] | None = None,
    n_steps: int = 32,
    released_images: int | None = None,
    perturbation_steps: int = 10,
    fill: Fill = "blur",
    chunk_size: int = 64,
    tolerance: int = 0,
    level: float = 0.8,
    seed: int = 0,
    internal_batch_size: int | None = 128,
    X: torch.Tensor | None = None,
    localisation: bool | None = None,
) -> ExplanationStudy:
    """Every method's faithfulness and, where the images have cell outlines, localisation on ``items``.

    Args:
        model: a trained classifier; the explained class is its prediction.
        items: the test items (each with annotated cells); ``X`` their tensors if already made.
        methods: of :data:`~cervixlib.explain.maps.MAP_METHODS` (default: all that apply,
            :func:`~cervixlib.explain.maps.available_methods`).
        n_steps: our IG's steps; ``released_images``: the released IG (500 passes an image)
            only on the first this many images (NaN for the rest; None: all).
        perturbation_steps, fill, chunk_size: of :func:`perturbation_curves`.
        tolerance: the pointing game's tolerance in px; ``level``: the concentration's share.
        seed: the random control, the released IG's noise and the ranking ties.
        internal_batch_size: at most this many IG steps in one pass (Captum's; memory).
        localisation: measure the localisation metrics too (every item needs cell outlines);
            None: where :func:`localisable` (without outlines they are NaN, the area too).
    """
    items = list(items)
    if localisation is None:
        localisation = localisable(items)
    missing = [str(it.path) for it in items if not it.has_mask]
    if localisation and missing:
        raise ValueError(f"{missing[0]}: no cell outlines (.dat boundaries or a mask file), so no localisation "
                         f"({len(missing)} such items)")
    from cervixlib.data import cell_components, cell_mask

    size = (image_size, image_size)
    X = study_images(items, image_size) if X is None else X
    methods = tuple(methods) if methods is not None else available_methods(model)
    with eval_mode(model), torch.no_grad():
        prob = model(X.to(model_device(model))).float().softmax(1).cpu()
    target = prob.argmax(1)
    if localisation:
        cell = np.stack([cell_mask(it, size, "cell") for it in items])
        nucleus = np.stack([cell_mask(it, size, "nucleus") if it.has_nucleus
                            else np.zeros(size[::-1], bool) for it in items])
        per_cell = [cell_components(it, size) for it in items]
    maps: dict[str, torch.Tensor] = {}
    for m in methods:
        k = len(items) if (m != "ig_released" or released_images is None) else min(released_images, len(items))
        if k > 0:
            maps[m] = method_maps(model, X[:k], m, target[:k], n_steps=n_steps, seed=seed,
                                  internal_batch_size=internal_batch_size)
    curves: dict[str, PerturbationCurves] = {}
    for k in sorted({len(a) for a in maps.values()}):  # methods on fewer images: curves of those only
        part = perturbation_curves(model, X[:k], {m: a for m, a in maps.items() if len(a) == k}, target[:k],
                                   steps=perturbation_steps, fill=fill, chunk_size=chunk_size, seed=seed)
        curves.update({m: _padded(c, len(items)) for m, c in part.items()})
    values: dict[str, dict[str, np.ndarray]] = {}
    for m, a in maps.items():
        k = len(a)
        v = {"deletion_auc": curves[m].deletion_auc[:k], "insertion_auc": curves[m].insertion_auc[:k]}
        if localisation:
            a0 = a.numpy()
            shares = part_shares(a0, cell[:k], nucleus[:k])
            count, frac = stack_concentration(a0, per_cell[:k], level=level)
            v.update({"pointing": pointing_game(a0, cell[:k], tolerance=tolerance), "in_cell": shares["cell"],
                      "nucleus_of_cell": shares["nucleus_of_cell"], "cells_80": count, "cells_80_fraction": frac})
        values[m] = {metric: np.concatenate([v[metric], np.full(len(items) - k, np.nan)]) if metric in v
                     else np.full(len(items), np.nan) for metric in METRICS}
    return ExplanationStudy(
        model=name or getattr(model, "model_name", type(model).__name__), images=[it.path.name for it in items],
        label=np.array([it.label for it in items]), target=target.numpy(), probability=prob.numpy(),
        n_cells=np.array([len(c) for c in per_cell]) if localisation else np.zeros(len(items), int),
        area=area_share(cell) if localisation else np.full(len(items), np.nan), values=values, curves=curves,
        settings={"image_size": image_size, "n_steps": n_steps, "perturbation_steps": perturbation_steps,
                  "localisation": localisation,
                  "fill": fill, "tolerance": tolerance, "level": level, "released_images": released_images,
                  "controls": [m for m in methods if m in CONTROLS], "seed": seed})


def _padded(c: PerturbationCurves, n: int) -> PerturbationCurves:
    """Curves of the first images padded with NaN rows to ``n`` images."""
    pad = np.full((n - len(c.deletion), len(c.x)), np.nan)
    return PerturbationCurves(x=c.x, deletion=np.vstack([c.deletion, pad]), insertion=np.vstack([c.insertion, pad]))
