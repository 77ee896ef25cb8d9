"""Report pages people read in a browser: a run's page (``ordinalclip report RUN_DIR``), a sweep's page
(``ordinalclip report SWEEP_DIR``, also written by ``ordinalclip sweep``) and the building blocks the demo
uses.

A page is one self-contained folder: ``index.html`` with real HTML tables (numbers right-aligned, the best
value of each column marked), PNG plots, JPEG thumbnails of the data copied in, the predicted distributions as
inline SVG, and ``summary.md`` with the same tables in Markdown. Links are relative; nothing is fetched from
the network, so the folder opens from disk and can be moved or zipped.

The plots need matplotlib, an optional dependency (``pip install 'ordinalclip[report]'``); without it
:func:`make_report` raises :class:`ReportDependencyError` naming the extra, and a sweep page is written
without plots.
"""

from __future__ import annotations

import csv
import hashlib
import html
import importlib.util
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import torch

from ordinalclip.app.tables import TABLE_COLUMNS
from ordinalclip.fileio import atomic_write, atomic_write_text
from ordinalclip.metrics import confusion_matrix, ordinality_score, prototype_similarity
from ordinalclip.runtime.predictions import read_predictions_csv

if TYPE_CHECKING:
    from ordinalclip.app.sweep import SweepResult

log = logging.getLogger(__name__)

REPORT_EXTRA = "pip install 'ordinalclip[report]'"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
THUMB_PX = 96  # thumbnails are at most this wide/high: a few per rank fit on one line at 1000 px
SAMPLES_PER_RANK = 4
MAX_SAMPLE_RANKS = 12  # with more ranks (ages) an evenly spaced subset is shown
WORST_ERRORS = 12

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


class ReportDependencyError(ImportError):
    """A report was asked for without matplotlib (the ``report`` extra)."""


def has_matplotlib() -> bool:
    """Whether the plots can be drawn (matplotlib importable)."""
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except ValueError:  # a module entry set to None (how tests hide it)
        return False


