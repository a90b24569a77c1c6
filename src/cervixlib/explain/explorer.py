"""The IG-steps explorer: how Integrated Gradients converges as its steps grow.

Integrated Gradients (Sundararajan et al. 2017), one of the two explanations of Wang
et al. (2021), "Towards Interpretable Attention Networks for Cervical Cancer
Analysis", integrates the gradient along the straight path ``b + alpha * (x - b)``
from a baseline ``b`` to the image ``x``. The integral is approximated with
``n_steps`` points, and the completeness error (the convergence delta,
``sum A - (F(x) - F(b))``) tells how good the approximation is. Two views show this:

- :func:`ig_explorer`: an ipywidgets interface for JupyterLab with a slider over
  ``n_steps`` (IG recomputed live, cached per step count, the delta curve growing as
  step counts are visited) and one over ``alpha`` (the scaled input and its gradient);
- :func:`static_ig_slider`: a plotly figure with the same panels, precomputed for a
  few step counts and alphas and switched by ``layout.sliders`` through animation
  frames, so it works in the static HTML of the book, with no kernel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from cervixlib.config import BaselineName
from cervixlib.explain.attributions import Attribution, attribute, model_device
from cervixlib.explain.baselines import make_baseline
from cervixlib.figures import attribution_heatmap, colorize, image_data_uri, overlay, to_rgb
from cervixlib.runtime import eval_mode

if TYPE_CHECKING:
    import ipywidgets
    import plotly.graph_objects as go

__all__ = ["IGExplorer", "IGPath", "ig_explorer", "integration_alphas", "static_ig_slider", "DEFAULT_STEPS",
           "DEFAULT_ALPHAS"]

_log = logging.getLogger(__name__)

DEFAULT_STEPS = (1, 2, 4, 8, 16, 32, 64, 128)
DEFAULT_ALPHAS = tuple(np.round(np.linspace(0.0, 1.0, 11), 2).tolist())

# Trace order shared by the live and the static figure.
_SCALED, _GRAD, _IG, _PATH, _ALPHA_MARK, _SAMPLES, _DELTAS, _STEP_MARK = range(8)


class IGPath:
    """One image's IG path: the scaled inputs, their gradients, and IG per step count (cached).

    Args:
        model: classifier returning logits; used in eval mode on its own device.
        x: one normalised image ``(C, H, W)`` or ``(1, C, H, W)``.
        target: the explained class (default: the predicted one).
        baseline: ``"black"``, ``"blur"``, ``"mean"`` or a tensor.
        denormalize: maps a normalised ``(C, H, W)`` tensor to RGB in [0, 1]
            (default :func:`cervixlib.data.denormalize`).
        integration, internal_batch_size, precision: passed to :func:`~cervixlib.explain.attribute`.
    """

    def __init__(
        self,
        model: nn.Module,
        x: Tensor,
        *,
        target: int | None = None,
        baseline: BaselineName | Tensor = "black",
        denormalize: Callable[[Tensor], Tensor] | None = None,
        integration: str = "gausslegendre",
        internal_batch_size: int | None = None,
        precision: str = "fp32",
    ) -> None:
        if x.ndim == 4:
            if x.shape[0] != 1:
                raise ValueError(f"the explorer takes one image, got a batch of {x.shape[0]}")
            x = x[0]
        if x.ndim != 3:
            raise ValueError(f"image must be (C, H, W), got {tuple(x.shape)}")
        if denormalize is None:
            from cervixlib.data import denormalize
        self.model = model
        self.device = model_device(model)
        self.x = x.detach().float().to(self.device)
        self.b = make_baseline(self.x[None], baseline)[0]
        self.baseline = baseline
        self.integration = integration
        self.internal_batch_size = internal_batch_size
        self.precision = precision
        self._denorm = denormalize
        with eval_mode(model), torch.no_grad():
            logits = model(torch.stack([self.x, self.b])).float()
        self.target = int(logits[0].argmax()) if target is None else int(target)
        self.f_x = float(logits[0, self.target])
        self.f_b = float(logits[1, self.target])
        self._ig: dict[int, Attribution] = {}
        self._curve: tuple[np.ndarray, np.ndarray] | None = None
        self._grad: dict[float, tuple[Tensor, float]] = {}
        self.image_rgb = self.rgb(self.x)

    # -- pixels
    def rgb(self, X: Tensor) -> np.ndarray:
        """A normalised ``(C, H, W)`` tensor as ``(H, W, 3)`` RGB in [0, 1]."""
        return to_rgb(self._denorm(X.detach().cpu()))

    def scaled(self, alpha: float) -> Tensor:
        """The point ``b + alpha * (x - b)`` of the path."""
        return self.b + float(alpha) * (self.x - self.b)

    # -- model evaluations (cached)
    def ig(self, n_steps: int) -> Attribution:
        """Integrated Gradients with ``n_steps`` steps (computed once per step count)."""
        n_steps = int(n_steps)
        if n_steps not in self._ig:
            self._ig[n_steps] = attribute(
                self.model, self.x[None], method="ig", target=self.target, n_steps=n_steps,
                baseline=self.baseline, integration=self.integration,
                internal_batch_size=self.internal_batch_size, precision=self.precision,  # type: ignore[arg-type]
            )
        return self._ig[n_steps]

    def gradient_at(self, alpha: float) -> tuple[Tensor, float]:
        """The input gradient of the target logit at the scaled input, and the logit there."""
        key = round(float(alpha), 6)
        if key not in self._grad:
            xa = self.scaled(key)[None].clone().requires_grad_(True)
            with eval_mode(self.model):
                out = self.model(xa).float()[0, self.target]
                (g,) = torch.autograd.grad(out, xa)
            self._grad[key] = (g[0].detach().cpu(), float(out.detach()))
        return self._grad[key]

    def path_outputs(self, alphas: Sequence[float]) -> np.ndarray:
        """``F(b + alpha (x - b))`` for each alpha (one batched forward pass)."""
        X = torch.stack([self.scaled(a) for a in alphas])
        with eval_mode(self.model), torch.no_grad():
            return self.model(X).float()[:, self.target].cpu().numpy()

    def curve(self, points: int = 41) -> tuple[np.ndarray, np.ndarray]:
        """``(alphas, F)`` on an even grid of the path (computed once)."""
        if self._curve is None or len(self._curve[0]) != points:
            alphas = np.linspace(0.0, 1.0, points)
            self._curve = (alphas, self.path_outputs(alphas.tolist()))
        return self._curve

    def cached_steps(self) -> list[int]:
        return sorted(self._ig)

    def sample_alphas(self, n_steps: int) -> list[float]:
        """Where on the path the integration evaluates the gradient (Captum's alphas)."""
        return integration_alphas(self.integration, n_steps)

    def delta_text(self, n_steps: int) -> str:
        a = self.ig(n_steps)
        return (f"n_steps={n_steps}: delta {float(a.delta[0]):+.4g} "
                f"({100 * float(a.relative_delta[0]):.3g}% of F(x)-F(b) = {self.f_x - self.f_b:+.4g})")


# ------------------------------------------------------------------ panels and figure
@dataclass
class _Panels:
    scaled: str
    grad: str
    ig: str
    f_alpha: float
    alpha: float
    samples: list[float]
    n_steps: int


def _scaled_uri(path: IGPath, alpha: float, fmt: str) -> str:
    return image_data_uri(path.rgb(path.scaled(alpha)), fmt)  # type: ignore[arg-type]


def _grad_uri(grad: Tensor, fmt: str) -> str:
    return image_data_uri(colorize(attribution_heatmap(grad)), fmt)  # type: ignore[arg-type]


def _ig_uri(path: IGPath, a: Attribution, fmt: str) -> str:
    rgb = overlay(path.image_rgb, attribution_heatmap(a.attributions[0]))
    return image_data_uri(rgb, fmt)  # type: ignore[arg-type]


def _panels(path: IGPath, n_steps: int, alpha: float, fmt: str = "png") -> _Panels:
    grad, f_alpha = path.gradient_at(alpha)
    ig = path.ig(n_steps)
    return _Panels(
        scaled=_scaled_uri(path, alpha, fmt),
        grad=_grad_uri(grad, fmt),
        ig=_ig_uri(path, ig, fmt),
        f_alpha=f_alpha, alpha=float(alpha), samples=path.sample_alphas(n_steps), n_steps=int(n_steps),
    )


def _rel_deltas(path: IGPath, steps: Sequence[int]) -> list[float]:
    # floored so a converged (zero) delta still shows on the log axis
    return [max(float(path.ig(n).relative_delta[0]), 1e-7) for n in steps]


def _sample_trace_y(path: IGPath, samples: Sequence[float]) -> list[float]:
    """The path curve's height at the sample alphas, so the markers sit on the curve."""
    alphas, f = path.curve()
    return np.interp(np.asarray(samples, dtype=np.float64), alphas, f).tolist()


def _base_figure(path: IGPath, p: _Panels, steps: Sequence[int], title: str | None) -> go.Figure:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    H, W = path.image_rgb.shape[:2]
    fig = make_subplots(
        rows=2, cols=3,
        specs=[[{}, {}, {}], [{}, {"colspan": 2}, None]],
        row_heights=[0.5, 0.5], vertical_spacing=0.12, horizontal_spacing=0.07,
        subplot_titles=("scaled input b + alpha (x - b)", "gradient at alpha", "IG over the image",
                        "F along the path", "relative convergence delta |delta| / |F(x)-F(b)|"),
    )
    fig.add_trace(go.Image(source=p.scaled, hoverinfo="skip", name="scaled input"), 1, 1)
    fig.add_trace(go.Image(source=p.grad, hoverinfo="skip", name="gradient"), 1, 2)
    fig.add_trace(go.Image(source=p.ig, hoverinfo="skip", name="IG"), 1, 3)
    for c in (1, 2, 3):  # square pixels at any width: the panels shrink inside their cells
        fig.update_xaxes(range=[0, W], visible=False, constrain="domain", row=1, col=c)
        fig.update_yaxes(range=[H, 0], visible=False, scaleanchor="x" if c == 1 else f"x{c}", scaleratio=1,
                         constrain="domain", constraintoward="top", row=1, col=c)
    path_alphas, path_f = path.curve()
    fig.add_trace(go.Scatter(x=path_alphas, y=path_f, mode="lines", name="F(b + alpha (x - b))",
                             line=dict(color="#444")), 2, 1)
    fig.add_trace(go.Scatter(x=[p.alpha], y=[p.f_alpha], mode="markers", name="alpha",
                             marker=dict(size=11, color="#d62728")), 2, 1)
    fig.add_trace(go.Scatter(x=p.samples, y=_sample_trace_y(path, p.samples), mode="markers",
                             name="IG sample points", marker=dict(symbol="line-ns-open", size=12, color="#1f77b4")),
                  2, 1)
    deltas = _rel_deltas(path, steps)
    fig.add_trace(go.Scatter(x=list(steps), y=deltas, mode="lines+markers", name="|delta| / |F(x)-F(b)|",
                             line=dict(color="#1f77b4")), 2, 2)
    cur = _rel_deltas(path, [p.n_steps])
    fig.add_trace(go.Scatter(x=[p.n_steps], y=cur, mode="markers", name="current n_steps",
                             marker=dict(size=13, color="#d62728")), 2, 2)
    fig.update_xaxes(title_text="alpha", range=[-0.03, 1.03], row=2, col=1)
    fig.update_yaxes(title_text="target logit", row=2, col=1)
    fig.update_xaxes(title_text="n_steps", type="log", row=2, col=2)
    fig.update_yaxes(type="log", row=2, col=2)
    # no fixed width: the figure fills the output area or the book's column it is shown in
    fig.update_annotations(font_size=14)  # the subplot titles, which must not collide in a narrow column
    fig.update_layout(title=title, showlegend=False, autosize=True, width=None, height=600,
                      margin=dict(l=50, r=20, t=70 if title else 40, b=40))
    return fig


# ------------------------------------------------------------------ static (book)
def static_ig_slider(
    model: nn.Module,
    x: Tensor,
    *,
    steps: Sequence[int] = DEFAULT_STEPS,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    target: int | None = None,
    baseline: BaselineName | Tensor = "black",
    denormalize: Callable[[Tensor], Tensor] | None = None,
    title: str | None = None,
    path: IGPath | None = None,
    image_format: Literal["png", "jpeg"] = "jpeg",
    **path_kwargs: Any,
) -> go.Figure:
    """A plotly figure with two sliders (``n_steps`` and ``alpha``) over precomputed values.

    Every slider position is an animation frame that replaces only its own traces
    (frames with ``traces=``), so the two sliders are independent, and everything is
    in the figure's JSON: it works in static HTML with no kernel. Panels are embedded
    images (``image_format``: JPEG by default, as noisy maps make PNGs large: a 224 px
    figure with the default 8 step counts and 11 alphas is about 1-2 MB in JPEG). The
    ``n_steps`` slider's labels carry the delta. ``path`` reuses an :class:`IGPath`
    (and its cache), e.g. the live explorer's. Like the live figure it has a fixed height
    and no fixed width: it fills the column it is shown in, its panels keeping square pixels.
    """
    steps = sorted({int(n) for n in steps})
    alphas = sorted({round(float(a), 6) for a in alphas})
    if not steps or min(steps) < 1 or not alphas or min(alphas) < 0 or max(alphas) > 1:
        raise ValueError("steps must be positive integers and alphas lie in [0, 1]")
    if path is None:
        path = IGPath(model, x, target=target, baseline=baseline, denormalize=denormalize, **path_kwargs)
    n0, a0 = steps[len(steps) // 2], alphas[len(alphas) // 2]
    fig = _base_figure(path, _panels(path, n0, a0, image_format), steps, title)

    import plotly.graph_objects as go

    frames, step_items, alpha_items = [], [], []
    anim = dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0))
    for n in steps:
        a = path.ig(n)
        samples = path.sample_alphas(n)
        name = f"steps={n}"
        frames.append(go.Frame(name=name, traces=[_IG, _SAMPLES, _STEP_MARK], data=[
            go.Image(source=_ig_uri(path, a, image_format)),
            go.Scatter(x=samples, y=_sample_trace_y(path, samples)),
            go.Scatter(x=[n], y=_rel_deltas(path, [n])),
        ]))
        label = f"{n} (delta {100 * float(a.relative_delta[0]):.2g}%)"
        step_items.append(dict(method="animate", label=label, args=[[name], anim]))
    for al in alphas:
        grad, f_alpha = path.gradient_at(al)
        name = f"alpha={al:g}"
        frames.append(go.Frame(name=name, traces=[_SCALED, _GRAD, _ALPHA_MARK], data=[
            go.Image(source=_scaled_uri(path, al, image_format)),
            go.Image(source=_grad_uri(grad, image_format)),
            go.Scatter(x=[al], y=[f_alpha]),
        ]))
        alpha_items.append(dict(method="animate", label=f"{al:g}", args=[[name], anim]))
    fig.frames = frames
    fig.update_layout(
        height=720, margin=dict(b=150),
        sliders=[
            dict(active=steps.index(n0), steps=step_items, x=0.0, len=0.48, y=-0.08, yanchor="top",
                 currentvalue=dict(prefix="n_steps: "), pad=dict(t=10)),
            dict(active=alphas.index(a0), steps=alpha_items, x=0.52, len=0.48, y=-0.08, yanchor="top",
                 currentvalue=dict(prefix="alpha: "), pad=dict(t=10)),
        ],
    )
    return fig


