"""The layer rule, checked on the source: modeling imports nothing above it; the library never imports the app."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ordinalclip"


def _imported_modules(path: Path) -> set[str]:
    """Every ``ordinalclip...`` module a file imports, at top level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found if m.split(".")[0] == "ordinalclip"}


def _files(under: str) -> list[Path]:
    return sorted((SRC / under).rglob("*.py")) if under else sorted(SRC.rglob("*.py"))


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from ordinalclip.app import cli\n    import ordinalclip.engine.run\n")
    assert _imported_modules(probe) == {"ordinalclip.app", "ordinalclip.app.cli", "ordinalclip.engine.run"}


@pytest.mark.parametrize("path", _files("modeling"), ids=lambda p: str(p.relative_to(SRC)))
def test_modeling_imports_only_modeling(path: Path) -> None:
    above = sorted(
        m
        for m in _imported_modules(path)
        if m != "ordinalclip"
        and not m.startswith("ordinalclip.modeling")
        and m not in ("ordinalclip.__version__", "ordinalclip.lazy", "ordinalclip.lazy.lazy_attributes")
    )
    assert not above, f"{path.relative_to(SRC)} reaches above the modeling layer: {above}"


@pytest.mark.parametrize(
    "path",
    [p for p in _files("") if "app" not in p.relative_to(SRC).parts],
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_the_library_never_imports_the_app(path: Path) -> None:
    app = sorted(
        m for m in _imported_modules(path) if m == "ordinalclip.app" or m.startswith("ordinalclip.app.")
    )
    assert not app, f"{path.relative_to(SRC)} imports the app layer: {app}"


@pytest.mark.parametrize("name", ["losses.py", "metrics.py"])
def test_losses_and_metrics_are_pure(name: str) -> None:
    assert _imported_modules(SRC / name) == set(), f"{name} must depend on nothing of ordinalclip"
