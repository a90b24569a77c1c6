"""The ``cervix`` command line: one sub-command per task, each a thin call into the library.

Building the parser imports only :mod:`cervixlib.config` (no torch, no Captum): the heavy
modules are imported inside the command functions, so ``cervix --help`` and
``cervix <command> --help`` answer at once, and ``cervix info`` reads a dataset without
torch (``tests/test_cli_imports.py`` checks both).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from cervixlib._cli_options import (_ADDRESS_HELP, _BOOK_WEIGHTS_HELP, _JOBS_HELP, _PARAM_HELP, _SKIP_BAD_HELP,
                                    _HelpFormatter, _add_shared, _settle_book, _settle_profile)

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

    index = load_index(args.root, skip_bad=True, verify=args.verify)  # every bad file, listed
    print(index.describe())
    if index.skipped and not args.skip_bad:
        n = len(index.skipped)
        print(f"cervix info: error: {n} bad file{'s' * (n != 1)} (listed above under Skipped); fix or "
              f"remove {'them' if n > 1 else 'it'}, or leave {'them' if n > 1 else 'it'} out with --skip-bad",
              file=sys.stderr)
        return 2
    return 0


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", formatter_class=_HelpFormatter, help="write a synthetic SIPaKMeD-compatible dataset")
    p.add_argument("out", type=Path, help="output folder (created)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="fraction of the real class counts (1.0 = 966 multi-cell images, 4,049 cells)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="the generator's seed")
    p.add_argument("--image-size", type=_parse_size, default=None, metavar="WxH",
                   help="multi-cell image size WxH (default: the generator's, well below 2048x1536)")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("info", formatter_class=_HelpFormatter, help="summarise a SIPaKMeD (or class-per-folder) dataset and list every problem",
                       description="Print images per class and subset, then every bad file and warning. "
                                   "Exits with status 2 when a file is bad (unless --skip-bad) or a class "
                                   "folder is empty, missing or unreadable.")
    p.add_argument("root", type=Path, help="dataset root: SIPaKMeD or any class-per-folder set")
    p.add_argument("--skip-bad", action="store_true",
                   help="accept bad files: they are still listed, but left out and the exit status is 0")
    p.add_argument("--verify", action="store_true",
                   help="decode every image fully (slow) instead of checking headers only")
    p.set_defaults(func=_cmd_info)


# ----------------------------------------------------------------------------- engine
def _chapter_params(args: argparse.Namespace) -> dict[str, object]:
    """``-p NAME=VALUE`` with the options that stand for chapter parameters (``--skip-bad``, ``--weights``)."""
    return {**dict(args.param), **({"skip_bad": True} if args.skip_bad else {}),
            **({"weights": args.weights} if args.weights is not None else {})}


def _cmd_plan(args: argparse.Namespace) -> int:
    from cervixlib.book import BookError
    from cervixlib.book.plan import book_plan
    from cervixlib.plan import store_throughput
    from cervixlib.throughput import load_throughput

    if not (_settle_profile(args, "plan") and _settle_book(args, "plan")):
        return 2
    logging.getLogger("papermill").setLevel(logging.WARNING)  # its inspection logs every notebook
    try:
        table = load_throughput(args.throughput) if args.throughput is not None else None  # None: the built-in one
        plan = book_plan(args.profile, args.data, params=_chapter_params(args), book_dir=args.book,
                         notebooks_dir=args.notebooks, runs_dir=args.runs, generate=False,
                         verify="hash" if args.verify else "size")
    except (BookError, ValueError) as exc:
        print(f"cervix plan: error: {exc}", file=sys.stderr)
        return 2
    print(plan.text(store_throughput(args.runs), table))
    return 0


def _train_plan(args: argparse.Namespace) -> int:
    """``cervix train --plan``: every run of the book's plan that the store lacks, in parallel."""
    from cervixlib.book import BookError
    from cervixlib.book.plan import book_plan
    from cervixlib.models.weights import CheckpointError, WeightsNotFoundError, prefetch_imagenet
    from cervixlib.parallel import RayUnavailable, train_plan

    if not _settle_book(args, "train"):
        return 2
    logging.getLogger("papermill").setLevel(logging.WARNING)
    try:
        plan = book_plan(args.profile, args.data, params=_chapter_params(args), book_dir=args.book,
                         notebooks_dir=args.notebooks, runs_dir=args.runs)
        # the ImageNet files once, before any run (one line when they cannot be had)
        prefetch_imagenet(r.config.model for r in plan.todo if r.config.weights == "imagenet")
        result = train_plan(plan, jobs=args.jobs, runs_per_gpu=args.runs_per_gpu, address=args.address)
    except (BookError, RayUnavailable, WeightsNotFoundError, CheckpointError) as exc:
        print(f"cervix train: error: {exc}", file=sys.stderr)
        return 2
    if not result.ok:
        print(f"cervix train: error: {len(result.failed)} run(s) of the plan failed (listed above); "
              "run the same command again to resume them", file=sys.stderr)
        return 1
    return 0


