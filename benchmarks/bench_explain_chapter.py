"""Benchmark: the computations of chapter 5 (notebooks/05_explainability.ipynb) at the default profile.

Target (issue 14): the whole explainability chapter at the default profile stays under
5 minutes (300 s) on a 2-core CPU, by batching.

What is timed, section by section, with the chapter's own calls and the default
profile's settings (``explain_steps``, ``explain_images``, the multi-cell image size) and
the profile's chapter-5 sizes (``perturbation_steps``, ``released_images``, ...):
the Fig. 2 panel, the explanation study of every method (maps, deletion/insertion,
localisation), the IG-baseline sensitivity, the cascading randomisation, IG's
convergence, the released IG beside ours and the static IG slider. The models are the
four of the chapter, freshly initialised (``--trained RUNS`` uses trained runs from a
run store instead): the cost of a forward or backward pass does not depend on the
weights. Training is not timed (chapters 2-4 train the runs that chapter 5 loads).

The total is judged against the 300 s budget, as a ratio, and beside it the same total
scaled by 2 for a CPU without native bf16 and AVX-512 that runs these fp32 kernels
about half as fast (the brief's "slow AVX2 CPU"; measure there with
``ONEDNN_MAX_CPU_ISA=AVX2`` to check). The 1-minute load average before and after says
whether other jobs shared the CPU. Results go to ``benchmarks/explain_chapter_results.md``.

    .venv/bin/python benchmarks/bench_explain_chapter.py [--images 16] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import cervixlib  # noqa: F401  (before torchvision)
import numpy as np
import torch
import yaml

from cervixlib.config import get_profile
from cervixlib.data import cell_mask
from cervixlib.explain import (RELEASED_IG, attribute, baseline_sensitivity, cascading_randomisation,
                               explanation_study, ig_convergence, static_ig_slider)
from cervixlib.explain.evaluation import study_images
from cervixlib.models import create_model
from cervixlib.study import Study

from _machine import cpu_capabilities, cpu_name  # benchmarks/_machine.py

HERE = Path(__file__).resolve().parent
BUDGET_S = 300.0
MODELS = ("resnet50", "densenet121", "ran_resnet50", "rcan_densenet121")


def chapter_parameters() -> dict:
    """The chapter's parameters at the default profile: the profile's sizes
    (:class:`cervixlib.config.ExplainSizes`) and the manifest's ``fill``."""
    import dataclasses

    manifest = yaml.safe_load((HERE.parent / "book" / "manifest.yml").read_text())
    spec = next(n for n in manifest["notebooks"] if n["name"] == "05_explainability")
    return {**dataclasses.asdict(get_profile("default").explain), "fill": spec["parameters"].get("fill", "blur")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=None, help="explain_images (default: the profile's)")
    ap.add_argument("--out", default=str(HERE / "explain_chapter_results.md"))
    args = ap.parse_args()
    prof = get_profile("default")
    params = chapter_parameters()
    steps, n_images = prof.explain_steps, args.images or prof.explain_images
    size = prof.image_size_for("multi")
    items = list(Study(profile="default").data("multi").part("test"))
    load_before = os.getloadavg()[0]
    times: dict[str, float] = {}

    cpu: dict[str, float] = {}

    def timed(section: str, fn):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        times[section] = times.get(section, 0.0) + time.perf_counter() - t
        cpu[section] = cpu.get(section, 0.0) + time.process_time() - c
        print(f"{name}: {section}: {time.perf_counter() - t:.1f} s wall, {time.process_time() - c:.1f} s CPU "
              f"(load {os.getloadavg()[0]:.1f})", flush=True, file=sys.stderr)
        return out

    for name in MODELS:
        torch.manual_seed(0)
        model = create_model(name, num_classes=5).eval()
        X = study_images(items[:n_images], size)
        timed("Fig. 2 panel (saliency + IG, 2 images)", lambda: (attribute(model, X[:2], method="saliency"),
                                                                  attribute(model, X[:2], n_steps=steps)))
        study = timed("explanation study (all methods)", lambda: explanation_study(
            model, items[:n_images], image_size=size, name=name, X=X, n_steps=steps,
            released_images=params["released_images"], perturbation_steps=params["perturbation_steps"],
            fill=params["fill"]))
        k = params["robustness_images"]
        cells = np.stack([cell_mask(it, (size, size)) for it in items[:k]])
        timed("IG baseline sensitivity", lambda: baseline_sensitivity(model, X[:k], cells, study.target[:k],
                                                                      n_steps=steps))
        k = params["cascade_images"]
        timed("cascading randomisation", lambda: cascading_randomisation(
            model, X[:k], study.target[:k], methods=("saliency", "ig", "gradcam"), n_steps=params["cascade_steps"]))
        k = params["convergence_images"]
        timed("IG convergence", lambda: ig_convergence(model, X[:k], study.target[:k], steps=(2, 4, 8, 16, 32)))
        if name == "rcan_densenet121":
            timed("released IG beside ours (2 images)", lambda: (attribute(model, X[:2], n_steps=steps),
                                                                 attribute(model, X[:2], **RELEASED_IG)))
            grid = [s for s in (1, 2, 4, 8, 16, 32, 64, 128, 256) if s <= max(8, 2 * steps)]
            timed("static IG slider", lambda: static_ig_slider(model, X[0], steps=grid))
    total = sum(times.values())
    load_after = os.getloadavg()[0]
    lines = [
        "# Benchmark: chapter 5's computations at the default profile",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC with `benchmarks/bench_explain_chapter.py`.",
        "",
        f"- Machine: {cpu_name()} ({cpu_capabilities()}), {torch.get_num_threads()} torch threads; "
        f"1-minute load average {load_before:.1f} before, {load_after:.1f} after "
        f"({'shared with other jobs: the times are inflated' if max(load_before, load_after) > 1.5 else 'quiet'}).",
        f"- Settings: {len(MODELS)} models (fresh weights), {n_images} test images of {size} px, IG {steps} steps, "
        + ", ".join(f"{k}={v}" for k, v in params.items() if k not in ("models", "subset")) + ".",
        "",
        "| section | wall seconds | process CPU seconds |",
        "| --- | --- | --- |",
        *[f"| {k} | {v:.1f} | {cpu[k]:.1f} |" for k, v in times.items()],
        f"| **total** | **{total:.1f}** | {sum(cpu.values()):.1f} |",
        "",
        f"Budget 300 s: ratio **{total / BUDGET_S:.2f}** here; on a CPU half as fast (AVX2, no native bf16) "
        f"about {2 * total:.0f} s, ratio {2 * total / BUDGET_S:.2f}.",
    ]
    lines.append(f"On a quiet 2-core machine the wall time is at most about the CPU time divided by the "
                 f"{torch.get_num_threads()} threads: {sum(cpu.values()) / torch.get_num_threads():.0f} s here.")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
