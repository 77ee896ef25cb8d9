"""A run's page (``ordinalclip report RUN_DIR``): its metrics, the data per rank as thumbnails, the worst
errors with their predicted distributions (inline SVG), error per rank, confusion matrix, prototype
similarity, learning curves, config and environment; and the readers of the run folder's files.

A page is one self-contained folder: ``index.html`` and ``summary.md``, PNG plots, JPEG thumbnails of the data
copied in. Links are relative; nothing is fetched from the network, so the folder opens from disk and can be
moved or zipped.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ordinalclip.app.pagekit import Column, Page, Value, html_table, md_table, metric_columns, url
from ordinalclip.app.plots import (
    error_per_rank,
    plot_confusion,
    plot_error_per_rank,
    plot_learning_curves,
    plot_prototype_similarity,
    pyplot,
)
from ordinalclip.app.tables import config_prediction, headline_metric, table_columns
from ordinalclip.fileio import atomic_write
from ordinalclip.probe import read_probe
from ordinalclip.runtime.predictions import headline_rank, read_predictions_csv

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
THUMB_PX = 96  # thumbnails are at most this wide/high: a few per rank fit on one line at 1000 px
SAMPLES_PER_RANK = 4
MAX_SAMPLE_RANKS = 12  # with more ranks (ages) an evenly spaced subset is shown
WORST_ERRORS = 12
OTHER = {"expectation": "argmax", "argmax": "expectation"}


ImageResolver = Callable[[str], "Path | None"]


def existing_image(path: str) -> Path | None:
    """The default :data:`ImageResolver`: the path itself when it is an image file that exists."""
    p = Path(path)
    return p if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() else None


def thumbnail(src: Path, out_dir: Path, size: int = THUMB_PX) -> str | None:
    """Copy ``src`` into ``out_dir/images/`` as a JPEG at most ``size`` px; returns its path relative to
    ``out_dir`` (None when the file cannot be read as an image)."""
    from PIL import Image, ImageOps

    name = f"images/{hashlib.sha1(str(Path(src).resolve()).encode()).hexdigest()[:16]}.jpg"
    dest = out_dir / name
    if dest.is_file():
        return name
    try:
        with Image.open(src) as opened:
            im = ImageOps.exif_transpose(opened).convert("RGB")
        im.thumbnail((size, size))
        atomic_write(dest, lambda tmp: im.save(tmp, format="JPEG", quality=88))
    except (OSError, ValueError) as err:
        log.warning("report: cannot read image %s (%s)", src, err)
        return None
    return name


def read_predictions(path: Path) -> dict[str, np.ndarray]:
    """A run's predictions CSV (:func:`ordinalclip.runtime.predictions.read_predictions_csv`, any layout) as
    rank-unit arrays: ``path`` (strings), ``label``, ``pred_exp``, ``pred_max`` and, when recorded, ``probs``
    (N, C)."""
    cols = read_predictions_csv(path)
    out = {"label": cols["label_rank"], "pred_exp": cols["exp_rank"], "pred_max": cols["pred_rank"]}
    return out | {k: cols[k] for k in ("path", "probs") if k in cols}


def _rank_label(rank: int, names: Sequence[str] | None) -> str:
    return f"{rank} · {names[rank]}" if names is not None and rank < len(names) else str(rank)


def sample_images(
    page: Page,
    preds: Mapping[str, np.ndarray],
    num_ranks: int,
    names: Sequence[str] | None,
    images: ImageResolver,
    per_rank: int = SAMPLES_PER_RANK,
    seed: int = 0,
) -> int:
    """A table of a few thumbnails per rank from ``preds`` (a split's predictions); returns how many it
    shows."""
    labels = preds["label"].astype(int)
    ranks = list(range(num_ranks))
    if num_ranks > MAX_SAMPLE_RANKS:
        ranks = sorted(set(np.linspace(0, num_ranks - 1, MAX_SAMPLE_RANKS).round().astype(int).tolist()))
    rng = np.random.default_rng(seed)
    rows: list[list[Any]] = []
    shown = 0
    for r in ranks:
        idx = np.flatnonzero(labels == r)
        picked = rng.permutation(idx)[: per_rank * 3]  # spares for unreadable files
        thumbs = []
        for i in picked:
            src = images(str(preds["path"][i]))
            rel = thumbnail(src, page.out_dir) if src is not None else None
            if rel is not None:
                thumbs.append(
                    f'<img class=thumb src="{url(rel)}" alt="rank {r}" title="{html.escape(str(src))}">'
                )
            if len(thumbs) == per_rank:
                break
        shown += len(thumbs)
        rows.append(
            [
                str(r),
                names[r] if names is not None and r < len(names) else "",
                int(len(idx)),
                Value("".join(thumbs) or "–", raw=True),
            ]
        )
    if shown:
        cols = [Column("rank", True), Column("name"), Column("test images", True), Column("samples")]
        page.raw(html_table(cols, rows))
        if len(ranks) < num_ranks:
            page.text(f"{len(ranks)} of {num_ranks} ranks shown, evenly spaced.")
    return shown


def _distribution_svg(probs: np.ndarray, true: int, pred: int, width: int = 140, height: int = 40) -> str:
    """A small bar chart of the (C,) predicted distribution: the true rank green, the predicted rank ``pred``
    red."""
    c = len(probs)
    bw = width / c
    top = max(float(probs.max()), 1e-9)
    bars = []
    for k, p in enumerate(probs):
        h = (height - 10) * float(p) / top
        color = "#2da44e" if k == true else "#cf222e" if k == pred else "#8c959f"
        bars.append(
            f'<rect x="{k * bw + 0.5:.1f}" y="{height - 10 - h:.1f}" width="{max(bw - 1, 0.6):.1f}" '
            f'height="{h:.1f}" fill="{color}"><title>rank {k}: {p:.3f}</title></rect>'
        )
    axis = (
        f'<line x1="0" y1="{height - 10}" x2="{width}" y2="{height - 10}" stroke="#555" stroke-width="0.5"/>'
        f'<text x="0" y="{height - 1}" font-size="8" fill="#555">0</text>'
        f'<text x="{width}" y="{height - 1}" font-size="8" fill="#555" text-anchor="end">{c - 1}</text>'
    )
    return (
        f'<svg class=dist width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="predicted distribution over {c} ranks">{"".join(bars)}{axis}</svg>'
    )


def _short_ref(path: str) -> str:
    """What a card shows for an input without an image: ``SPLIT/ROW`` of a feature-row reference, or the
    file name."""
    return path.rpartition("#")[2] if "#" in path else Path(path).name[-40:]


def worst_errors(
    page: Page,
    preds: Mapping[str, np.ndarray],
    names: Sequence[str] | None,
    images: ImageResolver | None,
    count: int = WORST_ERRORS,
    prediction: str = "expectation",
) -> list[int]:
    """A gallery of the ``count`` worst predictions, ranked by the error of the headline ``prediction``
    (``"expectation"`` or ``"argmax"``), then by the other one's: image, true rank, the headline (the
    expectation with its nearest rank) and the other prediction, predicted distribution. Returns the rows
    shown, worst first."""
    y = preds["label"].astype(int)
    pmax = preds["pred_max"].astype(int)
    pexp = preds["pred_exp"]
    top = headline_rank(prediction, pexp, pmax)
    errors = (np.abs(pexp - y), np.abs(pmax - y))
    headline_error, other_error = errors if prediction == "expectation" else errors[::-1]
    order = np.lexsort((-other_error, -headline_error))  # last key sorts first
    chosen = [int(i) for i in order if pmax[i] != y[i] or abs(pexp[i] - y[i]) >= 0.5][:count]
    if not chosen:
        page.text("No test errors: every prediction is right.")
        return []
    probs = preds.get("probs")
    cards = []
    for i in chosen:
        path = str(preds["path"][i]) if "path" in preds else str(i)
        src = images(path) if images is not None else None
        rel = thumbnail(src, page.out_dir) if src is not None else None
        pic = (
            f'<img src="{url(rel)}" alt="test image {i}" title="{html.escape(path)}">'
            if rel
            else f'<div class=ref title="{html.escape(path)}">{html.escape(_short_ref(path))}</div>'
        )
        dist = (
            _distribution_svg(probs[i], y[i], top[i])
            if probs is not None and probs.shape[1] > 1
            else "<em>no probabilities recorded</em>"
        )
        if prediction == "expectation":
            shown = (
                f"expectation <b>{pexp[i]:.2f}</b> (nearest rank {html.escape(_rank_label(top[i], names))})"
                f"<br>argmax {html.escape(_rank_label(pmax[i], names))}"
            )
        else:
            shown = f"argmax <b>{html.escape(_rank_label(pmax[i], names))}</b> (expectation {pexp[i]:.2f})"
        cards.append(
            f"<div class=card>{pic}<div>true <b>{html.escape(_rank_label(y[i], names))}</b><br>"
            f"{shown}{dist}</div></div>"
        )
    md = "\n".join(
        f"- `{preds['path'][i] if 'path' in preds else i}`: true {y[i]}, "
        + (
            f"expectation {pexp[i]:.2f} (nearest rank {top[i]}), argmax {pmax[i]}"
            if prediction == "expectation"
            else f"argmax {pmax[i]} (expectation {pexp[i]:.2f})"
        )
        for i in chosen
    )
    page.raw('<div class="errors">' + "".join(cards) + "</div>", md)
    if probs is None:
        page.text(
            "This predictions file has no probability columns (p_0 ..): it was written by an earlier version."
        )
    return chosen


# ----------------------------------------------------------------------------------------------- a run's page


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _run_config(run_dir: Path) -> tuple[dict[str, Any], str | None]:
    """The run's config.yaml as a dict (empty when absent) and its text."""
    import yaml

    path = run_dir / "config.yaml"
    if not path.is_file():
        return {}, None
    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    return (data if isinstance(data, dict) else {}), text


