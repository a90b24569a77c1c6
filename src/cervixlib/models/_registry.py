"""Model registry: architectures chosen by name, as notebooks and the CLI do.

Builders register themselves with :func:`register_model`; :func:`create_model` calls
them with ``num_classes``, ``weights`` and any builder-specific keyword arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pathlib import Path

    from cervixlib.models._base import CervixModel

__all__ = ["register_model", "create_model", "list_models", "is_model"]

_F = TypeVar("_F", bound=Callable[..., "CervixModel"])
_MODELS: dict[str, Callable[..., CervixModel]] = {}


def register_model(fn: _F) -> _F:
    """Decorator: register a builder under its function name."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    _MODELS[name] = fn
    return fn


def list_models(*, graphs: bool = False) -> list[str]:
    """Names accepted by :func:`create_model`, sorted: the image models (CNNs), and with
    ``graphs=True`` also the graph models (:data:`cervixlib.graphs.GRAPH_MODELS`), which
    read cell graphs instead of images."""
    from cervixlib.graphs import GRAPH_MODELS

    return sorted(n for n in _MODELS if graphs or n not in GRAPH_MODELS)


def is_model(name: str) -> bool:
    """Whether ``name`` is a registered architecture."""
    return name in _MODELS


def create_model(
    name: str,
    *,
    num_classes: int = 5,
    weights: str | Path | None = None,
    **kwargs: Any,
) -> CervixModel:
    """Build the architecture ``name`` (see :func:`list_models`).

    Args:
        name: ``"resnet50"``, ``"densenet121"``, ``"ran_resnet50"``,
            ``"rcan_densenet121"``, the released designs ``"ran92"`` and
            ``"rcan_densenet121_released"``, or a graph model (``"cell_graph_gat"``,
            ``"cell_graph_gat_no_edges"``, ``"cell_graph_gin"``, ``"cell_graph_gat_cnn"``; see :mod:`cervixlib.models.cell_graph`).
        num_classes: size of the new classifier head (SIPaKMeD: 5).
        weights: ``None`` (random init, the default: nothing is downloaded),
            ``"imagenet"`` (torchvision's ImageNet weights for the backbone, read from
            the torch hub cache, downloaded there first if absent; ``ran92`` has none),
            or a path to such a file. Attention layers and the head always start fresh.
            See :mod:`cervixlib.models.weights`.
        **kwargs: builder options, e.g. ``mask_depths`` for ``ran_resnet50``.
    """
    try:
        builder = _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {list_models(graphs=True)}") from None
    return builder(num_classes=num_classes, weights=weights, **kwargs)
