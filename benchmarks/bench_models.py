"""Training throughput of the four architectures on the CPU (cervixlib issue 3).

Wang et al. (2021), "Towards Interpretable Attention Networks for Cervical Cancer
Analysis", compare ResNet-50, DenseNet-121 and their attention variants; this measures
what the attention costs in training speed. For each model, input size and setting
(fp32; bf16 autocast with channels_last) it times full training steps (forward,
cross-entropy, backward, Adam step) on a random batch after warm-up steps, round-robin
(one step of every configuration per round, so all see the same load of a shared
machine), and reports the fastest step as images per second (as timeit does: on a
shared machine the slower steps measure the other processes), with the ratios
bf16+CL / fp32 and attention variant / backbone in the same setting. It also counts the
forward multiply-accumulates of convolutions and linear layers (exact, load-free).

    .venv/bin/python benchmarks/bench_models.py            # the table -> models_results.md
    .venv/bin/python benchmarks/bench_models.py --quick    # 128 px, 2 timed steps
    .venv/bin/python benchmarks/bench_models.py --design   # attention design candidates
                                                           #   -> models_design.md
    .venv/bin/python benchmarks/bench_models.py --static   # parameters and GMACs only

On a shared machine absolute numbers are noisy; quote the ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cervixlib  # noqa: F401  (before torchvision, see cervixlib._compat)
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from cervixlib.models import create_model, list_models

_log = logging.getLogger("bench_models")
HERE = Path(__file__).resolve().parent
BACKBONE = {"ran_resnet50": "resnet50", "rcan_densenet121": "densenet121",
            "rcan_densenet121_released": "densenet121"}  # ran92: from scratch, none
ORDER = ["resnet50", "ran_resnet50", "densenet121", "rcan_densenet121",
         "rcan_densenet121_released", "ran92"]
SETTINGS = {"fp32": False, "bf16+CL": True}  # name -> bf16 autocast + channels_last

# Attention designs compared by --design: label -> (model, builder kwargs, timed?).
# The untimed one is too slow to time on a shared 2-core CPU; its MACs say enough.
DESIGNS: dict[str, tuple[str, dict[str, Any], bool]] = {
    "RCAN 1 group x 1 RCAB, width C/8 (chosen)": ("rcan_densenet121", {}, True),
    "RCAN 1 group x RCABs 1,1,2,2, width C/8":
        ("rcan_densenet121", {"num_blocks": (1, 1, 2, 2)}, True),
    "RCAN 1 group x 1 RCAB, width C/4": ("rcan_densenet121", {"width_divisors": 4}, True),
    "RCAN 1 group x RCABs 1,1,2,2, width C/4":
        ("rcan_densenet121", {"num_blocks": (1, 1, 2, 2), "width_divisors": 4}, True),
    "RCAN 1 group x 1 RCAB, full width C (as published)":
        ("rcan_densenet121", {"width_divisors": 1}, False),
    "RAN trunk 1 unit, mask C/4, depths 3,2,1,1 (chosen)": ("ran_resnet50", {}, True),
    "RAN trunk 1 unit, mask C/8": ("ran_resnet50", {"mask_reduction": 8}, True),
    "RAN trunk 2 units, mask C/4": ("ran_resnet50", {"trunk_depth": 2}, True),
    "RAN trunk 1 unit, mask at full width C": ("ran_resnet50", {"mask_reduction": 1}, True),
}


def cpu_report() -> dict[str, Any]:
    """What this CPU offers for bf16: ISA flags, oneDNN support, torch's dispatch level."""
    flags: set[str] = set()
    name = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
    except OSError:
        pass
    wanted = ["avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"]
    return {
        "cpu": name,
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "flags": {f: f in flags for f in wanted},
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "mkldnn_bf16_supported": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "torch": torch.__version__,
    }


def _make_step(name: str, size: int, *, bf16_cl: bool, batch: int,
               **kwargs: Any) -> Callable[[], None]:
    """A closure running one training step of a fresh model on a fixed random batch."""
    torch.manual_seed(0)
    model = create_model(name, **kwargs).train()
    X = torch.randn(batch, 3, size, size)
    y = torch.randint(0, model.num_classes, (batch,))
    if bf16_cl:
        model = model.to(memory_format=torch.channels_last)
        X = X.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_cl):
            loss = F.cross_entropy(model(X), y)
        loss.backward()
        opt.step()

    return step


