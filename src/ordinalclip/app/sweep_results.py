"""A sweep folder on disk, read in one place: its cells (``cell.json``), their metrics (``metrics.json``), the
plan (``sweep.json``), and the summary rows (mean ± std over seeds and folds) that ``summary.md``,
``summary.csv`` and the sweep page show.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ordinalclip.app.pagekit import Column
from ordinalclip.errors import SweepError
from ordinalclip.metrics import mean_std

FEW_SHOT_KEY = "data.few_shot.shots"
CELL_FILE = "cell.json"
PLAN_FILE = "sweep.json"
LOG_DIR = "logs"
Status = Literal["planned", "trained", "skipped", "resumed", "restarted", "failed", "unfinished"]
STATUSES = ("trained", "skipped", "resumed", "restarted", "failed", "unfinished")  # what summaries count


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


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def log_path(out: Path, cell: Cell) -> Path:
    """Where a cell's log goes: ``OUT/logs/<cell>.log``."""
    return out / LOG_DIR / f"{cell.name}.log"


def setting_text(value: Any) -> str:
    """A grid value as tables show it: strings as they are, anything else as JSON (``null``, ``4``)."""
    return value if isinstance(value, str) else json.dumps(value)


def cell_from_record(run_dir: Path) -> Cell:
    """The cell a run folder's ``cell.json`` describes (keys a record may lack get their defaults)."""
    rec = read_json(run_dir / CELL_FILE)
    return Cell(
        Path(rec["config"]),
        rec["label"],
        tuple((rec.get("settings") or {}).items()),
        rec["seed"],
        rec.get("fold"),
        run_dir.name,
        tuple(rec.get("overrides") or ()),
        bool(rec.get("untrained")),
    )


@dataclass
class SweepOnDisk:
    """What a sweep folder holds: its cells (finished ones with their metrics), the grid keys and the plan's
    metric."""

    result: SweepResult
    grid_keys: list[str]
    metric: str


def read_sweep(
    out_dir: str | os.PathLike[str], missing: Status = "unfinished", missing_error: str | None = None
) -> SweepOnDisk:
    """Read a sweep folder: the planned cells in plan order (``sweep.json``), then any other cell folder.

    A cell with a ``metrics.json`` is ``skipped`` (finished earlier); one without, and a planned cell that has
    no folder yet, gets the status ``missing`` (and the error ``missing_error``). Raises
    :class:`FileNotFoundError` for a missing folder and :class:`SweepError` for a folder without cells.
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise FileNotFoundError(f"sweep folder not found: {out}")
    plan = read_json(out / PLAN_FILE) if (out / PLAN_FILE).is_file() else {}
    found = {p.name: p for p in out.iterdir() if (p / CELL_FILE).is_file()}
    names = [*plan.get("cells", []), *sorted(n for n in found if n not in plan.get("cells", []))]
    if not names:
        raise SweepError(f"{out} holds no sweep cells (no */{CELL_FILE}): is it a sweep folder?")
    results = []
    grid_keys: list[str] = list(plan.get("grid", []))
    for name in names:
        run_dir = out / name
        if name not in found:  # planned, not started
            cell = Cell(Path(), name, (), 0, None, name, (), False)
            results.append(CellResult(cell, missing, run_dir, error=missing_error))
            continue
        cell = cell_from_record(run_dir)
        grid_keys += [k for k, _ in cell.settings if k not in grid_keys]
        finished = (run_dir / "metrics.json").is_file()
        log_file = log_path(out, cell)
        results.append(
            CellResult(
                cell,
                "skipped" if finished else missing,
                run_dir,
                read_json(run_dir / "metrics.json") if finished else None,
                error=None if finished else missing_error,
                log=log_file if log_file.is_file() else None,
            )
        )
    return SweepOnDisk(SweepResult(out, results), grid_keys, plan.get("metric", "auto"))


STATUS_TEXT = {"trained": "trained now", "skipped": "finished earlier"}  # the others read as they are


def status_text(cells: Sequence[CellResult]) -> str:
    """How many cells have each status, as the summaries say it: ``4 trained now, 0 finished earlier,
    0 resumed, 0 restarted, 0 failed`` (``, N unfinished`` added where there are any)."""
    counts = {s: sum(r.status == s for r in cells) for s in STATUSES}
    return ", ".join(f"{n} {STATUS_TEXT.get(s, s)}" for s, n in counts.items() if n or s != "unfinished")


@dataclass(frozen=True)
class SummaryTable:
    """One table of a sweep's summary as ``summary.md`` and the sweep page show it: the leading columns
    (config, the group in a per-group table, one per grid key, n) with each row's cells in them, and the
    summary rows whose ``stats`` fill the metric columns (each page formats mean ± std its own way)."""

    title: str  # "best checkpoint, test", with ", per group" for a per-group table
    columns: list[Column]
    cells: list[list[str | int]]  # one per row: the leading columns' cells
    rows: list[SummaryRow]
    per_group: bool


def summary_tables(rows: Sequence[SummaryRow], grid_keys: Sequence[str]) -> Iterator[SummaryTable]:
    """The summary's tables in the order pages show them: overall before per group, best before last, test
    before val; empty tables left out. Grid keys head their columns by :func:`short_keys`."""
    short = short_keys(grid_keys)
    for per_group in (False, True):
        for tag in ("best", "last"):
            for split in ("test", "val"):
                chosen = [
                    r
                    for r in rows
                    if r.checkpoint == tag and r.split == split and (r.group != "all") == per_group
                ]
                if not chosen:
                    continue
                columns = [
                    Column("config"),
                    *([Column("group")] if per_group else []),
                    *(Column(short[k]) for k in grid_keys),
                    Column("n", True),
                ]
                cells: list[list[str | int]] = [
                    [
                        r.config,
                        *([r.group] if per_group else []),
                        *(setting_text(dict(r.settings).get(k)) for k in grid_keys),
                        r.n,
                    ]
                    for r in chosen
                ]
                title = f"{tag} checkpoint, {split}" + (", per group" if per_group else "")
                yield SummaryTable(title, columns, cells, chosen, per_group)


def short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Grid key -> its last component, or the whole key where two keys share a last component."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


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
