"""Sweeps: every combination of configs x grid settings x seeds x folds, resumable, summarised in one table.

Example::

    from ordinalclip.app.sweep import run_sweep

    result = run_sweep(["configs/morph.yaml", "configs/morph_cosine.yaml"], seeds=[1, 27, 42],
                       grid={"data.few_shot.shots": [1, 2, 4]}, overrides=["data.root=/data/MORPH"],
                       out_dir="runs/sweep-few-shot")
    print(result.summary_md.read_text())

Layout of ``out_dir``::

    <cell>/            one run folder per cell (written by api.fit), named from the cell's settings, e.g.
                       morph__shots=4__seed27 or adience__seed1__fold3; cell.json records its settings
    summary.md         mean ± std over seeds and folds, per config and grid setting: best and last checkpoint,
    summary.csv        val and test, every metric (both predictions: *_exp and *_max), per group when the data
                       has groups (e.g. aesthetics categories)
    few_shot.png       metric against shots, when ``data.few_shot.shots`` is a grid key
    index.html         the summary as a page: HTML tables, the few-shot curves, links to each cell's
                       report (<cell>/report/index.html)

Running the same sweep again skips every cell that has a ``metrics.json``, continues a cell that has a
``checkpoints/last.ckpt`` (``api.fit(resume=...)``), and starts any other cell afresh.

Zero-shot cells (``model.arch: zeroshot``), and every cell with ``untrained=True``, are evaluated without a
training step: their ``last.ckpt`` holds the initial weights.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L

from ordinalclip import api
from ordinalclip.app.launchers import Launch, Task, run_tasks
from ordinalclip.app.pagekit import markdown_table
from ordinalclip.app.plots import has_matplotlib
from ordinalclip.app.runpage import make_run_page, runs_prediction, sweep_metric
from ordinalclip.app.sweep_results import (
    CELL_FILE,
    FEW_SHOT_KEY,
    PLAN_FILE,
    Cell,
    CellResult,
    Status,
    SummaryRow,
    SweepResult,
    log_path,
    read_json,
    read_sweep,
    setting_text,
    short_keys,
    status_text,
    summarize,
    summary_tables,
)
from ordinalclip.app.sweeppage import few_shot_plot, write_sweep_page
from ordinalclip.app.tables import table_columns
from ordinalclip.config.builtin import config_path
from ordinalclip.config.typed import ConfigError, parse_override
from ordinalclip.engine.callbacks import EvaluateOnly
from ordinalclip.engine.errors import TrainingInterrupted
from ordinalclip.engine.run import run_dir_lock
from ordinalclip.errors import RunDirInUse, SweepError
from ordinalclip.fileio import atomic_write, atomic_write_text, write_json

__all__ = [
    "Cell",
    "SweepError",
    "CellResult",
    "EvaluateOnly",
    "SummaryRow",
    "SweepResult",
    "parse_grid",
    "plan_sweep",
    "run_cells",
    "run_sweep",
    "summarize",
    "summarize_only",
]

log = logging.getLogger(__name__)

# -------------------------------------------------------------------------------------------------- planning


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["KEY=V1,V2,...", ...]`` -> ``{KEY: [V1, V2, ...]}``; each value is read as YAML (``null``, ``2``,
    ``inv_prop``, ``"a sentence: quoted"``), like ``--set``."""
    grid: dict[str, list[Any]] = {}
    for text in items:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip() or not raw.strip():
            raise ConfigError(
                f"--grid {text!r}: expected KEY=V1,V2,... e.g. model.prompts.num_base_ranks=2,3,4"
            )
        try:
            _, values = parse_override(f"{key.strip()}=[{raw}]")
        except ConfigError as err:
            raise ConfigError(
                f"--grid {text!r}: values are YAML separated by commas; quote a value that holds "
                f"a comma or ': ' ({err})"
            ) from None
        if not isinstance(values, list) or not values:
            raise ConfigError(f"--grid {text!r}: expected at least one value after '='")
        if key.strip() in grid:
            raise ConfigError(f"--grid: key {key.strip()!r} given twice; list all its values in one --grid")
        grid[key.strip()] = values
    return grid


