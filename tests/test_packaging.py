"""Packaging facts: environment.yml agrees with pyproject.toml, pins hold, the CLI is installed."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_deps() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_name(r): r.replace(" ", "") for r in project["dependencies"]}


def _environment_pip_deps() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {_name(r): r.replace(" ", "") for r in pip if not r.startswith("-e")}


def test_environment_yml_matches_pyproject():
    assert _environment_pip_deps() == _pyproject_deps()


def test_pins_agree_with_constraints():
    # pyproject.toml has ranges (a GPU user's torch stays); constraints.txt the exact pins of `make`
    from packaging.requirements import Requirement

    deps = _pyproject_deps()
    constraints = {_name(line): line.strip() for line in (ROOT / "constraints.txt").read_text().splitlines()
                   if line.strip() and not line.startswith("#")}
    for name in ("torch", "torchvision", "jupyter-book"):
        pinned = constraints[name].split("==")[1]
        assert Requirement(deps[name]).specifier.contains(pinned), (deps[name], pinned)
    assert Requirement(deps["torch"]).specifier.contains("2.11.0")  # what the GPU check ran on
    assert not Requirement(deps["jupyter-book"]).specifier.contains("2.0.0")
    assert constraints["torch"] == "torch==2.13.0"
    assert constraints["torchvision"] == "torchvision==0.28.0"
    assert constraints["jupyter-book"] == "jupyter-book==1.0.4.post1"


def test_requires_python_and_console_script():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.10"
    assert project["scripts"]["cervix"] == "cervixlib.cli:main"
    exe = Path(sys.executable).with_name("cervix")
    cervix = str(exe) if exe.exists() else shutil.which("cervix")
    assert cervix, "the cervix console script is not installed"
    out = subprocess.run([cervix, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("synth", "info", "train", "evaluate", "compare"):
        assert command in out


def test_readme_commands_are_the_makefile_targets():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```")[1]
    assert "make book" in first_block and "make test" in first_block
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def _third_party_imports() -> set[str]:
    """Top-level modules imported anywhere in src/cervixlib that are not stdlib or ours."""
    names: set[str] = set()
    for path in (ROOT / "src" / "cervixlib").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("cervixlib", "__future__")}


def test_every_direct_import_is_declared_or_comes_with_a_declared_dependency():
    """A module we import must belong to a declared distribution, or to one that the declared
    ones pull in (e.g. sphinx through jupyter-book): never to a package that only happens to be
    installed here."""
    from importlib import metadata

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    declared = set(_pyproject_deps()) | {_name(r) for r in extras["ray"]}  # ray: the parallel plan's extra
    provided, todo = set(declared), list(declared)
    while todo:  # the installed closure of what we declare (extras left out)
        try:
            reqs = metadata.requires(todo.pop()) or []
        except metadata.PackageNotFoundError:
            continue
        for req in reqs:
            name = _name(req)
            if "extra ==" not in req and name not in provided:
                provided.add(name)
                todo.append(name)
    owners = metadata.packages_distributions()
    unexplained = {}
    for module in _third_party_imports():
        dists = {_name(d) for d in owners.get(module, [])}
        assert dists, f"{module} is imported by cervixlib but not installed"
        if not dists & provided:
            unexplained[module] = sorted(dists)
    assert not unexplained, f"imported but not declared in pyproject.toml: {unexplained}"
    # what we call directly should be declared directly, not only arrive through another package
    for module, dist in (("numpy", "numpy"), ("scipy", "scipy"), ("matplotlib", "matplotlib"), ("yaml", "pyyaml"),
                         ("filelock", "filelock")):
        if module in _third_party_imports():
            assert dist in declared, f"{module} is imported directly; declare {dist} in pyproject.toml"


def test_captum_has_a_tested_upper_bound():
    # cervixlib.explain uses Captum's public API only; a release past the bound is untested
    from importlib.metadata import version

    from packaging.requirements import Requirement

    spec = Requirement(_pyproject_deps()["captum"]).specifier
    assert any(s.operator == "<" for s in spec), spec
    assert version("captum") in spec