def _plt() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend, or :class:`ReportDependencyError` naming the
    extra."""
    try:
        import matplotlib
    except ImportError as err:
        raise ReportDependencyError(
            f"the report's plots need matplotlib, an optional dependency: {REPORT_EXTRA}"
        ) from err
    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


# ------------------------------------------------------------------------------------------------------ plots


def plot_prototype_similarity(
    prototypes: np.ndarray | torch.Tensor,
    out: Path,
    title: str = "",
    rank_labels: Sequence[str] | None = None,
) -> dict[int, float]:
    """Heat map of the (C, C) normalised prototype similarity with the ordinality score in the title.

    Returns the ordinality scores by span (reference notes §1.8).
    """
    plt = _plt()
    protos = torch.as_tensor(np.asarray(prototypes), dtype=torch.float32)
    sim = prototype_similarity(protos).numpy()
    scores = ordinality_score(protos) if protos.shape[0] >= 3 else {}
    overall = scores[max(scores)] if scores else float("nan")
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    im = ax.imshow(sim, cmap="viridis", origin="upper")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(f"{title}\nprototype similarity — ordinality {overall:.1%}".strip())
    ax.set_xlabel("rank")
    ax.set_ylabel("rank")
    _rank_ticks(ax, len(sim), rank_labels)
    _save(fig, out)
    return scores


def plot_confusion(
    labels: npt.ArrayLike,
    preds: npt.ArrayLike,
    num_ranks: int,
    out: Path,
    title: str = "",
    rank_labels: Sequence[str] | None = None,
) -> None:
    """Row-normalised confusion matrix (rows: true rank, columns: predicted rank)."""
    plt = _plt()
    cm = confusion_matrix(np.asarray(preds), np.asarray(labels), num_ranks).astype(float)
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046)
    if num_ranks <= 12:
        for i in range(num_ranks):
            for j in range(num_ranks):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        str(int(cm[i, j])),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    ax.set_xlabel("predicted rank")
    ax.set_ylabel("true rank")
    ax.set_title(f"{title}\nconfusion matrix (argmax)".strip())
    _rank_ticks(ax, num_ranks, rank_labels)
    _save(fig, out)


def error_per_rank(
    labels: npt.ArrayLike, pred_exp: npt.ArrayLike, pred_max: npt.ArrayLike, num_ranks: int
) -> dict[str, np.ndarray]:
    """Per true rank: ``n`` examples, ``mae_exp``, ``mae_max`` and ``acc_max`` (NaN where a rank has none),
    each (C,)."""
    y = np.asarray(labels, dtype=int)
    e, m = np.asarray(pred_exp, float), np.asarray(pred_max, float)
    out = {"n": np.bincount(y, minlength=num_ranks)[:num_ranks]}
    for key, fn in (
        ("mae_exp", lambda r: np.abs(e[y == r] - r).mean()),
        ("mae_max", lambda r: np.abs(m[y == r] - r).mean()),
        ("acc_max", lambda r: (m[y == r] == r).mean()),
    ):
        out[key] = np.array([fn(r) if (y == r).any() else np.nan for r in range(num_ranks)])
    return out


def plot_error_per_rank(
    labels: npt.ArrayLike,
    pred_exp: npt.ArrayLike,
    pred_max: npt.ArrayLike,
    num_ranks: int,
    out: Path,
    title: str = "",
) -> None:
    """Mean absolute error per true rank for both predictions, with the number of examples per rank."""
    plt = _plt()
    per = error_per_rank(labels, pred_exp, pred_max, num_ranks)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ranks = np.arange(num_ranks)
    ax.plot(ranks, per["mae_exp"], marker="o", ms=3, label="expectation")
    ax.plot(ranks, per["mae_max"], marker="o", ms=3, label="argmax")
    ax2 = ax.twinx()
    ax2.bar(ranks, per["n"], color="grey", alpha=0.2)
    ax2.set_ylabel("examples")
    ax.set_zorder(ax2.get_zorder() + 1)  # lines above the count bars
    ax.patch.set_visible(False)
    ax.set_xlabel("true rank")
    ax.set_ylabel("MAE")
    ax.set_title(f"{title}\nerror per rank".strip())
    ax.legend()
    _save(fig, out)


def plot_learning_curves(
    metrics_csv: Path, out: Path, keys: Sequence[str] = ("train_loss", "val_mae_max", "val_mae_exp")
) -> bool:
    """Curves of ``keys`` against the epoch from a Lightning CSVLogger ``metrics.csv``; False if none
    found."""
    with Path(metrics_csv).open(newline="") as f:
        rows = list(csv.DictReader(f))
    series: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        x = row.get("epoch") or row.get("step")
        if x in (None, ""):
            continue
        for key in keys:
            for col in (key, f"{key}_epoch"):
                if row.get(col) not in (None, ""):
                    series.setdefault(key, []).append((float(x), float(row[col])))
                    break
    if not series:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(series), figsize=(3.2 * len(series), 2.8), squeeze=False)
    for ax, (key, pts) in zip(axes[0], sorted(series.items())):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".")
        ax.set_title(key)
        ax.set_xlabel("epoch")
    _save(fig, out)
    return True


def plot_few_shot(
    curves: Mapping[str, Mapping[int, Sequence[float]]], out: Path, metric: str = "MAE"
) -> None:
    """Metric against shots per rank, one line per method, mean ± std over seeds.

    ``curves[method][shots]`` holds one value per seed.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for method, by_shot in curves.items():
        shots = sorted(by_shot)
        mean = np.array([np.mean(by_shot[s]) for s in shots])
        std = np.array([np.std(by_shot[s]) for s in shots])
        ax.errorbar(shots, mean, yerr=std, marker="o", capsize=3, label=method)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("shots per rank")
    ax.set_ylabel(metric)
    ax.set_title(f"few-shot {metric}")
    ax.legend(fontsize=8)
    _save(fig, out)


