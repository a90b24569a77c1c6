"""The run plan: every training run a book needs, computed before any notebook runs.

A chapter of the book reads runs through :class:`cervixlib.study.Study` (its main runs,
the other protocol's beside them, every fold, the leakage table's pair); which groups it
reads is declared per chapter in ``book/manifest.yml`` (``runs: [main, folds@multi, ...]``).
:func:`cervixlib.book.plan.book_plan` builds each chapter's ``Study`` from the same parameters papermill
injects and asks it for those configurations (:meth:`Study.needed_configs`, the code the
notebook's calls go through), so the plan and the chapters cannot disagree on a setting;
a test executes the book after training its plan and checks that no chapter trained
anything more. The plan is what :mod:`cervixlib.parallel` trains (``cervix train --plan``,
and ``cervix book`` before its first chapter) and what ``cervix plan`` prints: each run
with its images x epochs, whether the run store has it, and a time estimate: from runs of
the same model, size and device in the store where there are some ("measured on this
device"), else projected from a table of measured throughputs (:mod:`cervixlib.throughput`:
the project's H200 figures at the paper's settings, or the user's own), labelled as a
projection for that GPU.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cervixlib.config import TrainConfig
from cervixlib.runtime import device_name
from cervixlib.throughput import H200, ThroughputTable, best_table

if TYPE_CHECKING:
    from cervixlib.data import DatasetIndex

__all__ = ["PlannedRun", "RunPlan", "plan_runs", "store_throughput", "with_encoders"]

@dataclass(frozen=True)
class PlannedRun:
    """One training run of the plan.

    ``chapters``: the chapters that read it. ``name``, ``images`` (training images an
    epoch) and ``done``/``partial`` (finished in the store, or interrupted with a
    checkpoint to resume) are known once the data is indexed; ``None`` before that.
    """

    config: TrainConfig
    chapters: tuple[str, ...]
    name: str | None = None
    images: int | None = None
    done: bool | None = None
    partial: bool = False
    #: what is wrong with the run in the store (:func:`cervixlib.run_checks.verify_run`); ``done`` is False then
    damage: str | None = None

    @property
    def label(self) -> str:
        """The run's directory name, or its readable settings before the data is indexed."""
        if self.name:
            return self.name
        d = self.config.data
        split = f"-{d.split}" if d.split != "group" else ""
        split += f"-f{d.fold + 1}of{d.folds}" if d.folds > 1 else ""
        weights = f"-{self.config.weights}" if self.config.weights else ""
        return f"{self.config.model}-{d.subset}{split}-{d.image_size}px-e{self.config.epochs}{weights}"

    @property
    def work(self) -> int | None:
        """Training images over all epochs (``None`` before the data is indexed)."""
        return None if self.images is None else self.images * self.config.epochs


@dataclass(frozen=True)
class RunPlan:
    """The runs of a book (or of a list of configurations), in the order the chapters ask for them."""

    profile: str
    runs: tuple[PlannedRun, ...]
    runs_dir: Path
    data_root: Path | None = None  # None: not generated yet (the embedded set)
    synthetic: bool | None = None
    index: DatasetIndex | None = field(default=None, repr=False, compare=False)

    @property
    def todo(self) -> list[PlannedRun]:
        """The runs not finished in the store (all of them while the data is not indexed)."""
        return [r for r in self.runs if not r.done]

    def configs(self) -> list[TrainConfig]:
        return [r.config for r in self.runs]

    def estimate(self, run: PlannedRun, throughput: Mapping[tuple, float]) -> float | None:
        """Seconds to train ``run`` alone at the measured ``throughput`` (see :func:`store_throughput`)."""
        rate = throughput.get(_throughput_key(run.config, device_name(), _precision(run.config)))
        return None if rate is None or run.work is None else run.work / rate

    def projection(self, run: PlannedRun, table: ThroughputTable = H200) -> float | None:
        """Seconds to train ``run`` alone on ``table``'s device (``None``: no figure for its settings)."""
        c = run.config
        rate = table.rate(c.model, c.data.image_size, c.batch_size, c.data.subset)
        return None if rate is None or run.work is None else run.work / rate

    def text(self, throughput: Mapping[tuple, float] | None = None, table: ThroughputTable | None = None) -> str:
        """The plan as ``cervix plan`` prints it: a line a run, then the totals.

        ``throughput``: the store's measurements (:func:`store_throughput`), which win for this
        device; ``table``: the throughputs the other runs are projected from (default: the built-in
        table with figures for the most of the runs to train, :func:`cervixlib.throughput.best_table`).
        """
        throughput = {} if throughput is None else throughput
        if table is None:
            table = best_table((r.config.model, r.config.data.image_size, r.config.batch_size, r.config.data.subset)
                               for r in self.todo)
        lines = [f"Run plan of the {self.profile} profile: {len(self.runs)} runs, "
                 f"{len(self.runs) - len(self.todo)} in the store ({self.runs_dir}), {len(self.todo)} to train"]
        if self.data_root is None:
            lines.append("  (the embedded synthetic set is not generated yet: image counts and the store's "
                         "runs are known once it is; `cervix train --plan` generates it)")
        else:
            kind = "synthetic, SIPaKMeD-compatible" if self.synthetic else "real"
            lines.append(f"  data: {self.data_root} ({kind})")
        width = max((len(r.label) for r in self.runs), default=0)
        here, there, unknown = 0.0, 0.0, 0  # seconds measured on this device, projected, runs without
        for r in self.runs:
            state = "done" if r.done else ("damaged" if r.damage else "resume" if r.partial else
                                           ("todo" if r.done is False else "?"))
            work = "?" if r.images is None else f"{r.images:,} x {r.config.epochs}"
            est = ""
            if not r.done:
                seconds, projected = self.estimate(r, throughput), None
                if seconds is None:
                    projected = self.projection(r, table)
                here, there, unknown = (here + (seconds or 0.0), there + (projected or 0.0),
                                        unknown + (seconds is None and projected is None))
                est = (f"  ~{_duration(seconds)}" if seconds is not None else
                       f"  ~{_duration(projected)} ({table.device})" if projected is not None else "")
            lines.append(f"  {state:7} {r.label:{width}}  {work:>12} img  [{', '.join(r.chapters)}]{est}")
            if r.damage:  # the file and what is wrong; training the plan moves the run aside first
                lines.append(f"            {r.damage}; `cervix train --plan` moves it aside and trains it again")
        images = sum(r.work or 0 for r in self.todo)
        if self.data_root is not None:
            lines.append(f"To train: {len(self.todo)} runs, {images:,} training images in all.")
        if self.todo:
            lines += _estimate_lines(self.todo, here, there, unknown, table)
        return "\n".join(lines)


