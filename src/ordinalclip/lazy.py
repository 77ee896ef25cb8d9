"""Package attributes imported on first use (PEP 562), so importing a package imports none of its heavy parts.

The deploy runtime reads ``ordinalclip.modeling.config`` and ``ordinalclip.data.samples`` without torch; their
packages' ``__init__`` would otherwise import every model and dataset module (and so torch) first.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(
    package: str, namespace: dict[str, Any], modules: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``modules`` maps a module (relative names start with a dot)
    to the attributes it defines, separated by spaces, as the package's ``TYPE_CHECKING`` imports list them. A
    resolved attribute is cached in ``namespace`` (the package's ``globals()``)."""
    where = {name: module for module, names in modules.items() for name in names.split()}

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where))

    return __getattr__, __dir__
