"""Measured training throughput, for the run plan's time estimates (no torch).

``cervix plan`` estimates a run's time from, in this order: the run store's own runs on
this device (:func:`cervixlib.plan.store_throughput`, "measured on this device"), a table
the user measured on their own card (``benchmarks/bench_throughput.py --out FILE``, read by
``cervix plan --throughput FILE``), or the built-in table that has figures for the most of
the plan's runs (:func:`best_table`): :data:`H200`, the project's own figures at the paper's
settings (Wang et al. 2021: batch 16; 224 px inputs), or :data:`CPU_2CORE`, a 2-core CPU at
the default profile's 64 px. A projection is labelled as one, never as this machine's time.

A table holds images a second of one training run per model (optionally per subset: the
multi-cell images' large files slow the loader), GPU memory per run where measured, and how
much faster ``runs_at_once`` runs share one card (:data:`cervixlib.parallel.RUNS_PER_GPU`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BUILT_IN", "CPU_2CORE", "H200", "ModelThroughput", "ThroughputTable", "best_table", "load_throughput"]


@dataclass(frozen=True)
class ModelThroughput:
    """One model's training throughput at the table's batch size and image size.

    ``images_per_s``: one run alone, per subset (``"any"``: every subset); ``memory_mib``: the
    GPU memory one run took (``None``: not measured); ``projected``: how a figure that was not
    measured was derived (``""``: measured).
    """

    images_per_s: Mapping[str, float]
    memory_mib: float | None = None
    projected: str = ""

    def rate(self, subset: str) -> float | None:
        """Images a second on ``subset`` (its own figure, else the one for any subset)."""
        return self.images_per_s.get(subset, self.images_per_s.get("any"))


@dataclass(frozen=True)
class ThroughputTable:
    """Throughput of each model on one device, at ``batch_size`` and ``image_size``.

    ``runs_at_once`` runs sharing one card train ``speedup`` times the images a second of
    one run (3.0 for four on an H200). ``gpu``: the device is a GPU (the plan then projects
    onto N of them, and names the GPU memory a run takes).
    """

    device: str
    date: str
    batch_size: int
    image_size: int
    models: Mapping[str, ModelThroughput]
    runs_at_once: int = 1
    speedup: float = 1.0
    source: str = ""
    precision: str = field(default="auto")
    gpu: bool = True

    def rate(self, model: str, image_size: int, batch_size: int, subset: str) -> float | None:
        """Images a second of one ``model`` run, or ``None`` where the table has no figure for
        these settings (another image size or batch is not projected)."""
        if (image_size, batch_size) != (self.image_size, self.batch_size) or model not in self.models:
            return None
        return self.models[model].rate(subset)

    def label(self) -> str:
        """Where the figures come from, for the plan's estimate line."""
        return (f"projected from {self.device} measurements ({self.date}, batch {self.batch_size}, "
                f"{self.image_size} px)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> ThroughputTable:
        models = {name: ModelThroughput(**m) for name, m in dict(payload["models"]).items()}
        return cls(**{**payload, "models": models})


def load_throughput(path: str | os.PathLike[str]) -> ThroughputTable:
    """The table written by ``benchmarks/bench_throughput.py --out FILE``; a file that is not
    one raises :class:`ValueError` in one line naming it."""
    try:
        table = ThroughputTable.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the throughput file ({exc.strerror or exc})") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a throughput table of benchmarks/bench_throughput.py ({exc})") from None
    if not table.models or any(not m.images_per_s or min(m.images_per_s.values()) <= 0
                               for m in table.models.values()):
        raise ValueError(f"{path}: a throughput table needs a positive images-a-second figure for each model")
    return table


def best_table(keys: Iterable[tuple[str, int, int, str]], tables: Sequence[ThroughputTable] | None = None
               ) -> ThroughputTable:
    """The table of ``tables`` (default :data:`BUILT_IN`) with a figure for the most of ``keys``
    (model, image size, batch, subset); the first on a tie."""
    tables = BUILT_IN if tables is None else tables
    keys = list(keys)
    return max(tables, key=lambda t: sum(t.rate(*k) is not None for k in keys))


