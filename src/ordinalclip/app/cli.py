"""The ``ordinalclip`` command: the top-level parser, logging and the one place errors become exit codes.

The sub-commands live in :mod:`ordinalclip.app.commands`: ``train``, ``eval``, ``predict``, ``export`` and
``configs`` (:mod:`~ordinalclip.app.commands.model`, thin layers over :mod:`ordinalclip.api`), ``serve``,
``demo`` and ``report`` (:mod:`~ordinalclip.app.commands.tools`) and ``sweep``
(:mod:`~ordinalclip.app.commands.sweep`).

Exit codes: 0 success; 1 training failed (non-finite loss) or the model gave NaN/inf outputs; 2 bad config,
data, checkpoint or command line; 130 / 143 interrupted by SIGINT / SIGTERM after writing a checkpoint
(continue with ``--resume``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from ordinalclip.app.commands import model, sweep, tools
from ordinalclip.app.commands.common import formatter
from ordinalclip.errors import USAGE_ERROR, OrdinalClipError, TrainingInterrupted


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ordinalclip`` and its sub-commands."""
    parser = argparse.ArgumentParser(
        prog="ordinalclip",
        formatter_class=formatter,
        description="OrdinalCLIP: language-guided ordinal regression. Train, evaluate, export and predict; "
        "sweep a grid of runs, report on a run, or run the offline demo.",
        epilog="run 'ordinalclip COMMAND --help' for the options and an example of each command",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for family in (model, tools, sweep):
        family.add_commands(sub)
    return parser


# -------------------------------------------------------------------------------------------------- errors


def _message(err: BaseException) -> str:
    text = str(err)
    # An error raised in a DataLoader worker arrives wrapped with the worker's traceback: keep its last line.
    if "Original Traceback" in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return text


def _third_party_user_errors() -> tuple[type[BaseException], ...]:
    """Errors not ours that still mean "fix what you gave": a Lightning setting, a missing file."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    return (MisconfigurationException, FileNotFoundError)


def _error_line(err: OrdinalClipError) -> str:
    """The one line printed for an error of ours (an interrupted run names the command that continues it)."""
    if isinstance(err, TrainingInterrupted):
        run_dir = getattr(err, "run_dir", None)
        hint = f"; continue with: ordinalclip train --resume {run_dir}" if run_dir else ""
        return f"{err}{hint}"
    return f"error: {_message(err)}"


def _onnx_only(args: argparse.Namespace) -> bool:
    """predict / serve of an .onnx export: runs on the deploy runtime, without torch or Lightning."""
    from ordinalclip.runtime.predictor import is_onnx_path

    return args.command in ("predict", "serve") and is_onnx_path(args.model)


def _setup_logging(verbose: bool, light: bool = False) -> None:
    if not light:
        import lightning.pytorch  # noqa: F401  (its import sets its logger to INFO: import first, then ours)

    ours = logging.getLogger("ordinalclip")
    if not ours.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        ours.addHandler(handler)
    # Console handlers keep the stream they were made with; point them at the current stderr, which a caller
    # (a notebook, a test harness) may have replaced since an earlier call.
    for name in ("ordinalclip", "lightning.pytorch", "lightning.fabric"):
        for h in logging.getLogger(name).handlers:
            if type(h) is logging.StreamHandler:
                h.stream = sys.stderr  # not setStream: it flushes the old stream, which may be closed
    ours.setLevel(logging.DEBUG if verbose else logging.INFO)
    # Lightning's own info lines (devices found, "Restoring states from ...") only with --verbose.
    logging.getLogger("lightning.pytorch").setLevel(logging.INFO if verbose else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ordinalclip`` command with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help (0) and on usage errors (2)
        return int(exit_.code or 0)
    if args.command is None:
        parser.print_help()
        return USAGE_ERROR
    if getattr(args, "light", False):  # no torch, no Lightning: answers in a fraction of a second
        try:
            return int(args.func(args))
        except OrdinalClipError as err:
            print(_error_line(err), file=sys.stderr)
            return err.exit_code
        except BrokenPipeError:  # `ordinalclip configs | head`: the reader has all it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
            return 0
    if _onnx_only(args):  # the deploy runtime: no torch, no Lightning
        _setup_logging(args.verbose, light=True)
        try:
            return int(args.func(args))
        except OrdinalClipError as err:
            print(_error_line(err), file=sys.stderr)
            return err.exit_code
        except FileNotFoundError as err:
            print(f"error: {_message(err)}", file=sys.stderr)
            return USAGE_ERROR
    _setup_logging(args.verbose)
    try:
        return int(args.func(args))
    except OrdinalClipError as err:  # ours: exit_code is 2 (the input), 1 (the model), 130 / 143 (a signal)
        print(_error_line(err), file=sys.stderr)
        return err.exit_code
    except _third_party_user_errors() as err:
        print(f"error: {_message(err)}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
