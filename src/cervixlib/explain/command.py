"""``cervix explain RUN --image PATH --out FIG``: the Fig. 2 panel of one image, from a trained run.

Wang et al. (2021) explain their classifiers with the input gradient and Integrated
Gradients (their Fig. 2). This command does it for one image file and any finished run:
it loads the run's best model, prepares the image as the run's evaluation did
(:func:`load_input`), explains the predicted class (or a chosen one), reports IG's
completeness and, for an image of the run's dataset with cell boundaries, the in-cell
shares (:func:`~cervixlib.explain.part_shares`), and writes the panel. The library's
explanation API is :mod:`cervixlib.explain`; this module is only the command behind it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cervixlib.explain.attributions import Attribution, attribute, check_settings, model_device
from cervixlib.explain.localisation import area_share, part_shares

__all__ = ["ExplainResult", "explain_command", "load_input"]

_log = logging.getLogger(__name__)
_FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".html")


def load_input(path: str | os.PathLike[str], image_size: int) -> torch.Tensor:
    """One image file as the network input ``(3, S, S)``, exactly as the evaluation
    dataset prepares it (:class:`cervixlib.data.CellImageDataset` with ``train=False``):
    PIL bilinear resize of the whole image to ``S x S``, scaled to 0..1, normalised."""
    from cervixlib.data import normalize, read_image

    img = read_image(path)  # DataError naming the file if it is missing or unreadable
    if img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
    X = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
    return normalize(X.to(torch.float32).div_(255.0)).contiguous()


@dataclass
class ExplainResult:
    """What ``cervix explain`` computed and wrote."""

    out: Path
    classes: tuple[str, ...]
    probabilities: np.ndarray
    target: int
    gradient: Attribution
    ig: Attribution | None
    in_cell: dict[str, float] = field(default_factory=dict)

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.probabilities))

    def summary(self) -> str:
        """Lines for the terminal: prediction, target, the IG delta and in-cell shares."""
        c = self.classes
        lines = [f"predicted: {c[self.predicted]} (p = {self.probabilities[self.predicted]:.3f}); "
                 f"explained class: {c[self.target]}"]
        if self.ig is not None:
            lines.append(f"IG ({self.ig.n_steps} steps, {self.ig.baseline} baseline, {self.ig.precision[0]}): "
                         f"delta {float(self.ig.delta[0]):+.4g}, "
                         f"{100 * float(self.ig.relative_delta[0]):.3g}% of F(x)-F(b) = "
                         f"{float(self.ig.output_diff[0]):+.4g}")
        for k, v in self.in_cell.items():
            lines.append(f"{k}: {v:.3f}")
        lines.append(f"wrote {self.out}")
        return "\n".join(lines)


def _resolve_target(target: int | str | None, classes: tuple[str, ...]) -> int | None:
    if target is None:
        return None
    if isinstance(target, str) and not target.lstrip("-").isdigit():
        matches = [i for i, name in enumerate(classes) if name.lower().startswith(target.lower())]
        if len(matches) != 1:
            raise ValueError(f"target {target!r} names none or several of the classes {list(classes)}")
        return matches[0]
    t = int(target)
    if not 0 <= t < len(classes):
        raise ValueError(f"target must be a class index in 0..{len(classes) - 1}, got {t}")
    return t


def _find_item(run: Any, image: Path) -> Any | None:
    """The run's dataset item for ``image`` when the file lies under the run's data root."""
    try:
        image.resolve().relative_to(Path(run.data_root).resolve())
    except (ValueError, KeyError, OSError):
        return None
    for item in run.items():
        if Path(item.path).resolve() == image.resolve():
            return item
    return None


def explain_command(
    run_dir: str | os.PathLike[str],
    image: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str],
    steps: int = 50,
    baseline: str = "black",
    method: str = "ig",
    target: int | str | None = None,
    device: str | None = None,
    precision: str = "fp32",
    internal_batch_size: int | None = None,
) -> ExplainResult:
    """``cervix explain RUN --image PATH --out FIG``: the Fig. 2 panel of one image.

    Loads the run's best model and image size, explains the predicted class (or
    ``target``, an index or a class-name prefix) with the input gradient and, for
    ``method="ig"``, Integrated Gradients with ``steps`` steps from ``baseline``, and
    writes the panel: a static figure for ``.png``/``.pdf``/``.svg``/``.jpg``, the
    interactive plotly figure for ``.html``. When the image belongs to the run's
    dataset and has cell boundaries, the in-cell shares are reported too.
    """
    from cervixlib.figures import fig2_matplotlib, fig2_plotly, fig2_rows
    from cervixlib.runs import load_run
    from cervixlib.runtime import select_device

    out = Path(out)
    image = Path(image)
    if out.suffix.lower() not in _FIGURE_SUFFIXES:
        raise ValueError(f"{out}: unknown figure type; use one of {', '.join(_FIGURE_SUFFIXES)}")
    check_settings(method=method, baseline=baseline, n_steps=steps, precision=precision)
    run = load_run(run_dir)
    classes = tuple(run.info.get("classes") or ())
    size = int(run.config.data.image_size)
    model = run.load_model(select_device(device))
    X = load_input(image, size)[None]
    t = _resolve_target(target, classes) if classes else (None if target is None else int(target))
    with torch.no_grad():
        probs = torch.softmax(model(X.to(model_device(model))).float(), dim=1)[0].cpu().numpy()
    if not classes:
        classes = tuple(f"class {i}" for i in range(len(probs)))
    t = int(np.argmax(probs)) if t is None else t
    grad = attribute(model, X, method="saliency", target=t, baseline=baseline)  # type: ignore[arg-type]
    ig = None
    if method == "ig":
        ig = attribute(model, X, method="ig", target=t, n_steps=steps, baseline=baseline,  # type: ignore[arg-type]
                       precision=precision, internal_batch_size=internal_batch_size)  # type: ignore[arg-type]

    in_cell: dict[str, float] = {}
    item = _find_item(run, image)
    if item is not None and item.has_mask:
        from cervixlib.data import cell_mask

        cell = cell_mask(item, (size, size), "cell")
        nucleus = cell_mask(item, (size, size), "nucleus") if item.has_nucleus else np.zeros_like(cell)
        areas = {"cell": cell, "nucleus": nucleus & cell, "cytoplasm": cell & ~nucleus}
        shares = {"gradient": part_shares(grad.heatmap("abs"), cell, nucleus)}
        if ig is not None:
            shares["IG"] = part_shares(ig.heatmap("abs"), cell, nucleus)
        for part, m in areas.items():
            in_cell[f"{part} area share"] = float(area_share(m)[0])
            for name, s in shares.items():
                in_cell[f"{name} {part} share"] = float(s[part][0])

    from cervixlib.data import denormalize

    rgb = denormalize(X)
    label = f"{run.config.model}: {image.name}"
    rows = fig2_rows(rgb, grad, ig, label=label, class_names=classes)
    title = f"{run.config.model} on {image.name} (p({classes[t]}) = {probs[t]:.3f})"
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".html":
        fig2_plotly(rows, title=title).write_html(out, include_plotlyjs=True)
    else:
        fig, _ = fig2_matplotlib(rows, title=title)
        fig.savefig(out, bbox_inches="tight")
    return ExplainResult(out=out, classes=classes, probabilities=probs, target=t, gradient=grad, ig=ig,
                         in_cell=in_cell)
