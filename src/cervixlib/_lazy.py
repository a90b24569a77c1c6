"""A package's public names, each imported from its module on first use (PEP 562).

For packages whose modules pull in heavy dependencies that most importers never need:
reading a dataset's index without torch (:mod:`cervixlib.data`), a chapter's training cell
without nbformat and jsonschema (:mod:`cervixlib.book`), the graph registry without PyTorch
Geometric (:mod:`cervixlib.graphs`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, tuple[str, ...]]
                 ) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for ``package`` (its ``__name__``), whose names are
    ``exports``: ``{module: (name, ...)}``, modules relative to the package. A name is imported
    from its module on first use and then kept in the package's namespace."""
    module_of = {name: module for module, names in exports.items() for name in names}
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(module_of))

    return sorted(module_of), __getattr__, __dir__
