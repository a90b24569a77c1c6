"""What a notebook needs in one object: the parameters, the data, the runs, the dataset statement.

Each analysis notebook builds one :class:`Study` from its papermill ``parameters`` cell
and asks it for runs; the study resolves the profile, generates or finds the data,
trains through the one :func:`cervixlib.train.fit` (cached), and says which dataset the
numbers come from. So the notebooks stay thin and agree with the command line.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cervixlib.config import DataConfig, Profile, TrainConfig, get_profile
from cervixlib.runs import Run

if TYPE_CHECKING:
    from cervixlib.data import DatasetIndex, PreparedData

__all__ = ["Study"]


@dataclass
class Study:
    """The parameters shared by the five notebooks; ``None`` means the profile's value."""

    profile: str = "default"
    data_root: str | None = None
    skip_bad: bool = False  # leave bad files out instead of refusing the data; the statement says how many
    subset: str | None = None  # None: the data's own (multi for SIPaKMeD, images for a class-per-folder set)
    split: str | None = None  # None: the profile's ("group"; "paper" for the paper profile)
    image_size: int | None = None
    epochs: int | None = None
    seed: int = 0
    runs_dir: str = "runs"
    progress: bool = False
    _runs: dict[tuple[str, str], Run] = field(default_factory=dict, repr=False)
    _data: dict[DataConfig, PreparedData] = field(default_factory=dict, repr=False)

    @cached_property
    def settings(self) -> Profile:
        return get_profile(self.profile)

    def config(self, model: str, subset: str | None = None) -> TrainConfig:
        """The run configuration of ``model`` on ``subset`` (default: the study's subset)."""
        return self.settings.config(
            model, root=self.data_root, subset=subset or self.subset, split=self.split,
            image_size=self.image_size, epochs=self.epochs, seed=self.seed, skip_bad=self.skip_bad)

    def data(self, subset: str | None = None) -> PreparedData:
        """Root, index, items and split of ``subset`` (default: the study's), as training sees them.

        The same :func:`cervixlib.data.prepare` as :func:`cervixlib.train.fit`; the index
        is read once and shared by every subset.
        """
        from cervixlib.data import prepare

        cfg = self.config("<model>", subset).data
        if cfg not in self._data:
            loaded = next(iter(self._data.values()), None)
            self._data[cfg] = prepare(cfg, index=loaded.index if loaded is not None else None)
        return self._data[cfg]

    @property
    def root(self) -> Path:
        """The dataset root: the user's, or the embedded synthetic set (generated on first use)."""
        return self.data().root

    @property
    def index(self) -> DatasetIndex:
        """The index of every image under :attr:`root`."""
        return self.data().index

    def run(self, model: str, subset: str | None = None) -> Run:
        """Train ``model`` on ``subset`` (or load the cached run)."""
        from cervixlib.train import fit

        config = self.config(model, subset)
        key = (model, config.data.subset)
        if key not in self._runs:
            self._runs[key] = fit(config, runs_dir=self.runs_dir, progress=self.progress)
        return self._runs[key]

    def runs(self, models: Iterable[str], subset: str | None = None) -> dict[str, Run]:
        return {m: self.run(m, subset) for m in models}

    @property
    def dataset_label(self) -> str:
        if self.index.synthetic:
            return "synthetic SIPaKMeD-compatible data (not SIPaKMeD)"
        return f"SIPaKMeD at {self.root}"

    def statement(self) -> str:
        """HTML paragraph saying which data and settings produced this notebook's numbers."""
        cfg = self.config("<model>")
        both = {subset: self.config("<model>", subset) for subset in ("multi", "isolated")}
        epochs, sizes = ({s: c.epochs for s, c in both.items()}, {s: c.data.image_size for s, c in both.items()})
        epochs_text = (f"{cfg.epochs} epoch{'s' * (cfg.epochs != 1)}" if epochs["multi"] == epochs["isolated"] else
                       f"{epochs['multi']} epochs on multi-cell images and {epochs['isolated']} on isolated cells")
        size_text = (f"{cfg.data.image_size} px" if sizes["multi"] == sizes["isolated"] else
                     f"{sizes['multi']} px multi-cell images, {sizes['isolated']} px isolated cells")
        settings = (f"profile <code>{html.escape(self.profile)}</code>: {size_text}, "
                    f"{epochs_text}, batch {cfg.batch_size}, Adam lr {cfg.lr:g}, seed {self.seed}, "
                    f"split {'/'.join(str(round(100 * f)) for f in cfg.data.fractions)}")
        if cfg.data.split == "paper":
            settings += " as in the released code (seed 230; crops of one source image on both sides)"
        if self.index.skipped:
            n = len(self.index.skipped)
            settings += f", {n} bad file{'s' * (n != 1)} left out (skip_bad)"
        if self.index.synthetic:
            return (
                '<div class="admonition warning"><p class="admonition-title">Synthetic data: '
                "these are not SIPaKMeD results</p><p>This notebook ran on the procedurally generated, "
                f"SIPaKMeD-compatible dataset at <code>{html.escape(str(self.root))}</code> "
                f"({len(self.index.multi)} multi-cell images, {len(self.index.isolated)} isolated cells). "
                "Its numbers test the pipeline, not the paper's claims. Rerun with "
                "<code>data_root</code> pointing at the real SIPaKMeD download to reproduce the paper. "
                f"Settings: {settings}.</p></div>")
        return (f'<div class="admonition note"><p class="admonition-title">Data</p><p>SIPaKMeD at '
                f"<code>{html.escape(str(self.root))}</code> ({len(self.index.multi)} multi-cell images, "
                f"{len(self.index.isolated)} isolated cells). Settings: {settings}.</p></div>")

    def show_statement(self) -> None:
        from IPython.display import HTML, display

        display(HTML(self.statement()))

