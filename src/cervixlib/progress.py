"""How a run plan shows its progress: lines in a terminal, live bars in a notebook.

:func:`cervixlib.parallel.train_plan` reports each run's epochs to a display: runs done of
the total, each running run's epoch and training images a second, and an ETA from the
images still to train at the rate this plan has trained so far. :class:`PlanProgress`
writes that as lines (``cervix train --plan`` and ``cervix book`` in a terminal; a notebook
without ipywidgets); :class:`BarProgress` as live ``tqdm.auto`` bars, one for the plan and
one a run, which JupyterLab, Jupyter Notebook and VS Code render as widgets.
:func:`plan_progress` picks the one the running frontend can show.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cervixlib.plan import PlannedRun, RunPlan

__all__ = ["BarProgress", "PlanProgress", "plan_progress", "plan_summary", "widgets_available"]

State = Mapping[str, Mapping[str, Any]]  # run label -> what the run reported: epoch, epochs, images_per_s, ...


def _stdout(line: str) -> None:
    print(line, file=sys.stdout, flush=True)


class PlanProgress:
    """The lines the terminal shows: runs done of the total, each running run's epoch, an ETA.

    ``todo``: the runs to train; ``write``: where a line goes. :meth:`update` takes the runs'
    reports (``{label: {"epoch", "epochs", "images_per_s", "resumed_at", "pid", "host"}}``) and
    writes a line for each new epoch; :meth:`finish` one for a run that ended.
    """

    def __init__(self, todo: Sequence[PlannedRun], write: Callable[[str], None] | None = None) -> None:
        self.work = {r.label: r for r in todo}
        self.total, self.start = len(todo), time.monotonic()
        self.write = write or _stdout
        self.finished: set[str] = set()
        self.shown: dict[str, Any] = {}

    def _done_work(self, state: State) -> tuple[float, float]:
        """Images trained in this call so far (epochs reported), and those still to train; a run
        that failed or was loaded from the store leaves the account."""
        done = left = 0.0
        for label, run in self.work.items():
            images, epochs = run.images or 0, run.config.epochs
            s = state.get(label, {})
            at = s.get("epoch") or 0
            done += max(0, at - (s.get("resumed_at") or 0)) * images
            if label not in self.finished:
                left += (epochs - at) * images
        return done, left

    def eta_seconds(self, state: State) -> float | None:
        """Seconds left at the rate of this call so far; None before the first epoch."""
        done, left = self._done_work(state)
        elapsed = time.monotonic() - self.start
        return None if done <= 0 or elapsed <= 0 else left / (done / elapsed)

    def eta(self, state: State) -> str:
        seconds = self.eta_seconds(state)
        if seconds is None:
            return "ETA --"
        return f"ETA {seconds / 60:.0f} min" if seconds >= 90 else f"ETA {seconds:.0f} s"

    def running(self, state: State) -> int:
        return sum(1 for label in state if label not in self.finished)  # started, not finished

    def head(self, state: State) -> str:
        return f"[{len(self.finished)}/{self.total} done, {self.running(state)} running, {self.eta(state)}]"

    @staticmethod
    def run_text(s: Mapping[str, Any]) -> str:
        """``"epoch 3/8, 412 img/s (resumed after epoch 2)"``, or where it started before its first epoch."""
        resumed = f" (resumed after epoch {s['resumed_at']})" if s.get("resumed_at") else ""
        if not s.get("epoch") or s.get("epoch") == s.get("resumed_at") and not s.get("images_per_s"):
            where = f" (pid {s['pid']} on {s['host']})" if s.get("pid") else ""
            return f"started{where}{resumed}"
        rate = f", {s['images_per_s']:.0f} img/s" if s.get("images_per_s") else ""
        return f"epoch {s['epoch']}/{s['epochs']}{rate}{resumed}"

    @staticmethod
    def ended_text(s: Mapping[str, Any], text: str) -> str:
        """``text`` about a run that ended, with the epoch it resumed after, if it did."""
        return f"{text}, resumed after epoch {s['resumed_at']}" if s.get("resumed_at") else text

    def update(self, state: State) -> None:
        """Show the runs' latest reports."""
        for label, s in state.items():
            if label in self.finished or s.get("epoch") is None:
                continue
            key = (s.get("epoch"), s.get("epochs"))
            if self.shown.get(label) != key:
                self.shown[label] = key
                self.write(f"{self.head(state)} {label}: {self.run_text(s)}")

    def finish(self, label: str, state: State, text: str, *, ok: bool = True) -> None:
        """Run ``label`` ended: trained, loaded (another process finished it) or failed (``ok=False``)."""
        self.finished.add(label)
        self.write(f"{self.head(state)} {label}: {self.ended_text(state.get(label, {}), text)}")

    def note(self, text: str) -> None:
        """A line about the plan as a whole."""
        self.write(text)

    def close(self) -> None:
        """The plan ended (or was interrupted)."""


