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

import csv
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ordinalclip.app.launchers import Launch
from ordinalclip.app.sweep import FEW_SHOT_KEY, Cell, CellResult, run_cells
from ordinalclip.app.tables import TABLE_COLUMNS
from ordinalclip.configtools import merge
from ordinalclip.fileio import atomic_write, atomic_write_text
from ordinalclip.metrics import mean_std

log = logging.getLogger(__name__)

TEXT_MODEL = "all-MiniLM-L6-v2"
CONTEXT = "the sharpness of this photo is"
BASE_NAMES = ["sharp", "blurred", "extremely blurred"]


@dataclass
class DemoOptions:
    """Sizes of the demo; the defaults finish in a few minutes on 2 CPU cores."""

    out: Path = Path("runs/demo")
    data_root: Path | None = None  # default: the user cache
    levels: int = 6
    crops_per_photo: int = 16
    seeds: Sequence[int] = (0, 1, 2)
    shots: Sequence[int] = (1, 4, 16)
    full_epochs: int = 8
    min_steps: int = 60  # few-shot runs train for at least this many optimizer steps
    batch_size: int = 64
    methods: Sequence[str] | None = None  # None = DEFAULT_METHODS (any key of method_overrides)
    jobs: int = 2  # runs trained side by side (local worker processes, each with its share of the cores)
    launch: Launch | None = None  # where the runs go (default: local with `jobs` workers); see app.launchers
    progress: bool = True
    quick: bool = False
    text_task: bool = True  # also run the text task (app.demo_text): where language priors help
    text_options: Any = None  # a demo_text.TextTaskOptions instead of demo_text_options(self) (tests)


DEFAULT_METHODS = (
    "OrdinalCLIP (random base ranks)",
    "OrdinalCLIP (named base ranks)",
    "CoOp (rank names)",
    "CNN cosine baseline",
    "Linear (CE)",
)


def method_overrides(levels: int) -> dict[str, dict[str, Any]]:
    """Model settings of every method, as config overrides (the rest is shared)."""
    prompt = {"context_init": CONTEXT}
    return {
        "OrdinalCLIP (random base ranks)": {"arch": "prompts", "prompts": {**prompt, "learner": "rank"}},
        "OrdinalCLIP (named base ranks)": {
            "arch": "prompts",
            "prompts": {**prompt, "learner": "rank", "base_rank_names": BASE_NAMES},
        },
        "CoOp (rank names)": {
            "arch": "prompts",
            "prompts": {**prompt, "learner": "plain", "rank_names": None},
        },
        "CNN cosine baseline": {"arch": "cosine"},
        "Linear (CE)": {"arch": "linear", "_loss": {"kl_weight": 0.0}},
        "CORAL": {"arch": "coral"},
    }


@dataclass
class RunResult:
    method: str
    setting: str  # "full" or "k-shot"
    seed: int
    metrics: dict[str, float]
    run_dir: Path
    ordinality: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def extract_features(dataset, out: Path, progress: bool = True) -> Path:
    """EfficientNet-Lite0 (ImageNet) features of every image of the demo set -> one ``.npz`` with a split
    column.

    Reused when it exists (the data set and the tower are fixed, so the file is keyed by the data set's
    folder).
    """
    from PIL import Image
    from torchvision import transforms as T

    from ordinalclip.modeling.backbones.efficientnet import EfficientNetLite0Tower

    if out.is_file():
        return out
    tower = EfficientNetLite0Tower(output_dim=None).eval()
    pre = tower.preprocess
    # The crops are small (96 px): encode them at native size; upsampling would blur every level alike.
    tf = T.Compose([T.ToTensor(), T.Normalize(pre["mean"], pre["std"])])
    feats, labels, splits = [], [], []
    rows = []
    for split in ("train", "val", "test"):
        for line in dataset.list_file(split).read_text().splitlines():
            if line.strip():
                path, label = line.split()[:2]
                rows.append((split, path, int(label)))
    batch: list[torch.Tensor] = []
    bar = tqdm(total=len(rows), desc="EfficientNet-Lite0 features", unit="img", disable=not progress)

    def flush() -> None:
        with torch.no_grad():
            feats.append(tower(torch.stack(batch)).numpy())
        bar.update(len(batch))
        batch.clear()

    for split, path, label in rows:
        with Image.open(dataset.root / path) as im:
            batch.append(tf(im.convert("RGB")))
        labels.append(label)
        splits.append(split)
        if len(batch) == 64:
            flush()
    if batch:
        flush()
    bar.close()
    arrays: dict[str, Any] = {
        "features": np.concatenate(feats).astype(np.float32),
        "labels": np.array(labels),
        "split": np.array(splits),
    }

    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:  # a file object: np.savez would add ".npz" to a path
            np.savez(fh, **arrays)

    return atomic_write(out, write)


