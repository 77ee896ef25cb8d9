"""The demo's results: the comparison table (Markdown), ``results.csv`` and the report page."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ordinalclip.app.demo.common import slug
from ordinalclip.app.demo.methods import display_name
from ordinalclip.app.pagekit import Column, Page, markdown_table, mean_std_value, metric_columns
from ordinalclip.app.plots import plot_few_shot, plot_prototype_similarity
from ordinalclip.app.runpage import run_sections
from ordinalclip.app.tables import TABLE_COLUMNS
from ordinalclip.metrics import mean_std


@dataclass
class RunResult:
    method: str
    setting: str  # "full" or "k-shot"
    seed: int
    metrics: dict[str, float]
    run_dir: Path
    ordinality: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


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
                    display_name(method),
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
            curves.setdefault(display_name(r.method), {}).setdefault(shots, []).append(r.metrics["mae_exp"])
    if curves:
        plot_few_shot(curves, report / "few_shot.png", metric="test MAE (expectation)")
        page.heading("Few-shot curves")
        page.images([("few_shot.png", "test MAE against images per level, mean ± std over seeds")])
    first = [r for r in results if r.setting == "full" and r.seed == first_seed]
    best = min(first, key=lambda r: r.metrics["mae_exp"], default=None)
    if best is not None:
        page.heading(
            f"A closer look: {display_name(best.method)} (full data, seed {first_seed}, lowest test MAE)"
        )
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
            img = f"prototypes_{slug(r.method)}.png"
            plot_prototype_similarity(np.load(path), report / img, display_name(r.method), dataset.rank_names)
            items.append((img, display_name(r.method)))
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
    rows = []
    for setting in settings:
        for method in methods:
            rs = [r for r in results if r.setting == setting and r.method == method]
            if not rs:
                continue
            cells = [_fmt([r.metrics[k] for r in rs]) for k, _ in TABLE_COLUMNS]
            ords = [r.ordinality for r in rs if r.ordinality is not None]
            cells.append(_fmt(ords, pct=True) if ords else "–")
            rows.append([setting, display_name(method), *cells])
    return markdown_table(["setting", "method", *(c for _, c in TABLE_COLUMNS), "ordinality"], rows)


def _fmt(values: Sequence[float], pct: bool = False) -> str:
    scale = 100.0 if pct else 1.0
    mean, std = (v * scale for v in mean_std(list(values)))
    if len(values) < 2:
        return f"{mean:.1f}%" if pct else f"{mean:.3f}"
    return f"{mean:.1f} ± {std:.1f}%" if pct else f"{mean:.3f} ± {std:.3f}"


def write_csv(results: Sequence[RunResult], path: Path) -> None:
    keys = sorted({k for r in results for k in r.metrics})
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["setting", "method", "seed", *keys, "ordinality", "run_dir"])
        for r in results:
            w.writerow(
                [r.setting, r.method, r.seed, *[r.metrics.get(k) for k in keys], r.ordinality, r.run_dir]
            )
