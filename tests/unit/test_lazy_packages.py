"""The lazy packages (``ordinalclip.data``, ``ordinalclip.modeling``): each name resolves at run time to the
object the type checkers are told about (the package's ``TYPE_CHECKING`` imports), and ``__all__`` lists
exactly those names."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from types import ModuleType

import pytest


def _checker_imports(package: ModuleType) -> dict[str, ModuleType]:
    """name -> the module the ``if TYPE_CHECKING:`` block of ``package``'s ``__init__`` imports it from."""
    tree = ast.parse(Path(str(package.__file__)).read_text(encoding="utf-8"))
    blocks = [
        n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", None) == "TYPE_CHECKING"
    ]
    assert len(blocks) == 1, f"{package.__name__}: expected one TYPE_CHECKING block"
    found: dict[str, ModuleType] = {}
    for node in blocks[0].body:
        assert isinstance(node, ast.ImportFrom) and node.module is not None
        module = importlib.import_module("." * node.level + node.module, package.__name__)
        for alias in node.names:
            assert alias.asname is None, f"{package.__name__}: {alias.name} is imported under another name"
            found[alias.name] = module
    return found


@pytest.mark.parametrize("name", ["ordinalclip.data", "ordinalclip.modeling"])
def test_lazy_names_are_the_type_checkers_names(name: str) -> None:
    package = importlib.import_module(name)
    imports = _checker_imports(package)
    assert len(imports) > 10
    assert sorted(package.__all__) == sorted(imports)
    assert set(imports) <= set(dir(package))
    for attr, module in imports.items():
        assert getattr(package, attr) is getattr(module, attr), f"{name}.{attr}"
    with pytest.raises(AttributeError, match=rf"module '{name}' has no attribute 'no_such_name'"):
        package.no_such_name  # noqa: B018
