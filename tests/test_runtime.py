"""Runtime choices shared by training and explanation: precision on the CPU."""

from __future__ import annotations

import pytest
import torch

from cervixlib import runtime


@pytest.mark.parametrize("cap", ["AVX2", "avx512_core", "SSE41"])
def test_a_onednn_isa_cap_below_bf16_means_fp32(monkeypatch, cap):
    # how the benchmarks make a bf16-capable CPU compute like an AVX2-only one
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert runtime.resolve_precision("auto", torch.device("cpu")) == "fp32"


def test_native_bf16_is_used_when_no_cap_forbids_it(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert runtime.resolve_precision("auto", torch.device("cpu")) == "bf16"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert runtime.resolve_precision("auto", torch.device("cpu")) == "bf16"
