"""Pretrained backbone weights and checkpoint loading, with clear errors.

Wang et al. (2021), "Towards Interpretable Attention Networks for Cervical Cancer
Analysis", fine-tune ImageNet-pretrained backbones. ``weights="imagenet"`` reads
torchvision's ImageNet file for the backbone from the torch hub cache
(``torch.hub.get_dir()/checkpoints/<torchvision's file name>``); where it is absent, it
downloads it there as torchvision does (``torch.hub.load_state_dict_from_url``,
``check_hash=True``, the URL of torchvision's weights enum). With no network,
:class:`WeightsNotFoundError` says in one line which file to get from which URL and
where to put it. A path reads that file. ``weights=None`` never touches the network.
The attention layers and the classifier head are new and keep their fresh
initialisation.

:func:`load_checkpoint` restores a cervixlib model from its own state_dict and says
plainly when the checkpoint is for another architecture or another class count.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torchvision.models import get_weight

from cervixlib.config import IMAGENET_BACKBONES, IMAGENET_WEIGHTS

if TYPE_CHECKING:
    from cervixlib.models._base import CervixModel

__all__ = [
    "WeightsNotFoundError",
    "CheckpointError",
    "imagenet_weight_files",
    "resolve_weights",
    "prefetch_imagenet",
    "load_backbone_weights",
    "load_checkpoint",
]

_log = logging.getLogger(__name__)

# torchvision's ImageNet weights per backbone, in order of preference (IMAGENET1K_V1 is
# what `pretrained=True` gave in 2021, when the paper was written); the names live in
# cervixlib.config, which the pages' settings line reads without torch.
_IMAGENET = {arch: tuple(get_weight(name) for name in names) for arch, names in IMAGENET_WEIGHTS.items()}
# torchvision's DenseNet files predate its module names: "denselayer1.norm.1.weight"
# stands for "denselayer1.norm1.weight".
_OLD_DENSENET_KEY = re.compile(
    r"^(.*\.denselayer\d+\.(?:norm|relu|conv))\.([12])\."
    r"(weight|bias|running_mean|running_var|num_batches_tracked)$")


class WeightsNotFoundError(FileNotFoundError):
    """No weights file where ``weights=`` points, or ImageNet weights that are neither in
    the torch hub cache nor downloadable (or that do not exist for the design)."""


class CheckpointError(ValueError):
    """A weights file or checkpoint does not fit the model (architecture, classes)."""


def imagenet_weight_files(arch: str) -> list[tuple[str, Path]]:
    """(download URL, expected local path) of torchvision's ImageNet files for ``arch``."""
    if arch not in _IMAGENET:
        raise ValueError(f"no ImageNet weights known for backbone {arch!r}; "
                         f"known: {sorted(_IMAGENET)}")
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return [(w.url, folder / w.url.rsplit("/", 1)[-1]) for w in _IMAGENET[arch]]


def resolve_weights(arch: str, weights: str | Path | None) -> Path | None:
    """The file that ``weights`` names for backbone ``arch`` (None for no weights).

    ``"imagenet"``: torchvision's file in ``torch.hub.get_dir()/checkpoints``, downloaded
    there first if absent. A path: that file.

    Raises:
        WeightsNotFoundError: no such file and (for "imagenet") no download; the message
            names the file, the URL and the folder to put it in, on one line.
        CheckpointError: a downloaded file failed torchvision's hash check.
    """
    if weights is None:
        return None
    if isinstance(weights, str) and weights.lower() == "imagenet":
        files = imagenet_weight_files(arch)
        for _url, path in files:
            if path.is_file():
                return path
        return _download(arch, *files[0], looked=[p for _u, p in files])
    path = Path(weights).expanduser()
    if not path.is_file():
        _url, expected = imagenet_weight_files(arch)[0]
        raise WeightsNotFoundError(
            f"{path}: weights file not found (weights= takes None, 'imagenet', or the path "
            f"of a torchvision {arch} state_dict such as {expected.name})")
    return path


def prefetch_imagenet(models: Iterable[str]) -> dict[str, Path]:
    """``{backbone: file}``: the ImageNet file of each backbone that ``models`` (registry names)
    load with ``weights="imagenet"``, downloaded into the torch hub cache now if absent.

    A plan of many runs calls it before any run starts: without the files and a network it
    fails once, in one line (:class:`WeightsNotFoundError`), instead of once a run, and runs
    trained in parallel never download the same file at once. Models without ImageNet
    weights (``ran92``) are left to their builder's error.
    """
    arches = sorted({IMAGENET_BACKBONES[m] for m in models if m in IMAGENET_BACKBONES})
    return {arch: path for arch in arches if (path := resolve_weights(arch, "imagenet")) is not None}


def _download(arch: str, url: str, path: Path, *, looked: list[Path]) -> Path:
    """Fetch torchvision's file ``url`` into ``path`` as torchvision does (progress bar,
    SHA-256 prefix of the file name checked); one-line errors when that fails."""
    _log.info("ImageNet weights for %s not in %s: downloading %s", arch, path.parent, url)
    try:
        torch.hub.load_state_dict_from_url(
            url, model_dir=str(path.parent), map_location="cpu", progress=True,
            check_hash=True, file_name=path.name, weights_only=True)
    except OSError as exc:  # URLError, HTTPError, socket errors, an unwritable folder
        reason = str(getattr(exc, "reason", None) or exc).strip().splitlines()
        raise WeightsNotFoundError(
            f"no ImageNet weights for {arch} in the torch hub cache (looked for "
            f"{', '.join(str(p) for p in looked)}) and the download failed "
            f"({type(exc).__name__}: {reason[0] if reason else 'no reason given'}): "
            f"get {url} on a machine with internet and put {path.name} in {path.parent}/ "
            f"(torch.hub.get_dir()/checkpoints, moved by $TORCH_HOME), "
            f"or pass weights='/path/to/{path.name}'") from None
    except RuntimeError as exc:  # torch.hub's hash check
        if "hash" not in str(exc):
            raise
        path.unlink(missing_ok=True)
        raise CheckpointError(
            f"{url}: the downloaded file does not match its SHA-256 prefix; "
            f"download it again into {path.parent}/") from None
    if not path.is_file():  # pragma: no cover - torch.hub writes it or raises
        raise WeightsNotFoundError(f"{path}: not written by the download of {url}")
    return path


