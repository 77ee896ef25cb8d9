"""The README's Python quick start runs as written."""

from __future__ import annotations

import re

import pytest

from tests.helpers import REPO_ROOT

README = REPO_ROOT / "README.md"


def _python_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Quick start (Python)")
    end = text.index("## Command line")
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


@pytest.mark.slow
def test_quick_start_blocks_run(tmp_path, monkeypatch):
    blocks = _python_blocks()
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORDINALCLIP_CACHE", str(tmp_path / "cache"))
    (tmp_path / "configs").symlink_to(README.parent / "configs")
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    assert list((tmp_path / "runs").glob("tiny-*/model.safetensors"))
