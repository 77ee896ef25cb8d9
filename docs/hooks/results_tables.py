"""MkDocs hooks: render the committed result files (docs/data/*.json) into Markdown tables at build time, and
let the pages open from disk.

A page asks for a table with an HTML comment on a line of its own::

    <!-- results-table: data/language_prior.json -->

optionally followed by ``where COLUMN=VALUE`` to keep only the rows whose cell in COLUMN equals VALUE (and
leave that column out). Each file holds ``command`` (what measured it), ``measured`` (when and where),
``columns`` and ``rows``; the table is followed by a line that names the file and the command, so a figure on
the site is never typed twice.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

MARKER = re.compile(r"^<!-- results-table: (?P<file>\S+)(?: where (?P<col>[^=]+)=(?P<val>.+?))? -->$", re.M)


def _render(docs_dir: Path, page_path: str, match: re.Match[str]) -> str:
    rel = match["file"]
    path = docs_dir / rel
    if not path.is_file():
        raise ValueError(f"{page_path}: results-table: no file docs/{rel}")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    columns: list[str] = data["columns"]
    rows: list[list[str]] = data["rows"]
    if match["col"] is not None:
        col = match["col"].strip()
        if col not in columns:
            raise ValueError(f"{page_path}: results-table: docs/{rel} has no column {col!r} (has {columns})")
        k = columns.index(col)
        rows = [row for row in rows if row[k] == match["val"].strip()]
        if not rows:
            raise ValueError(f"{page_path}: results-table: no row of docs/{rel} has {col} = {match['val']!r}")
        # the column is the same in every row shown: the page's heading says it
        columns = columns[:k] + columns[k + 1 :]
        rows = [row[:k] + row[k + 1 :] for row in rows]
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    source = f"*Generated from `docs/{rel}` ({data['measured']}; measured with `{data['command']}`).*"
    return "\n".join(lines) + "\n\n" + source


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    docs_dir = Path(config["docs_dir"])
    return MARKER.sub(lambda m: _render(docs_dir, page.file.src_path, m), markdown)


def on_post_build(config: Any) -> None:
    """Write ``search/search_index.js`` next to the search index.

    Material's pages load it when opened from disk (file://), and a missing file is a console error there.
    Search itself needs a server: a web worker cannot start from file://.
    """
    index = Path(config["site_dir"]) / "search" / "search_index.json"
    if index.is_file():
        (index.parent / "search_index.js").write_text("var __index = " + index.read_text(encoding="utf-8"))
