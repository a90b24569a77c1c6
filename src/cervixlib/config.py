"""Typed, frozen run configurations and the named profiles (smoke, default, paper).

A :class:`TrainConfig` names a run completely: the run store hashes its JSON (plus the
data fingerprint and the code version) into the run's directory name, so the same
configuration is never trained twice. Profiles bundle the settings that the command
line and the notebooks share; the ``paper`` profile is the protocol of Wang et al.
(2021): 50 epochs, batch 16, Adam with lr 1e-3, the released code's 70/20/10 split, 224 px.
"paper" names that profile and the published numbers only; the split and designs of the
authors' code are "released" (``split="released"``; the old ``"paper"`` is accepted with a
:class:`DeprecationWarning`).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from cervixlib.layout import SUBSETS, Subset, default_subset

__all__ = [
    "DataConfig",
    "ExplainSizes",
    "TrainConfig",
    "Profile",
    "PROFILES",
    "PROFILE_CHOICES",
    "profiles_markdown",
    "get_profile",
    "resolve_profile",
    "split_name",
    "MODEL_NAMES",
    "make_config",
    "SUBSETS",
    "SPLITS",
    "PRECISIONS",
    "ATTRIBUTION_METHODS",
    "BASELINES",
    "RUN_NEEDS",
    "IMAGENET_BACKBONES",
    "IMAGENET_WEIGHTS",
]

Precision = Literal["auto", "fp32", "bf16"]
#: The precision names (:func:`cervixlib.runtime.resolve_precision`), from the type above.
PRECISIONS: tuple[str, ...] = get_args(Precision)
#: Attribution methods and Integrated Gradients' baselines by name
#: (:func:`cervixlib.explain.attribute`, :func:`cervixlib.explain.make_baseline`), here for the parser.
AttributionMethod = Literal["ig", "saliency"]
ATTRIBUTION_METHODS: tuple[str, ...] = get_args(AttributionMethod)
BaselineName = Literal["black", "white", "blur", "mean", "background", "uniform"]
BASELINES: tuple[str, ...] = get_args(BaselineName)
# SUBSETS (and the type Subset) come from cervixlib.layout, with the rule that gives a root
# its default subset; they are exported here too, for the command-line parser.
#: How a run's images are split: ``"group"`` (ours: stratified, no source image in two
#: parts, :func:`cervixlib.data.make_split`) or ``"released"`` (the released code's per-class
#: shuffle with seed 230, :func:`cervixlib.data.released_split`). ``"paper"``, its old
#: name, is still accepted (:func:`split_name`).
SplitName = Literal["group", "released"]
SPLITS: tuple[str, ...] = get_args(SplitName)
#: The registry's model names (:func:`cervixlib.models.list_models`, which needs torch), here
#: for the parser's ``--model`` choices; a test checks that the two agree.
MODEL_NAMES: tuple[str, ...] = ("densenet121", "ran92", "ran_resnet50", "rcan_densenet121",
                                "rcan_densenet121_released", "resnet50")


def split_name(split: str) -> str:
    """``split`` by its current name: ``"paper"`` (the released code's split, renamed) becomes
    ``"released"`` with a one-line :class:`DeprecationWarning`; other names are returned as given."""
    if split == "paper":
        warnings.warn("split 'paper' is now called 'released'", DeprecationWarning, stacklevel=3)
        return "released"
    return split
#: Which protocol a chapter's main tables follow: ``"ours"`` (our designs, the group
#: split) or ``"released"`` (the authors' released code: their designs, their split,
#: ImageNet weights where they used them); the other is shown beside it.
Protocol = Literal["ours", "released"]
PROTOCOLS: tuple[str, ...] = get_args(Protocol)
#: The groups of runs a chapter can ask for (``cervixlib.study.Study.needed_configs``, listed
#: per chapter in ``book/manifest.yml``): its main runs, the other protocol's beside them,
#: every fold of our protocol, the leakage table's pair of splits.
RunNeed = Literal["main", "side", "folds", "leakage"]
RUN_NEEDS: tuple[str, ...] = get_args(RunNeed)
#: The torchvision ImageNet weights that ``weights="imagenet"`` loads into a backbone, by the
#: name ``torchvision.models.get_weight`` takes, in the order :mod:`cervixlib.models.weights`
#: looks for their files in the torch hub cache (the first is downloaded when none is there):
#: IMAGENET1K_V1 is what ``pretrained=True`` gave in 2021. Here, without torch, for the
#: settings line of each page.
IMAGENET_WEIGHTS: dict[str, tuple[str, ...]] = {
    "resnet50": ("ResNet50_Weights.IMAGENET1K_V1", "ResNet50_Weights.IMAGENET1K_V2"),
    "densenet121": ("DenseNet121_Weights.IMAGENET1K_V1",),
}
#: The registry's models that take ``weights="imagenet"``, and the backbone of
#: :data:`IMAGENET_WEIGHTS` each loads; their attention layers and classifier head keep
#: their fresh initialisation. ``ran92`` (Attention-92) has no ImageNet weights.
IMAGENET_BACKBONES: dict[str, str] = {
    "resnet50": "resnet50", "ran_resnet50": "resnet50",
    "densenet121": "densenet121", "rcan_densenet121": "densenet121", "rcan_densenet121_released": "densenet121",
}


@dataclass(frozen=True)
class DataConfig:
    """Which images a run sees and how they are split and sized.

    ``root=None`` means the embedded synthetic SIPaKMeD-compatible set, generated on
    first use at ``synth_scale`` of the real class counts. ``skip_bad`` leaves bad files
    out instead of refusing the set (``--skip-bad``); a run records how many it left out.
    ``split`` chooses the split (see :data:`SPLITS`); ``split_seed`` seeds the group split
    only (the released split is fixed by the released seed, so another ``split_seed`` is refused).
    ``folds`` > 1 makes the group split grouped, stratified k-fold cross-validation
    (:func:`cervixlib.data.fold_split`): the test part is fold ``fold`` (0-based), and
    validation is carved out of the other folds in the ratio ``fractions[0]:fractions[1]``;
    ``folds=1`` is the single 70/20/10 split. The released split stays a single split.

    ``fold`` IS 0-BASED: it is the internal index of the test fold (0..folds-1). Everything a
    user sees counts folds from 1: ``cervix train --fold 1``, run directory names (``-f1of5``),
    ``Study.fold_runs(folds=[1, 2])``.
    """

    root: str | None = None
    subset: Subset = "multi"
    image_size: int = 64  # the defaults are the default profile's on multi-cell images (a test checks)
    split_seed: int = 0
    fractions: tuple[float, float, float] = (0.7, 0.2, 0.1)
    synth_scale: float = 0.25
    synth_seed: int = 0
    skip_bad: bool = False
    split: SplitName = "group"
    folds: int = 1
    fold: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "split", split_name(self.split))
        if self.folds < 1 or not 0 <= self.fold < self.folds:
            raise ValueError(f"need folds >= 1 and 0 <= fold < folds, got folds={self.folds}, fold={self.fold}")
        if self.split == "released" and self.folds > 1:
            raise ValueError(f"folds={self.folds} with split='released': the released split is one fixed split; "
                             "use folds=1, or split='group' for k-fold cross-validation")
        if self.subset not in SUBSETS:
            raise ValueError(f"subset must be one of {SUBSETS}, got {self.subset!r}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.split == "released" and self.split_seed != 0:
            raise ValueError(f"split_seed={self.split_seed} has no effect with split='released' (the released "
                             "split's seed is fixed at 230); leave it at 0 or use split='group'")
        if self.image_size < 64:
            raise ValueError(f"image_size must be at least 64 px, got {self.image_size}")
        fractions = tuple(float(f) for f in self.fractions)
        if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) <= 0:
            raise ValueError(f"fractions must be three positive numbers summing to 1, got {self.fractions}")
        object.__setattr__(self, "fractions", fractions)
        if not 0 < self.synth_scale <= 1:
            raise ValueError(f"synth_scale must be in (0, 1], got {self.synth_scale}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model and its reported numbers.

    ``weights``: ``None`` (from scratch; ``"none"`` is read as None), ``"imagenet"`` or a file.
    ``cell_encoder``: for a graph model of :data:`cervixlib.graphs.CELL_ENCODERS`, the run of the
    CNN on the isolated cells whose pooled features of each cell's crop are the graph's node
    features: the same fold of the same grouped folds (so it never trained on a crop of the
    graph's test images) on the same data (its root, scale, seed and ``skip_bad`` follow this
    run's). Part of the run's key, so a graph run names the exact CNN it read.
    """

    model: str
    data: DataConfig = field(default_factory=DataConfig)
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    seed: int = 0
    weights: str | None = None
    precision: Precision = "auto"
    cell_encoder: TrainConfig | None = None

    def __post_init__(self) -> None:
        if isinstance(self.weights, str) and self.weights.lower() == "none":
            object.__setattr__(self, "weights", None)
        if isinstance(self.cell_encoder, dict):
            object.__setattr__(self, "cell_encoder", TrainConfig.from_dict(self.cell_encoder))
        if self.cell_encoder is not None:
            self._check_encoder(self.cell_encoder)
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"epochs, batch_size and lr must be positive: {self}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def _check_encoder(self, enc: TrainConfig) -> None:
        from cervixlib.graphs import CELL_ENCODERS

        expected = CELL_ENCODERS.get(self.model)
        if expected is None or enc.model != expected:
            raise ValueError(f"cell_encoder is for the graph models that read a CNN's features "
                             f"({', '.join(f'{g}: {m}' for g, m in CELL_ENCODERS.items())}), not {self.model} "
                             f"with {enc.model}")
        d, e = self.data, enc.data
        if d.subset != "multi" or e.subset != "isolated" or enc.cell_encoder is not None:
            raise ValueError(f"{self.model} reads multi-cell images with a CNN of the isolated cells; got subsets "
                             f"{d.subset!r} and {e.subset!r}")
        if d.split != "group" or d.folds < 2 or (d.folds, d.fold, d.split_seed, d.fractions) != (
                e.folds, e.fold, e.split_seed, e.fractions):
            raise ValueError(f"{self.model} needs its cell encoder on the same fold of the same grouped k-fold "
                             f"split (folds > 1: the folds of the two subsets are dealt together, so the encoder "
                             f"never trained on a crop of the graph's test images); got {d.split} "
                             f"fold {d.fold + 1} of {d.folds} and {e.split} fold {e.fold + 1} of {e.folds}")
        same = {k: getattr(d, k) for k in ("root", "synth_scale", "synth_seed", "skip_bad")}
        if any(getattr(e, k) != v for k, v in same.items()):
            object.__setattr__(self, "cell_encoder", dataclasses.replace(enc, data=dataclasses.replace(e, **same)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key_dict(self) -> dict[str, Any]:
        """The config as its run's key hashes it (:func:`cervixlib.runs.run_key`): without the data's
        root (data may move), and without ``cell_encoder`` when there is none (so that the keys of
        runs without one are what they were before the field); the encoder's likewise."""
        payload = self.to_dict()
        payload["data"].pop("root")
        payload.pop("cell_encoder")
        if self.cell_encoder is not None:
            payload["cell_encoder"] = self.cell_encoder.key_dict()
        return payload

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> TrainConfig:
        payload = dict(payload)
        data = dict(payload.pop("data", {}))
        if "fractions" in data:
            data["fractions"] = tuple(data["fractions"])
        if payload.get("cell_encoder") is not None:
            payload["cell_encoder"] = cls.from_dict(payload["cell_encoder"])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(payload) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        return cls(data=DataConfig(**data), **payload)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with top-level fields (or ``data`` fields, by their names) changed."""
        data_fields = {f.name for f in dataclasses.fields(DataConfig)}
        data_changes = {k: changes.pop(k) for k in list(changes) if k in data_fields}
        data = dataclasses.replace(self.data, **data_changes) if data_changes else self.data
        return dataclasses.replace(self, data=data, **changes)


@dataclass(frozen=True)
class ExplainSizes:
    """How much chapter 5 (the explanations) computes beyond its IG steps and images
    (:attr:`Profile.explain_steps`, :attr:`Profile.explain_images`): a profile's, so that
    ``cervix book``, papermill's ``-p profile paper`` and ``profile = "paper"`` in JupyterLab
    give the same pages (:meth:`cervixlib.study.Study.explain_sizes`; a chapter parameter that
    is not None wins).

    ``perturbation_steps``: deletion/insertion remove 1/steps of the pixels a step (with 5, a
    model at 64 px has lost its answer after the first step, and the areas of every map
    collapse together); ``released_images``: images a model for the released IG (500 passes
    an image); ``robustness_images``: images for IG's five baselines (an interval needs
    :data:`cervixlib.metrics.MIN_IMAGES`); ``cascade_images`` and ``cascade_steps``: the
    cascading randomisation's images and IG steps; ``convergence_images``: images for IG's
    completeness against its steps.
    """

    perturbation_steps: int = 8
    released_images: int = 0
    robustness_images: int = 2
    cascade_images: int = 1
    cascade_steps: int = 8
    convergence_images: int = 1

    def __post_init__(self) -> None:
        if self.perturbation_steps < 2:
            raise ValueError(f"perturbation_steps must be at least 2, got {self.perturbation_steps}")
        for f in dataclasses.fields(self):
            if getattr(self, f.name) < 0:
                raise ValueError(f"{f.name} must not be negative, got {getattr(self, f.name)}")


@dataclass(frozen=True)
class Profile:
    """A named bundle of run settings shared by the CLI and the notebooks.

    ``description`` says what the profile is for and what it buys against the paper
    profile; the book's profiles page shows it (:func:`profiles_markdown`; each chapter's
    settings line links there), so it holds no measured time or machine (README and
    ``benchmarks/*_results.md`` do; a test checks).

    ``isolated_epochs``, when set, replaces ``epochs`` on the isolated cells: they have
    about four times as many images as the multi-cell set, hence four times as many
    updates per epoch, and on a CPU they are most of a profile's training time.
    ``isolated_image_size``, when set, replaces ``image_size`` on the isolated cells:
    the embedded set's cell crops are small (median 58 px a side), so a size near theirs
    keeps their detail at a fraction of the cost of up-sampling them.
    ``cell_timeout`` bounds one notebook cell under ``cervix book`` (seconds; None: no
    bound), so that a stalled kernel fails the build instead of hanging it.
    ``split`` is the profile's :attr:`DataConfig.split` (an explicit ``split`` wins).
    ``folds`` is the number of folds of our group split (grouped, stratified k-fold
    cross-validation; runs of :meth:`Study.run` are fold 0 of them, :meth:`Study.fold_runs`
    all of them). A run under the released split has one split whatever ``folds`` says, so on
    the paper profile (released split) the folds apply to the runs under our protocol only.
    ``protocol`` is what the chapters' main tables follow (``"released"`` on the paper
    profile: the released split, designs and ImageNet weights); ``side_models`` also get
    runs under the other protocol, shown beside, and ``leakage_models`` a second run on
    isolated cells under the other split, for the leakage table. ``pretrained``: the
    released protocol starts from ImageNet weights where the released code did (off on
    the embedded data, which is meant to run offline). ``weights``: our protocol's starting
    weights when the command line is not told (``--weights``; ``"imagenet"`` on the paper
    profile, as the runs behind the paper's numbers started); the API's ``weights=None`` is
    from scratch on every profile. ``graph_epochs``: the epochs of the cell-graph models
    (:data:`cervixlib.graphs.GRAPH_MODELS`, about 10k parameters, an epoch in well under a second
    on a CPU) in place of ``epochs``, which leave them far from converged; an explicit ``epochs`` wins.
    ``repeats``: repeated k-fold cross-validation, r x k runs a model (repeat i splits with
    ``split_seed=i``), tested by the same corrected resampled t-test over all r x k differences
    (Bouckaert & Frank 2004); every profile has 1, and the front page says how many an effect of
    the paper's size would need (``Study(repeats=...)``, ``cervix book -p repeats=R``).
    ``explain``: chapter 5's sizes (:class:`ExplainSizes`).
    """

    name: str
    description: str
    image_size: int
    epochs: int
    synth_scale: float
    isolated_epochs: int | None = None
    isolated_image_size: int | None = None
    batch_size: int = 16
    lr: float = 1e-3
    seeds: tuple[int, ...] = (0,)
    explain_steps: int = 50
    explain_images: int = 24
    cell_timeout: float | None = None
    split: SplitName = "group"
    protocol: Protocol = "ours"
    pretrained: bool = False
    weights: str | None = None
    side_models: tuple[str, ...] = ()
    leakage_models: tuple[str, ...] = ()
    folds: int = 1
    graph_epochs: int | None = None
    repeats: int = 1
    explain: ExplainSizes = field(default_factory=ExplainSizes)

    def __post_init__(self) -> None:
        if self.folds < 1 or self.repeats < 1:
            raise ValueError(f"profile {self.name!r}: folds and repeats must be at least 1, got "
                             f"{self.folds} and {self.repeats}")

    def epochs_for(self, subset: str) -> int:
        """The profile's number of epochs on ``subset``."""
        if subset == "isolated" and self.isolated_epochs is not None:
            return self.isolated_epochs
        return self.epochs

    def image_size_for(self, subset: str) -> int:
        """The profile's input size (px) on ``subset``."""
        if subset == "isolated" and self.isolated_image_size is not None:
            return self.isolated_image_size
        return self.image_size

    def config(self, model: str, **overrides: Any) -> TrainConfig:
        """Build the :class:`TrainConfig` of this profile for ``model``; ``None`` overrides are ignored.

        An explicit ``epochs`` or ``image_size`` wins over the profile's, on either subset. Without a
        ``subset``, a ``root`` gets its own (:func:`cervixlib.layout.default_subset`:
        ``"multi"`` for SIPaKMeD, ``"images"`` for a class-per-folder set); the embedded
        synthetic set gets ``"multi"``. Without ``folds``, the group split gets the
        profile's :attr:`folds` (fold ``fold``, default 0) and the released split one split.
        """
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if "split" in overrides:
            overrides["split"] = split_name(overrides["split"])
        if "folds" not in overrides:
            overrides["folds"] = self.folds if overrides.get("split", self.split) == "group" else 1
        if "subset" not in overrides and overrides.get("root"):
            overrides["subset"] = default_subset(overrides["root"])
        subset = overrides.get("subset", DataConfig.subset)
        data = DataConfig(image_size=self.image_size_for(subset), synth_scale=self.synth_scale,
                          split=self.split)
        from cervixlib.graphs import is_graph_model

        base = TrainConfig(
            model=model,
            data=data,
            epochs=(self.graph_epochs if is_graph_model(model) and self.graph_epochs else self.epochs_for(subset)),
            batch_size=self.batch_size,
            lr=self.lr,
        )
        return base.replace(**overrides)


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="smoke",
            description="for tests and CI, to check that every step runs, not what it finds: 64 px, "
                        "one epoch, 2 folds (without --data, a tiny embedded synthetic set)",
            image_size=64, epochs=1, synth_scale=0.03, explain_steps=8, explain_images=4,
            cell_timeout=300,  # its slowest cell took under 60 s on a 2-core CPU
            side_models=("rcan_densenet121",), leakage_models=("resnet50",), folds=2, graph_epochs=2,
            # no released IG in the measured study (500 passes an image, most of the chapter's time at
            # this size); the section beside ours still runs it, and the paper profile's test measures it
            explain=ExplainSizes(perturbation_steps=4, released_images=0, cascade_steps=4),
        ),
        Profile(
            name="default",
            description="for reading the whole book from a fresh clone on a small CPU, no GPU needed: "
                        "64 px (the paper: 224 px), 8 epochs (2 on SIPaKMeD's isolated cells; the paper: "
                        "50), 3 grouped folds (the paper profile: 5), and without --data the embedded "
                        "synthetic set at a quarter of SIPaKMeD's counts; against the paper profile it "
                        "trades resolution, epochs and data for a build a laptop can wait for, so every "
                        "verdict rests on 3 folds of small, short runs",
            image_size=64, epochs=8, isolated_epochs=2, synth_scale=0.25,
            explain_steps=32, explain_images=16, cell_timeout=900,
            side_models=("rcan_densenet121",), leakage_models=("resnet50",), folds=3, graph_epochs=40,
            explain=ExplainSizes(perturbation_steps=8),
        ),
        Profile(
            name="paper",
            description="the protocol of Wang et al. (2021) as their released code ran it: 50 epochs, "
                        "batch 16, Adam lr 1e-3, the released 70/20/10 split (seed 230, crops of one "
                        "image on both sides), the released designs with ImageNet weights, 224 px, "
                        "full-size data (a GPU is advisable); ours beside it (cervix starts it from ImageNet "
                        "weights unless --weights none)",
            image_size=224, epochs=50, synth_scale=1.0, explain_steps=50, explain_images=97,
            split="released", protocol="released", pretrained=True, weights="imagenet",
            side_models=("resnet50", "densenet121", "ran_resnet50", "rcan_densenet121"),
            leakage_models=("resnet50", "densenet121", "ran_resnet50", "rcan_densenet121"), folds=5,
            graph_epochs=100,
            explain=ExplainSizes(perturbation_steps=20, released_images=16, robustness_images=16,
                                 cascade_images=8, cascade_steps=32, convergence_images=8),
        ),
    )
}


def profiles_markdown() -> str:
    """The profiles as a Markdown list, each with what it is for and its main sizes: the book's
    one description of them (``{{ profiles }}`` on its "How to read this book" page)."""
    import re

    lines = []
    for p in PROFILES.values():
        text = re.sub(r"(--[a-z][a-z-]*(?: none)?)", r"`\1`", p.description)  # options as code: no en dashes
        repeats = f", the folds repeated {p.repeats} times" if p.repeats > 1 else ""
        lines.append(f"- `{p.name}`: {text}{repeats}. Its explanations (chapter 5): {p.explain_images} test "
                     f"images a model, IG in {p.explain_steps} steps, deletion and insertion in "
                     f"{p.explain.perturbation_steps} steps.")
    return "\n".join(lines)


#: ``--profile`` choices: the profiles, then ``auto`` (:func:`resolve_profile`).
PROFILE_CHOICES: tuple[str, ...] = (*PROFILES, "auto")


def resolve_profile(name: str, *, data: bool, gpus: int) -> tuple[str, str]:
    """The profile ``name`` stands for, and why: ``auto`` is ``paper`` when a CUDA GPU is
    visible (``gpus`` > 0) and a dataset is given (``data``), else ``default``; any other
    name is itself (the reason is then ``""``)."""
    if name != "auto":
        return name, ""
    if gpus > 0 and data:
        return "paper", "a GPU is present and --data is given; --profile default for the quick CPU book"
    why = "no --data given" if not data else "no CUDA GPU is visible"
    return "default", f"{why}; --profile paper for the paper's protocol, on a GPU with --data"


def get_profile(name: str) -> Profile:
    """Return the named profile, with a clear error listing the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None


def make_config(model: str, *, profile: str = "default", **overrides: Any) -> TrainConfig:
    """Shorthand used by notebooks and the CLI: ``make_config("resnet50", profile="smoke", subset="isolated")``."""
    return get_profile(profile).config(model, **overrides)