def _rank_ticks(ax: Any, n: int, labels: Sequence[str] | None) -> None:
    if labels is not None and n <= 12:
        ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(n), labels, fontsize=7)


def _save(fig: Any, out: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------- tables


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


def metric_columns() -> list[Column]:
    """The app's metric columns (:data:`TABLE_COLUMNS`), numeric, with their direction."""
    return [Column(title, True, metric_better(key)) for key, title in TABLE_COLUMNS]


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

    lines = [
        "| " + " | ".join(c.title for c in columns) + " |",
        "|" + "".join(" ---: |" if c.numeric else " --- |" for c in columns),
    ]
    for i, row in enumerate(cells):
        lines.append(
            "| "
            + " | ".join(f"**{plain(v)}**" if (i, j) in best else plain(v) for j, v in enumerate(row))
            + " |"
        )
    return "\n".join(lines)


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
            f'<figure><img src="{html.escape(_url(f))}" alt="{html.escape(c)}"><figcaption>{html.escape(c)}'
            f"</figcaption></figure>"
            for f, c in items
        ]
        self.body.append('<div class="plots">' + "".join(figs) + "</div>")
        self.md += [f"![{c}]({_url(f)})" for f, c in items] + [""]

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


def _url(rel: str | os.PathLike[str]) -> str:
    """A relative link from a relative path (forward slashes, spaces and '#' escaped)."""
    from urllib.parse import quote

    return quote(Path(rel).as_posix())


# --------------------------------------------------------------------------------------------------- the data


ImageResolver = Callable[[str], "Path | None"]


def existing_image(path: str) -> Path | None:
    """The default :data:`ImageResolver`: the path itself when it is an image file that exists."""
    p = Path(path)
    return p if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() else None


def thumbnail(src: Path, out_dir: Path, size: int = THUMB_PX) -> str | None:
    """Copy ``src`` into ``out_dir/images/`` as a JPEG at most ``size`` px; returns its path relative to
    ``out_dir`` (None when the file cannot be read as an image)."""
    from PIL import Image, ImageOps

    name = f"images/{hashlib.sha1(str(Path(src).resolve()).encode()).hexdigest()[:16]}.jpg"
    dest = out_dir / name
    if dest.is_file():
        return name
    try:
        with Image.open(src) as opened:
            im = ImageOps.exif_transpose(opened).convert("RGB")
        im.thumbnail((size, size))
        atomic_write(dest, lambda tmp: im.save(tmp, format="JPEG", quality=88))
    except (OSError, ValueError) as err:
        log.warning("report: cannot read image %s (%s)", src, err)
        return None
    return name


def read_predictions(path: Path) -> dict[str, np.ndarray]:
    """A run's predictions CSV (:func:`ordinalclip.runtime.predictions.read_predictions_csv`, any layout) as
    rank-unit arrays: ``path`` (strings), ``label``, ``pred_exp``, ``pred_max`` and, when recorded, ``probs``
    (N, C)."""
    cols = read_predictions_csv(path)
    out = {"label": cols["label_rank"], "pred_exp": cols["exp_rank"], "pred_max": cols["pred_rank"]}
    return out | {k: cols[k] for k in ("path", "probs") if k in cols}


def _rank_label(rank: int, names: Sequence[str] | None) -> str:
    return f"{rank} · {names[rank]}" if names is not None and rank < len(names) else str(rank)


