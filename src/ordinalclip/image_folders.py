"""From a folder of images (one sub-folder per rank) to a trained run, in one call: :func:`fit_image_folder`
(``ordinalclip train --data DIR --rank-names "a,b,c"``).

It reads the rank folders, makes a stratified train/val/test split (per rank, seeded) and writes it as
``data.csv`` in the run folder, then trains the built-in ``images`` config (ImageNet EfficientNet-Lite0 with a
frozen trunk + all-MiniLM-L6-v2, both offline) with the rank count and names filled in.
"""

from __future__ import annotations

import csv
import io
import math
import os
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ordinalclip.config.typed import ConfigError
from ordinalclip.data import DataError, RankSpace, read_folder_samples
from ordinalclip.fileio import atomic_write_text

__all__ = ["SPLIT_FRACTIONS", "fit_image_folder", "folder_rank_names", "image_folder_config", "split_rows"]

SPLIT_FRACTIONS = (0.6, 0.2, 0.2)  # train, val, test share of every rank's images
DEFAULT_CONTEXT = "a photo of"


def folder_rank_names(root: str | os.PathLike[str], rank_names: Sequence[str] | None) -> list[str]:
    """The ordered rank names of an image folder: ``rank_names`` as given, or the sub-folders' names when
    they are all integers (sorted numerically); other sub-folder names need ``rank_names`` for their order."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--data: image folder not found: {root}")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if rank_names:
        names = [n.strip() for n in rank_names]
        unknown = sorted(set(folders) - set(names))
        if unknown:
            raise DataError(
                f"--data {root}: sub-folder(s) {unknown} are not among the rank names {names} "
                "(--rank-names lists every rank, lowest first; one sub-folder per rank)"
            )
        return names
    if folders and all(f.lstrip("-").isdigit() for f in folders):
        return sorted(folders, key=int)
    raise ConfigError(
        f"--rank-names: the sub-folders of {root} ({', '.join(folders) or 'none'}) are not integers, so "
        'their order is unknown: pass them lowest rank first, e.g. --rank-names "' + ",".join(folders) + '"'
    )


def stratified_split(
    ranks: Sequence[int], fractions: Sequence[float] = SPLIT_FRACTIONS, seed: int = 0
) -> list[str]:
    """The split (``"train"``/``"val"``/``"test"``) of each of N items given their ranks: every rank's items
    are shuffled with ``seed`` and cut by ``fractions``; val and test get at least one item of every rank
    that has 3 or more, so each split holds each rank in proportion."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions: three shares (train, val, test) summing to 1, got {list(fractions)}")
    by_rank: dict[int, list[int]] = {}
    for i, r in enumerate(ranks):
        by_rank.setdefault(int(r), []).append(i)
    out = ["train"] * len(ranks)
    rng = random.Random(seed)
    for rank in sorted(by_rank):
        items = list(by_rank[rank])
        rng.shuffle(items)
        n = len(items)
        n_val = max(1, round(n * fractions[1])) if n >= 3 and fractions[1] > 0 else 0
        n_test = max(1, round(n * fractions[2])) if n >= 3 and fractions[2] > 0 else 0
        for i in items[:n_test]:
            out[i] = "test"
        for i in items[n_test : n_test + n_val]:
            out[i] = "val"
    return out


def split_rows(
    root: str | os.PathLike[str],
    rank_names: Sequence[str],
    fractions: Sequence[float] = SPLIT_FRACTIONS,
    seed: int = 0,
) -> list[tuple[str, str, str]]:
    """``(path relative to root, rank name, split)`` of every image under ``root/<rank name>/``, split by
    :func:`stratified_split` (in file-name order within a rank, so the split does not depend on listing
    order)."""
    ranks = RankSpace(len(rank_names), list(rank_names))
    samples = sorted(read_folder_samples(root, ranks), key=lambda s: (s.label, s.path))
    present = {s.label for s in samples}
    missing = [rank_names[r] for r in range(len(rank_names)) if r not in present]
    if missing:
        raise DataError(f"--data {root}: no images for rank(s) {missing} (expected a sub-folder per rank)")
    splits = stratified_split([s.label for s in samples], fractions, seed)
    return [(os.path.relpath(s.path, root), rank_names[s.label], sp) for s, sp in zip(samples, splits)]


