"""What the benchmarks say about the machine they ran on (shared by the bench_* scripts)."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

__all__ = ["cpu_name", "cpu_capabilities"]


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one (platform.processor() is often empty)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_capabilities() -> str:
    """The instruction sets torch's CPU kernels care about: ``avx2=True, ..., amx_tile=False``."""
    names = ("_is_avx2_supported", "_is_avx512_supported", "_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return ", ".join(f"{n[4:-10]}={getattr(torch.cpu, n)()}" for n in names if hasattr(torch.cpu, n))