def sample_images(
    page: Page,
    preds: Mapping[str, np.ndarray],
    num_ranks: int,
    names: Sequence[str] | None,
    images: ImageResolver,
    per_rank: int = SAMPLES_PER_RANK,
    seed: int = 0,
) -> int:
    """A table of a few thumbnails per rank from ``preds`` (a split's predictions); returns how many it
    shows."""
    labels = preds["label"].astype(int)
    ranks = list(range(num_ranks))
    if num_ranks > MAX_SAMPLE_RANKS:
        ranks = sorted(set(np.linspace(0, num_ranks - 1, MAX_SAMPLE_RANKS).round().astype(int).tolist()))
    rng = np.random.default_rng(seed)
    rows: list[list[Any]] = []
    shown = 0
    for r in ranks:
        idx = np.flatnonzero(labels == r)
        picked = rng.permutation(idx)[: per_rank * 3]  # spares for unreadable files
        thumbs = []
        for i in picked:
            src = images(str(preds["path"][i]))
            rel = thumbnail(src, page.out_dir) if src is not None else None
            if rel is not None:
                thumbs.append(
                    f'<img class=thumb src="{_url(rel)}" alt="rank {r}" title="{html.escape(str(src))}">'
                )
            if len(thumbs) == per_rank:
                break
        shown += len(thumbs)
        rows.append(
            [
                str(r),
                names[r] if names is not None and r < len(names) else "",
                int(len(idx)),
                Value("".join(thumbs) or "–", raw=True),
            ]
        )
    if shown:
        cols = [Column("rank", True), Column("name"), Column("test images", True), Column("samples")]
        page.raw(html_table(cols, rows))
        if len(ranks) < num_ranks:
            page.text(f"{len(ranks)} of {num_ranks} ranks shown, evenly spaced.")
    return shown


def _distribution_svg(probs: np.ndarray, true: int, pred: int, width: int = 140, height: int = 40) -> str:
    """A small bar chart of the (C,) predicted distribution: the true rank green, the argmax red."""
    c = len(probs)
    bw = width / c
    top = max(float(probs.max()), 1e-9)
    bars = []
    for k, p in enumerate(probs):
        h = (height - 10) * float(p) / top
        color = "#2da44e" if k == true else "#cf222e" if k == pred else "#8c959f"
        bars.append(
            f'<rect x="{k * bw + 0.5:.1f}" y="{height - 10 - h:.1f}" width="{max(bw - 1, 0.6):.1f}" '
            f'height="{h:.1f}" fill="{color}"><title>rank {k}: {p:.3f}</title></rect>'
        )
    axis = (
        f'<line x1="0" y1="{height - 10}" x2="{width}" y2="{height - 10}" stroke="#555" stroke-width="0.5"/>'
        f'<text x="0" y="{height - 1}" font-size="8" fill="#555">0</text>'
        f'<text x="{width}" y="{height - 1}" font-size="8" fill="#555" text-anchor="end">{c - 1}</text>'
    )
    return (
        f'<svg class=dist width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="predicted distribution over {c} ranks">{"".join(bars)}{axis}</svg>'
    )


def _short_ref(path: str) -> str:
    """What a card shows for an input without an image: ``SPLIT/ROW`` of a feature-row reference, or the
    file name."""
    return path.rpartition("#")[2] if "#" in path else Path(path).name[-40:]