def write_rows(rows: Iterable[tuple[str, str, str]], path: Path) -> Path:
    """The split as a CSV (``path,label,split``)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "label", "split"])
    writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def image_folder_config(
    root: str | os.PathLike[str],
    rank_names: Sequence[str],
    split_csv: str | os.PathLike[str],
    few_shot: int | None = None,
    context: str | None = None,
) -> dict[str, Any]:
    """The overrides of the built-in ``images`` config for an image folder: rank count and names (as the
    labels and as the C' = C base-rank names of the prompts), the split CSV, the few-shot size."""
    names = list(rank_names)
    return {
        "model": {
            "num_ranks": len(names),
            "prompts": {
                "num_base_ranks": len(names),
                "base_rank_names": names,
                **({"context_init": context} if context else {}),
            },
        },
        "data": {
            "format": "csv",
            "root": str(Path(root).resolve()),
            "train": str(split_csv),
            "columns": {"split": "split"},
            "rank_names": names,
            "few_shot": {"shots": few_shot},
        },
    }


def features_config(
    path: str | os.PathLike[str],
    rank_names: Sequence[str],
    few_shot: int | None = None,
    context: str | None = None,
) -> dict[str, Any]:
    """The overrides for a features file (``ordinalclip features`` output): :func:`image_folder_config`
    with a features tower of the file's width and a trained projection to the joint width."""
    import numpy as np

    with np.load(path, allow_pickle=False) as npz:
        width = int(npz["features"].shape[1])
    cfg = image_folder_config(Path(path).parent, rank_names, "data.npz", few_shot, context)
    cfg["model"]["image"] = {"kind": "features", "input_dim": width, "project": "linear"}
    cfg["data"].update({"format": "features", "root": None})
    cfg["optim"] = {"freeze_image": False}  # the features tower is the projection alone: it trains
    return cfg


def write_features_split(path: str | os.PathLike[str], num_ranks: int, out: Path, seed: int = 0) -> Path:
    """A copy of a features file with a ``split`` array (:func:`stratified_split` of its labels) unless it
    has one."""
    import numpy as np

    from ordinalclip.fileio import atomic_write

    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    if "labels" not in arrays:
        raise DataError(f"--data {path}: no 'labels' array (ordinalclip features --rank-names writes them)")
    labels = arrays["labels"].astype(int)
    if labels.min() < 0 or labels.max() >= num_ranks:
        raise DataError(
            f"--data {path}: labels must be rank indices 0..{num_ranks - 1} for the rank names given"
        )
    if "split" not in arrays:
        arrays["split"] = np.array(stratified_split(labels.tolist(), seed=seed))

    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            np.savez(fh, **arrays)

    return atomic_write(out, write)


def fit_image_folder(
    root: str | os.PathLike[str],
    rank_names: Sequence[str] | None = None,
    few_shot: int | None = None,
    overrides: Iterable[str] = (),
    run_dir: str | os.PathLike[str] | None = None,
    config: Any = "images",
    context: str | None = None,
    seed: int = 0,
) -> Any:
    """Train ``config`` (a built-in name, a .yaml file or a list of them; default: the built-in ``images``)
    on the images under ``root/<rank name>/`` (or a features ``.npz`` of ``ordinalclip features``: a
    features run whose export goes back onto the tower the file records).

    The split (:func:`split_rows`, seeded by ``seed``) is written to ``<run folder>/data.csv`` first; the run
    then saves its own ``splits/`` as every run does. ``overrides`` (``key=value``) apply last. After
    training, ``probe.json`` holds the logistic-regression probe on the same frozen features
    (:func:`ordinalclip.probe.write_probe`).

    Returns:
        the :class:`ordinalclip.api.Run`.
    """
    from ordinalclip import api
    from ordinalclip.config.typed import merge, to_dict
    from ordinalclip.engine.run import make_run_dir

    features_file = Path(root).is_file() and Path(root).suffix.lower() == ".npz"
    if features_file:
        names = list(rank_names or [])
        if not names:
            raise ConfigError(f"--rank-names: {root} holds rank indices; name the ranks, lowest first")
        folder_cfg = features_config(root, names, few_shot, context)
    else:
        names = folder_rank_names(root, rank_names)
        rows = split_rows(root, names, seed=seed)
        # the split file's name is known before the run folder is: filled in once the folder exists
        folder_cfg = image_folder_config(root, names, "data.csv", few_shot, context)
    overrides = list(overrides)
    base = merge(to_dict(api.resolve_config(config)), folder_cfg)
    cfg = api.resolve_config(base, overrides)
    out = Path(run_dir) if run_dir is not None else make_run_dir(cfg.output_dir, cfg.name)
    out.mkdir(parents=True, exist_ok=True)
    if features_file:
        base["data"]["train"] = str(write_features_split(root, len(names), out / "data.npz", seed).resolve())
    else:
        base["data"]["train"] = str(write_rows(rows, out / "data.csv").resolve())
    run = api.fit(base, overrides=overrides, run_dir=out)
    if api.is_rank_zero():
        from ordinalclip.probe import write_probe

        write_probe(run.run_dir)  # the baseline beside the model: logistic regression on the same features
    return run
