"""The layout page (docs/concepts/layout.md) names every module of the package, so it cannot fall behind the tree."""

from __future__ import annotations

from tests.helpers import REPO_ROOT

SRC = REPO_ROOT / "src" / "ordinalclip"
PAGE = REPO_ROOT / "docs" / "concepts" / "layout.md"


def test_every_module_is_on_the_layout_page() -> None:
    page = PAGE.read_text(encoding="utf-8")
    missing = sorted(
        str(p.relative_to(SRC)) for p in SRC.rglob("*.py") if p.name != "__init__.py" and p.name not in page
    )
    assert not missing, f"modules missing from {PAGE.relative_to(REPO_ROOT)}: {missing}"


def test_every_package_folder_is_on_the_layout_page() -> None:
    page = PAGE.read_text(encoding="utf-8")
    folders = sorted(
        p.name + "/" for p in SRC.rglob("*") if p.is_dir() and (p / "__init__.py").is_file() and p != SRC
    )
    assert [f for f in folders if f not in page] == []
