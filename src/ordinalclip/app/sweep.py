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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning as L

from ordinalclip import api
from ordinalclip.app.launchers import Launch, Task, run_tasks
from ordinalclip.app.tables import TABLE_METRICS
from ordinalclip.config_files import config_path
from ordinalclip.configtools import ConfigError, parse_override
from ordinalclip.engine.callbacks import EvaluateOnly
from ordinalclip.engine.errors import TrainingInterrupted
from ordinalclip.fileio import atomic_write, atomic_write_text, write_json
from ordinalclip.metrics import mean_std

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

FEW_SHOT_KEY = "data.few_shot.shots"
CELL_FILE = "cell.json"
PLAN_FILE = "sweep.json"
LOG_DIR = "logs"
Status = Literal["planned", "trained", "skipped", "resumed", "restarted", "failed", "unfinished"]


class SweepError(ConfigError):
    """The sweep folder does not fit the sweep (a cell run with other settings, a folder that is not a
    cell)."""


@dataclass(frozen=True)
class Cell:
    """One run of a sweep: a config file plus its grid setting, seed and fold."""

    config: Path
    label: str  # short name of the config (its file stem, made unique within the sweep)
    settings: tuple[tuple[str, Any], ...]  # (grid key, value) pairs
    seed: int
    fold: int | None
    name: str  # the run folder's name under out_dir
    overrides: tuple[str, ...]  # everything passed to api.fit on top of the config file
    untrained: bool  # evaluate the initial model (zero-shot) instead of training

    def record(self) -> dict[str, Any]:
        """What cell.json holds: a rerun must find the same."""
        return {
            "config": str(self.config),
            "label": self.label,
            "settings": dict(self.settings),
            "seed": self.seed,
            "fold": self.fold,
            "overrides": list(self.overrides),
            "untrained": self.untrained,
        }


@dataclass
class CellResult:
    """What happened to a cell in this call, and its metrics (``metrics.json``) when it has finished."""

    cell: Cell
    status: Status
    run_dir: Path
    metrics: dict[str, Any] | None = None
    error: str | None = None
    log: Path | None = None  # the cell's log file (logs/<cell>.log)


@dataclass
class SummaryRow:
    """Mean and population std over the runs (seeds x folds) of one config and grid setting."""

    config: str
    settings: tuple[tuple[str, Any], ...]
    checkpoint: str  # best | last
    split: str  # val | test
    group: str  # "all", or a group of the data (e.g. an aesthetics category)
    n: int
    stats: dict[str, tuple[float, float]]  # metric -> (mean, std)


@dataclass
class SweepResult:
    """The cells of a sweep, the summary rows and the files written."""

    out_dir: Path
    cells: list[CellResult]
    rows: list[SummaryRow] = field(default_factory=list)
    summary_md: Path | None = None
    summary_csv: Path | None = None
    few_shot_plot: Path | None = None

    @property
    def failed(self) -> list[CellResult]:
        return [r for r in self.cells if r.status == "failed"]


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


def summary_tables(rows: Sequence[SummaryRow]) -> Iterator[tuple[bool, str, str, list[SummaryRow]]]:
    """The summary's tables in the order pages show them, as ``(per_group, checkpoint, split, rows)``: overall
    before per group, best before last, test before val; empty tables left out."""
    for group_rows in (False, True):
        for tag in ("best", "last"):
            for split in ("test", "val"):
                chosen = [
                    r
                    for r in rows
                    if r.checkpoint == tag and r.split == split and (r.group != "all") == group_rows
                ]
                if chosen:
                    yield group_rows, tag, split, chosen


def short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Grid key -> its last component, or the whole key where two keys share a last component."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


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


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _check_record(cell: Cell, run_dir: Path) -> None:
    record = run_dir / CELL_FILE
    if not record.is_file():
        raise SweepError(
            f"{run_dir} exists but is not a sweep cell (no {CELL_FILE}); choose another output "
            "folder or remove it"
        )
    found = _read_json(record)
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
        return CellResult(cell, "skipped", run_dir, _read_json(run_dir / "metrics.json"))
    status: Status = "trained"
    if run_dir.exists():
        _check_record(cell, run_dir)
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
    metric: str = "mae_max",
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
        metric: the metric of the few-shot plot.
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
    metric: str = "mae_max",
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
        Task(_cell_task, (cell, out, tuple(callbacks), not launch.in_process), _log_path(out, cell))
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
            write_summary(SweepResult(out, [results[i] for i in sorted(results)]), grid_keys, metric)
        raise
    return write_summary(SweepResult(out, [results[i] for i in sorted(results)]), grid_keys, metric)