def worst_errors(
    page: Page,
    preds: Mapping[str, np.ndarray],
    names: Sequence[str] | None,
    images: ImageResolver | None,
    count: int = WORST_ERRORS,
) -> list[int]:
    """A gallery of the ``count`` worst predictions (largest argmax error, then expectation error): image,
    true and predicted rank, predicted distribution. Returns the rows shown, worst first."""
    y = preds["label"].astype(int)
    pmax = preds["pred_max"].astype(int)
    pexp = preds["pred_exp"]
    order = np.lexsort((-np.abs(pexp - y), -np.abs(pmax - y)))  # last key sorts first
    chosen = [int(i) for i in order[:count] if pmax[i] != y[i] or abs(pexp[i] - y[i]) >= 0.5]
    if not chosen:
        page.text("No test errors: every argmax prediction is right.")
        return []
    probs = preds.get("probs")
    cards = []
    for i in chosen:
        path = str(preds["path"][i]) if "path" in preds else str(i)
        src = images(path) if images is not None else None
        rel = thumbnail(src, page.out_dir) if src is not None else None
        pic = (
            f'<img src="{_url(rel)}" alt="test image {i}" title="{html.escape(path)}">'
            if rel
            else f'<div class=ref title="{html.escape(path)}">{html.escape(_short_ref(path))}</div>'
        )
        dist = (
            _distribution_svg(probs[i], y[i], pmax[i])
            if probs is not None and probs.shape[1] > 1
            else "<em>no probabilities recorded</em>"
        )
        cards.append(
            f"<div class=card>{pic}<div>true <b>{html.escape(_rank_label(y[i], names))}</b><br>"
            f"predicted <b>{html.escape(_rank_label(pmax[i], names))}</b> (expectation {pexp[i]:.2f})"
            f"{dist}</div></div>"
        )
    md = "\n".join(
        f"- `{preds['path'][i] if 'path' in preds else i}`: true {y[i]}, predicted {pmax[i]} "
        f"(expectation {pexp[i]:.2f})"
        for i in chosen
    )
    page.raw('<div class="errors">' + "".join(cards) + "</div>", md)
    if probs is None:
        page.text(
            "This predictions file has no probability columns (p_0 ..): it was written by an earlier version."
        )
    return chosen


# ----------------------------------------------------------------------------------------------- a run's page


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _run_config(run_dir: Path) -> tuple[dict[str, Any], str | None]:
    """The run's config.yaml as a dict (empty when absent) and its text."""
    import yaml

    path = run_dir / "config.yaml"
    if not path.is_file():
        return {}, None
    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    return (data if isinstance(data, dict) else {}), text


def _rank_names(cfg: Mapping[str, Any], num_ranks: int) -> list[str] | None:
    data = cfg.get("data") or {}
    names = data.get("rank_names")
    if not names and data.get("rank_names_file"):
        from ordinalclip.modeling.build import read_rank_names

        try:
            names = read_rank_names(data["rank_names_file"])
        except (OSError, ValueError):
            names = None
    return [str(n) for n in names] if names and len(names) == num_ranks else None


def _metrics_rows(metrics: Mapping[str, Any]) -> tuple[list[list[Any]], list[str]]:
    """Rows (split, checkpoint, TABLE_COLUMNS) of a run's metrics.json, and each row's split (the
    groups)."""
    rows, groups = [], []
    for split in ("test", "val"):
        for tag in ("best", "last"):
            entry = (metrics.get(tag) or {}).get(split)
            if not entry:
                continue
            rows.append([split, tag, *(entry.get(k) for k, _ in TABLE_COLUMNS)])
            groups.append(split)
    return rows, groups


def _prediction_file(run_dir: Path) -> Path | None:
    for name in ("test_best", "test_last", "val_best", "val_last"):
        p = run_dir / "predictions" / f"{name}.csv"
        if p.is_file():
            return p
    return None


