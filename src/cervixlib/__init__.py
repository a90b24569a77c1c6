"""cervixlib: reproduction of Wang et al. (2021), "Towards Interpretable Attention
Networks for Cervical Cancer Analysis", on SIPaKMeD Pap-smear images.

Importing the package imports no torch: it only arranges that torchvision, when first
imported, loads next to a CPU-only torch (see :mod:`cervixlib._compat`); submodules
are imported on demand.
"""

from __future__ import annotations

from cervixlib._compat import ensure_torchvision, install_import_hook

__all__ = ["__version__", "ensure_torchvision"]
__version__ = "0.1.0"

install_import_hook()
