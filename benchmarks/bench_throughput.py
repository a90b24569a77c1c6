"""Training throughput of each model on your card at the paper's settings, for `cervix plan`.

Wang et al. (2021) trained with batch 16 on (we take) 224 px inputs. This times full
training steps (forward, cross-entropy, backward, Adam) of each model on random batches,
with the precision and memory format `fit` would choose on this device
(:mod:`cervixlib.runtime`), and the GPU memory a run takes; then ``--runs-at-once`` copies of
the first model training at once in separate processes (as `cervix train --plan` shares a
GPU), against one. It writes a table that replaces the project's H200 figures
(:data:`cervixlib.throughput.H200`) in the plan's estimates:

    .venv/bin/python benchmarks/bench_throughput.py --out throughput.json        # on the GPU server
    .venv/bin/cervix plan --profile paper --data /path/to/sipakmed --throughput throughput.json

Random tensors, no data loading: a loader that cannot keep up (SIPaKMeD's 2048x1536
multi-cell images) makes real runs slower than this; a store that holds finished runs of
this device estimates from them instead ("measured on this device").
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import cervixlib  # noqa: F401  (before torchvision, see cervixlib._compat)
import torch
import torch.nn.functional as F

from cervixlib.models import create_model
from cervixlib.runtime import autocast, device_name, memory_format_for, resolve_precision, select_device
from cervixlib.throughput import ModelThroughput, ThroughputTable

_log = logging.getLogger("bench_throughput")
MODELS = ("resnet50", "densenet121", "ran_resnet50", "rcan_densenet121", "rcan_densenet121_released", "ran92")


def time_model(model_name: str, *, image_size: int, batch_size: int, steps: int, warmup: int,
               precision: str = "auto") -> dict[str, Any]:
    """Images a second of ``steps`` training steps after ``warmup`` ones, and the peak GPU memory (MiB)."""
    device = select_device()
    precision = resolve_precision(precision, device)
    fmt = memory_format_for(device)
    model = create_model(model_name, num_classes=5).to(device, memory_format=fmt).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    X = torch.randn(batch_size, 3, image_size, image_size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 5, (batch_size,), device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(device, precision):
            loss = F.cross_entropy(model(X), y)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t
    memory = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"images_per_s": steps * batch_size / seconds, "memory_mib": memory, "precision": precision}


def runs_at_once(model_name: str, n: int, args: argparse.Namespace) -> float:
    """Images a second of ``n`` processes training ``model_name`` at once, summed."""
    cmd = [sys.executable, __file__, "--worker", model_name, "--image-size", str(args.image_size),
           "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(n)]
    rates = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"bench_throughput: a worker failed (exit status {p.returncode})")
        rates.append(json.loads(out.strip().splitlines()[-1])["images_per_s"])
    return sum(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, help="the table to write (JSON), for cervix plan --throughput")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS, help="models to time")
    parser.add_argument("--image-size", type=int, default=224, help="input side, px (the paper's settings: 224)")
    parser.add_argument("--batch-size", type=int, default=16, help="batch (the paper's: 16)")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps a model")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--runs-at-once", type=int, default=4,
                        help="runs sharing the device, timed against one (1: not measured)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # one process of --runs-at-once
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(time_model(args.worker, image_size=args.image_size, batch_size=args.batch_size,
                                    steps=args.steps, warmup=args.warmup)))
        return 0
    if args.out is None:
        parser.error("--out FILE is required")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    models, precision = {}, "auto"
    for name in args.models:
        r = time_model(name, image_size=args.image_size, batch_size=args.batch_size, steps=args.steps,
                       warmup=args.warmup)
        precision = r["precision"]
        models[name] = ModelThroughput({"any": round(r["images_per_s"], 1)},
                                       memory_mib=None if r["memory_mib"] is None else round(r["memory_mib"]))
        _log.info("%s: %.1f img/s, %s MiB", name, r["images_per_s"], models[name].memory_mib)
    speedup = 1.0
    if args.runs_at_once > 1:
        one = runs_at_once(args.models[0], 1, args)
        speedup = runs_at_once(args.models[0], args.runs_at_once, args) / one
        _log.info("%d runs of %s at once: %.2fx one run", args.runs_at_once, args.models[0], speedup)
    table = ThroughputTable(
        device=device_name(), date=date.today().isoformat(), batch_size=args.batch_size,
        image_size=args.image_size, models=models, runs_at_once=args.runs_at_once, speedup=round(speedup, 2),
        source="benchmarks/bench_throughput.py (random batches, no data loading)", precision=precision,
        gpu=select_device().type == "cuda")
    args.out.write_text(json.dumps(table.to_dict(), indent=2) + "\n")
    _log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
