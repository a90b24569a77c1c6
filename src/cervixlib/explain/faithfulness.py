"""Numbers for what Wang et al. (2021) only showed by eye in their Fig. 2.

"Towards Interpretable Attention Networks for Cervical Cancer Analysis" argues from
one picture that residual channel attention makes DenseNet-121 attend to a few cells
rather than the background. Three measurements turn such pictures into evidence:

- **In-cell share**: the fraction of attribution mass ``sum |A|`` that falls inside
  the annotated cells (masks from the ``.dat`` polygons), split into nucleus and
  cytoplasm, next to the fraction of the image those regions cover. A map that
  ignores the cells still puts the area share inside them; "attends to cells" means
  the share exceeds it. Summarised over test images with a percentile bootstrap.
- **Model-parameter randomisation** (Adebayo et al., "Sanity Checks for Saliency
  Maps", NeurIPS 2018): the Spearman rank correlation between the maps of the
  trained model and of the same architecture with re-initialised weights. A method
  that explains the model, not the image, must give a low correlation.
- **Completeness**: ``|sum A - (F(x) - F(b))|``, recomputed here with plain forward
  passes, independently of Captum's convergence delta.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from scipy import stats
from torch import Tensor, nn

from cervixlib.explain.attributions import (
    Attribution,
    attribute,
    make_baseline,
    model_device,
)
from cervixlib.explain.reductions import Reduce, attribution_mass
from cervixlib.config import Precision
from cervixlib.metrics import Interval

if TYPE_CHECKING:
    from cervixlib.data import Item

__all__ = [
    "PARTS",
    "InCellStudy",
    "SanityResult",
    "area_share",
    "bootstrap_mean",
    "completeness",
    "in_cell_share",
    "in_cell_study",
    "randomization_similarity",
    "randomize_weights",
    "spearman_per_image",
]

_log = logging.getLogger(__name__)

PARTS = ("cell", "nucleus", "cytoplasm")


# ------------------------------------------------------------------ in-cell share
def _maps(attr: Attribution | Tensor | np.ndarray, reduce: Reduce) -> Tensor:
    """Attributions as ``(N, H, W)`` non-negative mass maps (:func:`attribution_mass`)."""
    if isinstance(attr, Attribution):
        attr = attr.attributions
    a = torch.as_tensor(np.asarray(attr) if isinstance(attr, np.ndarray) else attr).float().cpu()
    if a.ndim == 2:
        a = a[None, None]
    elif a.ndim == 3:
        a = a[:, None]
    elif a.ndim != 4:
        raise ValueError(f"attributions must be (N, C, H, W), (N, H, W) or (H, W), got {tuple(a.shape)}")
    return attribution_mass(a, reduce)


def _bool_masks(mask: Tensor | np.ndarray) -> Tensor:
    """Masks as bool with a leading image axis: ``(H, W)`` and ``(N, 1, H, W)`` become ``(N, H, W)``."""
    m = torch.as_tensor(np.asarray(mask) if isinstance(mask, np.ndarray) else mask).cpu()
    if m.dtype != torch.bool:
        m = m > 0.5
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim == 2:
        m = m[None]
    return m


def _masks(mask: Tensor | np.ndarray, shape: torch.Size) -> Tensor:
    """Masks as ``(N, H, W)`` bool, broadcast over images when one mask is given."""
    m = _bool_masks(mask)
    if m.ndim != 3 or m.shape[-2:] != shape[-2:]:
        raise ValueError(f"mask of shape {tuple(m.shape)} does not match attributions of shape {tuple(shape)}")
    return m.expand(shape)


def in_cell_share(
    attr: Attribution | Tensor | np.ndarray,
    mask: Tensor | np.ndarray,
    *,
    reduce: Reduce = "abs",
) -> np.ndarray:
    """The share of attribution mass inside ``mask``, per image: ``(N,)`` in [0, 1].

    Args:
        attr: an :class:`Attribution`, or maps ``(N, C, H, W)``, ``(N, H, W)``, ``(H, W)``.
        mask: bool (or {0, 1} float) ``(N, H, W)``, ``(N, 1, H, W)`` or one ``(H, W)`` for all.
        reduce: mass per pixel, one of :data:`MASS_REDUCTIONS` (:func:`reduce_channels`):
            ``abs`` = ``sum_c |A_c|`` (default), ``abs_sum`` = ``|sum_c A_c|``,
            ``positive`` = ``max(sum_c A_c, 0)`` (evidence for the class).

    An image without attribution mass gets NaN rather than a made-up share.
    """
    a = _maps(attr, reduce)
    m = _masks(mask, a.shape)
    total = a.flatten(1).sum(1).double()
    inside = (a * m).flatten(1).sum(1).double()
    share = torch.where(total > 0, inside / total.clamp_min(1e-300), torch.full_like(total, float("nan")))
    return share.numpy()


def area_share(mask: Tensor | np.ndarray) -> np.ndarray:
    """The fraction of each image that ``mask`` covers: ``(N,)`` (the share a uniform map would get)."""
    return _bool_masks(mask).flatten(1).double().mean(1).numpy()


def bootstrap_mean(
    values: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """The mean over images with a percentile-bootstrap interval (SciPy); NaNs are dropped."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, level)
    mean = float(v.mean())
    if v.size < 2 or np.all(v == v[0]):
        return Interval(mean, mean, mean, level)
    res = stats.bootstrap((v,), np.mean, n_resamples=n_resamples, confidence_level=level,
                          method="percentile", random_state=np.random.default_rng(seed))
    return Interval(mean, float(res.confidence_interval.low), float(res.confidence_interval.high), level)


