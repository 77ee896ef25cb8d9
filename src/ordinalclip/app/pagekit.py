"""The page kit: HTML and Markdown tables (numbers right-aligned, the best value of each column marked) and a
self-contained HTML page with its Markdown twin. The app's tables are built here: the run and sweep pages, the
demo's page and table, the sweep's ``summary.md``, the CLI's run summary (:func:`fixed_width_table`) and the
benchmarks' tables (:func:`markdown_table`, which also takes the text task's table in one call).
"""

from __future__ import annotations

import html
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ordinalclip.app.tables import table_columns
from ordinalclip.fileio import atomic_write_text

log = logging.getLogger(__name__)

# How a page looks: one width that reads at 1000 px, numbers right-aligned in tabular figures.
CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1f2328;max-width:960px;
  margin:1.5em auto;padding:0 16px}
h1{font-size:1.6em;margin:.2em 0 .4em}h2{font-size:1.25em;margin:1.6em 0 .4em;border-bottom:1px solid #ddd}
h3{font-size:1.05em;margin:1.2em 0 .3em}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:13px}
th,td{padding:3px 7px;border-bottom:1px solid #e3e3e3;text-align:left;vertical-align:middle}
thead th{background:#f3f4f6;border-bottom:2px solid #ccc}
.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
td.best{font-weight:700;background:#dcf2e3}
.sd{color:#666;font-size:.85em}td .sd{display:block}
caption{caption-side:bottom;text-align:left;color:#555;font-size:12px;padding-top:3px}
img{max-width:100%;height:auto}
.plots{display:flex;flex-wrap:wrap;gap:8px}.plots figure{margin:0;flex:1 1 440px;max-width:100%}
figure{margin:0 0 1em}figcaption{color:#555;font-size:12px}
.thumb{width:72px;height:72px;object-fit:cover;margin:1px;border:1px solid #ccc;vertical-align:middle}
.errors{display:grid;grid-template-columns:repeat(auto-fill,minmax(225px,1fr));gap:8px}
.card{border:1px solid #ddd;border-radius:4px;padding:6px;display:flex;gap:8px;font-size:12px}
.card img{width:72px;height:72px;object-fit:cover;flex:none}
.card .ref{width:72px;flex:none;color:#777;word-break:break-all}
svg.dist{display:block;margin-top:3px}
.note{background:#fff8e1;border-left:4px solid #f0c000;padding:6px 10px}
details{margin:.4em 0}summary{cursor:pointer;font-weight:600}
details pre{white-space:pre-wrap;word-break:break-all;background:#f6f8fa;padding:8px;font-size:12px;
  margin:.3em 0}
"""


Better = Literal["min", "max"] | None


@dataclass(frozen=True)
class Column:
    """A table column: its title, whether it holds numbers (right-aligned) and which value is best."""

    title: str
    numeric: bool = False
    better: Better = None


@dataclass(frozen=True)
class Value:
    """A table cell: the text shown (HTML-escaped unless ``raw``) and the number compared for "best"."""

    text: str
    number: float | None = None
    raw: bool = False


def metric_better(key: str) -> Better:
    """Which way a metric improves: errors (``mae*``) down, accuracies, QWK and ordinality up."""
    return "min" if key.startswith("mae") else "max"


def metric_columns(prediction: str = "expectation") -> list[Column]:
    """The app's metric columns (:func:`~ordinalclip.app.tables.table_columns`: the headline ``prediction``'s
    first), numeric, with their direction."""
    return [Column(title, True, metric_better(key)) for key, title in table_columns(prediction)]


def mean_std_value(mean: float, std: float | None = None, pct: bool = False) -> Value:
    """``0.812 ± 0.031`` (std in a lighter, smaller type), compared by the mean."""
    scale, unit = (100.0, "%") if pct else (1.0, "")
    digits = 1 if pct else 3
    text = f"{mean * scale:.{digits}f}"
    if std is None:
        return Value(text + unit, mean)
    return Value(f"{text}{unit}<span class=sd>± {std * scale:.{digits}f}{unit}</span>", mean, raw=True)


def _cell(v: Value | str | float | int | None) -> Value:
    if isinstance(v, Value):
        return v
    if v is None:
        return Value("–")
    if isinstance(v, (bool, str)):
        return Value(str(v))
    if isinstance(v, int):
        return Value(str(v), float(v))
    return Value(f"{v:.3f}" if math.isfinite(v) else "–", float(v) if math.isfinite(v) else None)


def _best_rows(
    columns: Sequence[Column], rows: Sequence[Sequence[Value]], groups: Sequence[Any]
) -> set[tuple[int, int]]:
    """(row, column) of every cell holding its column's best value among the rows of its group."""
    best: set[tuple[int, int]] = set()
    for j, col in enumerate(columns):
        if col.better is None:
            continue
        for g in dict.fromkeys(groups):
            numbers = {i: rows[i][j].number for i, gi in enumerate(groups) if gi == g}
            values = {i: v for i, v in numbers.items() if v is not None}
            low, high = min(values.values(), default=0.0), max(values.values(), default=0.0)
            if len(values) < 2 or math.isclose(low, high, rel_tol=1e-9, abs_tol=1e-12):
                continue  # a lone value, or all alike: nothing stands out
            target = low if col.better == "min" else high
            best.update(
                (i, j)
                for i, v in values.items()
                if math.isclose(
                    v,
                    target,
                    rel_tol=1e-9,
                    abs_tol=1e-12,
                )
            )
    return best


def html_table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Value | str | float | int | None]],
    groups: Sequence[Any] | None = None,
    caption: str | None = None,
    cls: str = "",
) -> str:
    """An HTML table; numeric columns right-aligned; in columns with a direction the best value of each group
    of rows (``groups[i]`` = row i's group; default one group) is bold on green (``td.best``)."""
    cells = [[_cell(v) for v in row] for row in rows]
    best = _best_rows(columns, cells, list(groups) if groups is not None else [0] * len(cells))
    head = "".join(f"<th{' class=num' if c.numeric else ''}>{html.escape(c.title)}</th>" for c in columns)
    body = []
    for i, row in enumerate(cells):
        tds = []
        for j, (col, v) in enumerate(zip(columns, row)):
            classes = " ".join(
                c for c in ("num" if col.numeric else "", "best" if (i, j) in best else "") if c
            )
            text = v.text if v.raw else html.escape(v.text)
            tds.append(f"<td{f' class={chr(34)}{classes}{chr(34)}' if classes else ''}>{text}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    cls_attr = f' class="{cls}"' if cls else ""
    return (
        f"<table{cls_attr}>{cap}<thead><tr>{head}</tr></thead><tbody>\n"
        + "\n".join(body)
        + "\n</tbody></table>"
    )


def md_table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Value | str | float | int | None]],
    groups: Sequence[Any] | None = None,
) -> str:
    """The same table in Markdown (best values in bold)."""
    cells = [[_cell(v) for v in row] for row in rows]
    best = _best_rows(columns, cells, list(groups) if groups is not None else [0] * len(cells))

    def plain(v: Value) -> str:
        text = v.text.replace("<span class=sd>", " ").replace("</span>", "") if v.raw else v.text
        return text.replace("|", "\\|")

    texts = [
        [f"**{plain(v)}**" if (i, j) in best else plain(v) for j, v in enumerate(row)]
        for i, row in enumerate(cells)
    ]
    return markdown_table([c.title for c in columns], texts, [c.numeric for c in columns])


def markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[bool] = ()
) -> str:
    """A Markdown table of ready-made cell texts (``str()`` of each; ``|`` escaped by the caller);
    ``numeric[j]`` right-aligns column j (``---:``)."""
    align = [bool(numeric[j]) if j < len(numeric) else False for j in range(len(headers))]
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "".join(" ---: |" if a else " --- |" for a in align),
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fixed_width_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], first: int = 12, width: int = 16
) -> str:
    """A plain-text table for a terminal: the first column left-aligned in ``first`` characters, the others
    right-aligned in ``width``."""

    def line(cells: Sequence[str]) -> str:
        return f"{cells[0]:<{first}}" + "".join(f"{c:>{width}}" for c in cells[1:])

    return "\n".join([line(headers), *(line(row) for row in rows)])


# ------------------------------------------------------------------------------------------------------- page


class Page:
    """An HTML page and its Markdown twin, built section by section in ``out_dir``."""

    def __init__(self, out_dir: str | os.PathLike[str], title: str) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.title = title
        self.body: list[str] = [f"<h1>{html.escape(title)}</h1>"]
        self.md: list[str] = [f"# {title}", ""]

    def heading(self, text: str, level: int = 2) -> None:
        self.body.append(f"<h{level}>{html.escape(text)}</h{level}>")
        self.md += ["#" * level + " " + text, ""]

    def text(self, text: str, note: bool = False) -> None:
        self.body.append(f"<p{' class=note' if note else ''}>{html.escape(text)}</p>")
        self.md += [text, ""]

    def raw(self, fragment: str, md: str | None = None) -> None:
        """HTML as given (built with escaped parts); ``md`` its Markdown, if any."""
        self.body.append(fragment)
        if md:
            self.md += [md, ""]

    def table(
        self,
        columns: Sequence[Column],
        rows: Sequence[Sequence[Value | str | float | int | None]],
        groups: Sequence[Any] | None = None,
        caption: str | None = None,
    ) -> None:
        self.body.append(html_table(columns, rows, groups, caption))
        self.md += [md_table(columns, rows, groups), ""] + ([caption, ""] if caption else [])

    def images(self, items: Sequence[tuple[str, str]]) -> None:
        """Plots side by side where they fit: ``(file relative to out_dir, caption)``."""
        figs = [
            f'<figure><img src="{html.escape(url(f))}" alt="{html.escape(c)}"><figcaption>{html.escape(c)}'
            f"</figcaption></figure>"
            for f, c in items
        ]
        self.body.append('<div class="plots">' + "".join(figs) + "</div>")
        self.md += [f"![{c}]({url(f)})" for f, c in items] + [""]

    def details(self, summary: str, content: str) -> None:
        """Folded away: a click shows ``content`` (preformatted)."""
        self.body.append(
            f"<details><summary>{html.escape(summary)}</summary><pre>{html.escape(content)}</pre></details>"
        )

    def write(self, name: str = "index.html", md_name: str | None = "summary.md") -> Path:
        """Write the page (and ``summary.md``); returns the page's path."""
        doc = (
            "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(self.body)
            + "\n</body></html>\n"
        )
        page = atomic_write_text(self.out_dir / name, doc)
        if md_name:
            atomic_write_text(self.out_dir / md_name, "\n".join(self.md))
        return page


def url(rel: str | os.PathLike[str]) -> str:
    """A relative link from a relative path (forward slashes, spaces and '#' escaped)."""
    from urllib.parse import quote

    return quote(Path(rel).as_posix())