class BarProgress(PlanProgress):
    """Live ``tqdm.auto`` bars: one for the plan (runs done, running, elapsed, ETA) and one a run
    (its epochs, images a second; green when trained, red when it failed or was interrupted).
    Lines about the plan (:meth:`note`) go to standard output below them."""

    def __init__(self, todo: Sequence[PlannedRun], write: Callable[[str], None] | None = None) -> None:
        from tqdm.auto import tqdm

        super().__init__(todo, write)
        self._tqdm = tqdm
        self.plan_bar = tqdm(total=len(todo), desc="runs", unit="run", dynamic_ncols=True,
                             bar_format="{desc}: {n_fmt}/{total_fmt} done |{bar}| {elapsed} elapsed{postfix}")
        self.plan_bar.set_postfix_str("starting", refresh=True)
        self.bars: dict[str, Any] = {}

    def _bar(self, label: str, epochs: int) -> Any:
        if label not in self.bars:
            self.bars[label] = self._tqdm(total=epochs, desc=label, unit="epoch", dynamic_ncols=True,
                                          bar_format="{desc} |{bar}|{postfix}")
        return self.bars[label]

    def update(self, state: State) -> None:
        for label, s in state.items():
            if label in self.finished or s.get("epoch") is None:
                continue
            bar = self._bar(label, int(s.get("epochs") or self.work[label].config.epochs))
            key = (s.get("epoch"), s.get("epochs"), s.get("images_per_s"))
            if self.shown.get(label) != key:
                self.shown[label] = key
                bar.n = int(s.get("epoch") or 0)
                bar.set_postfix_str(self.run_text(s), refresh=True)
        self.plan_bar.set_postfix_str(f"{self.running(state)} running, {self.eta(state)}", refresh=True)

    def finish(self, label: str, state: State, text: str, *, ok: bool = True) -> None:
        self.finished.add(label)
        bar = self._bar(label, self.work[label].config.epochs)
        if ok:
            bar.n = bar.total
        bar.set_postfix_str(self.ended_text(state.get(label, {}), text), refresh=True)
        bar.close()
        self.plan_bar.update(1)
        self.plan_bar.set_postfix_str(f"{self.running(state)} running, {self.eta(state)}", refresh=True)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        if self.plan_bar.n < self.total:
            self.plan_bar.set_postfix_str("stopped", refresh=False)
        self.plan_bar.close()


def widgets_available() -> bool:
    """Whether ``tqdm.auto`` draws widgets here: an IPython kernel (JupyterLab, Jupyter Notebook,
    VS Code) with ipywidgets installed."""
    if "ipykernel" not in sys.modules:
        return False
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from tqdm.auto import tqdm
        from tqdm.notebook import tqdm as notebook_tqdm

    return issubclass(tqdm, notebook_tqdm)  # tqdm.auto's class subclasses the notebook one there


def plan_progress(todo: Sequence[PlannedRun], *, write: Callable[[str], None] | None = None) -> PlanProgress:
    """The display for ``todo`` that the frontend can show: :class:`BarProgress` in a notebook with
    ipywidgets, else :class:`PlanProgress` lines (standard output unless ``write`` says where)."""
    return BarProgress(todo, write) if widgets_available() else PlanProgress(todo, write)


def plan_summary(plan: RunPlan, throughput: Mapping[tuple, float] | None = None) -> str:
    """What a chapter's training cell found, in one line: ``"12 runs needed: 12 in the store"``, or
    ``"14 runs needed: 9 in the store, 5 to train (1 resumes from its checkpoint), about 4 min"``
    (the time where ``throughput``, :func:`cervixlib.plan.store_throughput`, measured them all on
    this device, one run at a time)."""
    n, todo = len(plan.runs), plan.todo
    line = f"{n} run{'s' * (n != 1)} needed: {n - len(todo)} in the store"
    if not todo:
        return line
    line += f", {len(todo)} to train"
    resuming = sum(r.partial for r in todo)
    if resuming:
        line += f" ({resuming} resume{'s' * (resuming == 1)} from {'its' if resuming == 1 else 'their'} checkpoint" \
                f"{'s' * (resuming != 1)})"
    seconds = [plan.estimate(r, throughput or {}) for r in todo]
    if seconds and all(s is not None for s in seconds):
        total = sum(s for s in seconds if s is not None)
        line += f", about {total / 60:.0f} min" if total >= 90 else f", about {total:.0f} s"
    else:
        line += "; the ETA below follows from the first epochs"
    return line
