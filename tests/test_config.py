"""Frozen dataclass configs: JSON round trip, validation, profiles."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from cervixlib.config import PROFILES, DataConfig, TrainConfig, get_profile, make_config


def test_json_round_trip_preserves_equality_and_hash():
    cfg = make_config("rcan_densenet121", profile="default", subset="isolated", seed=3)
    back = TrainConfig.from_dict(json.loads(cfg.to_json()))
    assert back == cfg
    assert hash(back) == hash(cfg)


def test_configs_are_frozen():
    cfg = make_config("resnet50", profile="smoke")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 3  # type: ignore[misc]


def test_overrides_reach_nested_data_fields_and_none_is_ignored():
    cfg = make_config("resnet50", profile="default", image_size=128, subset="isolated", epochs=None)
    assert cfg.data.image_size == 128 and cfg.data.subset == "isolated"
    assert cfg.epochs == PROFILES["default"].epochs_for("isolated")


def test_default_profile_trains_isolated_cells_for_fewer_epochs_unless_told():
    default = PROFILES["default"]
    assert make_config("resnet50", profile="default").epochs == default.epochs == 8
    assert make_config("resnet50", profile="default", subset="multi").epochs == 8
    assert make_config("resnet50", profile="default", subset="isolated").epochs == default.isolated_epochs == 2
    assert make_config("resnet50", profile="default", subset="isolated", epochs=7).epochs == 7
    for name in ("smoke", "paper"):  # both subsets alike (the paper: 50 epochs each)
        profile = PROFILES[name]
        assert profile.epochs_for("isolated") == profile.epochs_for("multi") == profile.epochs


def test_paper_profile_is_the_papers_protocol():
    cfg = make_config("densenet121", profile="paper")
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.data.image_size) == (50, 16, 1e-3, 224)
    assert cfg.data.fractions == (0.7, 0.2, 0.1)
    assert cfg.data.synth_scale == 1.0


@pytest.mark.parametrize("bad", [dict(subset="both"), dict(image_size=32), dict(fractions=(0.5, 0.5, 0.5)),
                                 dict(synth_scale=0.0)])
def test_invalid_data_config_is_rejected(bad):
    with pytest.raises(ValueError):
        DataConfig(**bad)


def test_unknown_profile_and_fields_are_reported():
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("fast")
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({"model": "resnet50", "epoch": 3})


def test_isolated_cells_take_the_profiles_isolated_image_size_unless_given():
    import dataclasses

    sized = dataclasses.replace(PROFILES["default"], image_size=80, isolated_image_size=72)
    assert sized.config("resnet50", subset="isolated").data.image_size == 72
    assert sized.config("resnet50", subset="multi").data.image_size == 80
    assert sized.config("resnet50", subset="isolated", image_size=96).data.image_size == 96
    for profile in PROFILES.values():  # every named profile uses one size on both subsets
        assert profile.image_size_for("isolated") == profile.image_size_for("multi") == profile.image_size


def test_data_config_defaults_are_the_default_profiles():
    # but for the folds: a bare DataConfig is the single 70/20/10 split, the profiles use k folds
    assert DataConfig(folds=PROFILES["default"].folds) == make_config("resnet50", profile="default").data


def test_folds_are_a_profile_setting_and_part_of_the_run():
    assert {n: p.folds for n, p in PROFILES.items()} == {"smoke": 2, "default": 3, "paper": 5}
    cfg = make_config("resnet50", profile="default")
    assert (cfg.data.folds, cfg.data.fold) == (3, 0)
    assert make_config("resnet50", profile="default", fold=2).data.fold == 2
    assert make_config("resnet50", profile="default", folds=1).data.folds == 1  # the single split
    # the released split is one split: the paper profile's folds apply to our split only
    assert make_config("resnet50", profile="paper").data.folds == 1
    assert make_config("resnet50", profile="paper", split="group").data.folds == 5
    assert make_config("resnet50", profile="default", split="released").data.folds == 1
    assert cfg != cfg.replace(fold=1)  # part of a run's identity
    old = cfg.to_dict()
    del old["data"]["folds"], old["data"]["fold"]  # a run saved before the fields existed
    assert TrainConfig.from_dict(old).data.folds == 1


def test_run_directory_names_the_fold():
    from cervixlib.runs import run_dir_name

    cfg = make_config("resnet50", profile="default", fold=1)
    assert "-f2of3-" in run_dir_name(cfg, "0123456789abcdef")
    assert "-f" not in run_dir_name(cfg.replace(folds=1, fold=0), "0123456789abcdef").split("-s0-")[0]


def test_split_is_part_of_the_config_and_the_paper_profile_uses_the_released_one():
    assert make_config("resnet50", profile="default").data.split == "group"
    assert make_config("resnet50", profile="smoke").data.split == "group"
    paper = make_config("resnet50", profile="paper", subset="isolated")
    assert paper.data.split == "released" and PROFILES["paper"].split == "released"
    assert make_config("resnet50", profile="paper", split="group").data.split == "group"  # explicit wins
    assert make_config("resnet50", profile="default", split="released").data.split == "released"
    assert TrainConfig.from_dict(json.loads(paper.to_json())) == paper
    assert paper != paper.replace(split="group")  # part of a run's identity
    old = make_config("resnet50", profile="smoke").to_dict()
    del old["data"]["split"]  # a run saved before the field existed
    assert TrainConfig.from_dict(old).data.split == "group"
    with pytest.raises(ValueError, match="split must be one of"):
        DataConfig(split="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="split_seed"):
        DataConfig(split="released", split_seed=3)


def test_cli_train_accepts_split():
    from cervixlib.cli import build_parser

    args = build_parser().parse_args(["train", "--model", "resnet50", "--folds", "5", "--fold", "2"])
    assert (args.folds, args.fold) == (5, 2)  # --fold counts from 1, as the run names do

    args = build_parser().parse_args(["train", "--model", "resnet50", "--split", "released"])
    assert args.split == "released"
    assert build_parser().parse_args(["train", "--model", "resnet50"]).split is None


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_descriptions_hold_no_measured_time_or_machine(name):
    """The book's profiles page shows each profile's description: what the profile is for, not
    how long it took where (README and benchmarks/*_results.md keep the measurements)."""
    text = PROFILES[name].description
    assert not re.search(r"\d\s*(min|minutes?|s|secs?|seconds?|h|hours?)\b", text), text
    assert not re.search(r"\b(Intel|AMD|EPYC|Xeon|Ryzen|Threadripper|Apple M\d|AVX|AMX)", text, re.IGNORECASE), text


def test_the_profiles_page_describes_each_profile_once_with_its_options_as_code():
    """``{{ profiles }}`` (the book's one description of the profiles, which every chapter's
    settings line links to): each profile, its chapter-5 sizes, and no bare ``--`` that Markdown
    would turn into a dash."""
    from cervixlib.config import profiles_markdown

    text = profiles_markdown()
    for p in PROFILES.values():
        assert f"- `{p.name}`: " in text and f"deletion and insertion in {p.explain.perturbation_steps} steps" in text
    assert not re.search(r"(?<!`)--[a-z]", text), text