#: ``cervix train`` options that set one run, with their parser defaults; ``--plan`` takes its
#: settings from the profile and ``-p`` (and ``--weights``, ``--skip-bad``: chapter parameters under ``--plan``).
_SINGLE_RUN_OPTIONS = {"model": None, "subset": None, "split": None, "folds": None, "fold": None, "epochs": None,
                       "batch_size": None, "lr": None, "image_size": None, "seed": None, "precision": "auto",
                       "resume": False}


def _jobs(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"jobs must be a positive number or 'auto', got {text!r}")
    return value


def _split(text: str) -> str:
    """``--split``: ``paper``, the released split's old name, is read as ``released`` (with one line)."""
    if text == "paper":
        print("cervix: split 'paper' is now called 'released'", file=sys.stderr)
        return "released"
    return text


def _cmd_train(args: argparse.Namespace) -> int:
    from cervixlib.config import get_profile, make_config

    if not _settle_profile(args, "train", needs_data=args.plan):
        return 2
    if args.plan:
        single = [f"--{name.replace('_', '-')}" for name, default in _SINGLE_RUN_OPTIONS.items()
                  if getattr(args, name) != default]
        if single:
            print(f"cervix train: error: --plan trains the book's runs with the profile's settings; {', '.join(single)} "
                  "set one run's (for the plan, use -p NAME=VALUE with a chapter parameter, e.g. -p epochs=2)",
                  file=sys.stderr)
            return 2
        return _train_plan(args)
    if args.model is None:
        print("cervix train: error: --model is required (or --plan, for every run of the book)", file=sys.stderr)
        return 2
    if args.fold is not None:
        k = args.folds if args.folds is not None else (1 if args.split == "released" else get_profile(args.profile).folds)
        if not 1 <= args.fold <= k:
            print(f"cervix train: error: --fold must be in 1..{k} ({k} fold{'s' * (k != 1)}), got {args.fold}",
                  file=sys.stderr)
            return 2

    from cervixlib.config import IMAGENET_BACKBONES
    from cervixlib.report import format_run
    from cervixlib.train import fit

    if args.profile_weights and args.weights == "imagenet" and args.model not in IMAGENET_BACKBONES:
        args.weights = None  # the profile's ImageNet weights go where a model has a torchvision backbone
    config = make_config(
        args.model, profile=args.profile, root=str(args.data) if args.data else None,
        subset=args.subset, split=args.split, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        image_size=args.image_size, seed=args.seed, weights=args.weights, precision=args.precision,
        skip_bad=args.skip_bad, folds=args.folds, fold=None if args.fold is None else args.fold - 1)
    run = fit(config, runs_dir=args.runs, resume=args.resume, progress=not args.quiet)
    print(format_run(run))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from cervixlib.report import format_run
    from cervixlib.runs import load_run
    from cervixlib.train import evaluate_run

    run = load_run(args.run)
    print(format_run(run))
    if not args.no_check:
        check = evaluate_run(run)
        print(f"re-evaluated the best checkpoint on the test split: accuracy {check['accuracy']:.4f}, "
              f"{check['agreement']:.1%} of predictions equal the saved ones")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from cervixlib.report import compare_text
    from cervixlib.runs import load_run

    print(compare_text([load_run(r) for r in args.runs]))
    return 0