def run_prediction(run_dir: str | os.PathLike[str]) -> str:
    """The headline prediction (``"expectation"`` or ``"argmax"``) of a run folder, from its config.yaml
    (:func:`ordinalclip.app.tables.config_prediction`)."""
    return config_prediction(_run_config(Path(run_dir))[0])


def runs_prediction(run_dirs: Sequence[str | os.PathLike[str]]) -> str:
    """The headline prediction most of ``run_dirs`` share (a tie, or no runs: ``"expectation"``, the default
    config's)."""
    found = [run_prediction(d) for d in run_dirs if (Path(d) / "config.yaml").is_file()]
    return "argmax" if found.count("argmax") > found.count("expectation") else "expectation"


def sweep_metric(metric: str, prediction: str) -> str:
    """``metric``, or for ``"auto"`` the MAE of the runs' headline ``prediction`` (:func:`runs_prediction`):
    ``mae_exp`` or ``mae_max``."""
    return headline_metric(prediction) if metric == "auto" else metric


def _rank_names(cfg: Mapping[str, Any], num_ranks: int) -> list[str] | None:
    data = cfg.get("data") or {}
    names = data.get("rank_names")
    if not names and data.get("rank_names_file"):
        from ordinalclip.modeling.build import read_rank_names

        try:
            names = read_rank_names(data["rank_names_file"])
        except (OSError, ValueError):
            names = None
    return [str(n) for n in names] if names and len(names) == num_ranks else None


