"""What the command line imports: ``cervix --help`` and each ``cervix <command> --help``
must answer without torch or Captum (the parser reads only :mod:`cervixlib.config`),
checked in fresh interpreters through ``sys.modules``, not by timing them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

HEAVY = ("torch", "torchvision", "captum", "scipy", "sklearn", "matplotlib", "plotly", "papermill", "ray")
COMMANDS = ("synth", "info", "train", "plan", "evaluate", "compare", "explain", "book")


def _imports_of(argv: list[str]) -> tuple[list[str], str]:
    """The heavy modules a fresh interpreter holds after ``cervix ARGV``, and what it printed."""
    code = textwrap.dedent(f"""
        import sys
        from cervixlib.cli import main
        try:
            main({argv!r})
        except SystemExit:
            pass
        print("HEAVY", *sorted(m for m in {HEAVY!r} if m in sys.modules))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    last = res.stdout.strip().splitlines()[-1].split()
    assert last[0] == "HEAVY", res.stdout
    return last[1:], res.stdout


def test_cervix_help_imports_neither_torch_nor_captum():
    heavy, out = _imports_of(["--help"])
    assert heavy == [], heavy
    for command in COMMANDS:  # the help lists every command: the test covers them all
        assert command in out


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_help_imports_neither_torch_nor_captum(command):
    heavy, out = _imports_of([command, "--help"])
    assert heavy == [], (command, heavy)
    assert f"usage: cervix {command}" in out


def test_explain_help_lists_the_library_choices():
    from cervixlib.config import ATTRIBUTION_METHODS, BASELINES
    from cervixlib.explain import attributions, baselines

    assert attributions.METHODS == ATTRIBUTION_METHODS and baselines.BASELINES == BASELINES  # one list each
    _, out = _imports_of(["explain", "--help"])
    assert all(name in out for name in BASELINES + ATTRIBUTION_METHODS)


def test_cervix_info_reads_a_dataset_without_torch(synth_root):
    heavy, out = _imports_of(["info", str(synth_root)])
    assert "torch" not in heavy and "captum" not in heavy, heavy
    assert "Problems" in out  # it did read and describe the set