#: GMACs a forward pass of the models (benchmarks/models_results.md at 224 px, and
#: models_released_results.md at 128 px for ran92), for the projections below.
_GMACS_224 = {"resnet50": 4.09, "ran_resnet50": 5.45, "densenet121": 2.83, "rcan_densenet121": 3.28}
_RAN_GMAC_RATIO_128 = 1.78 / 3.44  # ran_resnet50 against ran92 (Attention-92), 128 px
_DENSENET = 197.0 * _GMACS_224["rcan_densenet121"] / _GMACS_224["densenet121"]
_MULTI_CAP = 430.0  # resnet50 on the multi-cell images: the loader, not the model, bounds it there

#: The project's own measurements on one NVIDIA H200 at the paper's settings (``fit`` processes,
#: batch 16, 224 px, 2026-12; benchmarks/RESULTS.md), with densenet121 and the released designs
#: projected from them by their forward GMACs (labelled in ``projected``). The figures other than
#: resnet50's were measured once, without a subset stated; on multi-cell images they are capped at
#: resnet50's rate there. GPU memory was not measured.
H200 = ThroughputTable(
    device="NVIDIA H200", date="2026-12", batch_size=16, image_size=224, runs_at_once=4, speedup=3.0,
    source="benchmarks/RESULTS.md",
    models={
        "resnet50": ModelThroughput({"isolated": 633.0, "multi": 430.0, "any": 633.0}),
        "ran_resnet50": ModelThroughput({"any": 285.0, "multi": min(285.0, _MULTI_CAP)}),
        "rcan_densenet121": ModelThroughput({"any": 197.0, "multi": min(197.0, _MULTI_CAP)}),
        "densenet121": ModelThroughput(
            {"any": round(_DENSENET), "multi": min(round(_DENSENET), _MULTI_CAP)},
            projected="rcan_densenet121's 197 img/s times their GMACs (3.28/2.83)"),
        "rcan_densenet121_released": ModelThroughput(
            {"any": round(_DENSENET), "multi": min(round(_DENSENET), _MULTI_CAP)},
            projected="densenet121's projection (one attention layer of 32 channels more)"),
        "ran92": ModelThroughput(
            {"any": round(285.0 * _RAN_GMAC_RATIO_128)},
            projected="ran_resnet50's 285 img/s times their GMACs (1.78/3.44 at 128 px)"),
    },
)

#: The default profile's runs (batch 16, 64 px) on a 2-core Intel Xeon with oneDNN capped to AVX2
#: (fp32: how an AVX2-only CPU computes), one run at a time on both cores, and two at once
#: (benchmarks/plan_results.md, 2026-12-04: resnet50 on multi-cell images 28.5 img/s; two at once
#: 1.18x). The other models are projected from resnet50's by their fp32 speeds at 128 px, one
#: thread (benchmarks/models_results.md and models_released_results.md).
_XEON = 28.5
CPU_2CORE = ThroughputTable(
    device="2-core Intel Xeon (fp32, AVX2 cap)", date="2026-12-04", batch_size=16, image_size=64,
    runs_at_once=2, speedup=1.18, source="benchmarks/plan_results.md", precision="fp32", gpu=False,
    models={
        "resnet50": ModelThroughput({"any": _XEON}),
        "ran_resnet50": ModelThroughput({"any": round(_XEON * 7.8 / 10.9, 1)},
                                        projected="resnet50's rate times their speeds at 128 px (7.8/10.9 img/s)"),
        "densenet121": ModelThroughput({"any": round(_XEON * 11.6 / 10.9, 1)},
                                       projected="resnet50's rate times their speeds at 128 px (11.6/10.9 img/s)"),
        "rcan_densenet121": ModelThroughput({"any": round(_XEON * 11.3 / 10.9, 1)},
                                            projected="resnet50's rate times their speeds at 128 px (11.3/10.9 img/s)"),
        "rcan_densenet121_released": ModelThroughput(
            {"any": round(_XEON * 9.6 / 8.4, 1)}, projected="resnet50's rate times their speeds at 128 px (9.6/8.4 img/s)"),
        "ran92": ModelThroughput({"any": round(_XEON * 2.9 / 8.4, 1)},
                                 projected="resnet50's rate times their speeds at 128 px (2.9/8.4 img/s)"),
    },
)

#: The tables ``cervix plan`` projects from without ``--throughput`` (:func:`best_table` picks one).
BUILT_IN: tuple[ThroughputTable, ...] = (H200, CPU_2CORE)
