"""Runtime choices shared by training and explanation: device, precision, memory format, seeds.

One owner for them, so that :mod:`cervixlib.train` and :mod:`cervixlib.explain` make the
same choice on the same machine. The rules, as measured on 2-core CPUs
(``benchmarks/bench_train.py``): CUDA, then Apple MPS, then the CPU; bf16 autocast only
where it is native (CUDA with bf16, a CPU with AVX512-BF16 or AMX), since emulated bf16
ran about ten times slower than fp32 on an AVX2-only CPU; channels_last on the CPU and
CUDA.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "autocast",
    "available_cpus",
    "device_name",
    "eval_mode",
    "loader_workers",
    "memory_format_for",
    "resolve_precision",
    "select_device",
    "set_seed",
]

_log = logging.getLogger(__name__)


def select_device(prefer: str | torch.device | None = None) -> torch.device:
    """CUDA if present, then Apple MPS, then the CPU (or ``prefer`` when given)."""
    if prefer is not None:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


#: oneDNN ISA caps (``ONEDNN_MAX_CPU_ISA``) under which its kernels have no native bf16.
_ISAS_WITHOUT_BF16 = frozenset({"sse41", "avx", "avx2", "avx2_vnni", "avx512_core", "avx512_core_vnni"})


def _cpu_has_native_bf16() -> bool:
    """True where the CPU has AVX512-BF16 or AMX and oneDNN is allowed to use them.

    ``ONEDNN_MAX_CPU_ISA=AVX2`` (with ``ATEN_CPU_CAPABILITY=avx2``) makes a newer CPU
    compute like an AVX2-only one, which is how the benchmarks time the slow case.
    """
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").lower()
    if cap in _ISAS_WITHOUT_BF16:
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn ``auto`` into ``bf16`` or ``fp32`` for this device; downgrade an unsupported ``bf16``."""
    if precision == "fp32":
        return "fp32"
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
    elif device.type == "cpu":
        supported = _cpu_has_native_bf16()
    else:
        supported = False
    if precision == "bf16" and not supported:
        _log.warning("bf16 requested but %s has no native bf16; training in fp32", device)
    return "bf16" if supported else "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on ``device`` when ``precision == 'bf16'``, else a no-op."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format_for(device: torch.device) -> torch.memory_format:
    """channels_last on the CPU and CUDA, the default layout elsewhere (MPS).

    oneDNN's CPU convolutions run channels_last natively: with bf16 it is part of the
    fast path, and in fp32 on an AVX2-only CPU it measured 0.97-1.21x (about 1.07x on
    average) over the default layout across the four models at 96 and 224 px. CUDA
    tensor cores prefer it too.
    """
    return torch.channels_last if device.type in ("cpu", "cuda") else torch.contiguous_format


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch so that a CPU run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put the model in eval mode (BatchNorm, dropout) and restore its modes afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.train(training)


def available_cpus() -> int:
    """The cores this process may use: its CPU affinity, else ``os.cpu_count()``.

    A run of a parallel plan is pinned to its share by :mod:`cervixlib.parallel`
    (``CERVIX_CPUS``), so that several runs on one machine do not each take every core.
    """
    share = os.environ.get("CERVIX_CPUS")
    if share and share.isdigit() and int(share) > 0:
        return int(share)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


#: Most loader workers one run starts: past this many, a run's batches of 16 at 224 px were
#: not prepared faster, and each worker holds a copy of the interpreter.
MAX_LOADER_WORKERS = 8


def loader_workers(cpus: int | None = None) -> int:
    """DataLoader workers for a CUDA run: its cores (``cpus``, default :func:`available_cpus`)
    less one for the training loop, at least 1 and at most :data:`MAX_LOADER_WORKERS`."""
    cpus = available_cpus() if cpus is None else cpus
    return max(1, min(MAX_LOADER_WORKERS, cpus - 1))


def device_name(device: torch.device | str | None = None) -> str:
    """The device by name: the GPU's (``torch.cuda.get_device_name``), else ``"CPU <model name>"``.

    Runs record it (``info["device_name"]``), so that times are estimated, and compared,
    only between runs of the same device.
    """
    device = select_device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type != "cpu":
        return device.type
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return f"CPU {line.split(':', 1)[1].strip()}"
    except OSError:
        pass
    import platform

    return f"CPU {platform.processor() or platform.machine()}"
