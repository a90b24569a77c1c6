"""A chapter's training cell: the runs one notebook reads, trained with their progress shown.

Each chapter of the book that reads runs calls :func:`train_chapter` once, near its top, so
that stepping through it in JupyterLab trains what it needs the way ``cervix book`` does (the
same plan, in parallel on Ray, resumable) and shows it, and every later cell only reads runs.
It sits above :mod:`cervixlib.study` and :mod:`cervixlib.book.plan` (which builds each
chapter's :class:`~cervixlib.study.Study` for the whole book's plan), so that neither imports
the other's side: the study stays free of the book's machinery.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cervixlib.study import Study

__all__ = ["train_chapter"]


def train_chapter(study: Study, chapter: str, models: Iterable[str], *, jobs: int | str = "auto",
                  manifest: str | os.PathLike[str] | None = None) -> None:
    """Train the runs that ``chapter`` reads through ``study`` and the run store lacks, showing their progress.

    The runs are those of the chapter's ``runs:`` in ``book/manifest.yml`` (``manifest``;
    default: found from the working directory up), asked of ``study`` with ``models``: the plan
    ``cervix plan`` lists for the chapter. One line says what it found (``"12 runs needed: 12 in
    the store"``, and the call returns), then :func:`cervixlib.parallel.train_plan` trains the
    rest as ``cervix book`` does: ``jobs`` at once on a local Ray instance, or one at a time in
    this process where Ray is not installed, resuming interrupted runs. A live display
    (:func:`cervixlib.progress.plan_progress`: widgets in JupyterLab, Jupyter Notebook and VS
    Code, text elsewhere) shows the runs done, each running run's epoch and images a second, and
    an ETA. An interrupt (the kernel's stop button) stops every run within seconds; finished runs
    stay, interrupted ones keep their checkpoints, and calling again resumes them. The store is
    checked by sizes and times here (``cervix book`` has hashed every run before a chapter runs,
    and loading a checkpoint hashes it). Raises RuntimeError naming the failed runs, after the
    others finished.
    """
    from cervixlib.book.plan import chapter_plan
    from cervixlib.parallel import train_plan
    from cervixlib.plan import store_throughput
    from cervixlib.progress import plan_progress, plan_summary

    plan = chapter_plan(study, chapter, list(models), manifest=manifest, verify="size")
    print(plan_summary(plan, store_throughput(study.runs_dir)), flush=True)  # the cell's one line
    if not plan.todo:
        return
    outcome = train_plan(plan, jobs=jobs, progress=plan_progress(plan.todo), without_ray="here")
    if not outcome.ok:
        raise RuntimeError(f"{len(outcome.failed)} run(s) of {chapter} failed; run the cell again to "
                           f"resume them:\n{outcome.failure_text()}")