def base_config(features: Path, out: Path, levels: int, rank_names: Sequence[str], batch_size: int) -> dict:
    """The shared part of every demo run's config."""
    return {
        "name": "demo",
        "output_dir": str(out),
        "model": {
            "num_ranks": levels,
            "embed_dim": 384,
            "image": {"kind": "features", "input_dim": 1280, "project": True},
            "text": {"kind": "huggingface", "hf_model": TEXT_MODEL},
            "prompts": {"num_base_ranks": 3},
        },
        "data": {
            "format": "features",
            "train": str(features),
            "columns": {"split": "split"},
            "rank_names": list(rank_names),
            "batch_size": batch_size,
            "num_workers": 0,
        },
        **cpu_schedule(10),
    }


def cpu_schedule(max_epochs: int) -> dict[str, Any]:
    """The optimizer and trainer part of every demo and text-task run: AdamW with a cosine schedule, one CPU,
    checkpoints chosen on the validation MAE of the expectation, and no copy of the frozen towers in them."""
    return {
        "optim": {"name": "adamw", "lr": 2e-3, "weight_decay": 1e-4, "scheduler": "cosine"},
        "trainer": {
            "max_epochs": max_epochs,
            "accelerator": "cpu",
            "devices": 1,
            "progress_bar": False,
            "loggers": ["csv"],
            "log_every_n_steps": 10,
            "monitor": "val_mae_exp",
            "save_frozen_towers": False,
        },
    }


def run_settings(
    shots: Sequence[int], levels: int, full_epochs: int, min_steps: int, batch_size: int
) -> list[tuple[str, int | None, int]]:
    """(name, shots per level or None, epochs) of the full-data setting and each few-shot one; a few-shot run
    trains for at least ``min_steps`` optimizer steps."""
    settings: list[tuple[str, int | None, int]] = [("full", None, full_epochs)]
    for k in shots:
        epochs = max(full_epochs, math.ceil(min_steps / math.ceil(k * levels / batch_size)))
        settings.append((f"{k}-shot", k, epochs))
    return settings


