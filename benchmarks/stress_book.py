"""Execute one chapter N times in a row and count the cells that stalled.

A stall is a cell whose reply reached papermill well after the kernel had finished it
(jupyter/nbclient#312): the cell's time as papermill saw it, minus the time between
the kernel's own ``busy`` and ``idle`` messages for that cell, is over ``--gap``
seconds. Both times are in the executed notebook (papermill's ``duration`` and
nbclient's ``execution`` timestamps), so a stall is measured, not guessed from a slow
run.

Not part of the test command. Typical use (chapter 5 at the smoke profile, 20 times):

    .venv/bin/python benchmarks/stress_book.py --runs 20

``--stock`` executes the way `cervix book` did before the fix (jupyter_client's stock
kernel manager over TCP, the live IG explorer cell executed), for a baseline.
The first execution trains the chapter's runs into a scratch run store; it is counted
like the others.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cervixlib  # noqa: F401  (torchvision fix first)
from cervixlib import book

sys.path.insert(0, str(Path(__file__).parent))
from _machine import cpu_capabilities, cpu_name  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _stamp(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def cell_gaps(nb: dict) -> list[tuple[int, float, float]]:
    """(cell number, papermill's seconds, kernel's busy-to-idle seconds) for each executed code cell."""
    out = []
    for i, cell in enumerate(nb["cells"]):
        meta = cell.get("metadata", {})
        timing, pm_meta = meta.get("execution", {}), meta.get("papermill", {})
        if cell.get("cell_type") != "code" or "iopub.status.idle" not in timing:
            continue
        kernel = (_stamp(timing["iopub.status.idle"]) - _stamp(timing["iopub.status.busy"])).total_seconds()
        out.append((i + 1, float(pm_meta.get("duration") or 0.0), kernel))
    return out


def _stock_source(src: Path, scratch: Path) -> Path:
    """The notebook with its ``skip-execution`` tags removed (the pre-fix behaviour)."""
    nb = json.loads(src.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if "skip-execution" in tags:
            tags.remove("skip-execution")
    out = scratch / src.name
    out.write_text(json.dumps(nb), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--chapter", default="05_explainability")
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--cell-timeout", type=float, default=None,
                    help="seconds; default: the profile's cell limit")
    ap.add_argument("--gap", type=float, default=5.0, help="seconds of waiting that count as a stall")
    ap.add_argument("--stock", action="store_true", help="the pre-fix execution, for a baseline")
    ap.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args(argv)

    from cervixlib.config import get_profile

    limit = args.cell_timeout if args.cell_timeout is not None else get_profile(args.profile).cell_timeout
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cervix-stress-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("CERVIX_DATA_HOME", str(work / "data-home"))
    src = REPO / "notebooks" / f"{args.chapter}.ipynb"
    if args.stock:
        src = _stock_source(src, work)
    params = {**book.load_manifest(REPO / "book" / "manifest.yml").select([args.chapter])[0]
              .parameters_for(args.profile),
              "profile": args.profile, "data_root": None, "runs_dir": str(work / "runs")}
    print(f"# {args.chapter} x {args.runs}, profile {args.profile}, cell limit {limit} s, "
          f"{'stock' if args.stock else 'cervix'} execution; CPU: {cpu_name()} ({cpu_capabilities()})",
          flush=True)
    stalls, seconds, worst = 0, [], 0.0
    for r in range(1, args.runs + 1):
        out = work / f"run{r:02d}.ipynb"
        t = time.perf_counter()
        err = ""
        try:
            if args.stock:
                import papermill as pm

                pm.execute_notebook(str(src), str(out), parameters=params, kernel_name=book.resolve_kernel(),
                                    cwd=str(REPO / "notebooks"), progress_bar=False,
                                    execution_timeout=limit)
            else:
                book.execute_notebook(src, out, params, cwd=REPO / "notebooks", cell_timeout=limit)
        except Exception as exc:  # a timeout is a result here, not a crash
            err = f" error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        seconds.append(time.perf_counter() - t)
        stalled = []
        if out.is_file():
            for cell, pm_s, kernel_s in cell_gaps(json.loads(out.read_text(encoding="utf-8"))):
                worst = max(worst, pm_s - kernel_s)
                if pm_s - kernel_s > args.gap:
                    stalled.append(f"cell {cell}: {pm_s:.1f} s seen, {kernel_s:.1f} s in the kernel")
        stalls += bool(stalled or err)
        print(f"run {r:2d}: {seconds[-1]:6.1f} s" + (f"  STALL {'; '.join(stalled)}" if stalled else "") + err,
              flush=True)
    print(f"stalls: {stalls} of {args.runs} runs; time per run: median {statistics.median(seconds):.1f} s, "
          f"max {max(seconds):.1f} s; longest wait after the kernel finished a cell: {worst:.2f} s")
    return 1 if stalls else 0


if __name__ == "__main__":
    raise SystemExit(main())