def _log_path(out: Path, cell: Cell) -> Path:
    return out / LOG_DIR / f"{cell.name}.log"


def _cell_task(cell: Cell, out: Path, callbacks: Sequence[L.Callback], in_worker: bool) -> CellResult:
    """Run one cell wherever the launcher put it. Errors become a failed result with the traceback in the
    cell's log; in this process an interrupt propagates (as from any loop), in a worker it fails the cell
    (resumable)."""
    try:
        result = _run_cell(cell, out, callbacks)
        result.log = _log_path(out, cell)
        if result.status != "skipped":
            _cell_report(result)
        return result
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
    with _log_path(out, cell).open("a", encoding="utf-8") as f:
        f.write(error)
    last = error.strip().splitlines()[-1]
    return _failed(cell, out, last)


def _cell_report(result: CellResult) -> None:
    """The cell's report page, made where the cell ran (in parallel with the other cells), so that the sweep
    page (:func:`ordinalclip.app.report.write_sweep_page`) finds it up to date and only links it."""
    from ordinalclip.app.report import has_matplotlib, make_report

    if not has_matplotlib():
        return
    try:
        make_report(result.run_dir)
    except Exception as err:  # a report is not worth failing a finished cell; the sweep page tries again
        log.warning("report of %s failed: %s: %s", result.cell.name, type(err).__name__, err)


def _failed(cell: Cell, out: Path, error: str) -> CellResult:
    log.error("sweep cell %s failed: %s (log: %s)", cell.name, error, _log_path(out, cell))
    return CellResult(cell, "failed", out / cell.name, error=error, log=_log_path(out, cell))


def _cell_from_record(run_dir: Path) -> Cell:
    r = _read_json(run_dir / CELL_FILE)
    return Cell(
        Path(r["config"]),
        r["label"],
        tuple(r["settings"].items()),
        r["seed"],
        r["fold"],
        run_dir.name,
        tuple(r["overrides"]),
        r["untrained"],
    )


def summarize_only(out_dir: str | os.PathLike[str]) -> SweepResult:
    """Rebuild ``summary.md`` / ``summary.csv`` of a sweep folder from the cells that have finished (those
    with a ``metrics.json``); the others are listed as unfinished. Nothing is run."""
    out = Path(out_dir)
    if not out.is_dir():
        raise FileNotFoundError(f"sweep folder not found: {out}")
    plan = _read_json(out / PLAN_FILE) if (out / PLAN_FILE).is_file() else {}
    found = {p.name: p for p in out.iterdir() if (p / CELL_FILE).is_file()}
    names = [*plan.get("cells", []), *sorted(n for n in found if n not in plan.get("cells", []))]
    if not names:
        raise SweepError(f"{out} holds no sweep cells (no */{CELL_FILE}): is it a sweep folder?")
    results = []
    grid_keys: list[str] = list(plan.get("grid", []))
    for name in names:
        run_dir = out / name
        if name not in found:  # planned, not started
            results.append(
                CellResult(Cell(Path(), name, (), 0, None, name, (), False), "unfinished", run_dir)
            )
            continue
        cell = _cell_from_record(run_dir)
        grid_keys += [k for k, _ in cell.settings if k not in grid_keys]
        finished = (run_dir / "metrics.json").is_file()
        log_file = _log_path(out, cell)
        results.append(
            CellResult(
                cell,
                "skipped" if finished else "unfinished",
                run_dir,
                _read_json(run_dir / "metrics.json") if finished else None,
                log=log_file if log_file.is_file() else None,
            )
        )
    return write_summary(SweepResult(out, results), grid_keys, plan.get("metric", "mae_max"))


# --------------------------------------------------------------------------------------------------- summary


def _stats(per_run: list[Mapping[str, Any]]) -> dict[str, tuple[float, float]]:
    keys = [
        k
        for k in per_run[0]
        if all(isinstance(m.get(k), (int, float)) and not isinstance(m.get(k), bool) for m in per_run)
    ]
    return {k: mean_std([float(m[k]) for m in per_run]) for k in keys}