# ------------------------------------------------------------------ live (JupyterLab)
def _in_ipython() -> bool:
    try:
        from IPython.core.interactiveshell import InteractiveShell
    except ImportError:  # pragma: no cover - IPython ships with ipywidgets
        return False
    return InteractiveShell.initialized()


class IGExplorer:
    """The live explorer: sliders over ``n_steps`` and ``alpha`` above the figure.

    ``.widget`` is the ipywidgets box (the object displays as it in a notebook);
    ``.figure`` the current plotly figure, rebuilt whenever a slider moves. IG is
    computed once per step count (:class:`IGPath` caches it), so going back is free
    and the delta curve shows every step count visited so far.
    """

    def __init__(self, path: IGPath, *, n_steps: int = 8, alpha: float = 0.5, max_steps: int = 256,
                 warm_steps: Sequence[int] = (), title: str | None = None) -> None:
        import ipywidgets as widgets

        self.path = path
        self.title = title
        for n in warm_steps:
            path.ig(n)
        path.curve()
        self.steps_slider = widgets.IntSlider(value=int(n_steps), min=1, max=int(max_steps), step=1,
                                              description="n_steps", continuous_update=False)
        self.alpha_slider = widgets.FloatSlider(value=float(alpha), min=0.0, max=1.0, step=0.01,
                                                description="alpha", continuous_update=False)
        # the box fills the output area, whatever its width; its children stretch to it (a width
        # of 100% plus their margins would overflow it), the sliders wrap when it is narrow
        self.status = widgets.HTML()
        self.output = widgets.Output()
        self.widget: ipywidgets.VBox = widgets.VBox(
            [widgets.HBox([self.steps_slider, self.alpha_slider], layout=widgets.Layout(flex_flow="row wrap")),
             self.status, self.output], layout=widgets.Layout(width="100%"))
        self.figure: go.Figure | None = None
        self.steps_slider.observe(self._on_change, names="value")
        self.alpha_slider.observe(self._on_change, names="value")
        self.refresh()

    def _on_change(self, change: dict[str, Any]) -> None:
        self.refresh()

    def refresh(self) -> go.Figure:
        """Recompute what the sliders ask for (cached) and redraw."""
        n, a = int(self.steps_slider.value), float(self.alpha_slider.value)
        self.status.value = f"computing IG with {n} steps ..." if n not in self.path.cached_steps() else ""
        p = _panels(self.path, n, a)
        self.figure = _base_figure(self.path, p, self.path.cached_steps(), self.title)
        self.status.value = (f"<b>target class {self.path.target}</b>, F(x) = {self.path.f_x:.4g}, "
                             f"F(b) = {self.path.f_b:.4g}; {self.path.delta_text(n)}; "
                             f"cached step counts: {self.path.cached_steps()}")
        if _in_ipython():
            from IPython.display import clear_output, display

            with self.output:
                clear_output(wait=True)
                display(self.figure)  # JupyterLab's plotly renderer resizes it with the output area
        return self.figure

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def ig_explorer(
    model: nn.Module,
    x: Tensor,
    *,
    target: int | None = None,
    baseline: BaselineName | Tensor = "black",
    n_steps: int = 8,
    alpha: float = 0.5,
    max_steps: int = 256,
    warm_steps: Sequence[int] = (),
    denormalize: Callable[[Tensor], Tensor] | None = None,
    title: str | None = None,
    **path_kwargs: Any,
) -> IGExplorer:
    """The live IG-steps explorer for one normalised image ``x`` (display the result).

    ``warm_steps``: step counts computed up front, so the delta curve shows its fall
    from the start. Extra keyword arguments go to :class:`IGPath`.
    """
    path = IGPath(model, x, target=target, baseline=baseline, denormalize=denormalize, **path_kwargs)
    return IGExplorer(path, n_steps=n_steps, alpha=alpha, max_steps=max_steps, warm_steps=warm_steps,
                      title=title)


def integration_alphas(integration: str, n_steps: int) -> list[float]:
    """Where on the path ``b + alpha (x - b)`` IG evaluates the gradient, for Captum's
    approximation ``method`` names: the Riemann rules on ``n_steps`` even intervals, or
    the Gauss-Legendre nodes mapped from [-1, 1] to [0, 1]. Captum computes the same
    points internally; its helper for them is not public API, so the rules are written
    out here and tested against their definitions."""
    n = int(n_steps)
    if n < 1:
        raise ValueError(f"n_steps must be at least 1, got {n_steps}")
    if integration == "gausslegendre":
        nodes, _ = np.polynomial.legendre.leggauss(n)
        return [float(a) for a in 0.5 * (nodes + 1.0)]
    if integration == "riemann_trapezoid":
        return [float(a) for a in np.linspace(0.0, 1.0, n)] if n > 1 else [0.0]
    offset = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}.get(integration)
    if offset is None:
        raise ValueError(f"unknown integration method {integration!r}")
    return [(i + offset) / n for i in range(n)]
