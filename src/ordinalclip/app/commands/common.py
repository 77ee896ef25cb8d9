"""What the sub-command modules share: the help layout."""

from __future__ import annotations

import argparse


def formatter(prog: str) -> argparse.HelpFormatter:
    """Help text as written (examples keep their lines), option help from column 32."""
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)