@dataclass
class InCellStudy:
    """Per-image in-cell shares over a set of images, and their bootstrap summaries.

    ``share[part]`` and ``area[part]`` are ``(N,)`` arrays for ``part`` in
    :data:`PARTS`; ``delta`` and ``relative_delta`` the IG completeness errors.
    """

    share: dict[str, np.ndarray]
    area: dict[str, np.ndarray]
    target: np.ndarray
    label: np.ndarray
    delta: np.ndarray
    relative_delta: np.ndarray
    method: str
    n_steps: int
    baseline: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.target)

    def summary(self, *, n_resamples: int = 2000, level: float = 0.95, seed: int = 0) -> dict[str, dict[str, Interval]]:
        """For each part: mean share, mean area share and mean excess (share - area,
        paired per image), each with a percentile-bootstrap interval over images."""
        out = {}
        for part in self.share:
            s, a = self.share[part], self.area[part]
            out[part] = {
                "share": bootstrap_mean(s, n_resamples=n_resamples, level=level, seed=seed),
                "area": bootstrap_mean(a, n_resamples=n_resamples, level=level, seed=seed),
                "excess": bootstrap_mean(s - a, n_resamples=n_resamples, level=level, seed=seed),
            }
        return out

    def rows(self, **kwargs: Any) -> list[dict[str, Any]]:
        """The summary as flat table rows (one per part), for notebooks and reports."""
        rows = []
        for part, d in self.summary(**kwargs).items():
            rows.append({"part": part, "n": int(np.isfinite(self.share[part]).sum()),
                         **{f"{k}": v.value for k, v in d.items()},
                         **{f"{k}_low": v.low for k, v in d.items()},
                         **{f"{k}_high": v.high for k, v in d.items()}})
        return rows


