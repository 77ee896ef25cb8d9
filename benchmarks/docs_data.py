"""Turn a benchmark's ``--json`` output into the result files the docs site renders (``docs/data/*.json``).

    python benchmarks/docs_data.py language_prior runs/language_prior.json

``language_prior``: the protocol-A and protocol-B tables of ``benchmarks/language_prior.py`` become
``docs/data/language_prior.json`` and ``docs/data/language_prior_b.json`` (columns and rows, the command and
when and where it was measured), which the site's ``results-table`` hook renders at build time.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

DOCS_DATA = Path(__file__).resolve().parents[1] / "docs" / "data"


def markdown_rows(table: str) -> tuple[list[str], list[list[str]]]:
    """The header and body rows of a Markdown pipe table."""
    lines = [line.strip().strip("|") for line in table.strip().splitlines()]
    cells = [[c.strip() for c in line.split("|")] for line in lines]
    return cells[0], [row for row in cells[2:] if row]


def language_prior(result: dict, command: str) -> dict[str, dict]:
    when = f"{datetime.date.today().isoformat()}, {result.get('machine_load', 'this machine')}"
    out = {}
    for key, name, what in (
        ("table_protocol_a", "language_prior.json", "protocol A: selection on the validation split"),
        ("table_protocol_b", "language_prior_b.json", "protocol B: only the k labelled words per rank"),
    ):
        columns, rows = markdown_rows(result[key])
        out[name] = {"command": command, "measured": f"{when}; {what}", "columns": columns, "rows": rows}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("benchmark", choices=["language_prior"])
    parser.add_argument("result", type=Path, help="the benchmark's --json output")
    args = parser.parse_args()
    result = json.loads(args.result.read_text(encoding="utf-8"))
    command = f"python benchmarks/{args.benchmark}.py --json {args.result}"
    for name, data in language_prior(result, command).items():
        (DOCS_DATA / name).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {DOCS_DATA / name}: {len(data['rows'])} rows")


if __name__ == "__main__":
    main()