def _read(source: str | Path) -> Mapping[str, Any]:
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean: not a checkpoint
        text = str(exc).strip()
        reason = text.splitlines()[0].split(". ")[0] if text else ""  # first sentence
        raise CheckpointError(
            f"{source}: cannot read as a torch checkpoint ({type(exc).__name__}: {reason})"
        ) from None


def _as_state_dict(obj: Any, source: str) -> dict[str, Tensor]:
    """Accept a state_dict, or a dict holding one under "state_dict" or "model"."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        raise CheckpointError(f"{source}: not a state_dict (expected a mapping of names to "
                              f"tensors, got {type(obj).__name__})")
    state = dict(obj)
    if all(k.startswith("module.") for k in state):  # saved from nn.DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _key_diff(missing: set[str], unexpected: set[str], n: int = 3) -> str:
    """'12 keys missing, e.g. a, b, c, ...; 2 unexpected, e.g. x, y' (empty parts left out)."""
    parts = []
    for keys, what in ((missing, "missing"), (unexpected, "unexpected")):
        if keys:
            more = ", ..." if len(keys) > n else ""
            parts.append(f"{len(keys)} keys {what}, e.g. {', '.join(sorted(keys)[:n])}{more}")
    return "; ".join(parts)


def load_backbone_weights(model: CervixModel, arch: str, weights: str | Path | None) -> None:
    """Load torchvision ``arch`` weights named by ``weights`` into ``model``'s backbone.

    The file's classifier is dropped; the model's head and attention layers (module
    names starting with ``attn``) keep their initialisation. Records the file in
    ``model.weights_source``.

    Raises:
        WeightsNotFoundError: see :func:`resolve_weights`.
        CheckpointError: the file is unreadable or not a torchvision ``arch`` state_dict.
    """
    path = resolve_weights(arch, weights)
    if path is None:
        return
    state = _as_state_dict(_read(path), str(path))
    state = {_OLD_DENSENET_KEY.sub(r"\1\2.\3", k): v for k, v in state.items()}
    head = model._head_name + "."
    state = {k: v for k, v in state.items() if not k.startswith(head)}
    own = model.state_dict()
    backbone = {k for k in own if not k.startswith((head, "attn"))}
    unexpected, missing = set(state) - backbone, backbone - set(state)
    if unexpected or missing:
        raise CheckpointError(
            f"{path}: not a torchvision {arch} state_dict ({_key_diff(missing, unexpected)})")
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise CheckpointError(f"{path}: not a torchvision {arch} state_dict ({key} has "
                                  f"shape {tuple(value.shape)}, expected {tuple(own[key].shape)})")
    model.load_state_dict(state, strict=False)
    model.weights_source = str(path)


def _matching_architectures(keys: set[str]) -> list[str]:
    """Registered models whose state_dict has exactly these keys (built on 'meta')."""
    from cervixlib.models._registry import create_model, list_models

    found = []
    for name in list_models():
        try:
            with torch.device("meta"):
                ref = create_model(name)
        except Exception:  # a builder that cannot run on 'meta' just is not compared
            continue
        ref_keys = set(ref.state_dict())
        head = ref._head_name + "."
        if {k for k in ref_keys if not k.startswith(head)} == {
                k for k in keys if not k.startswith(head)}:
            found.append(name)
    return found


def load_checkpoint(
    model: CervixModel,
    state_dict_or_path: Mapping[str, Tensor] | str | Path,
) -> CervixModel:
    """Load a cervixlib checkpoint (a state_dict, or a file holding one) into ``model``.

    Returns the model. Raises :class:`CheckpointError` with a one-line message when the
    checkpoint belongs to another architecture (naming the one it fits, if any), has
    another number of classes, or is not a checkpoint at all.
    """
    if isinstance(state_dict_or_path, (str, Path)):
        source = str(state_dict_or_path)
        if not Path(source).is_file():
            raise WeightsNotFoundError(f"{source}: checkpoint file not found")
        obj: Any = _read(source)
    else:
        source, obj = "state_dict", state_dict_or_path
    state = _as_state_dict(obj, source)
    own = model.state_dict()
    missing, unexpected = set(own) - set(state), set(state) - set(own)
    if missing or unexpected:
        fits = _matching_architectures(set(state))
        hint = (f"; it fits {', '.join(repr(n) for n in fits)}" if fits
                else "; it fits no registered model with default options")
        raise CheckpointError(
            f"{source}: checkpoint is not for {model.model_name!r}{hint} "
            f"({_key_diff(missing, unexpected)})")
    head_weight = model._head_name + ".weight"
    if head_weight in state and state[head_weight].shape != own[head_weight].shape:
        n = state[head_weight].shape[0]
        raise CheckpointError(
            f"{source}: checkpoint has {n} classes but the model has {model.num_classes}; "
            f"build it with create_model({model.model_name!r}, num_classes={n})")
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise CheckpointError(
                f"{source}: checkpoint is not for this {model.model_name!r} configuration "
                f"({key} has shape {tuple(value.shape)}, the model {tuple(own[key].shape)})")
    model.load_state_dict(state)
    return model