def in_cell_study(
    model: nn.Module,
    items: Sequence[Item],
    *,
    image_size: int,
    method: Literal["ig", "saliency"] = "ig",
    n_steps: int = 50,
    baseline: str = "black",
    batch_size: int = 8,
    internal_batch_size: int | None = None,
    precision: Precision = "fp32",
    reduce: Reduce = "abs",
    target: Literal["predicted", "label"] = "predicted",
    progress: bool = False,
) -> InCellStudy:
    """In-cell, nucleus and cytoplasm shares of ``model``'s attributions over ``items``.

    Images and masks come from :class:`cervixlib.data.CellImageDataset` (evaluation
    transform, ``return_mask=True``); the nucleus and cytoplasm masks are drawn with
    :func:`cervixlib.data.cell_mask` at the same size, and the dataset's own cell mask
    is checked against them, so a transform that moved pixels cannot misalign them
    silently. Items without annotated cells are an error (their share is undefined).
    """
    from cervixlib.data import CellImageDataset, cell_mask

    items = list(items)
    missing = [str(it.path) for it in items if not it.cells]
    if missing:
        raise ValueError(f"{missing[0]}: no annotated cells, so no in-cell share ({len(missing)} such items)")
    ds = CellImageDataset(items, image_size=image_size, train=False, return_mask=True)
    parts = []
    share = {p: [] for p in PARTS}
    area = {p: [] for p in PARTS}
    labels = []
    starts = range(0, len(items), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=f"in-cell share ({method})", unit="batch")
    for start in starts:
        idx = range(start, min(start + batch_size, len(items)))
        Xs, ys, cells = [], [], []
        for i in idx:
            X, y, m = ds[i]
            Xs.append(X)
            ys.append(int(y))
            cells.append(torch.as_tensor(m)[0] > 0.5)
        X = torch.stack(Xs)
        masks = {"cell": torch.stack(cells)}
        for part in ("nucleus", "cytoplasm"):
            masks[part] = torch.stack([torch.from_numpy(np.asarray(cell_mask(items[i], (image_size, image_size), part)))
                                       for i in idx]).bool()
        for j, i in enumerate(idx):
            union = masks["nucleus"][j] | masks["cytoplasm"][j]
            agree = (union == masks["cell"][j]).float().mean().item()
            if agree < 0.98:
                raise ValueError(f"{items[i].path}: the dataset's cell mask and the polygon masks disagree "
                                 f"on {100 * (1 - agree):.1f}% of pixels; the transform misaligns them")
        a = attribute(model, X, method=method, n_steps=n_steps, baseline=baseline,  # type: ignore[arg-type]
                      target=torch.tensor(ys) if target == "label" else None,
                      internal_batch_size=internal_batch_size, precision=precision)
        parts.append(a)
        labels.extend(ys)
        for p in PARTS:
            share[p].append(in_cell_share(a, masks[p], reduce=reduce))
            area[p].append(area_share(masks[p]))
    a = Attribution.cat(parts)
    return InCellStudy(
        share={p: np.concatenate(v) for p, v in share.items()},
        area={p: np.concatenate(v) for p, v in area.items()},
        target=a.target.numpy(), label=np.asarray(labels), delta=a.delta.numpy(),
        relative_delta=a.relative_delta.numpy(), method=a.method, n_steps=a.n_steps, baseline=a.baseline,
        meta={"image_size": image_size, "reduce": reduce, "precision": sorted(set(a.precision))},
    )


# ------------------------------------------------------------------ sanity check
def randomize_weights(
    model: nn.Module,
    *,
    seed: int = 0,
    layers: Sequence[str] | None = None,
) -> nn.Module:
    """A deep copy of ``model`` with its weights re-initialised (its own init schemes).

    Every submodule with ``reset_parameters`` is reset (conv, linear, batch norm, whose
    running statistics are reset too). ``layers``: names of submodules to randomise
    (with everything below them), for the cascading variant of Adebayo et al.; None
    randomises all. A parameter left unchanged afterwards is an error, so that a new
    layer type cannot slip through the check untouched.
    """
    rand = copy.deepcopy(model)
    modules = dict(rand.named_modules())
    roots = [""] if layers is None else list(layers)
    unknown = [n for n in roots if n not in modules]
    if unknown:
        raise ValueError(f"no such submodules: {unknown}")
    before = {n: p.detach().clone() for n, p in rand.named_parameters()}
    selected: set[str] = set()
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for root in roots:
            for name, module in modules[root].named_modules(prefix=root):
                reset = getattr(module, "reset_parameters", None)
                if callable(reset):
                    reset()
                for pname, _ in module.named_parameters(recurse=False):
                    selected.add(f"{name}.{pname}" if name else pname)
    finally:
        torch.random.set_rng_state(gen_state)
    stale = [n for n, p in rand.named_parameters()
             if n in selected and p.numel() > 1 and torch.equal(p.detach(), before[n])
             and not _is_constant_init(p)]
    if stale:
        raise ValueError(f"parameters not re-initialised (no reset_parameters on their module): {stale[:5]}")
    return rand


def _is_constant_init(p: Tensor) -> bool:
    """Norm weights (all ones) and biases (all zeros) legitimately reset to what they were."""
    v = p.detach().flatten()
    return bool(torch.all(v == v[0]))


