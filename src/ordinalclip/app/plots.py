"""The report's plots (PNG files, matplotlib on the file-only Agg backend).

matplotlib is an optional dependency (``pip install 'ordinalclip[report]'``): :func:`pyplot` raises
:class:`~ordinalclip.errors.ReportDependencyError` naming the extra when it is missing, and
:func:`has_matplotlib` lets a caller leave the plots out instead.
"""

from __future__ import annotations

import csv
import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from ordinalclip.errors import ReportDependencyError
from ordinalclip.fileio import atomic_write
from ordinalclip.metrics import confusion_matrix, ordinality_score, prototype_similarity

REPORT_EXTRA = "pip install 'ordinalclip[report]'"


def has_matplotlib() -> bool:
    """Whether the plots can be drawn (matplotlib importable)."""
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except ValueError:  # a module entry set to None (how tests hide it)
        return False


def pyplot() -> Any:
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


def plot_prototype_similarity(
    prototypes: np.ndarray | torch.Tensor,
    out: Path,
    title: str = "",
    rank_labels: Sequence[str] | None = None,
) -> dict[int, float]:
    """Heat map of the (C, C) normalised prototype similarity with the ordinality score in the title.

    Returns the ordinality scores by span (reference notes §1.8).
    """
    plt = pyplot()
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
    plt = pyplot()
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
    plt = pyplot()
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
    plt = pyplot()
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
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9.0, 3.8))
    for method, by_shot in curves.items():
        shots = sorted(by_shot)
        mean = np.array([np.mean(by_shot[s]) for s in shots])
        std = np.array([np.std(by_shot[s]) for s in shots])
        ax.errorbar(shots, mean, yerr=std, marker="o", capsize=3, label=method)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("shots per rank")
    ax.set_ylabel(metric)
    ax.set_title(f"few-shot {metric}")
    # beside the axes: inside, the legend hid the lowest curves (the ones a reader looks for) at few shots
    if curves:  # a run without few-shot settings (full data only) draws empty axes, with nothing to label
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
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