def run_overrides(epochs: int, seed: int, shots: int | None) -> dict[str, Any]:
    """The per-run part of a demo config: epochs, seed, few-shot size, and about 8 validations per run however
    many (tiny) epochs a few-shot run has."""
    return {
        "trainer": {"max_epochs": epochs, "seed": seed, "check_val_every_n_epoch": max(1, epochs // 8)},
        "data": {"few_shot": {"shots": shots, "seed": seed}},
    }


def run_config(base: dict, model: dict, loss: dict, epochs: int, seed: int, shots: int | None) -> dict:
    """One demo run's config: ``base`` (:func:`base_config`) with a method's model and loss settings."""
    return merge(base, {"model": model, "loss": loss, **run_overrides(epochs, seed, shots)})


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
    from ordinalclip.configtools import save_yaml

    configs = {}
    for name, extra in plan.methods.items():
        configs[name] = plan.out / "configs" / f"{_slug(name)}.yaml"
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
                    f"{setting}-{_slug(name)}-s{seed}",
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
        from ordinalclip.app.demo_text import demo_section, demo_text_options

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
    _write_csv(results, plan.out / "results.csv")
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


def write_report(
    report: Path,
    results: Sequence[RunResult],
    settings: Sequence[str],
    methods: Sequence[str],
    intro: str,
    dataset: Any,
    first_seed: int,
    extra: Callable[[Any], None] | None = None,
) -> Path:
    """The demo's page: the comparison table, the few-shot curves, a closer look at the best full-data run
    (the photos per level, its worst errors, error per level, confusion matrix) and every method's
    prototypes; ``extra(page)`` adds more sections (the text task) before it is written."""
    from ordinalclip.app.report import (
        Column,
        Page,
        mean_std_value,
        metric_columns,
        plot_few_shot,
        plot_prototype_similarity,
        run_sections,
    )

    page = Page(report, "ordinalclip demo — blur levels of real photos")
    page.text(intro)
    page.heading("Results (test split)")
    rows, groups = [], []
    for setting in settings:
        for method in methods:
            rs = [r for r in results if r.setting == setting and r.method == method]
            if not rs:
                continue
            ords = [r.ordinality for r in rs if r.ordinality is not None]
            rows.append(
                [
                    setting,
                    method,
                    *(mean_std_value(*_mean_std([r.metrics[k] for r in rs])) for k, _ in TABLE_COLUMNS),
                    mean_std_value(*_mean_std(ords), pct=True) if ords else None,
                ]
            )
            groups.append(setting)
    page.table(
        [Column("setting"), Column("method"), *metric_columns(), Column("ordinality", True, "max")],
        rows,
        groups,
        caption="Mean ± std over seeds; the best of each column within a setting is "
        "bold on green. exp: expectation prediction, max: argmax prediction; ordinality: share of "
        "ordered prototype triples.",
    )
    curves: dict[str, dict[int, list[float]]] = {}
    for r in results:
        if r.setting != "full":
            shots = int(r.setting.split("-")[0])
            curves.setdefault(r.method, {}).setdefault(shots, []).append(r.metrics["mae_exp"])
    if curves:
        plot_few_shot(curves, report / "few_shot.png", metric="test MAE (expectation)")
        page.heading("Few-shot curves")
        page.images([("few_shot.png", "test MAE against images per level, mean ± std over seeds")])
    first = [r for r in results if r.setting == "full" and r.seed == first_seed]
    best = min(first, key=lambda r: r.metrics["mae_exp"], default=None)
    if best is not None:
        page.heading(f"A closer look: {best.method} (full data, seed {first_seed}, lowest test MAE)")
        run_sections(
            page,
            best.run_dir,
            _image_resolver(dataset),
            prefix="best_",
            metrics_table=False,
            prototypes=False,
            level=3,
        )
    protos = [(r, r.run_dir / "prototypes.npy") for r in first if (r.run_dir / "prototypes.npy").is_file()]
    if protos:
        page.heading("Prototypes of every method (full data)")
        page.text(
            "Cosine similarity of the learned rank prototypes; an ordinal model's similarity falls off "
            "with the distance between ranks."
        )
        items = []
        for r, path in protos:
            img = f"prototypes_{_slug(r.method)}.png"
            plot_prototype_similarity(np.load(path), report / img, r.method, dataset.rank_names)
            items.append((img, r.method))
        page.images(items)
    if extra is not None:
        extra(page)
    return page.write()


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    mean, std = mean_std(list(values))
    return mean, (std if len(values) > 1 else None)


def _image_resolver(dataset: Any) -> Callable[[str], Path | None]:
    """Prediction path (a feature-row reference ``FILE#SPLIT/ROW``) -> the photo crop it was extracted from:
    the features file holds the rows of each split's list file in order (see :func:`extract_features`)."""
    from ordinalclip.data import DataError
    from ordinalclip.engine.splits import parse_feature_ref

    lists: dict[str, list[str]] = {}

    def image_of(ref: str) -> Path | None:
        try:
            _, split, row = parse_feature_ref(ref)
        except DataError:
            return None
        if split not in ("train", "val", "test"):
            return None
        if split not in lists:
            lines = dataset.list_file(split).read_text().splitlines()
            lists[split] = [line.split()[0] for line in lines if line.strip()]
        return Path(dataset.root) / lists[split][row] if row < len(lists[split]) else None

    return image_of


def summary_table(results: Sequence[RunResult], settings: Sequence[str], methods: Sequence[str]) -> str:
    """Markdown table: one row per (setting, method), mean ± std over seeds of each metric."""
    head = "| setting | method | " + " | ".join(c for _, c in TABLE_COLUMNS) + " | ordinality |"
    lines = [head, "|" + " --- |" * (len(TABLE_COLUMNS) + 3)]
    for setting in settings:
        for method in methods:
            rs = [r for r in results if r.setting == setting and r.method == method]
            if not rs:
                continue
            cells = [_fmt([r.metrics[k] for r in rs]) for k, _ in TABLE_COLUMNS]
            ords = [r.ordinality for r in rs if r.ordinality is not None]
            cells.append(_fmt(ords, pct=True) if ords else "–")
            lines.append(f"| {setting} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(values: Sequence[float], pct: bool = False) -> str:
    scale = 100.0 if pct else 1.0
    mean, std = (v * scale for v in mean_std(list(values)))
    if len(values) < 2:
        return f"{mean:.1f}%" if pct else f"{mean:.3f}"
    return f"{mean:.1f} ± {std:.1f}%" if pct else f"{mean:.3f} ± {std:.3f}"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-").replace("--", "-")


def _write_csv(results: Sequence[RunResult], path: Path) -> None:
    keys = sorted({k for r in results for k in r.metrics})
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["setting", "method", "seed", *keys, "ordinality", "run_dir"])
        for r in results:
            w.writerow(
                [r.setting, r.method, r.seed, *[r.metrics.get(k) for k in keys], r.ordinality, r.run_dir]
            )
