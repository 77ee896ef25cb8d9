"""What the sub-command modules share: the help layout and the arguments several commands take."""

from __future__ import annotations

import argparse
import math
from typing import Any


def formatter(prog: str) -> argparse.HelpFormatter:
    """Help text as written (examples keep their lines), option help from column 32."""
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def add_command(sub: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A sub-command's parser in the shared help layout; ``kwargs``: help, description, epilog."""
    return sub.add_parser(name, formatter_class=formatter, **kwargs)


def add_configs(p: argparse.ArgumentParser, help: str) -> None:
    """``-c/--config CONFIG`` (repeatable: a built-in config's name or a .yaml file) into ``args.config``."""
    p.add_argument("-c", "--config", action="append", default=[], metavar="CONFIG", help=help)


def add_overrides(p: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``."""
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides", help=help)


def int_at_least(low: int, high: int | None = None) -> Any:
    """An argparse ``type`` for an integer in ``[low, high]``: a value out of range is a usage error (exit 2)
    at parse time, before the command loads or binds anything."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            span = f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"expected an integer {span}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its own messages
    return parse


def float_at_least(low: float, inclusive: bool) -> Any:
    """An argparse ``type`` for a finite number ``>= low`` (``inclusive``) or ``> low``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or (value < low if inclusive else value <= low):
            raise argparse.ArgumentTypeError(
                f"expected a finite number {'>=' if inclusive else '>'} {low:g}, got {text}"
            )
        return value

    parse.__name__ = "number"  # argparse names the type in its own messages
    return parse


positive_float = float_at_least(0.0, inclusive=False)
non_negative_float = float_at_least(0.0, inclusive=True)