def summarize(results: Sequence[CellResult]) -> list[SummaryRow]:
    """Rows of mean ± std over seeds and folds for each (config, grid setting), checkpoint, split and
    group."""
    by_setting: dict[str, list[CellResult]] = {}
    for r in results:
        if r.metrics is not None:
            by_setting.setdefault(json.dumps([r.cell.label, r.cell.settings]), []).append(r)
    rows: list[SummaryRow] = []
    for members in by_setting.values():
        cell = members[0].cell
        for tag in ("best", "last"):
            for split in ("val", "test"):
                entries = [m.metrics[tag] for m in members if (m.metrics or {}).get(tag)]  # type: ignore[index]
                per_run = [e[split] for e in entries if e.get(split)]
                if per_run:
                    rows.append(
                        SummaryRow(
                            cell.label, cell.settings, tag, split, "all", len(per_run), _stats(per_run)
                        )
                    )
                groups = [e[f"{split}_groups"] for e in entries if e.get(f"{split}_groups")]
                for g in dict.fromkeys(g for run in groups for g in run):
                    per_group = [run[g] for run in groups if run.get(g)]
                    rows.append(
                        SummaryRow(
                            cell.label, cell.settings, tag, split, str(g), len(per_group), _stats(per_group)
                        )
                    )
    return rows


def _fmt_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _pm(stats: dict[str, tuple[float, float]], key: str) -> str:
    return f"{stats[key][0]:.3f} ± {stats[key][1]:.3f}" if key in stats else "-"


def write_summary(result: SweepResult, grid_keys: Sequence[str], metric: str = "mae_max") -> SweepResult:
    """Fill ``result.rows`` and write ``summary.md``, ``summary.csv`` (and ``few_shot.png``) in its folder."""
    out = result.out_dir
    rows = summarize(result.cells)
    short = short_keys(list(grid_keys))
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
                        *(_fmt_value(settings[k]) for k in grid_keys),
                        r.checkpoint,
                        r.split,
                        r.group,
                        r.n,
                        *(f"{r.stats[m][i]:.6g}" if m in r.stats else "" for m in metrics for i in (0, 1)),
                    ]
                )

    atomic_write(out / "summary.csv", write_csv)
    counts = {
        s: sum(r.status == s for r in result.cells)
        for s in ("trained", "skipped", "resumed", "restarted", "failed", "unfinished")
    }
    md = [
        "# Sweep summary",
        "",
        "Mean ± std over seeds and folds (population std; n = runs) for each config and grid setting. "
        "`_exp`: expectation prediction, `_max`: argmax prediction (CORAL / CORN: the number of thresholds "
        "passed). summary.csv has every metric of `ordinalclip.metrics.ordinal_metrics` (AMAE, RPS, ...).",
        "",
        f"Cells: {len(result.cells)} ({counts['trained']} trained now, {counts['skipped']} finished earlier, "
        f"{counts['resumed']} resumed, {counts['restarted']} restarted, {counts['failed']} failed"
        + (f", {counts['unfinished']} unfinished" if counts["unfinished"] else "")
        + ").",
        "",
    ]
    head = ["config", *(short[k] for k in grid_keys), "n", *TABLE_METRICS]
    for group_rows, tag, split, chosen in summary_tables(rows):
        title = f"## {tag} checkpoint, {split}" + (", per group" if group_rows else "")
        cols = head[:1] + (["group"] if group_rows else []) + head[1:]
        md += [title, "", "| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
        for r in chosen:
            settings = dict(r.settings)
            cells = [
                r.config,
                *([r.group] if group_rows else []),
                *(_fmt_value(settings[k]) for k in grid_keys),
                str(r.n),
                *(_pm(r.stats, m) for m in TABLE_METRICS),
            ]
            md.append("| " + " | ".join(cells) + " |")
        md.append("")
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
    plot = _few_shot_plot(result, rows, metric) if FEW_SHOT_KEY in grid_keys else None
    if plot is not None:
        md += ["## Few-shot", "", f"![few-shot {metric}]({plot.name})", ""]
    atomic_write_text(out / "summary.md", "\n".join(md))
    result.rows, result.summary_md, result.summary_csv, result.few_shot_plot = (
        rows,
        out / "summary.md",
        out / "summary.csv",
        plot,
    )
    from ordinalclip.app.report import write_sweep_page

    write_sweep_page(result, grid_keys, plot)  # index.html: these tables, the curves, links to cell reports
    return result


def _few_shot_plot(result: SweepResult, rows: Sequence[SummaryRow], metric: str) -> Path | None:
    """``metric`` against shots per rank, one line per config (and other grid setting), from the first of
    best/last test, then val, that the runs have."""
    from ordinalclip.app.report import REPORT_EXTRA, has_matplotlib, plot_few_shot

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
            f"{k.rsplit('.', 1)[-1]}={_fmt_value(v)}" for k, v in r.cell.settings if k != FEW_SHOT_KEY
        )
        method = r.cell.label + (f" ({others})" if others else "")
        curves.setdefault(method, {}).setdefault(int(settings[FEW_SHOT_KEY]), []).append(float(entry[metric]))
    path = result.out_dir / "few_shot.png"
    plot_few_shot(curves, path, metric=f"{metric} ({tag} checkpoint, {split})")
    return path
