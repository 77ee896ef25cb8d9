"""Shipped files and docs speak to users: no tracker numbers ("issue" + a number), no development-log talk
(work sessions, changes told as "before" and "after"). Words that only made sense to whoever wrote them go stale at once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT

STALE = {
    "a tracker number": re.compile(r"\bissues?\s+#?\d", re.IGNORECASE),
    "development-log talk": re.compile(
        r"\b(?:this|that|last|previous|earlier|next|later|no|every|each|one)\s+sessions?\b"
        r"|\bsessions?\s+so\s+far\b|\bbefore\s+this\s+change\b",
        re.IGNORECASE,
    ),
}


def _shipped() -> list[Path]:
    """The package (every text file), the README, the changelog, the docs, the benchmarks' README and the
    tests' sources."""
    files = [
        p
        for p in (ROOT / "src").rglob("*")
        # build outputs (egg-info copies the README as it was when the package was installed) are not shipped text
        if p.is_file() and "__pycache__" not in p.parts and not any(q.endswith(".egg-info") for q in p.parts)
    ]
    files += [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "benchmarks" / "README.md"]
    files += sorted((ROOT / "docs").rglob("*.md"))
    files += sorted((ROOT / "tests").rglob("*.py"))
    return sorted(set(files))


def _stale_lines(text: str) -> list[str]:
    return [
        f"line {n} ({what}): {line.strip()}"
        for n, line in enumerate(text.splitlines(), 1)
        for what, pattern in STALE.items()
        if pattern.search(line)
    ]


@pytest.mark.parametrize(
    "line, stale",
    [
        ("- **Text task** (issue " + "11), next to", True),
        ('"""Issue' + " 13 (robustness): ...", True),
        ("see issues " + "#4 and 5", True),
        ("No sess" + "ion so far had a GPU", True),
        ("measured in this" + " session", True),
        ("took 0.23 s before this" + " change", True),
        ('@pytest.fixture(scope="session")', False),
        ("self.session = ort.InferenceSession(path)", False),
        ("A headless Chromium, shared by the session's tests.", False),
        ("a known issue with open_clip 2.24", False),
    ],
)
def test_the_patterns_catch_stale_words_and_nothing_else(line: str, stale: bool) -> None:
    assert bool(_stale_lines(line)) is stale


def test_shipped_files_and_docs_have_no_stale_words() -> None:
    files = _shipped()
    assert ROOT / "src" / "ordinalclip" / "fileio.py" in files and ROOT / "README.md" in files
    found = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # images and other binary files in the package
            continue
        found += [f"{path.relative_to(ROOT)}: {hit}" for hit in _stale_lines(text)]
    assert found == [], "\n".join(found)