def _add_engine_commands(sub: argparse._SubParsersAction) -> None:
    from cervixlib.config import MODEL_NAMES, PRECISIONS, SPLITS, SUBSETS

    p = sub.add_parser("train", formatter_class=_HelpFormatter,
                       help="train a model (or load its cached run) and print its test metrics; "
                            "--plan: every run the book needs, in parallel")
    _add_shared(p)
    p.add_argument("--model", choices=MODEL_NAMES, default=None,
                   help="the architecture (cervixlib.models.list_models()); required (unless --plan)")
    p.add_argument("--plan", action="store_true",
                   help="train every run of the book's plan (cervix plan) that the run store lacks, several "
                        "at once on Ray; failed runs are listed at the end (exit status 1), a rerun resumes them")
    p.add_argument("--jobs", type=_jobs, default="auto", metavar="N", help=_JOBS_HELP)
    p.add_argument("--runs-per-gpu", type=int, default=None, metavar="N",
                   help="--plan: runs sharing one GPU (Ray's fractional GPUs; default: 4, or as many as --jobs asks for)")
    p.add_argument("--address", default=None, metavar="ADDRESS", help=_ADDRESS_HELP)
    p.add_argument("-p", "--param", type=_parse_param, action="append", default=[], metavar="NAME=VALUE",
                   help=_PARAM_HELP)
    p.add_argument("--subset", choices=SUBSETS, default=None,
                   help="SIPaKMeD: multi (multi-cell images) or isolated (isolated cells); a class-per-folder "
                        "set has one subset, images (default: multi on SIPaKMeD, images on a class-per-folder set)")
    p.add_argument("--split", type=_split, choices=SPLITS, default=None,
                   help="group: ours, stratified, no source image in two parts; released: the released code's "
                        "per-class shuffle with seed 230 (paper, its old name, is accepted) (default: the "
                        "profile's: released under --profile paper, else group)")
    p.add_argument("--folds", type=int, default=None, metavar="K",
                   help="grouped, stratified K-fold cross-validation of the group split (default: the "
                        "profile's; 1: the single 70/20/10 split); the released split has one split")
    p.add_argument("--fold", type=int, default=None, metavar="I",
                   help="which fold is the test part, counted from 1: 1..K (default: 1)")
    p.add_argument("--epochs", type=int, default=None, metavar="N", help="training epochs (default: the profile's)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="images a training step (default: the profile's, 16)")
    p.add_argument("--lr", type=float, default=None, metavar="LR", help="Adam's learning rate (default: the profile's, 0.001)")
    p.add_argument("--image-size", type=int, default=None, metavar="PX",
                   help="input side in pixels (default: the profile's)")
    p.add_argument("--seed", type=int, default=None, metavar="N",
                   help="training seed: initialisation, shuffling, augmentation (default: 0)")
    p.add_argument("--weights", default=None, metavar="W",
                   help="the run's starting weights: imagenet (torchvision's ImageNet weights in the backbone), "
                        "none (from scratch) or the path of a torchvision state_dict (default: the profile's: "
                        "imagenet under --profile paper, else none). With --plan: " + _BOOK_WEIGHTS_HELP)
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: bf16 where the device computes it natively (CUDA with bf16, a CPU with AVX512-BF16 "
                        "or AMX), else fp32")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last epoch")
    p.add_argument("--skip-bad", action="store_true", help=_SKIP_BAD_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("plan", formatter_class=_HelpFormatter,
                       help="list every training run the book needs, with images, store status and time",
                       description="Print the run plan of the book for a profile: each run the chapters read "
                                   "(from book/manifest.yml and the notebooks' parameters), its training images x "
                                   "epochs, whether the run store has it, and an estimated time: measured on this "
                                   "device where the store has runs of the same model and size, else projected "
                                   "from measured throughputs (the project's H200 and 2-core CPU figures, or "
                                   "--throughput). "
                                   "Generates no data and trains nothing: `cervix train --plan` trains it.")
    _add_shared(p)
    p.add_argument("-p", "--param", type=_parse_param, action="append", default=[], metavar="NAME=VALUE",
                   help=_PARAM_HELP)
    p.add_argument("--weights", default=None, metavar="W", help=_BOOK_WEIGHTS_HELP)
    p.add_argument("--skip-bad", action="store_true", help=_SKIP_BAD_HELP)
    p.add_argument("--throughput", type=Path, default=None, metavar="FILE",
                   help="project times from this table of your card's throughput (written by "
                        "benchmarks/bench_throughput.py --out FILE; default: the project's own figures, an H200 "
                        "at 224 px or a 2-core CPU at 64 px, cervixlib.throughput.BUILT_IN); the store's runs of "
                        "this device still win")
    p.add_argument("--verify", action="store_true",
                   help="check each finished run's files against the SHA-256 it recorded (reads every file); "
                        "without it, sizes and modification times, hashing only a file written since its run "
                        "finished. A damaged run is listed as damaged, with the file")
    p.set_defaults(func=_cmd_plan)

    p = sub.add_parser("evaluate", formatter_class=_HelpFormatter,
                       help="print a run's test metrics and re-check its checkpoint")
    p.add_argument("run", type=Path, help="a finished run directory (cervix train prints it)")
    p.add_argument("--no-check", action="store_true", help="skip re-running the checkpoint on the test split")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("compare", formatter_class=_HelpFormatter,
                       help="Table II-style comparison of runs, with McNemar tests")
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="finished run directories, two or more")
    p.set_defaults(func=_cmd_compare)


# ----------------------------------------------------------------------------- book
def _parse_param(text: str) -> tuple[str, object]:
    """``NAME=VALUE`` with a YAML value: ``models=[densenet121]``, ``epochs=3``."""
    import yaml

    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"parameter must look like NAME=VALUE (not papermill's NAME VALUE), "
                                         f"got {text!r}")
    try:
        return name, yaml.safe_load(value)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"parameter {name}: {value!r} is not a YAML value") from None


