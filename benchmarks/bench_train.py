"""Benchmark: ``fit()``'s training throughput against a bare torchvision loop, in one run.

Same model (ResNet-50, 5 classes), same data (the train split of a synthetic set,
decoded images cached as fit caches them), same batch (16), same image size. Three
measurements, all in images per second over the same full pass after a warm-up:

* ``bare fp32``: the textbook loop, fp32, contiguous tensors;
* ``bare bf16+CL``: the same loop with bf16 autocast and channels_last (fit's settings);
* ``fit``: the second epoch of ``cervixlib.train.fit`` (the first one warms up oneDNN).

Targets (issue 4): fit / bare fp32 >= 2.5 at 224 px; fit loses at most 5% to bare bf16+CL.

    .venv/bin/python benchmarks/bench_train.py [--image-size 224] [--scale 0.05]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import cervixlib  # noqa: F401  (before torchvision)
import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader

from cervixlib.config import make_config
from cervixlib.data import CellImageDataset, synthesize
from cervixlib.train import fit, prepare_data

HERE = Path(__file__).resolve().parent


def bare_loop(dataset, *, image_size: int, batch_size: int, bf16_cl: bool, seed: int = 0) -> float:
    """The plain loop a reader would write; returns training images per second over one pass."""
    torch.manual_seed(seed)
    model = torchvision.models.resnet50(num_classes=5)
    fmt = torch.channels_last if bf16_cl else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))

    def step(X, y):
        X = X.to(memory_format=fmt)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_cl):
            logits = model(X)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    it = iter(loader)
    for _ in range(2):  # warm-up batches (oneDNN primitive creation)
        step(*next(it)[:2])
    seen, start = 0, time.perf_counter()
    for batch in loader:
        step(batch[0], batch[1])
        seen += batch[1].shape[0]
    return seen / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--scale", type=float, default=0.05, help="synthetic data scale (isolated cells)")
    ap.add_argument("--out", type=Path, default=HERE / "train_results.md")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = synthesize(Path(tmp) / "data", scale=args.scale, seed=0)
        cfg = make_config("resnet50", profile="default", root=str(root), subset="isolated",
                          image_size=args.image_size, epochs=2, batch_size=16)
        data = prepare_data(cfg.data)
        train_items = data.part("train")
        dataset = CellImageDataset(train_items, image_size=args.image_size, train=True)
        for i in range(len(dataset)):  # fill the decode cache, as fit's first epoch does
            dataset[i]
        print(f"{len(train_items)} training images at {args.image_size} px, batch 16, "
              f"{torch.get_num_threads()} threads")

        fp32 = bare_loop(dataset, image_size=args.image_size, batch_size=16, bf16_cl=False)
        print(f"bare fp32      {fp32:7.2f} img/s")
        bf16 = bare_loop(dataset, image_size=args.image_size, batch_size=16, bf16_cl=True)
        print(f"bare bf16+CL   {bf16:7.2f} img/s")
        run = fit(cfg, runs_dir=Path(tmp) / "runs", progress=False)
        fit_ips = run.history[-1]["train_images_per_s"]
        print(f"fit (epoch 2)  {fit_ips:7.2f} img/s  precision={run.info['precision']}")

    speedup, overhead = fit_ips / fp32, 1 - fit_ips / bf16
    verdict_a = "PASS" if speedup >= 2.5 else "FAIL"
    verdict_b = "PASS" if overhead <= 0.05 else "FAIL"
    lines = [
        "# fit() vs a bare torchvision loop (benchmarks/bench_train.py)",
        "",
        f"- measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}",
        f"- ResNet-50, 5 classes, {len(train_items)} synthetic training images (isolated cells), "
        f"{args.image_size} px, batch 16, one full pass each after warm-up",
        "",
        "| loop | images/s |",
        "| --- | ---: |",
        f"| bare fp32 | {fp32:.2f} |",
        f"| bare bf16 autocast + channels_last | {bf16:.2f} |",
        f"| `fit()` (epoch 2, {run.info['precision']}) | {fit_ips:.2f} |",
        "",
        f"- fit / bare fp32 = **{speedup:.2f}x** (target >= 2.5x): {verdict_a}",
        f"- fit vs bare loop with the same precision settings: **{100 * overhead:+.1f}%** slower "
        f"(target <= 5%): {verdict_b}",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-2:]))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
