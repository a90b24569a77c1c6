"""The ``cervix`` command line: one sub-command per task, each a thin call into the library.

Imports of the heavy modules happen inside the command functions, so ``cervix --help``
stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["main", "build_parser"]

_Command = Callable[[argparse.Namespace], int]


def _parse_size(text: str) -> tuple[int, int]:
    """Parse ``WxH`` (or a single number for a square) into ``(width, height)``."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"image size must look like 512x384, got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 32:
        raise argparse.ArgumentTypeError(f"image size must be WxH with sides >= 32, got {text!r}")
    return parts[0], parts[1]


# ----------------------------------------------------------------------------- data
def _cmd_synth(args: argparse.Namespace) -> int:
    from cervixlib.data import load_index, synthesize

    root = synthesize(args.out, scale=args.scale, seed=args.seed, image_size=args.image_size)
    print(load_index(root).describe())
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from cervixlib.data import load_index

    print(load_index(args.root, skip_bad=args.skip_bad).describe())
    return 0


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write a synthetic SIPaKMeD-compatible dataset")
    p.add_argument("out", type=Path, help="output folder (created)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="fraction of the real class counts (1.0 = 966 multi-cell images, 4031 cells)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=_parse_size, default=None,
                   help="multi-cell image size WxH (default: the generator's, well below 2048x1536)")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("info", help="summarise a SIPaKMeD (or class-per-folder) dataset")
    p.add_argument("root", type=Path)
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable files and list them instead of stopping at the first")
    p.set_defaults(func=_cmd_info)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cervix", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_data_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cervix`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    from cervixlib.data import DataError

    try:
        return int(args.func(args) or 0)
    except DataError as exc:  # bad input: one line naming the file, no traceback
        print(f"cervix {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