def _cmd_book(args: argparse.Namespace) -> int:
    from cervixlib.book import BookError, run_book

    if not (_settle_profile(args, "book") and _settle_book(args, "book")):
        return 2
    try:
        result = run_book(
            args.profile, args.data, args.notebooks, args.book, runs_dir=args.runs,
            only=args.only, params=_chapter_params(args),
            build=not args.no_build, force=args.force,
            progress=sys.stderr.isatty(), log_output=args.log_output, cell_timeout=args.cell_timeout,
            jobs=args.jobs, address=args.address,
        )
    except BookError as exc:
        print(f"cervix book: error: {exc}", file=sys.stderr)
        return 1
    done = f"{len(result.executed)} notebook(s) executed, {len(result.reused)} up to date"
    where = f"; site: {result.html_dir / 'index.html'}" if result.html_dir else ""
    print(f"cervix book: {done} in {result.seconds['total']:.0f} s{where}")
    return 0


def _add_book_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("book", formatter_class=_HelpFormatter,
                       help="run the notebooks with papermill and build the book",
                       description="Execute the notebooks with papermill into the book folder (as its "
                       "manifest.yml declares), after training their run plan, then build the site with "
                       "Jupyter Book into <book>/_build/html.")
    _add_shared(p)
    p.add_argument("--only", nargs="+", action="extend", default=None, metavar="NAME",
                   help="run only these chapters (name or prefix, e.g. 05); the others "
                        "must already be executed to build (default: every chapter)")
    p.add_argument("-p", "--param", type=_parse_param, action="append", default=[], metavar="NAME=VALUE",
                   help=_PARAM_HELP)
    p.add_argument("--weights", default=None, metavar="W", help=_BOOK_WEIGHTS_HELP)
    p.add_argument("--skip-bad", action="store_true", help=_SKIP_BAD_HELP)
    p.add_argument("--no-build", action="store_true", help="execute only; do not build the site")
    p.add_argument("--force", action="store_true",
                   help="re-execute notebooks even when their executed copy is up to date")
    p.add_argument("--log-output", action="store_true", help="stream the cells' output")
    p.add_argument("--jobs", type=_jobs, default="auto", metavar="N", help=_JOBS_HELP)
    p.add_argument("--address", default=None, metavar="ADDRESS", help=_ADDRESS_HELP)
    p.add_argument("--cell-timeout", type=float, default=None, metavar="SECONDS",
                   help="fail a cell that runs longer (after one retry of its notebook); "
                        "default: the profile's, 0: no limit")
    p.set_defaults(func=_cmd_book)