def _estimate_lines(todo: Sequence[PlannedRun], here: float, there: float, unknown: int,
                    table: ThroughputTable) -> list[str]:
    """The plan's closing lines: time measured on this device, time projected from ``table``
    (one run at a time, runs sharing a GPU, several GPUs), runs with neither, GPU memory."""
    device, lines = device_name(), []
    if here:
        lines.append(f"Estimated time on {device} (measured on this device: the store's runs of these "
                     f"models and sizes), one run at a time: {_duration(here)}"
                     + (" for the runs measured here" if there or unknown else ""))
    if there:
        mine = device == table.device
        whose = (f"on this {table.device}" if mine else
                 f"for one {table.device}{' GPU' * table.gpu}, not this machine ({device})")
        n = _gpus() if mine and table.gpu else 0
        share = there / table.speedup
        at_once = (f"{_duration(share)} with {table.runs_at_once} runs sharing the GPU ({table.speedup:.1f}x one run)"
                   if table.gpu else f"{_duration(share)} with {table.runs_at_once} runs at once "
                   f"({table.speedup:.2f}x one run)")
        lines.append(f"Projected time {whose}: {_duration(there)} one run at a time; {at_once}"
                     + ("" if not table.gpu or table.runs_at_once < 2 else
                        f"; {_duration(share / n)} on this machine's {n} GPUs" if n > 1 else
                        f"; on N such GPUs, {_duration(share)} / N (8 GPUs: {_duration(share / 8)})"))
        lines.append(f"  ({table.label()}"
                     + (f"; {table.source}" if table.source else "") + "; a run's own figure is marked "
                     f"({table.device}) above; `benchmarks/bench_throughput.py --out FILE` measures your card, "
                     "`cervix plan --throughput FILE` projects from it)")
        models = sorted({r.config.model for r in todo if r.config.model in table.models})
        notes = [f"{m}: {table.models[m].projected}" for m in models if table.models[m].projected]
        if notes:
            lines.append("  projected, not measured: " + "; ".join(notes))
        memory = [f"{m} {table.models[m].memory_mib:,.0f} MiB" for m in models
                  if table.models[m].memory_mib is not None]
        if table.gpu:
            lines.append(f"  GPU memory a run (batch {table.batch_size}, {table.image_size} px): "
                         + (", ".join(memory) if memory else "not measured")
                         + ("" if not memory or len(memory) == len(models) else "; the others not measured"))
    if unknown:
        lines.append(f"No estimate for {unknown} of the {len(todo)} runs to train: no run of their model and "
                     f"size on {device} in the store, and the throughput table is of batch {table.batch_size} "
                     f"at {table.image_size} px" + ("; image counts are known once the data is indexed"
                                                    if any(r.work is None for r in todo) else ""))
    return lines


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _precision(config: TrainConfig) -> str:
    from cervixlib.runtime import resolve_precision, select_device

    return resolve_precision(config.precision, select_device())