def interleaved_throughput(configs: list[tuple[str, bool, dict[str, Any]]], size: int, *,
                           batch: int, warmup: int, steps: int) -> list[dict[str, float]]:
    """Images/s of the fastest and of the median step for each (model, bf16_cl, kwargs),
    timed round-robin."""
    runners = [_make_step(name, size, bf16_cl=flag, batch=batch, **kwargs)
               for name, flag, kwargs in configs]
    for _ in range(warmup):
        for step in runners:
            step()
    times: list[list[float]] = [[] for _ in runners]
    for i in range(steps):
        for step, record in zip(runners, times):
            start = time.perf_counter()
            step()
            record.append(time.perf_counter() - start)
        _log.info("%d px: timed round %d/%d", size, i + 1, steps)
    return [{"best": batch / min(t), "median": batch / statistics.median(t)} for t in times]


def static_cost(name: str, size: int, **kwargs: Any) -> tuple[int, float]:
    """(parameters, forward GMACs per image of convs and linears), built on 'meta'."""
    with torch.device("meta"):
        model = create_model(name, **kwargs)
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(1, 3, size, size))
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() / 2e9


def run_main(sizes: list[int], models: list[str], *, batch: int, warmup: int,
             steps: int) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        configs = [(m, flag, {}) for m in models for flag in SETTINGS.values()]
        speeds = iter(interleaved_throughput(configs, size, batch=batch, warmup=warmup,
                                             steps=steps))
        for model in models:
            params, gmacs = static_cost(model, size)
            row: dict[str, Any] = {"model": model, "size": size, "params": params,
                                   "gmacs": gmacs}
            for setting in SETTINGS:
                speed = next(speeds)
                row[setting], row[f"{setting}_median"] = speed["best"], speed["median"]
            rows.append(row)
    by_key = {(r["model"], r["size"]): r for r in rows}
    for r in rows:
        r["bf16_over_fp32"] = r["bf16+CL"] / r["fp32"]
        base = by_key.get((BACKBONE.get(r["model"], ""), r["size"]))
        for setting in SETTINGS:
            r[f"vs_backbone_{setting}"] = r[setting] / base[setting] if base else None
    return rows


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | px | params | GMACs/img | fp32 img/s | bf16+CL img/s | bf16+CL / fp32 "
             "| vs backbone, fp32 | vs backbone, bf16+CL |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['size']} | {r['params'] / 1e6:.2f} M | {r['gmacs']:.2f} "
            f"| {r['fp32']:.1f} | {r['bf16+CL']:.1f} | {r['bf16_over_fp32']:.2f} "
            f"| {_fmt(r['vs_backbone_fp32'], '.2f')} | {_fmt(r['vs_backbone_bf16+CL'], '.2f')} |")
    return "\n".join(lines)


def run_design(size: int, *, batch: int, warmup: int, steps: int) -> list[dict[str, Any]]:
    bases = ["resnet50", "densenet121"]
    timed = [(label, name, kw) for label, (name, kw, t) in DESIGNS.items() if t]
    configs = [(b, False, {}) for b in bases] + [(n, False, kw) for _l, n, kw in timed]
    speeds = interleaved_throughput(configs, size, batch=batch, warmup=warmup, steps=steps)
    base_speed = {b: s["best"] for b, s in zip(bases, speeds)}
    speed_of = {label: s["best"] for (label, _n, _kw), s in zip(timed, speeds[len(bases):])}
    rows = []
    for label, (name, kwargs, _t) in DESIGNS.items():
        base = BACKBONE[name]
        params, gmacs = static_cost(name, 224, **kwargs)
        base_params, base_gmacs = static_cost(base, 224)
        speed = speed_of.get(label)
        rows.append({"design": label, "model": name, "kwargs": kwargs,
                     "added_params": params - base_params,
                     "added_params_pct": 100 * (params - base_params) / base_params,
                     "added_gmacs_224": gmacs - base_gmacs,
                     "added_gmacs_pct": 100 * (gmacs - base_gmacs) / base_gmacs,
                     "fp32": speed, "backbone_fp32": base_speed[base],
                     "vs_backbone": None if speed is None else speed / base_speed[base]})
    return rows