def run_sections(
    page: Page,
    run_dir: str | os.PathLike[str],
    images: ImageResolver | None = None,
    prefix: str = "",
    metrics_table: bool = True,
    prototypes: bool = True,
    level: int = 2,
) -> None:
    """Add a run's sections to ``page``: metrics, the data per rank, the worst errors, error per rank,
    confusion matrix, prototype similarity, learning curves, config and environment (folded). ``prefix`` keeps
    the file names of two runs on one page apart; ``prototypes=False`` leaves the prototype plot out (a page
    that shows every method's); ``level`` is the level of the section headings."""
    run_dir = Path(run_dir)
    out = page.out_dir
    cfg, cfg_text = _run_config(run_dir)
    metrics = _read_json(run_dir / "metrics.json") or {}
    model, data = cfg.get("model") or {}, cfg.get("data") or {}
    pred_file = _prediction_file(run_dir)
    preds = read_predictions(pred_file) if pred_file is not None else None
    num_ranks = int(model.get("num_ranks") or 0)
    if not num_ranks and preds is not None:
        num_ranks = int(max(preds["label"].max(), preds["pred_max"].max()) + 1)
    names = _rank_names(cfg, num_ranks)
    feature_only = data.get("format") == "features"
    sizes = metrics.get("data") or {}
    facts = [
        f"model {model.get('arch', '?')}",
        f"{num_ranks} ranks",
        f"data format {data.get('format', '?')}",
    ]
    facts += [f"{k} {v}" for k, v in sizes.items() if k in ("train", "val", "test") and v is not None]
    page.text(f"Run folder {run_dir.name}: " + ", ".join(facts) + ".")

    if metrics_table:
        rows, groups = _metrics_rows(metrics)
        if rows:
            page.heading("Metrics", level)
            cols = [Column("split"), Column("checkpoint"), *metric_columns()]
            page.table(
                cols,
                rows,
                groups,
                caption="Best (bold, green) per column within each split. exp: "
                "expectation prediction, max: argmax prediction.",
            )

    split = pred_file.stem.split("_")[0] if pred_file is not None else "test"
    if preds is None:
        page.text(
            "No predictions file in this run (predictions/*.csv): the data and error sections need one.",
            note=True,
        )
    else:
        resolver = images or existing_image
        page.heading(f"The data: {split} images per rank", level)
        shown = (
            0 if feature_only and images is None else sample_images(page, preds, num_ranks, names, resolver)
        )
        if not shown:
            page.text(
                "Feature-only run (data.format: features): the inputs are precomputed image features, so "
                "there are no images to show; the sections below use the predictions and the model."
                if feature_only
                else "The images of this split cannot be read at their recorded paths "
                "(moved, or on another machine); the sections below use the predictions.",
                note=True,
            )
        page.heading(f"Worst {split} errors", level)
        page.text(
            "Largest argmax error first. Bars: the predicted distribution over the ranks; green the true "
            "rank, red the predicted one."
        )
        worst_errors(page, preds, names, resolver if shown else None)

        assert pred_file is not None  # preds were read from it
        page.heading(f"Error per rank and confusion matrix ({pred_file.stem})", level)
        y = preds["label"].astype(int)
        per = error_per_rank(y, preds["pred_exp"], preds["pred_max"], num_ranks)
        plot_error_per_rank(
            y, preds["pred_exp"], preds["pred_max"], num_ranks, out / f"{prefix}error_per_rank.png"
        )
        plot_confusion(y, preds["pred_max"].astype(int), num_ranks, out / f"{prefix}confusion.png", "", names)
        page.images(
            [
                (f"{prefix}error_per_rank.png", "mean absolute error by true rank (bars: examples)"),
                (f"{prefix}confusion.png", "confusion matrix, rows normalised (argmax)"),
            ]
        )
        rank_rows = [
            [
                r,
                names[r] if names else "",
                int(per["n"][r]),
                per["mae_exp"][r],
                per["mae_max"][r],
                per["acc_max"][r],
            ]
            for r in range(num_ranks)
        ]
        cols = [
            Column("rank", True),
            Column("name"),
            Column("n", True),
            Column("MAE exp", True, "min"),
            Column("MAE max", True, "min"),
            Column("acc max", True, "max"),
        ]
        if num_ranks <= 12:
            page.table(cols, rank_rows)
        else:
            page.raw(
                f"<details><summary>Error per rank, table ({num_ranks} ranks)</summary>"
                f"{html_table(cols, rank_rows)}</details>",
                md_table(cols, rank_rows),
            )

    protos = run_dir / "prototypes.npy"
    if prototypes and protos.is_file():
        page.heading("Prototype similarity", level)
        scores = plot_prototype_similarity(
            np.load(protos), out / f"{prefix}prototypes.png", rank_labels=names
        )
        text = ", ".join(f"span {k}: {v:.1%}" for k, v in scores.items())
        page.text(
            "Cosine similarity of the rank prototypes; ordinality by span (share of ordered triples, "
            f"reference notes §1.8): {text}."
        )
        page.images([(f"{prefix}prototypes.png", "prototype similarity")])

    curves = []
    for i, metrics_csv in enumerate(sorted(run_dir.glob("logs/**/metrics.csv"))):
        name = f"{prefix}curves_{i}.png"
        if plot_learning_curves(metrics_csv, out / name):
            curves.append((name, str(metrics_csv.relative_to(run_dir))))
    if curves:
        page.heading("Learning curves", level)
        page.images(curves)

    env = run_dir / "env.json"
    if cfg_text is not None or env.is_file():
        page.heading("Config and environment", level)
        if cfg_text is not None:
            page.details("config.yaml", cfg_text)
        if env.is_file():
            page.details("env.json (versions, platform, git, command line)", env.read_text(encoding="utf-8"))


