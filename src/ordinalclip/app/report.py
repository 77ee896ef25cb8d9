"""Plots and a report page for a run: prototype similarity and ordinality, confusion matrix, error per rank,
learning curves, few-shot curves.

The plotting functions take plain arrays; :func:`make_report` reads a run folder (what the engine writes) and
assembles ``report/index.html`` and ``report/summary.md`` that embed the PNGs.
"""

from __future__ import annotations

import csv
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from numpy.typing import ArrayLike  # noqa: E402

from ordinalclip.metrics import confusion_matrix, ordinality_score, prototype_similarity  # noqa: E402


def plot_prototype_similarity(prototypes: np.ndarray | torch.Tensor, out: Path, title: str = "",
                              rank_labels: Sequence[str] | None = None) -> dict[int, float]:
    """Heat map of the (C, C) normalised prototype similarity with the ordinality score in the title.

    Returns the ordinality scores by span (reference notes §1.8).
    """
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


def plot_confusion(labels: ArrayLike, preds: ArrayLike, num_ranks: int, out: Path, title: str = "",
                   rank_labels: Sequence[str] | None = None) -> None:
    """Row-normalised confusion matrix (rows: true rank, columns: predicted rank)."""
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
                    ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted rank")
    ax.set_ylabel("true rank")
    ax.set_title(f"{title}\nconfusion matrix (argmax)".strip())
    _rank_ticks(ax, num_ranks, rank_labels)
    _save(fig, out)


def plot_error_per_rank(labels: ArrayLike, pred_exp: ArrayLike, pred_max: ArrayLike, num_ranks: int,
                        out: Path, title: str = "") -> None:
    """Mean absolute error per true rank for both predictions, with the number of examples per rank."""
    y = np.asarray(labels)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ranks = np.arange(num_ranks)
    for name, pred in (("expectation", np.asarray(pred_exp, float)), ("argmax", np.asarray(pred_max, float))):
        err = [np.abs(pred[y == r] - r).mean() if (y == r).any() else np.nan for r in ranks]
        ax.plot(ranks, err, marker="o", ms=3, label=name)
    ax2 = ax.twinx()
    ax2.bar(ranks, np.bincount(y, minlength=num_ranks), color="grey", alpha=0.2)
    ax2.set_ylabel("examples")
    ax.set_zorder(ax2.get_zorder() + 1)  # lines above the count bars
    ax.patch.set_visible(False)
    ax.set_xlabel("true rank")
    ax.set_ylabel("MAE")
    ax.set_title(f"{title}\nerror per rank".strip())
    ax.legend()
    _save(fig, out)


def plot_learning_curves(metrics_csv: Path, out: Path, keys: Sequence[str] = ("train_loss", "val_mae_max",
                                                                             "val_mae_exp")) -> bool:
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
    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.4), squeeze=False)
    for ax, (key, pts) in zip(axes[0], sorted(series.items())):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".")
        ax.set_title(key)
        ax.set_xlabel("epoch")
    _save(fig, out)
    return True


def plot_few_shot(curves: Mapping[str, Mapping[int, Sequence[float]]], out: Path, metric: str = "MAE") -> None:
    """Metric against shots per rank, one line per method, mean ± std over seeds.

    ``curves[method][shots]`` holds one value per seed.
    """
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
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


def _rank_ticks(ax, n: int, labels: Sequence[str] | None) -> None:
    if labels is not None and n <= 12:
        ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(n), labels, fontsize=7)


