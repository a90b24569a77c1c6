"""Aggregate training throughput of N runs at once against one run, on the same device, in one run.

Trains the same K fold runs of one model twice through the real engine
(:func:`cervixlib.parallel.train_plan`, Ray included), each time into an empty run store:
once one run at a time (each run gets every core), once N at a time (on a GPU: N runs
sharing it as fractional GPUs; on a CPU: the cores split between them). It prints the
images trained a second, wall clock, ratio N-at-once / one-at-a-time, and the steady
epochs' summed throughput. On a GPU, ``--project`` also times one epoch of N concurrent
runs of every design the paper profile trains and projects the profile's training time
from the plan (``cervix plan --profile paper``) at those rates, on 1 and on 8 GPUs.

    python benchmarks/bench_plan.py                       # CPU: 2 at once vs 1, resnet50, 64 px
    python benchmarks/bench_plan.py --jobs 4 --image-size 224 --project --data /path/to/sipakmed  # one GPU

Name the device (and on a CPU whether it has native bf16) beside the numbers: the script prints both.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cervixlib.config import get_profile
from cervixlib.parallel import train_plan
from cervixlib.book.plan import book_plan
from cervixlib.plan import plan_runs
from cervixlib.runtime import device_name, resolve_precision, select_device


def _configs(model: str, subset: str, k: int, *, image_size: int, epochs: int, data: str | None,
             scale: float | None):
    profile = get_profile("default")
    base = profile.config(model, subset=subset, root=data, image_size=image_size, epochs=epochs, folds=k)
    if scale is not None:
        base = base.replace(synth_scale=scale)
    return [base.replace(fold=f) for f in range(k)]


def _measure(configs, jobs: int, label: str) -> dict:
    store = Path(tempfile.mkdtemp(prefix="bench-plan-"))
    try:
        plan = plan_runs(configs, runs_dir=store)
        work = sum(r.work for r in plan.runs)
        t = time.perf_counter()
        result = train_plan(plan, jobs=jobs, write=lambda line: None)
        wall = time.perf_counter() - t
        if not result.ok:
            sys.exit(f"bench_plan: {label} failed:\n{result.failure_text()}")
        rates = []  # each run's epochs after the first (the first warms up)
        for history_file in store.glob("*/history.json"):
            history = json.loads(history_file.read_text())
            rates += [h["train_images_per_s"] for h in history[1:] or history]
        per_run = statistics.median(rates)
    finally:
        shutil.rmtree(store, ignore_errors=True)
    print(f"{label:>22}: {work:,} images in {wall:6.1f} s = {work / wall:7.1f} img/s wall "
          f"(one run's steady epoch: {per_run:6.1f} img/s, x {jobs} at once = {per_run * jobs:6.1f})", flush=True)
    return {"wall_img_s": work / wall, "steady_img_s": per_run * jobs, "seconds": wall}


def _project(args: argparse.Namespace) -> None:
    """The paper profile's training time from one measured epoch of each design, N at once."""
    plan = book_plan("paper", args.data, generate=True, runs_dir=tempfile.mkdtemp(prefix="bench-plan-"))
    rates = {}
    for model in sorted({r.config.model for r in plan.runs}):
        # ImageNet weights change no speed: every design trains from scratch here
        configs = _configs(model, "isolated", args.jobs, image_size=224, epochs=1, data=args.data, scale=None)
        rates[model] = _measure(configs, args.jobs, f"{model}, {args.jobs} at once")["wall_img_s"]
    seconds = sum(r.work / rates[r.config.model] for r in plan.runs)
    print(f"paper profile: {len(plan.runs)} runs, {sum(r.work for r in plan.runs):,} training images; "
          f"projected {seconds / 60:.0f} min on one {device_name()} with {args.jobs} runs at once, "
          f"{seconds / 60 / 8:.0f} min on eight (if the runs spread evenly)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=None, help="runs at once (default: 2 on a CPU, 4 on a GPU)")
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--subset", default="isolated", choices=("multi", "isolated"))
    parser.add_argument("--runs", type=int, default=None, help="fold runs trained each time (default: 2 x jobs)")
    parser.add_argument("--image-size", type=int, default=None, help="default: 64 on a CPU, 224 on a GPU")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--scale", type=float, default=None, help="synthetic set's scale (default: the default profile's)")
    parser.add_argument("--data", default=None, help="a dataset root (default: the embedded synthetic set)")
    parser.add_argument("--project", action="store_true", help="GPU: project the paper profile's training time")
    args = parser.parse_args()
    device = select_device()
    gpu = device.type == "cuda"
    args.jobs = args.jobs or (4 if gpu else 2)
    size = args.image_size or (224 if gpu else 64)
    k = args.runs or 2 * args.jobs
    precision = resolve_precision("auto", device)
    print(f"device: {device_name()} ({device.type}, training precision {precision}"
          + ("" if gpu else f", native bf16: {'yes' if precision == 'bf16' else 'no'}") + ")")
    print(f"{k} fold runs of {args.model} on {args.subset} at {size} px, {args.epochs} epochs each")
    configs = _configs(args.model, args.subset, k, image_size=size, epochs=args.epochs, data=args.data,
                       scale=args.scale)
    one = _measure(configs, 1, "one at a time")
    many = _measure(configs, args.jobs, f"{args.jobs} at once")
    print(f"ratio {args.jobs} at once / one at a time: {many['wall_img_s'] / one['wall_img_s']:.2f}x wall, "
          f"{many['steady_img_s'] / one['steady_img_s']:.2f}x steady epochs (their rate x runs at once)")
    if args.project:
        if not gpu:
            print("--project needs a GPU: skipped")
        else:
            _project(args)


if __name__ == "__main__":
    main()