def spearman_per_image(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> np.ndarray:
    """Spearman rank correlation of two stacks of maps ``(N, ...)``, image by image (SciPy)."""
    a = np.asarray(a.detach().cpu() if isinstance(a, Tensor) else a, dtype=np.float64)
    b = np.asarray(b.detach().cpu() if isinstance(b, Tensor) else b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {a.shape} vs {b.shape}")
    out = np.empty(a.shape[0])
    for i in range(a.shape[0]):
        x, y = a[i].ravel(), b[i].ravel()
        out[i] = np.nan if (np.all(x == x[0]) or np.all(y == y[0])) else stats.spearmanr(x, y).statistic
    return out


@dataclass
class SanityResult:
    """Spearman correlations ``(N,)`` between trained and randomised-model maps.

    ``spearman_abs`` compares ``sum_c |A_c|`` (what the figures show), ``spearman_signed``
    compares ``sum_c A_c``; both should be low for a method that depends on the model.
    """

    spearman_abs: np.ndarray
    spearman_signed: np.ndarray
    trained: Attribution
    randomized: Attribution

    def summary(self, **kwargs: Any) -> dict[str, Interval]:
        return {"spearman_abs": bootstrap_mean(self.spearman_abs, **kwargs),
                "spearman_signed": bootstrap_mean(self.spearman_signed, **kwargs)}


def randomization_similarity(
    model: nn.Module,
    X: Tensor,
    *,
    method: Literal["ig", "saliency"] = "ig",
    target: int | Sequence[int] | Tensor | None = None,
    seed: int = 0,
    layers: Sequence[str] | None = None,
    randomized: nn.Module | None = None,
    **attribute_kwargs: Any,
) -> SanityResult:
    """Adebayo et al.'s model-parameter randomisation test on images ``X``.

    Both models explain the same class: ``target``, or the trained model's prediction.
    ``randomized`` may be given (e.g. to reuse one copy); otherwise it is
    :func:`randomize_weights` ``(model, seed=seed, layers=layers)``. Extra keyword
    arguments go to :func:`~cervixlib.explain.attribute` for both models.
    """
    trained = attribute(model, X, method=method, target=target, **attribute_kwargs)
    if randomized is None:
        randomized = randomize_weights(model, seed=seed, layers=layers)
    rand = attribute(randomized, X, method=method, target=trained.target, **attribute_kwargs)
    return SanityResult(
        spearman_abs=spearman_per_image(trained.heatmap("abs"), rand.heatmap("abs")),
        spearman_signed=spearman_per_image(trained.heatmap("sum"), rand.heatmap("sum")),
        trained=trained, randomized=rand,
    )


# ------------------------------------------------------------------ completeness
def completeness(
    model: nn.Module,
    X: Tensor,
    attr: Attribution,
    *,
    baseline: Tensor | None = None,
    linearise: bool | None = None,
) -> np.ndarray:
    """``|sum A - (F(x) - F(b))|`` per image, recomputed with plain fp32 forward passes.

    An independent check of Captum's convergence delta (``attr.delta``): the baseline
    is rebuilt from ``attr.baseline`` (pass ``baseline`` for a tensor or noise baseline). For
    saliency maps (``linearise``, default for them) the sum is over ``grad * (x - b)``.
    ``F`` is the logit, or the softmax probability for ``attr.output == "softmax"``. An
    average over several baselines has one gap per baseline: check each one's map instead.
    """
    if attr.n_baselines != 1:
        raise ValueError(f"this attribution averages {attr.n_baselines} baselines; check "
                         "attr.delta_per_baseline, or each baseline's own attribution")
    device = model_device(model)
    X = (X.unsqueeze(0) if X.ndim == 3 else X).float().to(device)
    if baseline is None:
        if attr.baseline in ("tensor", "uniform"):
            raise ValueError(f"this attribution used a {attr.baseline} baseline: pass it as baseline=")
        B = make_baseline(X, attr.baseline)  # type: ignore[arg-type]
    else:
        B = make_baseline(X, baseline)
    A = attr.attributions.to(device)
    if linearise if linearise is not None else attr.method == "saliency":
        A = A * (X - B)
    t = attr.target.to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            fx, fb = model(X).float(), model(B).float()
            if attr.output == "softmax":
                fx, fb = fx.softmax(dim=1), fb.softmax(dim=1)
            fx, fb = fx.gather(1, t[:, None])[:, 0], fb.gather(1, t[:, None])[:, 0]
    finally:
        model.train(was_training)
    gap = A.flatten(1).double().sum(1) - (fx - fb).double()
    return gap.abs().cpu().numpy()

