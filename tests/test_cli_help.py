"""The command line follows argparse's habits (issue 26): ``--version``; help text on every
option with its default shown; one wording and one placeholder per option across commands;
``--data ROOT``, ``--runs DIR``, ``--book DIR``, ``--profile`` in that order everywhere;
``train --model`` lists the registry. Parser only: nothing trains, nothing imports torch here."""

from __future__ import annotations

import argparse

import pytest

from cervixlib._cli_options import _no_default
from cervixlib.cli import build_parser, main

#: Options several commands share: each must read the same in every command that has it.
SHARED = ("--data", "--runs", "--book", "--profile", "--notebooks", "--synthetic", "--param", "--skip-bad",
          "--jobs", "--address")
ORDER = ("--data", "--runs", "--book", "--profile")


def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def _long(action: argparse.Action) -> str:
    return max(action.option_strings, key=len) if action.option_strings else action.dest


def _help_of(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The option's help as printed (the formatter's default added)."""
    formatter = parser._get_formatter()
    return formatter._expand_help(action) if action.help else ""


def test_zero_is_a_default_to_show():
    assert not _no_default(0) and not _no_default(0.0) and _no_default(False) and _no_default(None)
    seed = next(a for a in _commands()["synth"]._actions if _long(a) == "--seed")
    assert _help_of(_commands()["synth"], seed).endswith("(default: 0)")


def test_version(capsys):
    from cervixlib import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"cervix {__version__}"


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_option_has_help_and_shows_its_default(command):
    parser = _commands()[command]
    for action in _options(parser):
        text = _help_of(parser, action)
        assert text.strip(), f"cervix {command} {_long(action)}: no help"
        if action.option_strings and not _no_default(action.default):
            assert "default" in text and str(action.default) in text, (
                f"cervix {command} {_long(action)}: the help does not show its default {action.default!r}: {text}")
        if action.option_strings and action.default is None and action.nargs != 0 and not action.required:
            assert "default" in text or "required" in text, (
                f"cervix {command} {_long(action)}: what happens without it is not said: {text}")


def test_shared_options_read_the_same_in_every_command():
    """In the commands that train (info's --skip-bad only lists bad files and sets the exit status)."""
    seen: dict[str, dict[str, tuple]] = {}
    for command, parser in _commands().items():
        for action in _options(parser) if command in ("train", "plan", "book") else ():
            if _long(action) in SHARED:
                seen.setdefault(_long(action), {})[command] = (action.help, action.metavar, action.choices,
                                                               repr(action.default), tuple(action.option_strings))
    for option, by_command in seen.items():
        assert len(set(by_command.values())) == 1, (option, by_command)
    assert set(seen["--data"]) == set(seen["--runs"]) == set(seen["--profile"]) == {"train", "plan", "book"}
    assert seen["--data"]["book"][1] == "ROOT" and seen["--runs"]["book"][1] == "DIR"
    assert seen["--profile"]["book"][2] == ("smoke", "default", "paper", "auto")
    assert seen["--profile"]["book"][3] == "'auto'"


@pytest.mark.parametrize("command", ["train", "plan", "book"])
def test_shared_options_come_first_in_one_order(command):
    names = [_long(a) for a in _options(_commands()[command])]
    assert names[:len(ORDER)] == list(ORDER), names


def test_train_model_lists_the_registry_and_is_required_unless_plan(capsys):
    from cervixlib.config import MODEL_NAMES
    from cervixlib.models import list_models

    assert tuple(list_models()) == MODEL_NAMES  # the parser's copy, read without torch
    model = next(a for a in _commands()["train"]._actions if _long(a) == "--model")
    assert tuple(model.choices) == MODEL_NAMES and "required (unless --plan)" in model.help
    assert main(["train", "--profile", "smoke"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "cervix train: error: --model is required (or --plan, for every run of the book)"]
    with pytest.raises(SystemExit):
        main(["train", "--model", "resnet5"])
    assert "invalid choice: 'resnet5'" in capsys.readouterr().err


def test_positional_arguments_and_precision_say_what_they_are():
    commands = _commands()
    for command in ("info", "evaluate", "compare", "synth", "explain"):
        for action in commands[command]._actions:
            if not action.option_strings:
                assert action.help, (command, action.dest)
    precision = {c: next(a for a in commands[c]._actions if _long(a) == "--precision") for c in ("train", "explain")}
    assert {c: a.default for c, a in precision.items()} == {"train": "auto", "explain": "fp32"}
    assert "(default: auto)" in _help_of(commands["train"], precision["train"])
    assert "(default: fp32)" in _help_of(commands["explain"], precision["explain"])


def test_param_keeps_its_syntax_and_says_how_it_differs_from_papermill(capsys):
    param = next(a for a in _commands()["book"]._actions if _long(a) == "--param")
    assert "(NAME=VALUE, a YAML value; unlike papermill's -p NAME VALUE)" in param.help
    args = build_parser().parse_args(["plan", "-p", "models=[resnet50]", "-p", "epochs=2"])
    assert args.param == [("models", ["resnet50"]), ("epochs", 2)]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["plan", "-p", "epochs", "2"])
    assert "NAME=VALUE" in capsys.readouterr().err


def test_split_paper_is_read_as_released_with_one_line(capsys):
    args = build_parser().parse_args(["train", "--model", "resnet50", "--split", "paper"])
    assert args.split == "released"
    assert capsys.readouterr().err.strip() == "cervix: split 'paper' is now called 'released'"
    split = next(a for a in _commands()["train"]._actions if _long(a) == "--split")
    assert tuple(split.choices) == ("group", "released")
