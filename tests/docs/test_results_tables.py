"""The site's results tables are rendered from the committed JSON files (docs/hooks/results_tables.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers import REPO_ROOT

_spec = importlib.util.spec_from_file_location(
    "results_tables", REPO_ROOT / "docs" / "hooks" / "results_tables.py"
)
assert _spec is not None and _spec.loader is not None
hook = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hook)


def _render(docs_dir: Path, markdown: str) -> str:
    page = SimpleNamespace(file=SimpleNamespace(src_path="p.md"))
    return hook.on_page_markdown(markdown, page, {"docs_dir": str(docs_dir)}, None)


@pytest.fixture
def docs_dir(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    data = {
        "command": "python bench.py",
        "measured": "today",
        "columns": ["task", "loss", "MAE"],
        "rows": [["a", "CE", "1.0"], ["b", "SORD", "0.9"], ["a", "EMD", "1.2"]],
    }
    (tmp_path / "data" / "t.json").write_text(json.dumps(data))
    return tmp_path


def test_a_marker_becomes_the_table_and_its_source(docs_dir: Path) -> None:
    out = _render(docs_dir, "# T\n\n<!-- results-table: data/t.json -->\n\nafter\n")
    lines = out.splitlines()
    assert lines[2:7] == ["| task | loss | MAE |", "| --- | --- | --- |", "| a | CE | 1.0 |", "| b | SORD | 0.9 |",
                          "| a | EMD | 1.2 |"]  # fmt: skip
    assert "`docs/data/t.json`" in lines[8] and "`python bench.py`" in lines[8]
    assert lines[-1] == "after"


def test_where_keeps_the_matching_rows_without_their_column(docs_dir: Path) -> None:
    out = _render(docs_dir, "<!-- results-table: data/t.json where task=a -->")
    assert out.splitlines()[:4] == ["| loss | MAE |", "| --- | --- |", "| CE | 1.0 |", "| EMD | 1.2 |"]


@pytest.mark.parametrize(
    "marker, message",
    [
        ("<!-- results-table: data/none.json -->", "p.md: results-table: no file docs/data/none.json"),
        ("<!-- results-table: data/t.json where split=a -->", "has no column 'split'"),
        ("<!-- results-table: data/t.json where task=z -->", "no row of docs/data/t.json has task = 'z'"),
    ],
)
def test_a_wrong_marker_names_the_page_and_what_is_wrong(docs_dir: Path, marker: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        _render(docs_dir, marker)


def test_every_committed_results_file_is_shown_on_a_page() -> None:
    pages = "".join(p.read_text(encoding="utf-8") for p in (REPO_ROOT / "docs").rglob("*.md"))
    for data in (REPO_ROOT / "docs" / "data").glob("*.json"):
        assert f"results-table: data/{data.name}" in pages, data.name
