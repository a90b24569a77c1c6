"""The options several ``cervix`` commands share, and how they are settled before a command runs.

One wording and one placeholder per option (``--data ROOT``, ``--runs DIR``, ``--book DIR``,
``--profile``, in that order; tests/test_cli_help.py checks it), argparse's defaults
formatter, ``--profile auto`` (:func:`cervixlib.config.resolve_profile`), the paper profile's
refusal without ``--data``, and the book folder found from any working folder. Imports no
torch at import time (``cervix --help`` stays light).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: The help of the options several commands share: one wording and one placeholder each
#: (tests/test_cli_help.py checks that every command shows the same).
_DATA_HELP = ("dataset root: SIPaKMeD or any class-per-folder set (default: the embedded synthetic set; under "
              "--profile paper only with --synthetic)")
_RUNS_HELP = "run store directory"
_BOOK_HELP = ("book folder: manifest.yml, _toc.yml and the executed notebooks (default: ./book if it holds "
              "manifest.yml, else the book/ of the clone cervixlib is installed from)")
_NOTEBOOKS_HELP = "source notebooks (default: the notebooks/ beside the book folder)"
_PROFILE_HELP = ("training profile: smoke (tests and CI), default (a small CPU), paper (the paper's protocol, "
                 "for a GPU), auto (paper when a CUDA GPU is visible and --data is given, else default)")
_SYNTHETIC_HELP = ("under --profile paper without --data: run on the full-size embedded synthetic set on "
                   "purpose (the other profiles use the embedded set without it)")
_PARAM_HELP = ("a chapter parameter (NAME=VALUE, a YAML value; unlike papermill's -p NAME VALUE), e.g. "
               "-p epochs=2 or -p 'models=[resnet50]'; repeatable (default: none)")
_SKIP_BAD_HELP = ("leave bad files out instead of refusing the dataset (the chapter parameter skip_bad); each "
                  "run and each chapter's settings line say how many")
_JOBS_HELP = ("runs of the book's plan trained at once (auto: 4 a GPU; without one, 2 on a CPU of 2 cores or "
              "more, as measured in benchmarks/plan_results.md)")
_ADDRESS_HELP = ("train the plan on this Ray cluster (auto, or HOST:PORT; default: a local instance on "
                 "127.0.0.1); the run store and data must be on a shared filesystem")
#: ``--weights`` of ``cervix book``, ``cervix plan`` and ``cervix train --plan``: the chapter parameter ``weights``.
_BOOK_WEIGHTS_HELP = ("our protocol's starting weights for every run of the book (the chapter parameter weights, as "
                      "-p weights=W): "
                      "imagenet (torchvision's ImageNet weights in each model's backbone, read from the torch hub "
                      "cache or downloaded there once; attention layers and heads from scratch), none (from "
                      "scratch), or the path of a torchvision resnet50/densenet121 state_dict (default: the "
                      "profile's: imagenet under --profile paper, else none). The released protocol keeps the "
                      "released code's rule. The weights are in each run's key and each page's settings line")


def _no_default(value: object) -> bool:
    """An option without a value of its own: a flag's False, None, an empty list (0 is a value)."""
    return value is None or value is False or value is argparse.SUPPRESS or (isinstance(value, list) and not value)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's defaults formatter, quiet where an option has no value of its own (a flag, or
    ``None``: its help says what then happens) or already says its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("%(default)" in text or "default" in text or not action.option_strings
                or _no_default(action.default)):
            return text
        return f"{text} (default: %(default)s)"


def _add_shared(p: argparse.ArgumentParser, *, book: bool = True) -> None:
    """``--data ROOT``, ``--runs DIR``, ``--book DIR``, ``--profile``, in that order in every
    command that has them, then ``--notebooks DIR`` and ``--synthetic``."""
    from cervixlib.config import PROFILE_CHOICES

    p.add_argument("--data", type=Path, default=None, metavar="ROOT", help=_DATA_HELP)
    p.add_argument("--runs", type=Path, default=Path("runs"), metavar="DIR", help=_RUNS_HELP)
    if book:
        p.add_argument("--book", type=Path, default=None, metavar="DIR", help=_BOOK_HELP)
    p.add_argument("--profile", choices=PROFILE_CHOICES, default="auto", help=_PROFILE_HELP)
    if book:
        p.add_argument("--notebooks", type=Path, default=None, metavar="DIR", help=_NOTEBOOKS_HELP)
        p.add_argument("--synthetic", action="store_true", help=_SYNTHETIC_HELP)


def _gpu_count() -> int:
    """CUDA GPUs visible to this process (imports torch: only ``--profile auto`` with ``--data`` asks)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _settle_profile(args: argparse.Namespace, command: str, *, needs_data: bool = True) -> bool:
    """Resolve ``--profile auto`` (announced in one line on stderr) and the profile's default
    ``--weights``; False (after one line on stderr) where ``--profile paper`` lacks ``--data``."""
    from cervixlib.config import get_profile, resolve_profile

    given = args.data is not None
    name, why = resolve_profile(args.profile, data=given, gpus=_gpu_count() if args.profile == "auto" and given else 0)
    if why:
        print(f"cervix {command}: profile {name} ({why})", file=sys.stderr)
    args.profile = name
    if name == "paper" and needs_data and not given and not getattr(args, "synthetic", False):
        print(f"cervix {command}: error: --profile paper trains 50 epochs at 224 px on full-size data: pass "
              "--data ROOT (SIPaKMeD or a class-per-folder set), or --synthetic to run it on the full-size "
              "embedded synthetic set on purpose", file=sys.stderr)
        return False
    args.profile_weights = args.weights is None  # the profile's, not the user's
    if args.weights is None:
        args.weights = get_profile(name).weights
    return True


def _clone_root() -> Path:
    """The source clone cervixlib is installed from in editable mode (``src/cervixlib`` -> the clone)."""
    import cervixlib

    return Path(cervixlib.__file__).resolve().parents[2]


def _settle_book(args: argparse.Namespace, command: str) -> bool:
    """``--book`` and ``--notebooks`` from any working folder: ./book if it holds manifest.yml,
    else the clone's; False (after one line on stderr) where neither has one."""
    if args.book is None:
        here, clone = Path("book"), _clone_root()
        found = [b for b in (here, clone / "book") if (b / "manifest.yml").is_file()]
        if not found:
            print(f"cervix {command}: error: no book/manifest.yml here or in {clone}; run it in the clone "
                  "(cd /path/to/clone) or pass --book DIR --notebooks DIR", file=sys.stderr)
            return False
        args.book = found[0]
    if args.notebooks is None:
        args.notebooks = args.book.parent / "notebooks"
    return True
