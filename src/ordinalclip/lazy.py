"""Package attributes imported on first use (PEP 562), so importing a package imports none of its heavy parts.

The deploy runtime reads ``ordinalclip.modeling.config`` and ``ordinalclip.data.samples`` without torch; their
packages' ``__init__`` would otherwise import every model and dataset module (and so torch) first.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
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


def lazy_exports(
    package: str, namespace: dict[str, Any], modules: Sequence[str], extra: Mapping[str, str] | None = None
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for a package that re-exports whole modules: every name in the
    ``__all__`` of ``modules`` (searched in order, each imported when a name is first looked up; a module
    that is not installed is skipped), and
    the attributes of ``extra`` (module -> names, as :func:`lazy_attributes`). The package's ``__all__`` is
    all of them: no list of names is written twice."""
    table = dict(extra or {})
    known, _ = lazy_attributes(package, namespace, table)
    extra_names = {name for names in table.values() for name in names.split()}

    def present() -> Iterator[Any]:
        """The modules that are there, imported one at a time as the search reaches them: an install may leave
        some out (the deploy runtime's wheel ships ``config.typed`` without the run config), and their names
        are then simply not exported."""
        for module in modules:
            try:
                yield importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name != module:  # the module is there but an import inside it failed: say so
                    raise

    def exported() -> list[str]:
        return sorted({n for m in present() for n in m.__all__} | extra_names)

    def __getattr__(name: str) -> Any:
        if name == "__all__":
            namespace[name] = exported()
            return namespace[name]
        if name.startswith("__"):  # tools probe dunders (__wrapped__, ...): no import for those
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        for found in present():
            if name in found.__all__:
                namespace[name] = value = getattr(found, name)
                return value
        return known(name)  # the extra attributes; AttributeError for an unknown name

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exported()))

    return __getattr__, __dir__
