"""Make torchvision importable next to a CPU-only torch. The one place we do this.

Why: the torchvision 0.28.0 wheel on the package index is built against CUDA torch.
Next to the CPU build of torch 2.13.0 its C extension (``torchvision/_C*.so``) fails
to load, silently, and ``import torchvision`` then dies in
``torchvision/_meta_registrations.py`` with
``RuntimeError: operator torchvision::nms does not exist``: it registers fake kernels
for ``torchvision::nms`` and ``torchvision::qnms`` whose schemas only the extension
defines.

When: importing cervixlib installs :func:`install_import_hook`, a finder that runs
:func:`ensure_torchvision` the moment anything first imports torchvision, so that
``import cervixlib`` itself stays light (no torch: ``cervix --help`` imports none).

What: before torchvision is first imported, try to load the extension exactly as
torchvision would. If it loads (an ordinary machine, a matching CUDA pair), do
nothing. If it does not, define the two schemas ourselves, so torchvision imports and
everything but its custom C++ ops (detection NMS, RoI ops, deformable conv) works;
those raise torch's own "no kernel" error if called. cervixlib uses none of them, and
reads images with PIL because torchvision's decoders live in the same extension.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

__all__ = ["ensure_torchvision", "install_import_hook", "TORCHVISION_EXTENSION_LOADED"]

_log = logging.getLogger(__name__)

# Schemas as torchvision's csrc/ops defines them; only these two are registered with
# ``register_fake`` unconditionally at import time.
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library = None  # keeps the torch.library.Library alive (its ops die with it)
TORCHVISION_EXTENSION_LOADED: bool | None = None


def _extension_path() -> Path | None:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    pkg = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(pkg.glob("_C*.so")) + sorted(pkg.glob("_C*.pyd"))
    return found[0] if found else None


def ensure_torchvision() -> bool:
    """Ensure ``import torchvision`` works; return whether its C extension loaded.

    Idempotent. Acts only when torchvision is not imported yet and its extension
    cannot be loaded.
    """
    global _library, TORCHVISION_EXTENSION_LOADED
    if TORCHVISION_EXTENSION_LOADED is not None:
        return TORCHVISION_EXTENSION_LOADED
    import torch

    if "torchvision" in sys.modules:  # imported before us: nothing left to fix
        TORCHVISION_EXTENSION_LOADED = bool(sys.modules["torchvision"].extension._has_ops())
        return TORCHVISION_EXTENSION_LOADED
    path = _extension_path()
    loaded = False
    if path is not None:
        try:
            torch.ops.load_library(str(path))
            loaded = True
        except (OSError, ImportError) as exc:
            _log.debug("torchvision extension %s did not load: %s", path, exc)
    if not loaded and not hasattr(torch.ops.torchvision, "nms"):
        _library = torch.library.Library("torchvision", "DEF")  # noqa: TOR901
        for schema in _SCHEMAS:
            _library.define(schema)
        _log.debug("torchvision C extension unavailable (CPU torch with a CUDA torchvision wheel); "
                  "defined op schemas so that torchvision imports")
    TORCHVISION_EXTENSION_LOADED = loaded
    return loaded


class _TorchvisionHook:
    """A :data:`sys.meta_path` finder that only watches for the first ``import torchvision``.

    It finds nothing itself: it removes itself, makes torchvision importable
    (:func:`ensure_torchvision`), and lets the ordinary finders do the import.
    """

    @classmethod
    def find_spec(cls, name: str, path: object = None, target: object = None) -> None:
        if name == "torchvision":
            _remove_hook()
            ensure_torchvision()
        return None


def _remove_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if f is not _TorchvisionHook]


def install_import_hook() -> None:
    """Run :func:`ensure_torchvision` on the first ``import torchvision`` (now, if it is imported already)."""
    if "torchvision" in sys.modules:
        ensure_torchvision()
    elif _TorchvisionHook not in sys.meta_path:
        sys.meta_path.insert(0, _TorchvisionHook)