PROBE_ROW = "logistic-regression probe"


def _metrics_rows(
    metrics: Mapping[str, Any], probe: Mapping[str, Any] | None = None, prediction: str = "expectation"
) -> tuple[list[list[Any]], list[str]]:
    """Rows (split, checkpoint, :func:`~ordinalclip.app.tables.table_columns` of the headline ``prediction``)
    of a run's metrics.json, and each row's split (the groups); with ``probe`` (the run's probe.json) a row of
    the logistic-regression probe on the same frozen features follows each split's rows."""
    columns = table_columns(prediction)
    rows, groups = [], []
    for split in ("test", "val"):
        for tag in ("best", "last"):
            entry = (metrics.get(tag) or {}).get(split)
            if not entry:
                continue
            rows.append([split, tag, *(entry.get(k) for k, _ in columns)])
            groups.append(split)
        entry = (probe or {}).get(split)
        if entry:
            rows.append([split, f"{PROBE_ROW} (C={probe['C']:g})", *(entry.get(k) for k, _ in columns)])  # type: ignore[index]
            groups.append(split)
    return rows, groups


def _prediction_file(run_dir: Path) -> Path | None:
    for name in ("test_best", "test_last", "val_best", "val_last"):
        p = run_dir / "predictions" / f"{name}.csv"
        if p.is_file():
            return p
    return None