def make_report(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    images: ImageResolver | None = None,
) -> Path:
    """Write the page of a run folder (``RUN_DIR/report/index.html`` + ``summary.md``) or of a sweep folder
    (``SWEEP_DIR/index.html``; see :func:`make_sweep_page`). Returns the page's path.

    ``images`` maps a prediction's ``path`` to an image file (default: the path itself, when it is one).
    """
    run_dir = Path(run_dir)
    _plt()  # fail before writing anything when matplotlib is missing
    if is_sweep_dir(run_dir):
        return make_sweep_page(run_dir)
    page = Page(
        out_dir if out_dir is not None else run_dir / "report", f"ordinalclip report — {run_dir.name}"
    )
    run_sections(page, run_dir, images)
    return page.write()


# --------------------------------------------------------------------------------------------- a sweep's page


def is_sweep_dir(path: Path) -> bool:
    """A folder holding sweep cells (sub-folders with ``cell.json``)."""
    return path.is_dir() and any(path.glob("*/cell.json"))


def make_sweep_page(sweep_dir: str | os.PathLike[str], metric: str = "mae_max") -> Path:
    """Rebuild ``SWEEP_DIR/index.html`` from the cells on disk (``cell.json`` + ``metrics.json`` each)."""
    from ordinalclip.app.sweep import FEW_SHOT_KEY, Cell, CellResult, SweepResult, _few_shot_plot, summarize

    sweep_dir = Path(sweep_dir)
    results: list[CellResult] = []
    grid_keys: list[str] = []
    for record in sorted(sweep_dir.glob("*/cell.json")):
        rec = json.loads(record.read_text(encoding="utf-8"))
        settings = tuple((rec.get("settings") or {}).items())
        grid_keys += [k for k, _ in settings if k not in grid_keys]
        cell = Cell(
            Path(rec["config"]),
            rec["label"],
            settings,
            rec["seed"],
            rec.get("fold"),
            record.parent.name,
            tuple(rec.get("overrides") or ()),
            bool(rec.get("untrained")),
        )
        metrics = _read_json(record.parent / "metrics.json")
        results.append(
            CellResult(cell, "skipped", record.parent, metrics)
            if metrics is not None
            else CellResult(cell, "failed", record.parent, error="no metrics.json (unfinished or failed)")
        )
    result = SweepResult(sweep_dir, results, summarize(results))
    plot = None
    if FEW_SHOT_KEY in grid_keys:
        plot = _few_shot_plot(result, result.rows, metric)
    return write_sweep_page(result, grid_keys, plot)


STATUS_TEXT = {"skipped": "finished earlier", "trained": "trained now"}