def _throughput_key(config: TrainConfig, device: str, precision: str) -> tuple:
    return (config.model, config.data.image_size, config.batch_size, device, precision)


def store_throughput(runs_dir: str | os.PathLike[str]) -> dict[tuple, float]:
    """Training images a second measured by the finished runs in ``runs_dir``, per
    (model, image size, batch, device name, precision): the median over their epochs after
    the first (the first warms up), or the first where a run had one epoch."""
    rates: dict[tuple, list[float]] = {}
    for cfg_file in Path(runs_dir).glob("*/config.json"):
        try:
            payload = json.loads(cfg_file.read_text())
            history = json.loads((cfg_file.parent / "history.json").read_text())
            config, info = TrainConfig.from_dict(payload["config"]), payload["info"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if "device_name" not in info:
            continue
        epochs = [h["train_images_per_s"] for h in history if h.get("train_images_per_s")]
        epochs = epochs[1:] or epochs
        key = _throughput_key(config, info["device_name"], info.get("precision", "fp32"))
        rates.setdefault(key, []).extend(epochs)
    return {k: statistics.median(v) for k, v in rates.items() if v}


def with_encoders(configs: Sequence[TrainConfig]) -> list[TrainConfig]:
    """``configs`` with each graph run's ``cell_encoder`` (the CNN run it reads) before it, added
    where the list lacks it and moved up where it comes later: a plan trains a run after the runs
    it reads. Otherwise in the given order, each configuration once."""
    out: list[TrainConfig] = []
    placed: set[TrainConfig] = set()
    for c in configs:
        for needed in (c.cell_encoder, c):
            if needed is not None and needed not in placed:
                out.append(needed)
                placed.add(needed)
    return out


def plan_runs(
    configs: Sequence[TrainConfig],
    *,
    profile: str = "custom",
    runs_dir: str | os.PathLike[str] = "runs",
    generate: bool = True,
    chapters: Mapping[TrainConfig, tuple[str, ...]] | None = None,
    verify: Literal["size", "hash"] = "hash",
) -> RunPlan:
    """A plan of the given configurations (one dataset): their names, image counts and store status.

    A graph run's cell encoder is planned before it (:func:`with_encoders`).

    The data is indexed once (the embedded set generated first, unless ``generate=False``);
    bad files raise one :class:`~cervixlib.data.BadFilesError` listing them all, as training would.
    Each finished run is checked against its checksums (:func:`cervixlib.run_checks.verify_run`):
    ``verify="hash"`` hashes every file (what training and the book rely on), ``"size"`` compares
    sizes and modification times, hashing only a file written since (``cervix plan`` without
    ``--verify``); a damaged run is ``damage``, not ``done``.
    """
    from cervixlib import runs as store
    from cervixlib.run_checks import verify_run
    from cervixlib.data import load_index, prepare
    from cervixlib.data.prepared import data_root

    chapters = dict(chapters or {})
    for c in configs:  # a cell encoder is read by the chapters that read its graph runs
        if c.cell_encoder is not None and c.cell_encoder not in configs:
            chapters[c.cell_encoder] = tuple(dict.fromkeys((*chapters.get(c.cell_encoder, ()), *chapters.get(c, ()))))
    configs = with_encoders(configs)
    runs_dir = Path(runs_dir)
    if not configs:
        return RunPlan(profile, (), runs_dir)
    roots = {data_root(c.data, generate=False) for c in configs}
    if len(roots) != 1:
        raise ValueError(f"a run plan is of one dataset; these configurations use {len(roots)}: "
                         f"{', '.join(map(str, sorted(roots)))}")
    skip_bad = {c.data.skip_bad for c in configs}
    root = data_root(configs[0].data, generate=generate)
    if not root.exists():
        return RunPlan(profile, tuple(PlannedRun(c, chapters.get(c, ())) for c in configs), runs_dir)
    index = load_index(root.resolve(), skip_bad=True in skip_bad)  # absolute: workers may run elsewhere
    version = store.code_version()
    fingerprint = index.fingerprint()
    planned = []
    for c in configs:
        key = store.run_key(c, fingerprint, version)
        final = store.find_run(runs_dir, c, key)
        images = len(prepare(c.data, index=index).split.train)
        found = verify_run(final, key, full=verify == "hash")
        damage = None if found is None else str(found).split("; run ")[0]
        planned.append(PlannedRun(
            c, chapters.get(c, ()), name=final.name, images=images,
            done=final.is_dir() and damage is None, damage=damage,
            partial=(store.partial_dir(final) / "last.pt").is_file()))
    return RunPlan(profile, tuple(planned), runs_dir, data_root=root, synthetic=index.synthetic, index=index)

