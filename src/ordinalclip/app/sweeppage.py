"""A sweep's page (``SWEEP_DIR/index.html``, written by ``ordinalclip sweep`` and ``ordinalclip report
SWEEP_DIR``): the summary tables (mean ± std, best marked per column), the few-shot curves, and the cells with
links to their run pages. Without matplotlib the page is written without plots and the links open the cell
folders.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from ordinalclip.app.pagekit import Column, Page, Value, mean_std_value, metric_columns, url
from ordinalclip.app.plots import REPORT_EXTRA, has_matplotlib, plot_few_shot
from ordinalclip.app.runpage import make_run_page, runs_prediction, sweep_metric
from ordinalclip.app.sweep_results import (
    FEW_SHOT_KEY,
    STATUS_TEXT,
    SummaryRow,
    SweepResult,
    read_sweep,
    setting_text,
    status_text,
    summarize,
    summary_tables,
)
from ordinalclip.app.tables import table_columns
from ordinalclip.probe import read_probe

log = logging.getLogger(__name__)


def is_sweep_dir(path: Path) -> bool:
    """A folder holding sweep cells (sub-folders with ``cell.json``)."""
    return path.is_dir() and any(path.glob("*/cell.json"))


def make_sweep_page(sweep_dir: str | os.PathLike[str], metric: str = "auto") -> Path:
    """Rebuild ``SWEEP_DIR/index.html`` from the cells on disk (``cell.json`` + ``metrics.json`` each); a cell
    without metrics is shown as failed. ``metric``: that of the few-shot curves (``auto``: the MAE of the
    runs' headline prediction)."""
    sweep = read_sweep(sweep_dir, missing="failed", missing_error="no metrics.json (unfinished or failed)")
    result = sweep.result
    result.rows = summarize(result.cells)
    prediction = runs_prediction([c.run_dir for c in result.cells])
    plot = None
    if FEW_SHOT_KEY in sweep.grid_keys:
        plot = few_shot_plot(result, result.rows, sweep_metric(metric, prediction))
    return write_sweep_page(result, sweep.grid_keys, plot, prediction=prediction)


def write_sweep_page(
    result: SweepResult,
    grid_keys: Sequence[str],
    few_shot_plot: Path | None = None,
    cell_reports: bool = True,
    prediction: str | None = None,
) -> Path:
    """Write ``index.html`` in the sweep folder: the summary tables (mean ± std, best marked per column), the
    few-shot curves, and a table of the cells linking to each cell's report (made here where missing or older
    than the cell's metrics; not without matplotlib)."""
    out = result.out_dir
    page = Page(out, f"Sweep — {out.name}")
    if prediction is None:  # the runs' headline prediction, unless the caller has read it already
        prediction = runs_prediction([c.run_dir for c in result.cells])
    page.text(
        f"{len(result.cells)} cells ({status_text(result.cells)}). Mean ± std over seeds and folds "
        "(population std; n = runs); the best mean of each column is bold on green. exp: expectation "
        "prediction, max: argmax prediction; the runs' headline prediction is the "
        f"{prediction} (trainer.prediction): its metrics come first."
    )
    for t in summary_tables(result.rows, grid_keys):
        page.heading(t.title)
        table_rows = [
            [
                *cells,
                *(
                    mean_std_value(r.stats[m][0], r.stats[m][1] if r.n > 1 else None)
                    if m in r.stats
                    else None
                    for m, _ in table_columns(prediction)
                ),
            ]
            for cells, r in zip(t.cells, t.rows)
        ]
        page.table(
            [*t.columns, *metric_columns(prediction)],
            table_rows,
            [r.group for r in t.rows] if t.per_group else None,
        )
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
                    make_run_page(c.run_dir)
                except Exception as err:  # one unreadable cell must not cost the sweep its page
                    log.warning("report of %s failed: %s: %s", c.cell.name, type(err).__name__, err)
            if report.is_file():
                link = report
        href = url(os.path.relpath(link, out)) + ("/" if link.is_dir() else "")
        best = ((c.metrics or {}).get("best") or (c.metrics or {}).get("last") or {}).get("test") or {}
        probe = (read_probe(c.run_dir) or {}).get("test") or {}
        cell_rows.append(
            [
                Value(f'<a href="{html.escape(href)}">{html.escape(c.cell.name)}</a>', raw=True),
                STATUS_TEXT.get(c.status, c.status)
                if c.status != "failed"
                else f"failed: {c.error or ''}"[:120],
                best.get("mae_exp"),
                best.get("mae_max"),
                probe.get("mae_exp"),
            ]
        )
    page.table(
        [
            Column("cell (report)"),
            Column("status"),
            Column("test MAE exp", True, "min"),
            Column("test MAE max", True, "min"),
            Column("probe MAE exp", True, "min"),
        ],
        cell_rows,
        caption="probe: logistic regression (scikit-learn, C tuned on val) on the cell's frozen features "
        "(its probe.json; ordinalclip probe RUN writes one): the baseline the language prior has to beat.",
    )
    if not plots and cell_reports:
        page.text(
            f"Cell reports need matplotlib ({REPORT_EXTRA}): the links open the cell folders.", note=True
        )
    return page.write(md_name=None)  # summary.md is the sweep's own (sweep.write_summary)


def few_shot_plot(result: SweepResult, rows: Sequence[SummaryRow], metric: str) -> Path | None:
    """``metric`` against shots per rank, one line per config (and other grid setting), from the first of
    best/last test, then val, that the runs have."""
    if not has_matplotlib():
        log.warning("few-shot plot skipped: it needs matplotlib (%s)", REPORT_EXTRA)
        return None
    for tag, split in (("best", "test"), ("last", "test"), ("best", "val"), ("last", "val")):
        if any(r.checkpoint == tag and r.split == split and metric in r.stats for r in rows):
            break
    else:
        return None
    curves: dict[str, dict[int, list[float]]] = {}
    for r in result.cells:
        entry = ((r.metrics or {}).get(tag) or {}).get(split) or {}
        settings = dict(r.cell.settings)
        if entry.get(metric) is None or settings[FEW_SHOT_KEY] is None:
            continue
        others = ", ".join(
            f"{k.rsplit('.', 1)[-1]}={setting_text(v)}" for k, v in r.cell.settings if k != FEW_SHOT_KEY
        )
        method = r.cell.label + (f" ({others})" if others else "")
        curves.setdefault(method, {}).setdefault(int(settings[FEW_SHOT_KEY]), []).append(float(entry[metric]))
    path = result.out_dir / "few_shot.png"
    plot_few_shot(curves, path, metric=f"{metric} ({tag} checkpoint, {split})")
    return path