# ----------------------------------------------------------------------------- explain
def _cmd_explain(args: argparse.Namespace) -> int:
    from cervixlib.explain.command import explain_command

    result = explain_command(args.run, args.image, out=args.out, steps=args.steps, baseline=args.baseline,
                             method=args.method, target=args.target, precision=args.precision)
    print(result.summary())
    return 0


def _add_explain_command(sub: argparse._SubParsersAction) -> None:
    from cervixlib.config import ATTRIBUTION_METHODS, BASELINES, PRECISIONS

    p = sub.add_parser("explain", formatter_class=_HelpFormatter, help="the Fig. 2 panel (gradient and Integrated Gradients) of one image")
    p.add_argument("run", type=Path, help="a finished run directory (cervix train prints it)")
    p.add_argument("--image", type=Path, required=True, help="the image to explain")
    p.add_argument("--out", type=Path, required=True, help="figure file: .png/.pdf/.svg (static) or .html")
    p.add_argument("--steps", type=int, default=50, metavar="N", help="Integrated Gradients steps")
    p.add_argument("--baseline", choices=BASELINES, default="black",
                   help="Integrated Gradients' baseline image (cervixlib.explain.make_baseline)")
    p.add_argument("--method", choices=ATTRIBUTION_METHODS, default="ig",
                   help="ig: gradient and IG columns; saliency: gradient only")
    p.add_argument("--target", default=None, help="class index or name prefix (default: the predicted class)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="auto: bf16 only where the IG convergence delta stays small")
    p.set_defaults(func=_cmd_explain)


def build_parser() -> argparse.ArgumentParser:
    from cervixlib import __version__

    parser = argparse.ArgumentParser(prog="cervix", description=__doc__.splitlines()[0].replace("``", ""),
                                     formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"cervix {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_data_commands(sub)
    _add_engine_commands(sub)
    _add_explain_command(sub)
    _add_book_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cervix`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except Exception as exc:
        if isinstance(exc, _input_errors()):  # bad input: one line naming the file, no traceback
            print(f"cervix {args.command}: error: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, ValueError) and not args.verbose:  # an invalid option value; -v shows where
            print(f"cervix {args.command}: error: {exc} (rerun with -v for the traceback)", file=sys.stderr)
            return 2
        raise


#: The library's bad-input errors, by module: reported in one line, without a traceback.
_INPUT_ERRORS = {"cervixlib.data.errors": ("DataError",), "cervixlib.runs": ("RunError",),
                 "cervixlib.models.weights": ("CheckpointError", "WeightsNotFoundError")}


def _input_errors() -> tuple[type[BaseException], ...]:
    """The classes of :data:`_INPUT_ERRORS` whose modules the command imported (an error
    class that was never imported cannot have been raised, and importing it would cost
    the light commands their start-up time)."""
    return tuple(getattr(sys.modules[m], name) for m, names in _INPUT_ERRORS.items() if m in sys.modules
                 for name in names)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
