"""Deprecated: the old import path of :mod:`ordinalclip.config.typed`; importing it warns.

Import from ``ordinalclip.config.typed``, or take any config name from ``ordinalclip.config``. The names
here are the same objects. The package's own code never imports this module
(``tests/unit/configs/test_config_shims.py``).
"""

from __future__ import annotations

from ordinalclip.config.typed import *  # noqa: F403
from ordinalclip.config.typed import (
    __all__,  # noqa: F401
    deprecated,
)

deprecated(f"{__name__} is deprecated: import from ordinalclip.config.typed (or ordinalclip.config)")
