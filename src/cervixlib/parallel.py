"""Training a run plan in parallel on Ray: one machine's cores or GPUs, or a whole cluster.

Each run of a :class:`~cervixlib.plan.RunPlan` not yet in the store becomes one Ray task
that calls the one :func:`cervixlib.train.fit` in its own worker process, so a run that
fails (an exception, out of memory, a killed process or node) fails alone: the others go
on, and the failed one is reported with its configuration and error at the end. Several
runs share a GPU through Ray's fractional GPUs (``runs_per_gpu``; one H200 trained 3.0x
as many images a second with four runs of batch 16 as with one, measured with separate ``fit``
processes before this module existed), every GPU of the machine
or cluster is used, and a cluster is joined with ``address`` (``ray start`` on each node,
or Ray's launchers for SLURM and Kubernetes): the same code path for one machine and many.
Runs resume from their checkpoints (``fit(resume=True)``) and the run store's lock makes
two plans on one store train each run once. Progress (runs done, the running runs with
their epoch, an ETA) goes through a small Ray actor to the caller's display
(:mod:`cervixlib.progress`: lines in a terminal, live bars in a notebook).

An interrupt (Ctrl-C, or the kernel's stop button: KeyboardInterrupt in the caller) cancels
the running runs' tasks, which kills their worker processes, and shuts down a Ray instance
the call started: finished runs stay in the store, an interrupted run keeps its last
checkpoint (``.partial/last.pt``) for the next call to resume, and its lock (flock) dies
with its process. Without Ray, :func:`train_plan` can train the runs one at a time in the
calling process (``without_ray="here"``), with the same display and the same resume.

A Ray instance started here listens on the loopback address only (Ray binds the node's
reachable address otherwise), starts no dashboard, keeps Ray's token authentication on
and sends no usage statistics; joining a cluster is explicit (``address``).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cervixlib.config import TrainConfig
from cervixlib.plan import PlannedRun, RunPlan, plan_runs
from cervixlib.progress import PlanProgress

__all__ = ["CPU_JOBS", "PlanResult", "RUNS_PER_GPU", "RayUnavailable", "auto_jobs", "start_ray", "train_plan"]

_log = logging.getLogger(__name__)

#: Runs sharing one GPU by default: on one H200 (batch 16, 224 px) four at once trained
#: 3.0x the images a second of one, eight 3.3x (the card levels off past four).
RUNS_PER_GPU = 4
#: Runs at once on a machine without a GPU (``jobs="auto"``, at most one a core): on a 2-core
#: CPU two runs of one thread each trained 1.14-1.31x the images a second of one run on both
#: cores (``benchmarks/bench_plan.py``, ``benchmarks/plan_results.md``); larger CPUs are untested.
CPU_JOBS = 2


class RayUnavailable(RuntimeError):
    """Ray is not installed (it is the ``ray`` extra: ``pip install 'cervixlib[ray]'``), a local
    instance could not be kept on the loopback address, or Ray could not start or join ``address``."""


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass
class PlanResult:
    """What :func:`train_plan` did: runs trained here, found finished, failed (with the error)."""

    trained: list[str] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)
    failed: list[tuple[PlannedRun, str]] = field(default_factory=list)
    skipped: int = 0  # finished in the store before the plan started
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def failure_text(self) -> str:
        """One line a failed run: its name, its configuration, its error."""
        return "\n".join(f"  {r.label} ({_config_text(r.config)}): {error}" for r, error in self.failed)


def _config_text(config: TrainConfig) -> str:
    d = config.data
    return (f"model={config.model} subset={d.subset} split={d.split} fold={d.fold + 1}/{d.folds} "
            f"size={d.image_size} epochs={config.epochs} weights={config.weights}")


def _import_ray(local: bool) -> Any:
    if local:
        # With this set, Ray takes the loopback address as the node's and binds its servers
        # there (it is read when Ray is imported); otherwise it binds the reachable address.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        # Token authentication, what Ray gives a new local instance anyway, said explicitly:
        # unset, Ray warns about it on standard error, which a notebook shows in red.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise RayUnavailable("training a plan in parallel needs Ray: pip install 'cervixlib[ray]' "
                              "(make installs it)") from None
    return ray


def start_ray(address: str | None = None, *, num_cpus: int | None = None,
              num_gpus: float | None = None) -> tuple[Any, bool]:
    """Connect to Ray: the running instance of this process, the cluster at ``address``
    (``"auto"``: the one ``ray start`` started on this machine), or a new local instance
    on 127.0.0.1 with this machine's cores and GPUs (``num_cpus``/``num_gpus`` override
    them; logical GPUs let tests schedule fractional GPUs on a CPU). Returns ``(ray, started)``:
    whether this call started (and the caller must shut down) the instance."""
    ray = _import_ray(local=address is None)
    if ray.is_initialized():
        return ray, False
    kwargs: dict[str, Any] = {"include_dashboard": False, "configure_logging": False,
                              "log_to_driver": False, "logging_level": logging.WARNING}
    if address is not None:
        try:
            ray.init(address=address, **kwargs)
        except Exception as exc:  # ConnectionError, RuntimeError, ValueError: all mean "not joined"
            raise RayUnavailable(f"could not join the Ray cluster at {address}: "
                                 f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}") from None
        return ray, True
    node_ip = ray.util.get_node_ip_address()
    if node_ip not in _LOOPBACK:
        raise RayUnavailable(
            f"a local Ray instance would listen on {node_ip}, not on 127.0.0.1: Ray was imported before "
            "cervixlib.parallel with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER unset; set it to 0 before importing ray, "
            "or start Ray yourself (ray start) and pass its address")
    if num_gpus is None:
        import torch

        num_gpus = torch.cuda.device_count()
    from cervixlib.runtime import available_cpus

    try:
        ray.init(address="local", num_cpus=num_cpus or available_cpus(), num_gpus=num_gpus, **kwargs)
    except Exception as exc:  # a port, a temporary folder, a stale session
        raise RayUnavailable(f"could not start a local Ray instance: {type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:300]}") from None
    except BaseException:  # interrupted while starting: no half-started instance outlives the call
        ray.shutdown()
        raise
    return ray, True


def auto_jobs(cpus: int, gpus: float) -> int:
    """Runs at once for ``jobs="auto"``: :data:`RUNS_PER_GPU` a GPU, else :data:`CPU_JOBS` (at most one a core)."""
    return max(1, int(round(gpus * RUNS_PER_GPU))) if gpus else max(1, min(CPU_JOBS, cpus))


def _resources(node_cpus: int, node_gpus: float, nodes: int, jobs: int | str,
               runs_per_gpu: int | None) -> tuple[int, dict[str, float]]:
    """``(runs at once, one run's Ray resources)`` on ``nodes`` alike nodes of ``node_cpus``
    cores and ``node_gpus`` GPUs: a run asks for its share of one node's cores (a request
    no single node can meet would wait forever), and a fraction of a GPU where there are any."""
    if jobs != "auto" and int(jobs) < 1:
        raise ValueError(f"jobs must be at least 1 or 'auto', got {jobs!r}")
    if node_gpus:
        gpus = node_gpus * nodes
        per_gpu = runs_per_gpu or (RUNS_PER_GPU if jobs == "auto" else max(1, math.ceil(int(jobs) / gpus)))
        at_once = int(gpus * per_gpu) if jobs == "auto" else min(int(jobs), int(gpus * per_gpu))
        per_node = max(1, int(node_gpus * per_gpu))
        return at_once, {"num_gpus": 1.0 / per_gpu, "num_cpus": max(1, node_cpus // per_node)}
    at_once = nodes * auto_jobs(node_cpus, 0) if jobs == "auto" else int(jobs)
    cpus = max(1, node_cpus // max(1, math.ceil(at_once / nodes)))
    return min(at_once, nodes * max(1, node_cpus // cpus)), {"num_cpus": cpus}


def _nodes(ray: Any) -> tuple[int, float, int]:
    """``(cores, GPUs, count)`` of the cluster's nodes: the smallest node's cores, the most GPUs on one."""
    alive = [n["Resources"] for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU")]
    if not alive:
        return 1, 0.0, 1
    return (int(min(r["CPU"] for r in alive)), float(max(r.get("GPU", 0) for r in alive)), len(alive))


def _board_class(ray: Any) -> Any:
    @ray.remote(num_cpus=0)
    class ProgressBoard:
        """Where the runs of a plan report their epochs; the driver reads it."""

        def __init__(self) -> None:
            self.state: dict[str, dict[str, Any]] = {}

        def report(self, label: str, **values: Any) -> None:
            self.state.setdefault(label, {}).update(values, time=time.time())

        def snapshot(self) -> dict[str, dict[str, Any]]:
            return self.state

    return ProgressBoard


def _train_one(config: dict[str, Any], label: str, runs_dir: str, cpus: int, board: Any,
               index: Any, checkpoint_every: float) -> dict[str, Any]:
    """One run of the plan in a Ray worker: ``fit`` with resume, reporting each epoch."""
    import socket

    import torch

    from cervixlib.train import fit

    os.environ["CERVIX_CPUS"] = str(cpus)
    torch.set_num_threads(cpus)
    board.report.remote(label, pid=os.getpid(), host=socket.gethostname(), epoch=None)
    trained = []

    def on_epoch(epoch: int, epochs: int, row: dict[str, Any]) -> None:
        if epoch == 0:
            board.report.remote(label, epoch=row.get("resumed_at", 0), epochs=epochs,
                                resumed_at=row.get("resumed_at", 0))
            return
        trained.append(epoch)
        board.report.remote(label, epoch=epoch, epochs=epochs, images_per_s=row.get("train_images_per_s"))

    run = fit(TrainConfig.from_dict(config), runs_dir=runs_dir, resume=True, progress=False, index=index,
              checkpoint_every=checkpoint_every, on_epoch=on_epoch)
    return {"name": run.name, "trained": bool(trained), "accuracy": float((run.y_pred == run.y_true).mean())}


def _absolute(config: TrainConfig, root: Path | None) -> TrainConfig:
    """``config`` with the plan's data root, absolute (for the embedded set too, so that a worker
    does not look for it in its own data home). The root is not part of the run's key; a
    weights path is, so it is passed as given (a local instance's workers share the caller's
    working directory; on a cluster, give an absolute path)."""
    return config if root is None else config.replace(root=str(root.resolve()))


def _error_text(exc: BaseException, ray: Any) -> str:
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = getattr(exc, "cause", None)
        if cause is not None:
            return f"{type(cause).__name__}: {' '.join(str(cause).split())[:300]}"
    if isinstance(exc, ray.exceptions.OutOfMemoryError):
        return "out of memory: Ray's memory monitor stopped the run's worker"
    if isinstance(exc, ray.exceptions.WorkerCrashedError):
        return "its worker process died (killed, or out of memory) before the run finished"
    if isinstance(exc, ray.exceptions.NodeDiedError):
        return "the node running it died"
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def train_plan(
    plan: RunPlan | Sequence[TrainConfig],
    *,
    runs_dir: str | os.PathLike[str] | None = None,
    jobs: int | str = "auto",
    runs_per_gpu: int | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    num_gpus: float | None = None,
    checkpoint_every: float | None = None,
    write: Callable[[str], None] | None = None,
    on_report: Callable[[dict[str, dict[str, Any]]], None] | None = None,
    progress: PlanProgress | None = None,
    without_ray: Literal["raise", "here"] = "raise",
) -> PlanResult:
    """Train every run of ``plan`` that the store does not have, several at once, on Ray.

    Args:
        plan: a :class:`RunPlan` (:func:`cervixlib.book.plan.book_plan`) or configurations of one dataset.
        runs_dir: the run store of ``plan`` given as configurations (a :class:`RunPlan` has its own).
        jobs: runs at once; ``"auto"``: :data:`RUNS_PER_GPU` per GPU, else :data:`CPU_JOBS`.
        runs_per_gpu: runs sharing one GPU (Ray's fractional GPUs); default from ``jobs``.
        address: a Ray cluster to join (``"auto"`` or ``HOST:PORT``); None: a local instance.
        num_cpus, num_gpus: the local instance's resources (default: this machine's).
        checkpoint_every: passed to :func:`~cervixlib.train.fit` (default its own).
        write: where the progress lines go (default: standard error).
        on_report: called with the progress board's state about once a second (tests use it).
        progress: the display of ``plan.todo`` (default: :class:`~cervixlib.progress.PlanProgress`
            lines through ``write``; a notebook passes :func:`~cervixlib.progress.plan_progress`'s).
        without_ray: where Ray is not installed (or no local instance starts), ``"raise"``
            :class:`RayUnavailable`, or train the runs ``"here"``, one at a time in this process
            (not when ``address`` names a cluster).

    Every run is attempted; the result lists the failed ones with their error, so the
    caller can exit non-zero after the others finished. Running the plan again resumes
    interrupted runs from their checkpoints and skips finished ones. KeyboardInterrupt
    stops every run of this call (see the module's docstring) and is raised again.
    """
    from cervixlib.train import CHECKPOINT_EVERY_S

    if not isinstance(plan, RunPlan):
        plan = plan_runs(list(plan), runs_dir=runs_dir or "runs")
    elif runs_dir is not None and Path(runs_dir).resolve() != plan.runs_dir.resolve():
        raise ValueError(f"the plan's store status is of {plan.runs_dir}, not of {runs_dir}: plan it for that store")
    runs_dir = plan.runs_dir
    write = write or (progress.note if progress is not None else
                      (lambda line: print(line, file=sys.stderr, flush=True)))
    t0 = time.monotonic()
    result = PlanResult(skipped=len(plan.runs) - len(plan.todo))
    todo = plan.todo
    if not todo:
        return result
    from cervixlib.run_checks import repair_all  # damaged runs: moved aside (one line each), then trained

    repair_all(runs_dir, [r.name for r in todo if r.damage and r.name])
    display = progress if progress is not None else PlanProgress(todo, write)
    every = CHECKPOINT_EVERY_S if checkpoint_every is None else checkpoint_every
    try:
        try:
            ray, started = start_ray(address, num_cpus=num_cpus, num_gpus=num_gpus)
        except RayUnavailable as exc:
            if without_ray != "here" or address is not None:
                raise
            write(f"cervix: {exc}; training {len(todo)} runs one at a time in this process")
            _train_here(plan, result, display, every, on_report)
        else:
            _train_on_ray(ray, started, plan, result, display, write, every, on_report,
                          jobs=jobs, runs_per_gpu=runs_per_gpu, address=address)
    finally:
        display.close()
    result.seconds = time.monotonic() - t0
    n_failed = len(result.failed)
    write(f"cervix: {len(result.trained)} runs trained, {len(result.loaded)} loaded, {n_failed} failed "
          f"in {result.seconds:.0f} s" + (":\n" + result.failure_text() if n_failed else ""))
    return result


def _train_on_ray(ray: Any, started: bool, plan: RunPlan, result: PlanResult, display: PlanProgress,
                  write: Callable[[str], None], every: float,
                  on_report: Callable[[dict[str, dict[str, Any]]], None] | None, *, jobs: int | str,
                  runs_per_gpu: int | None, address: str | None) -> None:
    """The runs of ``plan.todo`` as Ray tasks, at most ``jobs`` at once; on any exception
    (KeyboardInterrupt too) the running tasks are cancelled, their worker processes killed, and
    a Ray instance this call ``started`` shut down."""
    todo, runs_dir = plan.todo, plan.runs_dir
    pending: dict[Any, PlannedRun] = {}
    board = None
    try:
        node_cpus, node_gpus, nodes = _nodes(ray)
        at_once, resources = _resources(node_cpus, node_gpus, nodes, jobs, runs_per_gpu)
        where = f"the Ray cluster at {address}" if address else "a local Ray instance on 127.0.0.1"
        machines = f"{nodes} nodes of " if nodes > 1 else ""
        write(f"cervix: training {len(todo)} runs of the plan ({result.skipped} already in {runs_dir}), "
              f"{at_once} at a time on {where} ({machines}{node_cpus} CPUs, {node_gpus:g} GPUs; a run: "
              + ", ".join(f"{k.removeprefix('num_')} {v:g}" for k, v in resources.items()) + ")")
        board = _board_class(ray).remote()
        task = ray.remote(max_retries=0, **resources)(_train_one)
        index = ray.put(plan.index)
        # Absolute paths: a worker's working directory is not the caller's (on a cluster, the
        # store and the data must be on a filesystem every node mounts at the same place).
        store = str(Path(runs_dir).resolve())
        queue = list(todo)
        state: dict[str, dict[str, Any]] = {}
        while queue or pending:
            while queue and len(pending) < at_once:  # at most `jobs` submitted; Ray places each
                i = _next_ready(queue, pending.values())
                if i is None:  # every queued run reads a run still training
                    break
                run = queue.pop(i)
                if _encoder_failed(run, result, display, state):
                    continue
                pending[task.remote(_absolute(run.config, plan.data_root).to_dict(), run.label, store,
                                    int(resources["num_cpus"]), board, index, every)] = run
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0) if pending else ([], [])
            state = ray.get(board.snapshot.remote())
            if on_report is not None:
                on_report(state)
            for ref in ready:
                run = pending.pop(ref)
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    error = _error_text(exc, ray)
                    result.failed.append((run, error))
                    display.finish(run.label, state, f"FAILED: {error}", ok=False)
                    continue
                (result.trained if out["trained"] else result.loaded).append(out["name"])
                verb = "trained" if out["trained"] else "finished by another process, loaded"
                display.finish(run.label, state, f"{verb} (test accuracy {out['accuracy']:.3f})")
            display.update(state)
    except BaseException:
        # Interrupted (or the driver failed): no worker may go on training in the background.
        # force=True kills each task's worker process; its run keeps its last checkpoint.
        for ref in pending:
            ray.cancel(ref, force=True)
        if pending:
            write(f"cervix: stopped; {len(pending)} running run(s) cancelled, each keeps its last "
                  "checkpoint to resume from")
        raise
    finally:
        if started:
            ray.shutdown()
        elif board is not None:
            ray.kill(board)


def _next_ready(queue: Sequence[PlannedRun], running: Iterable[PlannedRun]) -> int | None:
    """The index in ``queue`` of the first run whose cell encoder (the CNN run it reads) is neither
    queued nor running, or None: a graph run starts once the run it reads has finished."""
    waiting = {r.config for r in queue} | {r.config for r in running}
    for i, run in enumerate(queue):
        if run.config.cell_encoder is None or run.config.cell_encoder not in waiting:
            return i
    return None


def _encoder_failed(run: PlannedRun, result: PlanResult, display: PlanProgress,
                    state: dict[str, dict[str, Any]]) -> bool:
    """Whether ``run`` reads a run that failed in this plan; if so it is failed too, with that reason."""
    enc = run.config.cell_encoder
    failed = next((r for r, _ in result.failed if enc is not None and r.config == enc), None)
    if failed is None:
        return False
    error = f"the run it reads failed ({failed.label})"
    result.failed.append((run, error))
    display.finish(run.label, state, f"FAILED: {error}", ok=False)
    return True


def _train_here(plan: RunPlan, result: PlanResult, display: PlanProgress, every: float,
                on_report: Callable[[dict[str, dict[str, Any]]], None] | None) -> None:
    """The runs of ``plan.todo`` one at a time in this process, with resume, reporting each epoch
    to ``display``; a failed run is recorded and the others go on (KeyboardInterrupt stops all:
    the interrupted run keeps its last checkpoint)."""
    from cervixlib.train import fit

    state: dict[str, dict[str, Any]] = {}
    for run in plan.todo:  # in plan order: a cell encoder comes before the graph runs that read it
        if _encoder_failed(run, result, display, state):
            continue
        s = state.setdefault(run.label, {"epoch": None})
        trained: list[int] = []

        def on_epoch(epoch: int, epochs: int, row: dict[str, Any], s: dict[str, Any] = s,
                     trained: list[int] = trained) -> None:
            if epoch == 0:
                s.update(epoch=row.get("resumed_at", 0), epochs=epochs, resumed_at=row.get("resumed_at", 0))
            else:
                trained.append(epoch)
                s.update(epoch=epoch, epochs=epochs, images_per_s=row.get("train_images_per_s"))
            if on_report is not None:
                on_report(state)
            display.update(state)

        try:
            out = fit(_absolute(run.config, plan.data_root), runs_dir=plan.runs_dir, resume=True, progress=False,
                      index=plan.index, checkpoint_every=every, on_epoch=on_epoch)
        except Exception as exc:  # a failed run fails alone, as a failed Ray task does
            error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            result.failed.append((run, error))
            display.finish(run.label, state, f"FAILED: {error}", ok=False)
            continue
        (result.trained if trained else result.loaded).append(out.name)
        verb = "trained" if trained else "finished by another process, loaded"
        display.finish(run.label, state, f"{verb} (test accuracy {float((out.y_pred == out.y_true).mean()):.3f})")
