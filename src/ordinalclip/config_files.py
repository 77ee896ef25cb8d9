"""Deprecated: the old import path of :mod:`ordinalclip.config.builtin`; importing it warns.

Import from ``ordinalclip.config.builtin``, or take any config name from ``ordinalclip.config``. The names
here are the same objects. The package's own code never imports this module
(``tests/unit/configs/test_config_shims.py``).
"""

from __future__ import annotations

from ordinalclip.config.builtin import *  # noqa: F403
from ordinalclip.config.builtin import __all__  # noqa: F401
from ordinalclip.config.typed import deprecated

deprecated(f"{__name__} is deprecated: import from ordinalclip.config.builtin (or ordinalclip.config)")
