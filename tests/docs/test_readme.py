"""The README is a front page: its Python quick start runs as written, and its links point at files that exist."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from tests.helpers import REPO_ROOT

README = REPO_ROOT / "README.md"


def _quick_start_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Quick start")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def test_the_readme_is_a_front_page() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < 200
    assert sum(len(block.splitlines()) for block in _quick_start_blocks()) <= 12


def test_the_readme_links_to_files_that_exist() -> None:
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(((?!https?:)[^)#]+)(?:#[^)]*)?\)", text)
    assert len(targets) >= 15
    missing = [t for t in targets if not (REPO_ROOT / t).exists()]
    assert missing == []


@pytest.mark.slow
def test_quick_start_runs(tmp_path, monkeypatch):
    blocks = _quick_start_blocks()
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORDINALCLIP_CACHE", str(tmp_path / "cache"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), {})
    (onnx,) = tmp_path.glob("runs/tiny-*/model.onnx")
    assert onnx.with_name("model.onnx.json").is_file()
    # the block's two prints are the last lines (training logs its own table before them)
    mae_line, prediction_line = out.getvalue().strip().splitlines()[-2:]
    assert 0 <= float(mae_line) <= 3  # tiny has 4 ranks: an expectation MAE lies in [0, 3]
    assert prediction_line.startswith("[{") and "'rank': " in prediction_line
    assert "'probabilities': [" in prediction_line