def _save(fig, out: Path) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def write_pages(out_dir: Path, title: str, sections: Sequence[tuple[str, str | None, str]],
                tables_md: Sequence[str] = ()) -> tuple[Path, Path]:
    """Write ``index.html`` and ``summary.md`` in ``out_dir``.

    ``sections`` are (heading, image file name relative to out_dir or None, text); ``tables_md`` are Markdown
    tables shown first (rendered as preformatted text in the HTML page).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = [f"# {title}", ""]
    body = [f"<h1>{html.escape(title)}</h1>"]
    for table in tables_md:
        md += [table, ""]
        body.append(f"<pre>{html.escape(table)}</pre>")
    for heading, image, text in sections:
        md += [f"## {heading}", "", text, ""]
        body.append(f"<h2>{html.escape(heading)}</h2><p>{html.escape(text)}</p>")
        if image:
            md += [f"![{heading}]({image})", ""]
            body.append(f'<img src="{html.escape(image)}" alt="{html.escape(heading)}" style="max-width:100%">')
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title>"
            "<style>body{font-family:sans-serif;max-width:980px;margin:2em auto;padding:0 1em}"
            "pre{background:#f4f4f4;padding:1em;overflow-x:auto}</style></head><body>"
            + "\n".join(body) + "</body></html>")
    (out_dir / "index.html").write_text(page, encoding="utf-8")
    (out_dir / "summary.md").write_text("\n".join(md), encoding="utf-8")
    return out_dir / "index.html", out_dir / "summary.md"


def read_predictions(path: Path) -> dict[str, np.ndarray]:
    """Columns of a predictions CSV (label, pred_exp, pred_max, ...) as arrays."""
    with Path(path).open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no predictions")
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0] if k != "path"}


def make_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Build ``RUN_DIR/report/`` from what a run folder holds: ``prototypes.npy``, ``predictions/*.csv``,
    ``logs/**/metrics.csv``, ``metrics.json``. Returns the HTML page's path."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else run_dir / "report"
    sections: list[tuple[str, str | None, str]] = []
    meta = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").exists() else {}
    rank_names = meta.get("rank_names")
    protos = run_dir / "prototypes.npy"
    if protos.exists():
        scores = plot_prototype_similarity(np.load(protos), out / "prototypes.png", rank_labels=rank_names)
        text = ", ".join(f"span {k}: {v:.1%}" for k, v in scores.items())
        sections.append(("Prototype similarity", "prototypes.png",
                         "Cosine similarity of the rank prototypes; "
                         f"ordinality by span (reference notes §1.8): {text}."))
    for pred_file in sorted((run_dir / "predictions").glob("*.csv")):
        p = read_predictions(pred_file)
        if "label" not in p:
            continue
        num_ranks = int(meta.get("num_ranks") or (max(p["label"].max(), p["pred_max"].max()) + 1))
        stem = pred_file.stem
        labels = p["label"].astype(int)
        plot_confusion(labels, p["pred_max"].astype(int), num_ranks, out / f"confusion_{stem}.png", stem,
                       rank_names)
        plot_error_per_rank(labels, p["pred_exp"], p["pred_max"], num_ranks, out / f"error_{stem}.png", stem)
        mae_max = float(np.abs(p["pred_max"] - labels).mean())
        mae_exp = float(np.abs(p["pred_exp"] - labels).mean())
        sections.append((f"Confusion matrix ({stem})", f"confusion_{stem}.png",
                         f"{len(labels)} examples; MAE argmax {mae_max:.3f}, expectation {mae_exp:.3f}."))
        sections.append((f"Error per rank ({stem})", f"error_{stem}.png", "Mean absolute error by true rank."))
    for i, metrics_csv in enumerate(sorted(run_dir.glob("logs/**/metrics.csv"))):
        name = f"curves_{i}.png"
        if plot_learning_curves(metrics_csv, out / name):
            sections.append(("Learning curves", name, str(metrics_csv.relative_to(run_dir))))
    tables = [_metrics_table(meta["metrics"])] if isinstance(meta.get("metrics"), dict) else []
    page, _ = write_pages(out, f"ordinalclip report — {run_dir.name}", sections, tables)
    return page


def _metrics_table(metrics: Mapping[str, object]) -> str:
    flat = {k: v for k, v in _flatten(metrics).items() if isinstance(v, (int, float))}
    lines = ["| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {v:.4f} |" for k, v in sorted(flat.items())]
    return "\n".join(lines)


def _flatten(d: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{key}/"))
        else:
            out[key] = v
    return out