def design_table(rows: list[dict[str, Any]], size: int) -> str:
    lines = [f"| design | added params | added GMACs/img at 224 px | fp32 img/s at {size} px "
             "| backbone fp32 img/s | vs backbone |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['design']} | +{r['added_params'] / 1e6:.2f} M (+{r['added_params_pct']:.0f}%) "
            f"| +{r['added_gmacs_224']:.2f} (+{r['added_gmacs_pct']:.0f}%) "
            f"| {_fmt(r['fp32'], '.1f')} | {r['backbone_fp32']:.1f} "
            f"| {_fmt(r['vs_backbone'], '.2f')} |")
    return "\n".join(lines)


def static_table(models: list[str], sizes: list[int]) -> str:
    """Parameters and forward GMACs per image of each model (no timing, seconds)."""
    lines = ["| model | params | " + " | ".join(f"GMACs/img, {s} px" for s in sizes) + " |",
             "|---|---|" + "---|" * len(sizes)]
    for model in models:
        costs = [static_cost(model, size) for size in sizes]
        lines.append(f"| {model} | {costs[0][0]:,} | "
                     + " | ".join(f"{g:.2f}" for _p, g in costs) + " |")
    return "\n".join(lines)


def _write(path: Path, title: str, table: str, meta: dict[str, Any], rows: Any) -> None:
    cpu = meta["cpu_report"]
    flags = ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in cpu["flags"].items())
    loads = "; ".join(f"{k} {', '.join(f'{x:.1f}' for x in v)}"
                      for k, v in meta["load_average"].items())
    text = (f"# {title}\n\nCommand: `{meta['command']}` ({meta['date']}, "
            f"{meta['wall_s'] / 60:.1f} min).\n"
            f"Batch {meta['batch']}; {meta['warmup']} warm-up and {meta['steps']} timed "
            f"training steps (forward, cross-entropy, backward, Adam) per configuration, "
            f"timed round-robin; images/s from the fastest step (the .json also has the "
            f"median). GMACs: forward multiply-accumulates of convolutions and linear "
            f"layers per image.\n\n"
            f"CPU: {cpu['cpu']}, {cpu['logical_cpus']} logical CPUs; torch {cpu['torch']}, "
            f"{cpu['torch_threads']} intra-op threads, dispatch {cpu['torch_cpu_capability']}, "
            f"oneDNN bf16: {cpu['mkldnn_bf16_supported']}; {flags}.\n"
            f"Load average (1, 5, 15 min): {loads}. The machine is shared: absolute "
            f"numbers are noisy, the ratios within this run are what we quote.\n\n{table}\n")
    path.write_text(text)
    path.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="128 px only, 2 warm-up, 2 steps")
    parser.add_argument("--design", action="store_true",
                        help="compare attention design candidates (fp32) instead")
    parser.add_argument("--static", action="store_true",
                        help="print parameters and GMACs of --models at --sizes, no timing")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    parser.add_argument("--models", nargs="+", default=ORDER, choices=list_models())
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=None,
                        help="markdown file (default benchmarks/models_results.md, or "
                             "models_design.md with --design); raw numbers go to a .json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.static:
        print(static_table(args.models, args.sizes))
        return
    if args.quick:
        args.sizes, args.warmup, args.steps = [128], 2, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    command = " ".join(["python benchmarks/bench_models.py",
                        *(sys.argv[1:] if argv is None else argv)])
    meta: dict[str, Any] = {
        "command": command, "batch": args.batch, "warmup": args.warmup, "steps": args.steps,
        "date": time.strftime("%Y-%m-%d %H:%M"), "cpu_report": cpu_report(),
        "load_average": {"start": os.getloadavg()}}
    _log.info("%s", json.dumps(meta["cpu_report"]))
    start = time.perf_counter()
    if args.design:
        size = args.sizes[0]
        rows = run_design(size, batch=args.batch, warmup=args.warmup, steps=args.steps)
        table = design_table(rows, size)
        title = f"Attention design candidates: cost and fp32 training speed at {size} px"
        out = args.out or HERE / "models_design.md"
    else:
        rows = run_main(args.sizes, args.models, batch=args.batch, warmup=args.warmup,
                        steps=args.steps)
        table = main_table(rows)
        title = "Training throughput of the cervixlib models on the CPU"
        out = args.out or HERE / "models_results.md"
    meta["wall_s"] = time.perf_counter() - start
    meta["load_average"]["end"] = os.getloadavg()
    print(table)
    _write(out, title, table, meta, rows)
    _log.info("wrote %s and %s", out, out.with_suffix(".json"))


if __name__ == "__main__":
    main()
