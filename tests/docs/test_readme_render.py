"""The README renders as intended with a CommonMark parser: every code fence closes where it should, so no prose
or table is swallowed into a code block."""

from __future__ import annotations

import re

import pytest

from tests.helpers import REPO_ROOT

markdown_it = pytest.importorskip("markdown_it", reason="markdown-it-py is not installed")

README = REPO_ROOT / "README.md"
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def unclosed_fences(text: str) -> list[int]:
    """1-based source lines of the fences that do not close where they should: run to the end of the
    document or container, or close only at the next block's opening fence (whose pairing is then shifted)."""
    lines = text.splitlines()
    bad = []
    for tok in markdown_it.MarkdownIt("commonmark").parse(text):
        if tok.type != "fence" or tok.map is None:
            continue
        start, end = tok.map
        last = lines[end - 1] if end - 1 < len(lines) else ""
        opener = FENCE.match(lines[start])
        closer = FENCE.match(last)
        closed = (
            end - 1 > start
            and closer is not None
            and opener is not None
            and closer.group(1)[0] == opener.group(1)[0]
            and len(closer.group(1)) >= len(opener.group(1))
            and not last.strip()[len(closer.group(1)) :].strip()
        )
        # a fence line inside the block: the pairing has shifted (an opener was taken for a closer)
        nested = any(FENCE.match(line) for line in tok.content.splitlines())
        if not closed or nested:
            bad.append(start + 1)
    return bad


def test_the_checker_finds_an_unclosed_fence():
    good = "text\n\n```bash\nls\n```\n\n## Next\n"
    assert unclosed_fences(good) == []
    # the README's old defect: the closing fence glued to the end of a command line
    assert unclosed_fences("```bash\nls --set x=1```\n\n## Next\n\n| a | b |\n") == [1]
    # ... and the same defect followed by another block: the next opener becomes content, the pairing shifts
    shifted = "```bash\nls --set x=1```\n\n## Next\n\n```bash\nmore\n```\n\ntext\n"
    assert unclosed_fences(shifted) == [1]


def test_readme_fences_all_close():
    assert unclosed_fences(README.read_text(encoding="utf-8")) == []


def test_readme_headings_render_as_headings():
    text = README.read_text(encoding="utf-8")
    tokens = markdown_it.MarkdownIt("commonmark").parse(text)
    rendered = {tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"}
    written = {ln.lstrip("#").strip() for ln in text.splitlines() if re.match(r"^#{1,6} ", ln)}
    in_code = {
        ln.lstrip("#").strip()
        for t in tokens
        if t.type == "fence"
        for ln in t.content.splitlines()
        if re.match(r"^#{1,6} ", ln)
    }
    assert written - in_code <= rendered
