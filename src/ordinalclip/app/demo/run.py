"""The built-in default job: compare ordinal regressors on real photos with real pretrained towers, offline.

What it does (``ordinalclip demo``):

1. builds (once, cached) the blur-level data set of :mod:`ordinalclip.data.blur`: real photos shipped by
   scikit-image / scikit-learn / matplotlib, cropped and blurred to L ordered levels, split by source photo;
2. extracts ImageNet EfficientNet-Lite0 features once (the image tower is frozen, so every method trains on
   the same cached features, through a learnable projection into the text space);
3. trains every method with the Lightning engine on the full training split and few-shot subsets
   (k images per level, several seeds): OrdinalCLIP with random base ranks (the paper's MORPH setting) and
   with base ranks initialised from level names, CoOp (plain prompt learner, rank names), the CNN cosine
   baseline, a linear softmax head and CORAL; the text tower is the bundled all-MiniLM-L6-v2;
4. prints one table (mean ± std over seeds) and writes ``summary.md``, ``results.csv`` and a report page with
   the prototype similarity matrices, a confusion matrix and the few-shot curves.

Each task (:data:`TASKS`: a :class:`DemoTask` builds its data and returns a :class:`TaskPlan`) becomes
sweep cells (settings x seeds x methods, one config file per method in ``<out>/configs``), and all tasks'
cells run through :func:`ordinalclip.app.sweep.run_cells` with one launcher (default: ``jobs`` local worker
processes), so a rerun skips finished runs and continues interrupted ones, and each run has its log in
``<out>/runs/logs``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ordinalclip.app.demo.common import DemoOptions, slug
from ordinalclip.app.demo.features import extract_features
from ordinalclip.app.demo.methods import (
    DEFAULT_METHODS,
    base_config,
    method_overrides,
    run_settings,
)
from ordinalclip.app.demo.page import RunResult, summary_table, write_csv, write_report
from ordinalclip.app.launchers import Launch
from ordinalclip.app.sweep import run_cells
from ordinalclip.app.sweep_results import FEW_SHOT_KEY, Cell, CellResult
from ordinalclip.config.typed import merge
from ordinalclip.fileio import atomic_write_text

log = logging.getLogger(__name__)


@dataclass
class TaskPlan:
    """A demo task ready to run: its shared config, its methods, and what its report says about the data.

    The grid (full data and few-shot sizes x seeds x methods) and the report are the same for every task."""

    name: str
    out: Path  # its results.csv, summary.md and report/
    base: dict[str, Any]  # the config shared by all its runs
    methods: dict[str, dict[str, Any]]  # method -> {"model": ..., "loss": ...} on top of base
    levels: int
    rank_names: list[str]
    intro: str  # the report's setup paragraph (data, towers)
    dataset: Any  # what write_report shows photos from (list_file(split), root, rank_names)


@dataclass(frozen=True)
class DemoTask:
    """One task of the demo: ``prepare`` builds its data and features and returns its :class:`TaskPlan`."""

    name: str
    prepare: Callable[[DemoOptions, Path], TaskPlan]


def _prepare_blur(opts: DemoOptions, out: Path) -> TaskPlan:
    """Blur levels of real photos, frozen EfficientNet-Lite0 features, the MiniLM text tower."""
    from ordinalclip.data.blur import build_blur_dataset

    ds = build_blur_dataset(
        opts.data_root, levels=opts.levels, crops_per_photo=opts.crops_per_photo, progress=opts.progress
    )
    features = extract_features(ds, Path(ds.root) / "features_efficientnet_lite0.npz", opts.progress)
    counts = {
        s: sum(1 for line in ds.list_file(s).read_text().splitlines() if line.strip())
        for s in ("train", "val", "test")
    }
    log.info("data: %s images per split (%s levels); features %s", counts, opts.levels, features)
    methods = method_overrides(opts.levels)
    chosen = list(opts.methods or DEFAULT_METHODS)
    unknown = [m for m in chosen if m not in methods]
    if unknown:
        raise ValueError(f"unknown demo methods {unknown}; choose from {list(methods)}")
    runs: dict[str, dict[str, Any]] = {}
    for name in chosen:
        model = {k: v for k, v in methods[name].items() if k != "_loss"}
        if model.get("prompts", {}).get("learner") == "plain":
            model["prompts"]["rank_names"] = list(ds.rank_names)
        runs[name] = {"model": model, "loss": methods[name].get("_loss", {})}
    intro = (
        f"Blur-level estimation on real photos ({opts.levels} levels: {', '.join(ds.rank_names)}); "
        f"{counts['train']} train / {counts['val']} val / {counts['test']} test images, split by source "
        f"photo. Image tower: ImageNet EfficientNet-Lite0 (frozen, cached features) + learnable projection; "
        f"text tower: all-MiniLM-L6-v2 (frozen)."
    )
    return TaskPlan(
        "blur",
        out,
        base_config(features, out / "runs", opts.levels, ds.rank_names, opts.batch_size),
        runs,
        opts.levels,
        list(ds.rank_names),
        intro,
        ds,
    )


TASKS: tuple[DemoTask, ...] = (DemoTask("blur", _prepare_blur),)


def _cells(plan: TaskPlan, opts: DemoOptions) -> list[tuple[Cell, str]]:
    """The task's runs as sweep cells (one config file per method; setting, epochs and seed as overrides), in
    table order, each with its setting ("full" or "k-shot")."""
    from ordinalclip.config.typed import save_yaml

    configs = {}
    for name, extra in plan.methods.items():
        configs[name] = plan.out / "configs" / f"{slug(name)}.yaml"
        save_yaml(merge(plan.base, extra), configs[name])
    settings = run_settings(opts.shots, opts.levels, opts.full_epochs, opts.min_steps, opts.batch_size)
    cells = []
    for setting, shots, epochs in settings:
        for seed in opts.seeds:
            for name in plan.methods:
                # about 8 validations per run, however many (tiny) epochs a few-shot run has
                overrides = (
                    f"trainer.max_epochs={epochs}",
                    f"trainer.seed={seed}",
                    f"trainer.check_val_every_n_epoch={max(1, epochs // 8)}",
                    f"{FEW_SHOT_KEY}={json.dumps(shots)}",
                    f"data.few_shot.seed={seed}",
                    # the demo's own few-shot budget (opts.min_steps), not the engine's few-shot default
                    f"trainer.min_steps={opts.min_steps}",
                )
                cell = Cell(
                    configs[name],
                    name,
                    ((FEW_SHOT_KEY, shots),),
                    seed,
                    None,
                    f"{setting}-{slug(name)}-s{seed}",
                    overrides,
                    False,
                )
                cells.append((cell, setting))
    return cells


def run_demo(opts: DemoOptions, tasks: Sequence[DemoTask] = TASKS) -> tuple[str, Path]:
    """Run the whole demo; returns the printed table (Markdown) and the report page (of each task, joined)."""
    from ordinalclip.engine.trainer import quiet_lightning

    quiet_lightning()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    t0 = time.time()
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    plans = [task.prepare(opts, out if len(tasks) == 1 else out / task.name) for task in tasks]
    grids = [_cells(plan, opts) for plan in plans]
    # Every task's runs go through one launcher call, so the workers stay busy across tasks.
    all_cells = [cell for grid in grids for cell, _ in grid]
    bar = tqdm(total=len(all_cells), desc="training", unit="run", disable=not opts.progress)

    def progress(r: CellResult) -> None:
        bar.set_postfix_str(r.cell.name)
        bar.update()

    outcomes: dict[str, CellResult] = {}
    for plan, grid in zip(plans, grids):
        cells = [cell for cell, _ in grid]
        sweep = run_cells(
            cells,
            plan.out / "runs",
            opts.launch or Launch(jobs=max(1, min(opts.jobs, len(cells)))),
            grid_keys=[FEW_SHOT_KEY],
            progress=progress,
        )
        outcomes.update({r.cell.name: r for r in sweep.cells})
    bar.close()
    failed = [r for r in outcomes.values() if r.status == "failed"]
    if failed:
        raise RuntimeError(
            "demo runs failed: " + "; ".join(f"{r.cell.name}: {r.error} (log: {r.log})" for r in failed)
        )
    elapsed = time.time() - t0
    text = None
    if opts.text_task:  # the language-prior task: its own grid and anchor (app.demo_text), same report page
        from ordinalclip.app.demo.text import demo_section, demo_text_options

        text = demo_section(opts.text_options or demo_text_options(opts), plans[0].out / "report")
    tables, pages = [], []
    for k, (plan, grid) in enumerate(zip(plans, grids)):
        results = [_run_result(outcomes[cell.name], setting) for cell, setting in grid]
        extra = text.add_to if text is not None and k == 0 else None
        table, page = _report(
            plan, results, [s for s in dict.fromkeys(s for _, s in grid)], opts, elapsed, extra
        )
        tables.append(table)
        pages.append(page)
    if text is not None:
        tables.append(text.table_md)
    return "\n\n".join(tables), pages[0]


def _run_result(r: CellResult, setting: str) -> RunResult:
    """The test metrics of a finished cell (best checkpoint on val, else last) and its prototypes'
    ordinality."""
    from ordinalclip.metrics import ordinality_score

    metrics = r.metrics or {}
    test = metrics["best"]["test"] if metrics.get("best") else metrics["last"]["test"]
    res = RunResult(
        r.cell.label,
        setting,
        r.cell.seed,
        {k: v for k, v in test.items() if isinstance(v, (int, float))},
        r.run_dir,
    )
    protos = r.run_dir / "prototypes.npy"
    if protos.is_file():
        scores = ordinality_score(torch.from_numpy(np.load(protos)))
        res.ordinality = scores[max(scores)]
    return res


def _report(
    plan: TaskPlan,
    results: Sequence[RunResult],
    settings: Sequence[str],
    opts: DemoOptions,
    elapsed: float,
    extra: Callable[[Any], None] | None = None,
) -> tuple[str, Path]:
    """The task's table, results.csv, report page (:func:`write_report`) and summary.md."""
    table = summary_table(results, settings, list(plan.methods))
    write_csv(results, plan.out / "results.csv")
    intro = (
        f"{plan.intro} Test metrics of the best-on-val checkpoint; mean ± std over seeds "
        f"{list(opts.seeds)}. Data, features and training took {elapsed:.0f} s."
    )
    page = write_report(
        plan.out / "report", results, settings, list(plan.methods), intro, plan.dataset, opts.seeds[0], extra
    )
    md = (plan.out / "report" / "summary.md").read_text(encoding="utf-8")
    atomic_write_text(plan.out / "summary.md", md.replace("](", "](report/"))
    return table, page
