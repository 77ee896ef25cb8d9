"""The ``ordinalclip`` command: the top-level parser, logging and the one place errors become exit codes.

The sub-commands live in :mod:`ordinalclip.app.commands`: ``train``, ``eval``, ``predict``, ``export`` and
``configs`` (:mod:`~ordinalclip.app.commands.model`, thin layers over :mod:`ordinalclip.api`), ``serve``,
``demo`` and ``report`` (:mod:`~ordinalclip.app.commands.tools`) and ``sweep``
(:mod:`~ordinalclip.app.commands.sweep`).

Exit codes: 0 success; 1 training failed (non-finite loss), the model gave NaN/inf outputs, or the environment
failed (a full disk, a read-only folder: any ``OSError`` but a missing input file); 2 bad config, data,
checkpoint or command line; 130 / 143 interrupted by SIGINT / SIGTERM (training writes a checkpoint first:
continue with ``--resume``). Every failure is one ``error: ...`` line on stderr; ``--debug`` adds the
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence

from ordinalclip.app.commands import model, sweep, tools
from ordinalclip.app.commands.common import formatter
from ordinalclip.errors import FAILURE, USAGE_ERROR, OrdinalClipError, TrainingInterrupted


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
    parser.add_argument(
        "--debug", action="store_true", help="on an error, print its traceback after the error line"
    )
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
    if "lightning.fabric.utilities.exceptions" not in sys.modules:  # the light commands never import it
        return (FileNotFoundError,)
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    return (MisconfigurationException, FileNotFoundError)


def _error_line(err: OrdinalClipError) -> str:
    """The one line printed for an error of ours (an interrupted run names the command that continues it)."""
    if isinstance(err, TrainingInterrupted):
        run_dir = getattr(err, "run_dir", None)
        hint = f"; continue with: ordinalclip train --resume {run_dir}" if run_dir else ""
        return f"{err}{hint}"
    return f"error: {_message(err)}"


def _os_error_line(err: OSError) -> str:
    """``error: PATH: cause`` for a failed file operation: the path (both of a rename) and the plain cause."""
    cause = err.strerror or (os.strerror(err.errno) if err.errno else str(err))
    hints = {
        errno.ENOSPC: "free some space or choose another output folder",
        errno.EROFS: "the file system is read-only: choose another output folder",
        errno.EACCES: "check the folder's permissions or choose another output folder",
        errno.EPERM: "check the folder's permissions or choose another output folder",
        errno.ENAMETOOLONG: "use a shorter file name",
        errno.EISDIR: "the path is a folder: give a file name",
        errno.EEXIST: "a file is in the way of a folder: remove it or choose another path",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
    }
    where = ""
    named = err
    while named.filename is None:  # Lightning's logger re-raises a failed write without the file name
        context = named.__cause__ or named.__context__
        if not isinstance(context, OSError) or context.errno != err.errno:
            break
        named = context
    if named.filename is not None:
        err = named
        where = f"{os.fsdecode(err.filename)}: "
        if err.filename2 is not None:
            where = f"{os.fsdecode(err.filename)} -> {os.fsdecode(err.filename2)}: "
    hint = hints.get(err.errno or -1)
    return f"error: {where}{cause}" + (f" ({hint})" if hint else "")


def _exit_code(err: BaseException) -> int:
    if isinstance(err, OrdinalClipError):
        return err.exit_code
    if isinstance(err, KeyboardInterrupt):
        return 130
    if isinstance(err, Terminated):
        return 143
    if isinstance(err, _third_party_user_errors()):
        return USAGE_ERROR
    return FAILURE  # the environment (OSError) or a bug


def _report(err: BaseException, debug: bool) -> int:
    """Print the one line for ``err`` (with its traceback under ``--debug``); return the exit code."""
    if isinstance(err, OrdinalClipError):
        line = _error_line(err)
    elif isinstance(err, KeyboardInterrupt):
        line = "error: interrupted by SIGINT (Ctrl-C)"
    elif isinstance(err, Terminated):
        line = "error: terminated by SIGTERM"
    elif isinstance(err, _third_party_user_errors()):
        line = f"error: {_message(err)}"
    elif isinstance(err, OSError):
        line = _os_error_line(err)
    else:
        line = (
            f"error: internal error: {type(err).__name__}: {_message(err)} (a bug in ordinalclip: run again "
            "with --debug for the traceback and report it)"
        )
    if debug:
        traceback.print_exception(err, file=sys.stderr)
    print(line, file=sys.stderr)
    return _exit_code(err)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so that the ``finally`` blocks and
    :func:`ordinalclip.fileio.atomic_write` remove their temporary files before the process ends."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While a command runs, SIGTERM raises :class:`Terminated` (the default action ends the process at once,
    leaving its temporary files); the handler found before is put back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
        except BrokenPipeError:  # `ordinalclip configs | head`: the reader has all it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
            return 0
        except (Exception, KeyboardInterrupt) as err:
            return _report(err, args.debug)
    _setup_logging(args.verbose, light=_onnx_only(args))  # .onnx predict / serve: no torch, no Lightning
    try:
        with _sigterm_unwinds():
            return int(args.func(args))
    # ours: exit_code is 2 (the input), 1 (the model), 130 / 143 (a signal); OSError: 1 (the environment)
    except (Exception, KeyboardInterrupt, Terminated) as err:
        return _report(err, args.debug)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
