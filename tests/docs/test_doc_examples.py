"""Every code example of the documentation site runs, or says why it cannot run here.

The pages under ``docs/`` are parsed with markdown-it-py. Each ```` ```python ````, ```` ```bash ````,
```` ```shell ```` and ```` ```console ```` block is executed, in page order:

* the blocks of one page share a temporary folder (their working directory) and, for Python, one namespace, so a
  page can train a run in one block and export it in the next;
* Python blocks run in this process; shell blocks run in ``bash -e -o pipefail`` with the venv's ``ordinalclip``
  first on ``PATH`` (a ``console`` block runs its ``$ `` lines);
* a block is skipped only when the line before it is ``<!-- not-run: REASON -->``; a marker without a reason fails.

Pages whose examples train a model are marked ``slow`` (they still run in ``make test``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from tests.helpers import REPO_ROOT

DOCS = REPO_ROOT / "docs"
LANGUAGES = {"python": "python", "bash": "shell", "shell": "shell", "sh": "shell", "console": "console"}
MARKER = re.compile(r"^<!--\s*not-run:(?P<reason>.*?)-->\s*$")
MARKER_START = re.compile(r"^<!--\s*not-run\b")
# pages whose examples train a model (tens of seconds each on two cores)
SLOW_PAGES = {
    "getting-started.md",
    "guides/training.md",
    "guides/reports.md",
    "guides/deploy.md",
    "guides/python-api.md",
    "guides/sweeps.md",
}
SHELL_TIMEOUT_S = 600


@dataclass(frozen=True)
class Block:
    page: str  # relative to docs/
    line: int  # 1-based line of the opening fence
    kind: str  # "python" | "shell" | "console"
    code: str
    skip_reason: str | None  # None: the block runs
    bad_marker: bool = False  # a not-run marker without a reason


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "hooks" not in p.relative_to(DOCS).parts)


def parse_blocks(text: str, page: str) -> list[Block]:
    """The runnable-language code blocks of one Markdown page, with their not-run markers."""
    lines = text.splitlines()
    blocks = []
    for tok in MarkdownIt("commonmark").parse(text):
        if tok.type != "fence" or tok.map is None:
            continue
        lang = tok.info.strip().split(" ")[0].lower()
        if lang not in LANGUAGES:
            continue
        start = tok.map[0]
        before = next((lines[i].strip() for i in range(start - 1, -1, -1) if lines[i].strip()), "")
        reason: str | None = None
        bad = False
        if MARKER_START.match(before):
            m = MARKER.match(before)
            reason = m["reason"].strip() if m else ""
            bad = not reason
        blocks.append(Block(page, start + 1, LANGUAGES[lang], tok.content, reason, bad))
    return blocks


def all_blocks() -> list[Block]:
    out = []
    for path in _pages():
        out += parse_blocks(path.read_text(encoding="utf-8"), path.relative_to(DOCS).as_posix())
    return out


def _console_commands(code: str) -> str:
    """The ``$ `` lines of a console transcript, as a script."""
    return "\n".join(line[2:] for line in code.splitlines() if line.startswith("$ "))


def _run_shell(block: Block, cwd: Path, env: dict[str, str]) -> None:
    code = _console_commands(block.code) if block.kind == "console" else block.code
    proc = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=SHELL_TIMEOUT_S,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"docs/{block.page}:{block.line}: shell block exited with {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
        )


def _pages_with_runnable_blocks() -> list[pytest.param]:
    params = []
    for path in _pages():
        page = path.relative_to(DOCS).as_posix()
        runnable = [b for b in parse_blocks(path.read_text(encoding="utf-8"), page) if b.skip_reason is None]
        if runnable:
            marks = [pytest.mark.slow] if page in SLOW_PAGES else []
            params.append(pytest.param(page, marks=marks, id=page))
    return params


@pytest.fixture(scope="session")
def doc_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data cache for the pages a test process runs: the built-in blur set is built once, not per page."""
    return tmp_path_factory.mktemp("ordinalclip-cache")


@pytest.mark.parametrize("page", _pages_with_runnable_blocks())
def test_the_examples_of_a_page_run(
    page: str, tmp_path: Path, doc_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = [
        b for b in parse_blocks((DOCS / page).read_text(encoding="utf-8"), page) if b.skip_reason is None
    ]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("ORDINALCLIP_CACHE", str(doc_cache))
    # the examples say `-c configs/...` as in a clone: the repository's configs/ link, seen from the work folder
    (work / "configs").symlink_to(REPO_ROOT / "configs")
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # the package under test (this checkout's src/) for the `ordinalclip` command too
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT), env.get("PYTHONPATH", "")])
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for block in blocks:
        if block.kind == "python":
            try:
                exec(compile(block.code, f"docs/{block.page}:{block.line}", "exec"), namespace)
            except Exception as exc:  # the page and line of the failing block, then the traceback
                raise AssertionError(f"docs/{block.page}:{block.line}: python block failed: {exc!r}") from exc
        else:
            _run_shell(block, work, env)


def test_every_block_runs_or_is_marked_with_a_reason() -> None:
    blocks = all_blocks()
    bad = [f"docs/{b.page}:{b.line}" for b in blocks if b.bad_marker]
    assert bad == [], f"not-run markers without a reason (write <!-- not-run: why -->): {bad}"
    run = [b for b in blocks if b.skip_reason is None]
    marked = [b for b in blocks if b.skip_reason is not None]
    print(f"doc examples: {len(run)} run, {len(marked)} marked not-run")
    for b in marked:
        print(f"  not run: docs/{b.page}:{b.line}: {b.skip_reason}")
    assert {b.page for b in run} >= {"getting-started.md", "index.md"}


def test_the_parser_finds_blocks_and_markers() -> None:
    text = (
        "# t\n\n```python\nx = 1\n```\n\n<!-- not-run: needs the MORPH images -->\n```bash\nls /data\n```\n\n"
        "<!-- not-run: -->\n```console\n$ echo hi\nhi\n```\n\n```yaml\na: 1\n```\n"
    )
    blocks = parse_blocks(text, "p.md")
    assert [(b.kind, b.line, b.skip_reason, b.bad_marker) for b in blocks] == [
        ("python", 3, None, False),
        ("shell", 8, "needs the MORPH images", False),
        ("console", 13, "", True),
    ]
    assert _console_commands(blocks[2].code) == "echo hi"


def test_a_failing_shell_block_fails_with_its_page_and_line(tmp_path: Path) -> None:
    block = Block("p.md", 7, "shell", "true\nfalse\necho never\n", None)
    with pytest.raises(pytest.fail.Exception, match=r"docs/p\.md:7: shell block exited with 1"):
        _run_shell(block, tmp_path, dict(os.environ))