def _value_slug(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    slug = re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_")
    if (
        slug != text or len(slug) > 32
    ):  # changed or long (e.g. a context sentence): keep it unique with a hash
        digest = hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:6]
        slug = f"{slug[:24].rstrip('_')}-{digest}".lstrip("-")
    return slug


def _labels(configs: Sequence[Path]) -> list[str]:
    """File stems, prefixed with as many parent folders as it takes to tell them apart."""
    depth = 1
    while True:
        labels = ["-".join((*p.parts[-depth:-1], p.stem)) for p in configs]
        if len(set(labels)) == len(labels) or depth > max(len(p.parts) for p in configs):
            return labels
        depth += 1


def _override(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"  # JSON is YAML: strings stay strings, null stays null


def plan_sweep(
    configs: Sequence[str | os.PathLike[str]],
    seeds: Sequence[int] | None = None,
    folds: Sequence[int] | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    overrides: Sequence[str] = (),
    untrained: bool = False,
) -> list[Cell]:
    """The cells of a sweep, in run order (config, grid setting, seed, fold). Every cell's config is resolved
    here, so a typo in a config, an override or a grid key fails before anything trains.

    ``seeds`` / ``folds`` None: each config's own ``trainer.seed`` / ``data.fold``.
    """
    if not configs:
        raise ConfigError("sweep: no config given (e.g. -c morph)")
    paths = list(dict.fromkeys(config_path(c).resolve() for c in configs))  # names of built-ins too
    for p in paths:
        if not p.is_file():
            raise ConfigError(f"sweep: config file not found: {p}")
    grid = {k: list(v) for k, v in (grid or {}).items()}
    for key, values in grid.items():
        if not values:
            raise ConfigError(f"sweep: grid key {key!r} has no values")
    short = short_keys(list(grid))
    cells: list[Cell] = []
    for path, label in zip(paths, _labels(paths)):
        for combo in itertools.product(*grid.values()):
            settings = tuple(zip(grid, combo))
            base = [*overrides, *(_override(k, v) for k, v in settings)]
            for seed in seeds if seeds is not None else [None]:
                for fold in folds if folds is not None else [None]:
                    extra = [
                        *([f"trainer.seed={seed}"] if seed is not None else []),
                        *([f"data.fold={fold}"] if fold is not None else []),
                    ]
                    try:
                        cfg = api.resolve_config([path], [*base, *extra])
                    except ConfigError as err:
                        raise ConfigError(f"{path}: {err}") from None
                    if fold is not None and (
                        cfg.data.format != "benchmark" or cfg.data.benchmark not in api.FOLD_BENCHMARKS
                    ):
                        raise ConfigError(
                            f"{path}: folds need data.format: benchmark with a fold benchmark "
                            f"({', '.join(api.FOLD_BENCHMARKS)}), got format {cfg.data.format!r}, "
                            f"benchmark {cfg.data.benchmark!r}"
                        )
                    parts = [
                        label,
                        *(f"{short[k]}={_value_slug(v)}" for k, v in settings),
                        f"seed{cfg.trainer.seed}",
                        *([f"fold{fold}"] if fold is not None else []),
                    ]
                    cells.append(
                        Cell(
                            path,
                            label,
                            settings,
                            cfg.trainer.seed,
                            fold,
                            "__".join(parts),
                            tuple([*base, *extra]),
                            untrained or cfg.model.arch == "zeroshot",
                        )
                    )
    names = [c.name for c in cells]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(
            f"sweep: cells with the same settings: {', '.join(twice[:3])} (a seed or fold given twice?)"
        )
    return cells


# --------------------------------------------------------------------------------------------------- running


def _check_record(cell: Cell, run_dir: Path) -> None:
    record = run_dir / CELL_FILE
    if not record.is_file():
        raise SweepError(
            f"{run_dir} exists but is not a sweep cell (no {CELL_FILE}); choose another output "
            "folder or remove it"
        )
    found = read_json(record)
    if found != json.loads(json.dumps(cell.record())):
        changed = sorted(k for k in cell.record() if found.get(k) != json.loads(json.dumps(cell.record()[k])))
        raise SweepError(
            f"{run_dir} was run with other settings (differs in: {', '.join(changed)}); use another "
            f"output folder for a changed sweep, or delete that cell to rerun it"
        )


def _run_cell(cell: Cell, out_dir: Path, callbacks: Sequence[L.Callback]) -> CellResult:
    run_dir = out_dir / cell.name
    if (run_dir / "metrics.json").is_file():
        _check_record(cell, run_dir)
        return CellResult(cell, "skipped", run_dir, read_json(run_dir / "metrics.json"))
    status: Status = "trained"
    if run_dir.exists():
        _check_record(cell, run_dir)
        # another sweep into the same folder may be running this cell now: its folder must not be resumed
        # or removed under it (RunDirInUse, the cell is left to that sweep)
        with run_dir_lock(run_dir):
            pass
        last = run_dir / "checkpoints" / "last.ckpt"
        if not cell.untrained and last.is_file() and (run_dir / "config.yaml").is_file():
            try:
                run = api.fit(resume=run_dir, callbacks=callbacks)
                return CellResult(cell, "resumed", run_dir, run.metrics)
            except api.CheckpointError as err:
                log.warning("%s: cannot resume (%s); starting it again", cell.name, err)
        status = "restarted"
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    write_json(cell.record(), run_dir / CELL_FILE)
    extra = [EvaluateOnly(run_dir / "checkpoints" / "last.ckpt")] if cell.untrained else []
    # output_dir first so that a user's own output_dir override still wins; it places the shared feature cache
    run = api.fit(
        [cell.config],
        overrides=[f"output_dir={json.dumps(str(out_dir))}", *cell.overrides],
        run_dir=run_dir,
        callbacks=[*callbacks, *extra],
    )
    return CellResult(cell, status, run_dir, run.metrics)


def run_sweep(
    configs: Sequence[str | os.PathLike[str]],
    seeds: Sequence[int] | None = None,
    folds: Sequence[int] | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    overrides: Sequence[str] = (),
    out_dir: str | os.PathLike[str] = "runs/sweep",
    untrained: bool = False,
    metric: str = "auto",
    dry_run: bool = False,
    callbacks: Sequence[L.Callback] = (),
    launch: Launch | None = None,
) -> SweepResult:
    """Run every cell of the sweep (see :func:`plan_sweep`) and write ``summary.md`` / ``summary.csv``.

    Args:
        configs: YAML files, one per compared method (each may compose others with ``base:``).
        seeds: ``trainer.seed`` values (None: each config's own).
        folds: ``data.fold`` values of a fold benchmark (None: each config's own fold, no fold in the names).
        grid: ``{key: [values]}``; every combination is a setting.
        overrides: ``key=value`` strings applied to every cell (before the grid, seed and fold).
        out_dir: the sweep folder; cells already finished there are not run again.
        untrained: evaluate the initial models instead of training (zero-shot cells always are).
        metric: the metric of the few-shot plot; ``auto``: the MAE of the runs' headline prediction
            (``mae_exp`` or ``mae_max``, see :func:`ordinalclip.app.runpage.sweep_metric`).
        dry_run: plan only (configs resolved and checked, nothing run or written).
        callbacks: extra Lightning callbacks for every run (picklable, for a launcher other than local x 1).
        launch: where the cells run (default: here, one after another); see :mod:`ordinalclip.app.launchers`.

    A failed cell (e.g. a non-finite loss, a missing image, a killed worker) is recorded with its log file
    (``logs/<cell>.log``) and the sweep goes on; an interrupt (SIGINT/SIGTERM) writes the summary of what has
    finished and propagates: run the same sweep to continue.
    """
    out = Path(out_dir)
    cells = plan_sweep(configs, seeds, folds, grid, overrides, untrained)
    if dry_run:
        return SweepResult(out, [CellResult(c, "planned", out / c.name) for c in cells])
    return run_cells(cells, out, launch, callbacks, list(grid or {}), metric)


def run_cells(
    cells: Sequence[Cell],
    out: Path,
    launch: Launch | None = None,
    callbacks: Sequence[L.Callback] = (),
    grid_keys: Sequence[str] = (),
    metric: str = "auto",
    progress: Callable[[CellResult], None] | None = None,
) -> SweepResult:
    """Run planned cells under ``out`` with ``launch`` and write the summary once all have finished (or
    failed); ``progress`` is called with each cell's result as it comes in.

    Every existing cell folder is checked against its cell first, so a changed sweep fails before anything
    runs.
    ``out/sweep.json`` records the plan (cell order, grid keys, metric) for :func:`summarize_only`.
    """
    launch = (launch or Launch()).check()
    out.mkdir(parents=True, exist_ok=True)
    for cell in cells:
        if (out / cell.name).exists():
            _check_record(cell, out / cell.name)
    write_json({"grid": list(grid_keys), "metric": metric, "cells": [c.name for c in cells]}, out / PLAN_FILE)
    tasks = [
        Task(_cell_task, (cell, out, tuple(callbacks), not launch.in_process), log_path(out, cell))
        for cell in cells
    ]
    results: dict[int, CellResult] = {}
    try:
        for index, outcome in run_tasks(tasks, launch):
            cell = cells[index]
            if outcome.error is not None:
                results[index] = _failed(cell, out, outcome.error)
            else:
                results[index] = outcome.value
            r = results[index]
            log.info("sweep [%d/%d] %s: %s", len(results), len(cells), cell.name, r.status)
            if progress is not None:
                progress(r)
    except (TrainingInterrupted, KeyboardInterrupt):
        if results:
            write_summary(
                SweepResult(out, [_settled(results[i]) for i in sorted(results)]), grid_keys, metric
            )
        raise
    return write_summary(SweepResult(out, [_settled(results[i]) for i in sorted(results)]), grid_keys, metric)


def _settled(result: CellResult) -> CellResult:
    """``result``, or, for a cell that did not finish here but whose folder now holds its metrics (another
    sweep into the same folder finished it meanwhile), the finished cell as found on disk."""
    metrics = result.run_dir / "metrics.json"
    if result.status in ("failed", "unfinished") and metrics.is_file():
        try:
            _check_record(result.cell, result.run_dir)
            return CellResult(result.cell, "skipped", result.run_dir, read_json(metrics), log=result.log)
        except (SweepError, OSError, ValueError):
            return result
    return result


def _cell_task(cell: Cell, out: Path, callbacks: Sequence[L.Callback], in_worker: bool) -> CellResult:
    """Run one cell wherever the launcher put it. Errors become a failed result with the traceback in the
    cell's log; in this process an interrupt propagates (as from any loop), in a worker it fails the cell
    (resumable)."""
    try:
        result = _run_cell(cell, out, callbacks)
        result.log = log_path(out, cell)
        if result.status != "skipped":
            _cell_report(result)
        return result
    except RunDirInUse as err:  # another sweep into this folder runs the cell now: not a failure of it
        log.warning("sweep cell %s: %s", cell.name, err)
        return CellResult(
            cell,
            "unfinished",
            out / cell.name,
            error=f"being run by another process: {err}",
            log=log_path(out, cell),
        )
    except SweepError:
        if not in_worker:
            raise
        error = traceback.format_exc()
    except TrainingInterrupted as err:
        if not in_worker:
            raise
        return _failed(
            cell,
            out,
            f"interrupted by {err.signame} at step {err.step}; last.ckpt kept: run the "
            "sweep again to continue",
        )
    except Exception:  # one broken cell must not stop a days-long sweep
        error = traceback.format_exc()
    with log_path(out, cell).open("a", encoding="utf-8") as f:
        f.write(error)
    last = error.strip().splitlines()[-1]
    return _failed(cell, out, last)


def _cell_report(result: CellResult) -> None:
    """The cell's report page, made where the cell ran (in parallel with the other cells), so that the sweep
    page (:func:`ordinalclip.app.sweeppage.write_sweep_page`) finds it up to date and only links it."""
    if not has_matplotlib():
        return
    try:
        make_run_page(result.run_dir)
    except Exception as err:  # a report is not worth failing a finished cell; the sweep page tries again
        log.warning("report of %s failed: %s: %s", result.cell.name, type(err).__name__, err)


def _failed(cell: Cell, out: Path, error: str) -> CellResult:
    log.error("sweep cell %s failed: %s (log: %s)", cell.name, error, log_path(out, cell))
    return CellResult(cell, "failed", out / cell.name, error=error, log=log_path(out, cell))


def summarize_only(out_dir: str | os.PathLike[str]) -> SweepResult:
    """Rebuild ``summary.md`` / ``summary.csv`` of a sweep folder from the cells that have finished (those
    with a ``metrics.json``); the others are listed as unfinished. Nothing is run."""
    sweep = read_sweep(out_dir)
    return write_summary(sweep.result, sweep.grid_keys, sweep.metric)


# --------------------------------------------------------------------------------------------------- summary


def _pm(stats: dict[str, tuple[float, float]], key: str) -> str:
    return f"{stats[key][0]:.3f} ± {stats[key][1]:.3f}" if key in stats else "-"


def write_summary(result: SweepResult, grid_keys: Sequence[str], metric: str = "auto") -> SweepResult:
    """Fill ``result.rows`` and write ``summary.md``, ``summary.csv`` (and ``few_shot.png`` of ``metric``;
    ``auto``: the MAE of the runs' headline prediction) in its folder; the tables lead with the headline
    prediction's metrics."""
    out = result.out_dir
    run_dirs = [r.run_dir for r in result.cells]
    prediction = runs_prediction(run_dirs)
    metric = sweep_metric(metric, prediction)
    shown = [key for key, _ in table_columns(prediction)]
    rows = summarize(result.cells)
    metrics = list(dict.fromkeys(k for r in rows for k in r.stats))

    def write_csv(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(
                [
                    "config",
                    *grid_keys,
                    "checkpoint",
                    "split",
                    "group",
                    "n",
                    *(f"{m}_{s}" for m in metrics for s in ("mean", "std")),
                ]
            )
            for r in rows:
                settings = dict(r.settings)
                w.writerow(
                    [
                        r.config,
                        *(setting_text(settings[k]) for k in grid_keys),
                        r.checkpoint,
                        r.split,
                        r.group,
                        r.n,
                        *(f"{r.stats[m][i]:.6g}" if m in r.stats else "" for m in metrics for i in (0, 1)),
                    ]
                )

    atomic_write(out / "summary.csv", write_csv)
    md = [
        "# Sweep summary",
        "",
        "Mean ± std over seeds and folds (population std; n = runs) for each config and grid setting. "
        "`_exp`: expectation prediction, `_max`: argmax prediction (CORAL / CORN: the number of thresholds "
        f"passed); the runs' headline prediction is the {prediction} (trainer.prediction): its metrics come "
        "first. summary.csv has every metric of `ordinalclip.metrics.ordinal_metrics` (AMAE, RPS, ...).",
        "",
        f"Cells: {len(result.cells)} ({status_text(result.cells)}).",
        "",
    ]
    for t in summary_tables(rows, grid_keys):
        table = [[*cells, *(_pm(r.stats, m) for m in shown)] for cells, r in zip(t.cells, t.rows)]
        md += [
            f"## {t.title}",
            "",
            markdown_table([*(c.title for c in t.columns), *shown], table),
            "",
        ]
    failed = result.failed
    if failed:
        md += (
            ["## Failed cells", ""]
            + [f"- `{r.cell.name}`: {r.error}" + (f" (log: {r.log})" if r.log else "") for r in failed]
            + [""]
        )
    unfinished = [r for r in result.cells if r.status == "unfinished"]
    if unfinished:
        md += ["## Unfinished cells", "", "No metrics.json yet (still running, killed, or not started):", ""]
        md += [f"- `{r.cell.name}`" + (f" (log: {r.log})" if r.log else "") for r in unfinished] + [""]
    plot = few_shot_plot(result, rows, metric) if FEW_SHOT_KEY in grid_keys else None
    if plot is not None:
        md += ["## Few-shot", "", f"![few-shot {metric}]({plot.name})", ""]
    atomic_write_text(out / "summary.md", "\n".join(md))
    result.rows, result.summary_md, result.summary_csv, result.few_shot_plot = (
        rows,
        out / "summary.md",
        out / "summary.csv",
        plot,
    )
    # index.html: these tables, the curves, links to cell reports
    write_sweep_page(result, grid_keys, plot, prediction=prediction)
    return result
