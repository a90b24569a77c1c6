"""What checking runs and data costs: checksums at finish and at load, and the data check of `cervix book`.

Checkpoints: for the largest checkpoint of each profile's plan (the models its book trains;
a checkpoint's size does not depend on the image size), a real ``create_model`` state_dict
(untrained: the bytes cost the same) is written and read the way the run store does it:

- at finish, ``atomic_torch_save`` (the reference: what finishing always cost) against
  ``storage.file_record`` (the SHA-256 and size that ``finish_run`` adds);
- at load, ``torch.load`` of the file (the reference) against ``runs.safe_torch_load`` with the
  record (read once, hash, load from memory: what ``Run.load_model`` does now).

Data: on a generated set, ``tree_signature`` (what ``cervix book`` reads when the data did not
change: sizes and times) against ``load_index`` + ``fingerprint`` (what it reads when they differ).

Each figure is the median of ``--repeat`` runs, with the ratio to its reference measured in the
same run, so that the ratios hold on a busy machine better than the seconds do. Usage::

    .venv/bin/python benchmarks/bench_integrity.py --data /tmp/herlev917 [--data /tmp/sipakmed095]

(``cervix synth DIR --scale 0.183`` gives 917 images, Herlev's count; ``--scale 0.95`` 4,764.)
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_capabilities, cpu_name  # noqa: E402

from cervixlib import runs as store  # noqa: E402
from cervixlib import storage  # noqa: E402


def _median(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def profile_models(profile: str) -> list[str]:
    """The models of a profile's book plan (no data generated)."""
    from cervixlib.book.plan import book_plan

    root = Path(__file__).resolve().parents[1]
    os.environ.setdefault("CERVIX_DATA_HOME", tempfile.mkdtemp())
    plan = book_plan(profile, book_dir=root / "book", notebooks_dir=root / "notebooks", runs_dir=tempfile.mkdtemp(),
                     generate=False)
    return sorted({r.config.model for r in plan.runs})


def checkpoint_bytes(model: str) -> bytes:
    from cervixlib.models import create_model

    buf = io.BytesIO()
    torch.save(create_model(model, num_classes=5).state_dict(), buf)
    return buf.getvalue()


def bench_checkpoint(model: str, repeat: int) -> dict[str, float]:
    state = torch.load(io.BytesIO(checkpoint_bytes(model)), weights_only=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "best.pt"
        save = _median(lambda: storage.atomic_torch_save(path, state), repeat)
        record = storage.file_record(path)
        finish = _median(lambda: storage.file_record(path), repeat)
        load = _median(lambda: torch.load(path, map_location="cpu", weights_only=True), repeat)
        checked = _median(lambda: store.safe_torch_load(path, record), repeat)
        return {"mb": record["size"] / 1e6, "save": save, "hash": finish, "load": load, "checked_load": checked}


def bench_data(root: Path, repeat: int) -> dict[str, float]:
    from cervixlib.data import load_index
    from cervixlib.data.signature import tree_signature

    index = load_index(root)
    files = sum(len(f) for _, _, f in os.walk(root))
    signature = _median(lambda: tree_signature(root), repeat)
    full = _median(lambda: load_index(root).fingerprint(), max(1, repeat // 2))
    return {"images": len(index.multi) + len(index.isolated) + len(index.images), "files": files,
            "signature": signature, "index": full}


def _report(what: str, r: dict[str, float]) -> None:
    print(f"{what} {r['mb']:.1f} MB")
    print(f"  finish: atomic_torch_save {r['save']:.3f} s, SHA-256 of the file {r['hash']:.3f} s "
          f"= {r['hash'] / r['save']:.2f}x the save")
    print(f"  load: torch.load {r['load']:.3f} s, read + SHA-256 + torch.load {r['checked_load']:.3f} s "
          f"= {r['checked_load'] / r['load']:.2f}x the load (+{r['checked_load'] - r['load']:.3f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, action="append", default=[], help="a generated set to time")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profiles", nargs="+", default=["default", "paper"])
    parser.add_argument("--models", nargs="*", default=["resnet50"],
                        help="checkpoints to time besides each profile's largest (resnet50: the issue's 95 MB)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"# {datetime.date.today()} on {cpu_name()} ({os.cpu_count()} CPUs; {cpu_capabilities()}), "
          f"torch {torch.__version__}, Python {sys.version.split()[0]}; median of {args.repeat}")
    sizes: dict[str, int] = {}
    for profile in args.profiles:
        models = profile_models(profile)
        for m in models:
            sizes.setdefault(m, len(checkpoint_bytes(m)))
        largest = max(models, key=sizes.__getitem__)
        _report(f"{profile}: largest checkpoint {largest}", bench_checkpoint(largest, args.repeat))
        print(f"  (of {', '.join(models)})")
    for model in args.models:
        _report(f"checkpoint {model}", bench_checkpoint(model, args.repeat))
    for root in args.data:
        d = bench_data(root, args.repeat)
        print(f"data {root.name}: {d['images']:,} images, {d['files']:,} files: unchanged check (sizes and "
              f"times) {d['signature']:.3f} s; full read (load_index + fingerprint) {d['index']:.2f} s "
              f"= {d['index'] / d['signature']:.0f}x the unchanged check")


if __name__ == "__main__":
    main()
