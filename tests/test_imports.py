"""The import graph of cervixlib: which modules take part in an import cycle.

Read from the source with :mod:`ast`, not by importing anything, so the check sees the
imports inside functions too (a cycle hidden in a function is still a cycle: it only
waits for the call). A light module (:mod:`cervixlib.config`, :mod:`cervixlib.layout`)
must stay out of every cycle, so that the command-line parser and the configurations
never import the data layer, or torch, to read a name.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "cervixlib"
#: Modules that must take part in no import cycle.
ACYCLIC = ("cervixlib.config", "cervixlib.layout")


def module_names(src: Path, package: str = PACKAGE) -> dict[str, Path]:
    """``{dotted module name: file}`` of every module of ``package`` under ``src``; a
    package's ``__init__.py`` is the package itself (``cervixlib.data``)."""
    names = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _type_checking_blocks(tree: ast.Module) -> set[int]:
    """``id`` of every node under an ``if TYPE_CHECKING:`` (never executed)."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skipped


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool,
              modules: dict[str, Path]) -> Iterator[str]:
    """The modules of ``modules`` that one import statement of ``module`` depends on.

    ``import a.b.c``: the longest known module among ``a.b.c``, ``a.b``, ``a``.
    ``from a.b import c``: ``a.b.c`` when that is a module, else ``a.b`` (relative forms
    resolved against ``module``'s package).
    """
    if isinstance(node, ast.Import):
        for alias in node.names:
            parts = alias.name.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            if parts:
                yield ".".join(parts)
        return
    base = node.module or ""
    if node.level:
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, *([base] if base else [])])
    for alias in node.names:
        child = f"{base}.{alias.name}"
        if child in modules:
            yield child
        elif base in modules:
            yield base


def import_graph(src: Path = SRC, *, type_checking: bool = False, parents: bool = False) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``, from every import statement at
    module level and inside functions and classes; imports under ``if TYPE_CHECKING:``
    only with ``type_checking=True`` (they never run).

    ``parents=True`` adds what Python runs first: importing ``a.b.c`` runs the package
    ``a.b``'s ``__init__``, so it counts as a dependency on ``a.b`` too (not for a module
    inside ``a.b``, whose package is already importing).
    """
    modules = module_names(src)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        skipped = set() if type_checking else _type_checking_blocks(tree)
        is_package = path.name == "__init__.py"
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skipped:
                deps.update(_imported(node, name, is_package, modules))
        if parents:
            own = _ancestors(name) | {name}
            deps |= {p for d in deps for p in _ancestors(d) if p in modules and p not in own}
        deps.discard(name)
        graph[name] = deps
    return graph


def _ancestors(module: str) -> set[str]:
    """``{"a", "a.b"}`` for ``"a.b.c"``."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def import_cycles(src: Path = SRC, *, type_checking: bool = False, parents: bool = False) -> list[list[str]]:
    """Every elementary import cycle of :func:`import_graph`, each as ``[m0, m1, ..., m0]``.

    A cycle starts at its alphabetically first module; the list is sorted. Found by a
    depth-first search from each module through larger-named modules only, so each cycle
    is reported once.
    """
    graph = import_graph(src, type_checking=type_checking, parents=parents)
    cycles = []
    for start in sorted(graph):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    cycles.append([*path, start])
                elif nxt > start and nxt not in path:
                    stack.append((nxt, [*path, nxt]))
    return sorted(cycles)


def test_the_checker_finds_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from cervixlib.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("from . import b\n")
    (pkg / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\nimport cervixlib.c\n"
                                      "if TYPE_CHECKING:\n    from cervixlib.a import f\n")
    (pkg / "c.py").write_text("from cervixlib import a\nfrom cervixlib.sub import thing\n")
    assert import_graph(tmp_path) == {"cervixlib": set(), "cervixlib.a": {"cervixlib.sub.b"},
                                      "cervixlib.c": {"cervixlib.a", "cervixlib.sub"},
                                      "cervixlib.sub": {"cervixlib.sub.b"}, "cervixlib.sub.b": {"cervixlib.c"}}
    both = [["cervixlib.a", "cervixlib.sub.b", "cervixlib.c", "cervixlib.a"],
            ["cervixlib.c", "cervixlib.sub", "cervixlib.sub.b", "cervixlib.c"]]
    assert import_cycles(tmp_path) == both
    assert import_cycles(tmp_path, type_checking=True) == [["cervixlib.a", "cervixlib.sub.b", "cervixlib.a"], *both]
    # a imports sub.b, which runs sub's __init__ first: a cycle a -> sub -> a only with parents=True
    (pkg / "c.py").write_text("")
    (pkg / "sub" / "b.py").write_text("import cervixlib.a\n")
    (pkg / "sub" / "__init__.py").write_text("from cervixlib import a\n")
    assert import_cycles(tmp_path) == [["cervixlib.a", "cervixlib.sub.b", "cervixlib.a"]]
    assert ["cervixlib.a", "cervixlib.sub", "cervixlib.a"] in import_cycles(tmp_path, parents=True)


@pytest.mark.parametrize("module", ACYCLIC)
def test_light_modules_take_part_in_no_import_cycle(module):
    assert module in import_graph()
    assert [c for c in import_cycles(parents=True, type_checking=True) if module in c] == []


def test_config_imports_neither_the_data_layer_nor_torch():
    """Checked in a fresh interpreter, past the package's ``__init__`` (which prepares
    torchvision, hence imports torch, whatever submodule is asked for)."""
    code = ("import sys, types\n"
            f"pkg = types.ModuleType('cervixlib'); pkg.__path__ = [{str(SRC / PACKAGE)!r}]\n"
            "sys.modules['cervixlib'] = pkg\n"
            "import cervixlib.config, cervixlib.layout\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('cervixlib.')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['cervixlib.config', 'cervixlib.facts', 'cervixlib.layout']"


def test_the_data_layer_keeps_the_one_default_subset_rule():
    from cervixlib import data, layout

    assert data.default_subset is layout.default_subset


def test_the_package_has_no_import_cycle():
    """Every import that runs, at module level or in a function, with the package
    ``__init__`` it runs first; and, apart, every import a type checker reads."""
    assert import_cycles(parents=True) == []
    assert import_cycles(type_checking=True) == []
