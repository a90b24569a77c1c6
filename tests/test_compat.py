"""The torchvision-on-CPU-torch fix in cervixlib._compat, checked in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)


def test_import_cervixlib_then_torchvision_works():
    res = _run("""
        import cervixlib, torchvision
        from cervixlib import _compat
        m = torchvision.models.resnet18(num_classes=3)
        print("loaded" if _compat.TORCHVISION_EXTENSION_LOADED else "fallback")
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() in {"loaded", "fallback"}


def test_fix_acts_only_when_the_extension_did_not_load():
    # Where the extension loads, torchvision registers the real ops and we define nothing;
    # where it does not, our schemas exist but have no kernel. Either way, the state is consistent.
    res = _run("""
        import torch, cervixlib, torchvision
        from cervixlib import _compat
        loaded = _compat.TORCHVISION_EXTENSION_LOADED
        print(loaded, _compat._library is None)
    """)
    assert res.returncode == 0, res.stderr
    loaded, no_lib = res.stdout.split()
    assert (loaded == "True") == (no_lib == "True")


def test_import_cervixlib_imports_no_torch_until_torchvision_is_imported():
    # The fix waits for the first torchvision import (a finder on sys.meta_path), so that
    # the package and its command line start without torch.
    res = _run("""
        import sys, cervixlib
        from cervixlib import _compat
        before = "torch" in sys.modules, _compat.TORCHVISION_EXTENSION_LOADED
        from torchvision import models
        print(before, _compat.TORCHVISION_EXTENSION_LOADED is not None, _compat._TorchvisionHook in sys.meta_path)
    """)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["(False,", "None)", "True", "False"]


def test_without_the_fix_torchvision_fails_here_or_loads_its_extension():
    # Documents why the fix exists: on a CPU torch with the CUDA torchvision wheel, a bare
    # import dies with "operator torchvision::nms does not exist".
    res = _run("import torchvision; print(torchvision.extension._has_ops())")
    if res.returncode == 0:
        assert res.stdout.strip() == "True"
    else:
        assert "torchvision::nms does not exist" in res.stderr


def test_ensure_torchvision_is_idempotent_after_torchvision_import():
    res = _run("""
        import cervixlib, torchvision
        from cervixlib import ensure_torchvision
        a = ensure_torchvision(); b = ensure_torchvision()
        assert a == b
        print("ok")
    """)
    assert res.returncode == 0, res.stderr