def _setting_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def write_sweep_page(
    result: SweepResult,
    grid_keys: Sequence[str],
    few_shot_plot: Path | None = None,
    cell_reports: bool = True,
) -> Path:
    """Write ``index.html`` in the sweep folder: the summary tables (mean ± std, best marked per column), the
    few-shot curves, and a table of the cells linking to each cell's report (made here where missing or older
    than the cell's metrics; not without matplotlib)."""
    out = result.out_dir
    page = Page(out, f"Sweep — {out.name}")
    counts = {
        s: sum(r.status == s for r in result.cells)
        for s in ("trained", "skipped", "resumed", "restarted", "failed")
    }
    page.text(
        f"{len(result.cells)} cells ({counts['trained']} trained in the last call, {counts['skipped']} "
        f"finished earlier, {counts['resumed']} resumed, {counts['restarted']} restarted, {counts['failed']} "
        "failed). Mean ± std over seeds and folds (population std; n = runs); the best mean of each column "
        "is bold on green. exp: expectation prediction, max: argmax prediction."
    )
    from ordinalclip.app.sweep import short_keys, summary_tables

    short = short_keys(list(grid_keys))
    for group_rows, tag, split, chosen in summary_tables(result.rows):
        page.heading(f"{tag} checkpoint, {split}" + (", per group" if group_rows else ""))
        cols = [
            Column("config"),
            *([Column("group")] if group_rows else []),
            *(Column(short[k]) for k in grid_keys),
            Column("n", True),
            *metric_columns(),
        ]
        table_rows = []
        for r in chosen:
            settings = dict(r.settings)
            table_rows.append(
                [
                    r.config,
                    *([r.group] if group_rows else []),
                    *(_setting_text(settings.get(k)) for k in grid_keys),
                    r.n,
                    *(
                        mean_std_value(r.stats[m][0], r.stats[m][1] if r.n > 1 else None)
                        if m in r.stats
                        else None
                        for m, _ in TABLE_COLUMNS
                    ),
                ]
            )
        page.table(cols, table_rows, [r.group for r in chosen] if group_rows else None)
    if few_shot_plot is not None and few_shot_plot.is_file():
        page.heading("Few-shot curves")
        page.images(
            [(os.path.relpath(few_shot_plot, out), "metric against shots per rank, mean ± std over seeds")]
        )
    elif (
        few_shot_plot is None
        and any(k.endswith("few_shot.shots") for k in grid_keys)
        and not has_matplotlib()
    ):
        page.text(f"The few-shot curves need matplotlib: {REPORT_EXTRA}", note=True)

    page.heading("Cells")
    plots = cell_reports and has_matplotlib()
    cell_rows = []
    for c in result.cells:
        link = c.run_dir
        if c.metrics is not None and plots:
            report = c.run_dir / "report" / "index.html"
            metrics_file = c.run_dir / "metrics.json"
            if not report.is_file() or report.stat().st_mtime < metrics_file.stat().st_mtime:
                try:
                    make_report(c.run_dir)
                except Exception as err:  # one unreadable cell must not cost the sweep its page
                    log.warning("report of %s failed: %s: %s", c.cell.name, type(err).__name__, err)
            if report.is_file():
                link = report
        href = _url(os.path.relpath(link, out)) + ("/" if link.is_dir() else "")
        best = ((c.metrics or {}).get("best") or (c.metrics or {}).get("last") or {}).get("test") or {}
        cell_rows.append(
            [
                Value(f'<a href="{html.escape(href)}">{html.escape(c.cell.name)}</a>', raw=True),
                STATUS_TEXT.get(c.status, c.status)
                if c.status != "failed"
                else f"failed: {c.error or ''}"[:120],
                best.get("mae_exp"),
                best.get("mae_max"),
            ]
        )
    page.table(
        [
            Column("cell (report)"),
            Column("status"),
            Column("test MAE exp", True, "min"),
            Column("test MAE max", True, "min"),
        ],
        cell_rows,
    )
    if not plots and cell_reports:
        page.text(
            f"Cell reports need matplotlib ({REPORT_EXTRA}): the links open the cell folders.", note=True
        )
    return page.write(md_name=None)  # summary.md is the sweep's own (sweep.write_summary)
