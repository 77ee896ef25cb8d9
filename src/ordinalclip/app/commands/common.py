"""What the sub-command modules share: the help layout and the arguments several commands take."""

from __future__ import annotations

import argparse
from typing import Any


def formatter(prog: str) -> argparse.HelpFormatter:
    """Help text as written (examples keep their lines), option help from column 32."""
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def add_command(sub: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A sub-command's parser in the shared help layout; ``kwargs``: help, description, epilog."""
    return sub.add_parser(name, formatter_class=formatter, **kwargs)


def add_overrides(p: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``."""
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides", help=help)