def run_sections(
    page: Page,
    run_dir: str | os.PathLike[str],
    images: ImageResolver | None = None,
    prefix: str = "",
    metrics_table: bool = True,
    prototypes: bool = True,
    level: int = 2,
) -> None:
    """Add a run's sections to ``page``: metrics, the data per rank, the worst errors, error per rank,
    confusion matrix, prototype similarity, learning curves, config and environment (folded). ``prefix`` keeps
    the file names of two runs on one page apart; ``prototypes=False`` leaves the prototype plot out (a page
    that shows every method's); ``level`` is the level of the section headings."""
    run_dir = Path(run_dir)
    out = page.out_dir
    cfg, cfg_text = _run_config(run_dir)
    metrics = _read_json(run_dir / "metrics.json") or {}
    model, data = cfg.get("model") or {}, cfg.get("data") or {}
    pred_file = _prediction_file(run_dir)
    preds = read_predictions(pred_file) if pred_file is not None else None
    num_ranks = int(model.get("num_ranks") or 0)
    if not num_ranks and preds is not None:
        num_ranks = int(max(preds["label"].max(), preds["pred_max"].max()) + 1)
    names = _rank_names(cfg, num_ranks)
    prediction = config_prediction(cfg)
    feature_only = data.get("format") == "features"
    sizes = metrics.get("data") or {}
    facts = [
        f"model {model.get('arch', '?')}",
        f"{num_ranks} ranks",
        f"data format {data.get('format', '?')}",
    ]
    facts += [f"{k} {v}" for k, v in sizes.items() if k in ("train", "val", "test") and v is not None]
    page.text(
        f"Run folder {run_dir.name}: " + ", ".join(facts) + f". Headline prediction: the {prediction} "
        "(trainer.prediction): the tables lead with its metrics and the sections below show it."
    )

    if metrics_table:
        probe = read_probe(run_dir)
        rows, groups = _metrics_rows(metrics, probe, prediction)
        if rows:
            page.heading("Metrics", level)
            cols = [Column("split"), Column("checkpoint"), *metric_columns(prediction)]
            probe_note = (
                f" The {PROBE_ROW}: {probe.get('method', 'logistic regression')} on {probe.get('features')}, "
                "the same frozen features the model starts from: where the model does not beat it, the "
                "language prior did not pay."
                if probe
                else ""
            )
            page.table(
                cols,
                rows,
                groups,
                caption="Best (bold, green) per column within each split. exp: "
                "expectation prediction, max: argmax prediction." + probe_note,
            )

    split = pred_file.stem.split("_")[0] if pred_file is not None else "test"
    if preds is None:
        page.text(
            "No predictions file in this run (predictions/*.csv): the data and error sections need one.",
            note=True,
        )
    else:
        resolver = images or existing_image
        page.heading(f"The data: {split} images per rank", level)
        shown = (
            0 if feature_only and images is None else sample_images(page, preds, num_ranks, names, resolver)
        )
        if not shown:
            page.text(
                "Feature-only run (data.format: features): the inputs are precomputed image features, so "
                "there are no images to show; the sections below use the predictions and the model."
                if feature_only
                else "The images of this split cannot be read at their recorded paths "
                "(moved, or on another machine); the sections below use the predictions.",
                note=True,
            )
        page.heading(f"Worst {split} errors", level)
        page.text(
            f"Largest {prediction} error first (the headline prediction), then the {OTHER[prediction]}'s. "
            "Bars: the predicted distribution over the ranks; green the true rank, red the headline's rank"
            + (" (the expectation rounded to the nearest rank)." if prediction == "expectation" else ".")
        )
        worst_errors(page, preds, names, resolver if shown else None, prediction=prediction)

        assert pred_file is not None  # preds were read from it
        page.heading(f"Error per rank and confusion matrix ({pred_file.stem})", level)
        y = preds["label"].astype(int)
        per = error_per_rank(y, preds["pred_exp"], preds["pred_max"], num_ranks)
        plot_error_per_rank(
            y, preds["pred_exp"], preds["pred_max"], num_ranks, out / f"{prefix}error_per_rank.png"
        )
        top = headline_rank(prediction, preds["pred_exp"], preds["pred_max"])
        plot_confusion(y, top, num_ranks, out / f"{prefix}confusion.png", "", names)
        shown_rank = "expectation, rounded to the nearest rank" if prediction == "expectation" else "argmax"
        page.images(
            [
                (f"{prefix}error_per_rank.png", "mean absolute error by true rank (bars: examples)"),
                (f"{prefix}confusion.png", f"confusion matrix, rows normalised ({shown_rank})"),
            ]
        )
        rank_rows = [
            [
                r,
                names[r] if names else "",
                int(per["n"][r]),
                per["mae_exp"][r],
                per["mae_max"][r],
                per["acc_max"][r],
            ]
            for r in range(num_ranks)
        ]
        cols = [
            Column("rank", True),
            Column("name"),
            Column("n", True),
            Column("MAE exp", True, "min"),
            Column("MAE max", True, "min"),
            Column("acc max", True, "max"),
        ]
        if num_ranks <= 12:
            page.table(cols, rank_rows)
        else:
            page.raw(
                f"<details><summary>Error per rank, table ({num_ranks} ranks)</summary>"
                f"{html_table(cols, rank_rows)}</details>",
                md_table(cols, rank_rows),
            )

    protos = run_dir / "prototypes.npy"
    if prototypes and protos.is_file():
        page.heading("Prototype similarity", level)
        scores = plot_prototype_similarity(
            np.load(protos), out / f"{prefix}prototypes.png", rank_labels=names
        )
        text = ", ".join(f"span {k}: {v:.1%}" for k, v in scores.items())
        page.text(
            "Cosine similarity of the rank prototypes; ordinality by span (share of ordered triples, "
            f"reference notes §1.8): {text}."
        )
        page.images([(f"{prefix}prototypes.png", "prototype similarity")])

    curves = []
    for i, metrics_csv in enumerate(sorted(run_dir.glob("logs/**/metrics.csv"))):
        name = f"{prefix}curves_{i}.png"
        if plot_learning_curves(metrics_csv, out / name):
            curves.append((name, str(metrics_csv.relative_to(run_dir))))
    if curves:
        page.heading("Learning curves", level)
        page.images(curves)

    env = run_dir / "env.json"
    if cfg_text is not None or env.is_file():
        page.heading("Config and environment", level)
        if cfg_text is not None:
            page.details("config.yaml", cfg_text)
        if env.is_file():
            page.details("env.json (versions, platform, git, command line)", env.read_text(encoding="utf-8"))


def make_run_page(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    images: ImageResolver | None = None,
) -> Path:
    """Write the page of a run folder (``RUN_DIR/report/index.html`` + ``summary.md``); returns its path.

    ``images`` maps a prediction's ``path`` to an image file (default: the path itself, when it is one).
    """
    run_dir = Path(run_dir)
    pyplot()  # fail before writing anything when matplotlib is missing
    page = Page(
        out_dir if out_dir is not None else run_dir / "report", f"ordinalclip report — {run_dir.name}"
    )
    run_sections(page, run_dir, images)
    return page.write()
