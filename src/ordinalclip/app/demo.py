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
"""

from __future__ import annotations

import csv
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
    jobs: int = 2  # runs trained side by side, one single-threaded process each
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
        "OrdinalCLIP (random base ranks)": {"arch": "ordinalclip", "prompts": {**prompt, "learner": "rank"}},
        "OrdinalCLIP (named base ranks)": {
            "arch": "ordinalclip",
            "prompts": {**prompt, "learner": "rank", "rank_names": BASE_NAMES},
        },
        "CoOp (rank names)": {
            "arch": "ordinalclip",
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
        "optim": {"name": "adamw", "lr": 2e-3, "weight_decay": 1e-4, "scheduler": "cosine"},
        "trainer": {
            "max_epochs": 10,
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


def run_config(base: dict, model: dict, loss: dict, epochs: int, seed: int, shots: int | None) -> dict:
    """One demo run's config: ``base`` (:func:`base_config`) with a method's model and loss settings."""
    # about 8 validations per run, however many (tiny) epochs a few-shot run has
    return merge(
        base,
        {
            "model": model,
            "loss": loss,
            "trainer": {"max_epochs": epochs, "seed": seed, "check_val_every_n_epoch": max(1, epochs // 8)},
            "data": {"few_shot": {"shots": shots, "seed": seed}},
        },
    )


def run_demo(opts: DemoOptions) -> tuple[str, Path]:
    """Run the whole demo; returns the printed table (Markdown) and the report page."""
    from ordinalclip.data.blur import build_blur_dataset
    from ordinalclip.engine.trainer import quiet_lightning

    quiet_lightning()
    t0 = time.time()
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = build_blur_dataset(
        opts.data_root, levels=opts.levels, crops_per_photo=opts.crops_per_photo, progress=opts.progress
    )
    features = extract_features(ds, Path(ds.root) / "features_efficientnet_lite0.npz", opts.progress)
    counts = {
        s: sum(1 for line in ds.list_file(s).read_text().splitlines() if line.strip())
        for s in ("train", "val", "test")
    }
    log.info("data: %s images per split (%s levels); features %s", counts, opts.levels, features)
    base = base_config(features, out / "runs", opts.levels, ds.rank_names, opts.batch_size)
    methods = method_overrides(opts.levels)
    chosen = list(opts.methods or DEFAULT_METHODS)
    unknown = [m for m in chosen if m not in methods]
    if unknown:
        raise ValueError(f"unknown demo methods {unknown}; choose from {list(methods)}")
    methods = {m: methods[m] for m in chosen}
    for m in methods.values():
        if m.get("prompts", {}).get("learner") == "plain":
            m["prompts"]["rank_names"] = list(ds.rank_names)

    settings = run_settings(opts.shots, opts.levels, opts.full_epochs, opts.min_steps, opts.batch_size)
    jobs = []
    for setting, shots, epochs in settings:
        for seed in opts.seeds:
            for name in methods:
                model = {k: v for k, v in methods[name].items() if k != "_loss"}
                cfg = run_config(base, model, methods[name].get("_loss", {}), epochs, seed, shots)
                jobs.append((name, setting, seed, cfg, out / "runs" / f"{setting}-{_slug(name)}-s{seed}"))
    results: list[RunResult] = []
    bar = tqdm(total=len(jobs), desc="training", unit="run", disable=not opts.progress)
    workers = max(1, min(opts.jobs, len(jobs)))
    pool = None
    if workers == 1:
        outcomes = (train_one(cfg, run_dir, 0) for _, _, _, cfg, run_dir in jobs)
    else:
        # Runs are small and partly Python-bound: one single-threaded process per core gets more done than one
        # process with two threads. Lightning runs unchanged inside each worker.
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
        futures = [pool.submit(train_one, cfg, run_dir, 1) for _, _, _, cfg, run_dir in jobs]
        outcomes = (f.result() for f in futures)
    for (name, setting, seed, _, run_dir), test in zip(jobs, outcomes):
        bar.set_postfix_str(f"{setting} {name} seed {seed}")
        bar.update()
        res = RunResult(name, setting, seed, test, run_dir)
        protos = run_dir / "prototypes.npy"
        if protos.is_file():
            from ordinalclip.metrics import ordinality_score

            scores = ordinality_score(torch.from_numpy(np.load(protos)))
            res.ordinality = scores[max(scores)]
        results.append(res)
    bar.close()
    if pool is not None:
        pool.shutdown()

    table = summary_table(results, [s for s, _, _ in settings], list(methods))
    _write_csv(results, out / "results.csv")
    intro = (f"Blur-level estimation on real photos ({opts.levels} levels: {', '.join(ds.rank_names)}); "
             f"{counts['train']} train / {counts['val']} val / "
             f"{counts['test']} test images, split by source photo. "
             f"Image tower: ImageNet EfficientNet-Lite0 (frozen, cached features) + learnable projection; text "
             "tower: all-MiniLM-L6-v2 (frozen). Test metrics of "
             "the best-on-val checkpoint; mean ± std over seeds "
             f"{list(opts.seeds)}. Data, features and training took {time.time() - t0:.0f} s.")
    text = None
    if opts.text_task:
        from ordinalclip.app.demo_text import demo_section, demo_text_options

        text = demo_section(opts.text_options or demo_text_options(opts), out / "report")
    page = write_report(out / "report", results, [s for s, _, _ in settings], list(methods), intro, ds,
                        opts.seeds[0], extra=text.add_to if text is not None else None)
    md = (out / "report" / "summary.md").read_text(encoding="utf-8")
    atomic_write_text(out / "summary.md", md.replace("](", "](report/"))
    return table + (f"\n\n{text.table_md}" if text is not None else ""), page



def write_report(report: Path, results: Sequence[RunResult], settings: Sequence[str], methods: Sequence[str],
                 intro: str, dataset: Any, first_seed: int,
                 extra: Callable[[Any], None] | None = None) -> Path:
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


def train_one(cfg: dict, run_dir: Path, threads: int) -> dict[str, float]:
    """Train one demo run; returns its test metrics (best checkpoint on val, else last)."""
    from ordinalclip import api
    from ordinalclip.engine.trainer import quiet_lightning

    if threads:
        torch.set_num_threads(threads)
    quiet_lightning()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    run = api.fit(cfg, run_dir=run_dir)
    test = run.metrics["best"]["test"] if run.metrics.get("best") else run.metrics["last"]["test"]
    return {k: v for k, v in test.items() if isinstance(v, (int, float))}


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
