"""What a notebook needs in one object: the parameters, the data, the runs, the facts of its dataset.

Each analysis notebook builds one :class:`Study` from its papermill ``parameters`` cell
and asks it for runs; the study resolves the profile, generates or finds the data,
trains through the one :func:`cervixlib.train.fit` (cached), and knows which dataset the
numbers come from (:attr:`Study.dataset`; :func:`cervixlib.display.study_statement` says
it on the page). So the notebooks stay thin and agree with the command line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from cervixlib.config import (IMAGENET_BACKBONES, IMAGENET_WEIGHTS, RUN_NEEDS, DataConfig, ExplainSizes, Profile,
                              TrainConfig, get_profile)
from cervixlib.layout import data_label
from cervixlib.runs import Run

if TYPE_CHECKING:
    from cervixlib.data import DatasetIndex, PreparedData

__all__ = ["EMBEDDED_SET_NAME", "RUN_NEEDS", "DatasetFacts", "Study"]

#: How a page names the generated set (its folder is a cache path of the machine that built it).
EMBEDDED_SET_NAME = "the embedded synthetic SIPaKMeD-compatible set"
#: The model name that :meth:`Study.config` takes for the settings every model shares.
_ANY_MODEL = "<model>"
_BACKBONE_TITLES = {"resnet50": "ResNet-50", "densenet121": "DenseNet-121"}


@dataclass(frozen=True)
class DatasetFacts:
    """Which data a study ran on, in the terms a published page may use: no path.

    ``name``: :data:`EMBEDDED_SET_NAME` for a synthetic set, else the dataset folder's
    name. ``layout``: :data:`cervixlib.layout.LAYOUTS`. ``counts``: images in each subset
    of the layout (``{"multi": n, "isolated": m}`` or ``{"images": n}``). ``fingerprint``:
    :meth:`cervixlib.data.DatasetIndex.fingerprint` (16 hex digits, the one that keys the
    run store; ``cervix info`` prints it). ``skipped``: bad files left out (``skip_bad``).
    """

    name: str
    synthetic: bool
    layout: str
    counts: dict[str, int]
    n_classes: int
    fingerprint: str
    skipped: int = 0


@dataclass
class Study:
    """The parameters shared by the five notebooks; ``None`` means the profile's value.

    ``weights``: where our protocol's runs start (main, folds, side and leakage runs alike):
    ``None`` (or ``"none"``), from scratch; ``"imagenet"``, torchvision's ImageNet weights in each model's
    backbone (:data:`cervixlib.config.IMAGENET_BACKBONES`; attention layers and heads from
    scratch); or the path of a torchvision state_dict for the backbone of every model asked
    for (made absolute here, so a notebook and the run plan name the same file). The
    released protocol keeps the released code's rule (``Profile.pretrained``).
    """

    profile: str = "default"
    data_root: str | None = None
    skip_bad: bool = False  # leave bad files out instead of refusing the data; the statement says how many
    subset: str | None = None  # None: the data's own (multi for SIPaKMeD, images for a class-per-folder set)
    split: str | None = None  # None: the protocol's ("group" for ours; "released" for the released code's)
    protocol: str | None = None  # None: the profile's ("ours"; "released" for the paper profile)
    image_size: int | None = None
    epochs: int | None = None
    seed: int = 0
    folds: int | None = None  # None: the profile's (grouped, stratified k-fold of our split; runs are fold 1)
    repeats: int | None = None  # None: the profile's; r > 1: r x k fold runs (repeat i: split_seed i)
    weights: str | None = None  # our protocol's: None or "none" (from scratch), "imagenet", or a state_dict file
    runs_dir: str = "runs"
    progress: bool = False
    _runs: dict[TrainConfig, Run] = field(default_factory=dict, repr=False)
    _data: dict[DataConfig, PreparedData] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.split is not None:
            from cervixlib.config import split_name

            self.split = split_name(self.split)
        if self.weights is None or str(self.weights).lower() == "none":
            self.weights = None
            return
        if str(self.weights).lower() == "imagenet":
            self.weights = "imagenet"
            return
        path = Path(str(self.weights)).expanduser()
        if not path.is_file():
            raise ValueError(f"weights={str(self.weights)!r}: no such file (weights takes None or 'none', 'imagenet', or the "
                             "path of a torchvision resnet50 or densenet121 state_dict)")
        self.weights = str(path.resolve())

    @cached_property
    def settings(self) -> Profile:
        return get_profile(self.profile)

    @property
    def main_protocol(self) -> str:
        """The protocol of the chapters' main tables: the study's, else the profile's."""
        return self.protocol or self.settings.protocol

    @property
    def side_protocol(self) -> str:
        """The protocol shown beside the main one."""
        return "ours" if self.main_protocol == "released" else "released"

    @staticmethod
    def protocol_title(protocol: str) -> str:
        """A protocol's name in a sentence: ``"our protocol"`` or ``"the released code's protocol"``."""
        return "our protocol" if protocol == "ours" else "the released code's protocol"

    def weights_text(self, protocol: str | None = None) -> str:
        """Where the runs of ``protocol`` (default: the main one) start, in words; a file by its name only.

        ``"trained from scratch"``; for ``weights="imagenet"`` under our protocol, the torchvision
        weights by name (:data:`cervixlib.config.IMAGENET_WEIGHTS`): ``"ImageNet weights in the
        backbones, torchvision's ResNet50_Weights.IMAGENET1K_V1 for ResNet-50 (...) and ..., with
        attention layers and classifier heads trained from scratch"``; under the released
        protocol, its own rule.
        """
        if (protocol or self.main_protocol) == "released":
            return ("ImageNet weights where the released code used them" if self.settings.pretrained
                    else "trained from scratch")
        if self.weights is None:
            return "trained from scratch"
        rest = "with attention layers and classifier heads trained from scratch"
        if self.weights != "imagenet":
            return f"backbone weights from the file {Path(self.weights).name}, {rest}"
        names = []
        for arch, (first, *others) in IMAGENET_WEIGHTS.items():
            names.append(f"{first} for {_BACKBONE_TITLES.get(arch, arch)}" + "".join(
                f" ({n.split('.')[-1]} where only that file is in the torch hub cache)" for n in others))
        return f"ImageNet weights in the backbones, torchvision's {' and '.join(names)}, {rest}"

    @property
    def n_folds(self) -> int:
        """The number of folds of our group split: the study's, else the profile's."""
        return self.folds if self.folds is not None else self.settings.folds

    def explain_sizes(self, **overrides: int | None) -> ExplainSizes:
        """Chapter 5's sizes: the profile's (:attr:`Profile.explain`), with each override that is
        not None (the chapter's parameters, ``released_images=None`` and so on)."""
        import dataclasses

        sizes = self.settings.explain
        known = {f.name for f in dataclasses.fields(sizes)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown explanation size(s) {sorted(unknown)}; known: {sorted(known)}")
        return dataclasses.replace(sizes, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def n_repeats(self) -> int:
        """Repeats of the k folds (repeated k-fold cross-validation): the study's, else the profile's."""
        r = self.repeats if self.repeats is not None else self.settings.repeats
        if r < 1:
            raise ValueError(f"repeats must be at least 1, got {r}")
        return r

    def config(self, model: str, subset: str | None = None, *, protocol: str | None = None,
               split: str | None = None, fold: int = 0, repeat: int = 0) -> TrainConfig:
        """The run configuration of ``model`` (one of the paper's four) on ``subset``.

        Under ``protocol="ours"`` (default: :attr:`main_protocol`): our design, the group
        split and the study's :attr:`weights`; under ``"released"``: the released code's design
        (:data:`cervixlib.facts.RELEASED_DESIGNS`), its split, and ImageNet weights where
        it used them and the profile is ``pretrained``. ``split`` (else the study's)
        overrides the protocol's split, as the leakage table does. Under the group split the
        run is fold ``fold`` (0-based) of :attr:`n_folds`, in repeat ``repeat`` (0-based; the
        group split's ``split_seed``); the released split has one split.
        """
        from cervixlib.config import PROTOCOLS, split_name
        from cervixlib.facts import RELEASED_DESIGNS, RELEASED_IMAGENET

        protocol = protocol or self.main_protocol
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        from cervixlib.graphs import CELL_ENCODERS, is_graph_model

        design, weights = model, self.weights
        if is_graph_model(model):  # no pretrained weights; the released code had no graph model
            protocol, weights = "ours", None
        if protocol == "released":
            design = RELEASED_DESIGNS.get(model, model)
            weights = "imagenet" if self.settings.pretrained and design in RELEASED_IMAGENET else None
        elif weights == "imagenet" and model not in IMAGENET_BACKBONES and model != _ANY_MODEL:
            raise ValueError(f"weights='imagenet': {model!r} has no backbone with torchvision ImageNet weights "
                             f"(the models that have one: {', '.join(IMAGENET_BACKBONES)}); train it with "
                             "weights=None")
        split = split_name(split) if split else None
        split = split or self.split or ("released" if protocol == "released" else "group")
        folds = self.n_folds if split == "group" else 1
        if not 0 <= fold < folds:
            raise ValueError(f"fold must be in 0..{folds - 1} ({folds} fold{'s' * (folds != 1)} under the "
                             f"{split} split), got {fold}")
        if repeat and split != "group":
            raise ValueError(f"repeat={repeat}: only the group split is repeated (the {split} split is fixed)")
        config = self.settings.config(
            design, root=self.data_root, subset=subset or self.subset, split=split, weights=weights,
            image_size=self.image_size, epochs=self.epochs, seed=self.seed, skip_bad=self.skip_bad,
            folds=folds, fold=fold, split_seed=repeat or None)
        if model in CELL_ENCODERS:  # the isolated-cell CNN of the same fold, as the fold runs train it
            config = config.replace(cell_encoder=self.config(CELL_ENCODERS[model], "isolated", protocol="ours",
                                                             split=split, fold=fold, repeat=repeat))
        return config

    def cannot_train(self, model: str, subset: str | None = None) -> str | None:
        """Why this study's data cannot train ``model`` on ``subset`` (None: it can): a graph model
        on isolated cells (one cell, no graph) or on images without cells (no outlines, no mask
        files); a graph model over an isolated-cell CNN's features (:data:`cervixlib.graphs.CELL_ENCODERS`)
        where there are no isolated cells to train that CNN, or a single split (the two subsets'
        splits are then drawn apart, and the CNN could have trained on crops of the graph's test images)."""
        from cervixlib.graphs import CELL_ENCODERS, is_graph_model

        if not is_graph_model(model):
            return None
        subset = subset or self.subset
        if subset == "isolated":
            return "an isolated cell is one cell: no graph to make"
        if self.data_root is not None and not any(it.has_mask for it in self.data(subset).items):
            return "the images have no cells to make graphs of (no outlines, no mask files)"
        if model in CELL_ENCODERS:
            if self.data_root is not None and "isolated" not in self.index.subsets:
                return (f"its node features come from a {CELL_ENCODERS[model]} trained on isolated cells, and "
                        "this set has none")
            if self.n_folds < 2:
                return ("its node features come from a CNN trained on the isolated cells of the same fold, "
                        "which needs grouped folds (folds > 1)")
        return None

    def trainable(self, models: Iterable[str], subset: str | None = None) -> list[str]:
        """``models`` without those :meth:`cannot_train` names, in order."""
        return [m for m in models if self.cannot_train(m, subset) is None]

    def data(self, subset: str | None = None) -> PreparedData:
        """Root, index, items and split of ``subset`` (default: the study's), as training sees them.

        The same :func:`cervixlib.data.prepare` as :func:`cervixlib.train.fit`; the index
        is read once and shared by every subset.
        """
        from cervixlib.data import prepare

        cfg = self.config(_ANY_MODEL, subset).data
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

    def run(self, model: str, subset: str | None = None, *, protocol: str | None = None,
            split: str | None = None, fold: int = 0) -> Run:
        """Train ``model`` on ``subset`` (or load the cached run); arguments as :meth:`config`."""
        return self._fit(self.config(model, subset, protocol=protocol, split=split, fold=fold))

    def _fit(self, config: TrainConfig) -> Run:
        from cervixlib.train import fit

        if config not in self._runs:
            self._runs[config] = fit(config, runs_dir=self.runs_dir, progress=self.progress,
                                     index=self.index)
        return self._runs[config]

    # What a chapter asks for, as configurations (the run plan, :mod:`cervixlib.plan`, reads
    # these) and as runs (the notebooks): one definition of each group of runs.
    def configs(self, models: Iterable[str], subset: str | None = None, *,
                protocol: str | None = None, fold: int = 0) -> dict[str, TrainConfig]:
        """``{model: config}`` of :meth:`runs`."""
        return {m: self.config(m, subset, protocol=protocol, fold=fold) for m in models}

    def runs(self, models: Iterable[str], subset: str | None = None, *,
             protocol: str | None = None, fold: int = 0) -> dict[str, Run]:
        """``{model: run}`` for the paper's model names, under ``protocol`` (default: the main one),
        on fold ``fold`` (0-based) of the group split."""
        return {m: self._fit(c) for m, c in self.configs(models, subset, protocol=protocol, fold=fold).items()}

    def fold_configs(self, models: Iterable[str], subset: str | None = None, *,
                     folds: Iterable[int] | None = None) -> dict[str, list[TrainConfig]]:
        """``{model: [config per fold]}`` of :meth:`fold_runs` (``folds`` count from 1), repeat by repeat."""
        chosen = [f - 1 for f in (range(1, self.n_folds + 1) if folds is None else folds) if 1 <= f <= self.n_folds]
        return {m: [self.config(m, subset, protocol="ours", split="group", fold=f, repeat=r)
                    for r in range(self.n_repeats) for f in chosen]
                for m in models}

    def fold_runs(self, models: Iterable[str], subset: str | None = None, *,
                  folds: Iterable[int] | None = None) -> dict[str, list[Run]]:
        """``{model: [run of fold 1, ..., run of fold k]}``: every model on the same :attr:`n_folds`
        grouped folds (each repeat's k folds in turn, with :attr:`n_repeats` > 1), under our
        protocol (the released split is one split, so on the paper profile the folds are of our
        protocol, beside its main tables). Fold 1 is :meth:`run`'s
        under our protocol. ``folds``: only these folds, counted from 1 as everywhere a user sees
        them (``folds=[1, 2]``: the first two; to train a book's folds a few runs per cell);
        numbers past the last fold are skipped."""
        return {m: [self._fit(c) for c in cs] for m, cs in self.fold_configs(models, subset, folds=folds).items()}

    def folds_text(self) -> str:
        """``"fold 1 of 3 (grouped, stratified 3-fold cross-validation)"``, or ``""`` for one split."""
        k, r = self.n_folds, self.n_repeats
        repeated = f", repeated {r} times" if r > 1 else ""
        return f"fold 1 of {k} (grouped, stratified {k}-fold cross-validation{repeated})" if k > 1 else ""

    def side_configs(self, models: Iterable[str], subset: str | None = None) -> dict[str, TrainConfig]:
        """``{model: config}`` of :meth:`side_runs`."""
        return self.configs([m for m in models if m in self.settings.side_models], subset,
                            protocol=self.side_protocol)

    def side_runs(self, models: Iterable[str], subset: str | None = None) -> dict[str, Run]:
        """The profile's ``side_models`` among ``models``, under :attr:`side_protocol`."""
        return {m: self._fit(c) for m, c in self.side_configs(models, subset).items()}

    def leakage_configs(self, models: Iterable[str]) -> dict[str, dict[str, TrainConfig]]:
        """``{model: {split: config}}`` of :meth:`leakage_runs`."""
        return {m: {split: self.config(m, "isolated", split=split) for split in ("group", "released")}
                for m in models if m in self.settings.leakage_models}

    def leakage_runs(self, models: Iterable[str]) -> dict[str, dict[str, Run]]:
        """For the profile's ``leakage_models`` among ``models``: the same recipe on isolated
        cells under both splits, ``{model: {"group": run, "released": run}}``."""
        return {m: {s: self._fit(c) for s, c in by_split.items()}
                for m, by_split in self.leakage_configs(models).items()}

    def needed_configs(self, need: str, models: Iterable[str]) -> list[TrainConfig]:
        """The configurations of one of a chapter's :data:`RUN_NEEDS` (``"folds@isolated"``:
        the fold runs on isolated cells; without ``@``, the study's subset), as the
        notebook's calls of :meth:`runs`, :meth:`side_runs`, :meth:`fold_runs` and
        :meth:`leakage_runs` ask for them. ``book/manifest.yml`` lists a chapter's needs.
        Models the data cannot train are left out (:meth:`cannot_train`: graph models on isolated
        cells or on data whose images have no cells, where chapter 6 is a note)."""
        kind, _, subset = need.partition("@")
        if kind not in RUN_NEEDS:
            raise ValueError(f"unknown run need {need!r}: one of {', '.join(RUN_NEEDS)}, optionally @SUBSET")
        subset = subset or None
        models = self.trainable(models, subset)
        if kind == "main":
            return list(self.configs(models, subset).values())
        if kind == "side":
            return list(self.side_configs(models, subset).values())
        if kind == "folds":
            return [c for cs in self.fold_configs(models, subset).values() for c in cs]
        return [c for by_split in self.leakage_configs(models).values() for c in by_split.values()]

    @property
    def dataset(self) -> DatasetFacts:
        """Which data this study ran on, as a published page may state it (:class:`DatasetFacts`)."""
        index = self.index
        return DatasetFacts(
            name=EMBEDDED_SET_NAME if index.synthetic else index.root.name,
            synthetic=index.synthetic, layout=index.layout,
            counts={subset: sum(index.class_counts(subset).values()) for subset in index.subsets},
            n_classes=len(index.classes), fingerprint=index.fingerprint(), skipped=len(index.skipped))

    @property
    def dataset_label(self) -> str:
        """The data in a few words, for a figure's title or a table's caption (no path)."""
        index = self.index
        if index.synthetic:
            return "synthetic SIPaKMeD-compatible data (not SIPaKMeD)"
        return data_label(index.root.name, index.layout)
