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

from ordinalclip.configtools import ConfigError
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


def split_rows(
    root: str | os.PathLike[str],
    rank_names: Sequence[str],
    fractions: Sequence[float] = SPLIT_FRACTIONS,
    seed: int = 0,
) -> list[tuple[str, str, str]]:
    """``(path relative to root, rank name, split)`` of every image under ``root/<rank name>/``.

    Every rank's images are shuffled with ``seed`` and cut into train/val/test by ``fractions`` (val and test
    get at least one image of every rank that has 3 or more), so each split holds each rank in proportion.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions: three shares (train, val, test) summing to 1, got {list(fractions)}")
    ranks = RankSpace(len(rank_names), list(rank_names))
    samples = read_folder_samples(root, ranks)
    by_rank: dict[int, list[str]] = {}
    for s in samples:
        by_rank.setdefault(s.label, []).append(os.path.relpath(s.path, root))
    rows: list[tuple[str, str, str]] = []
    rng = random.Random(seed)
    for rank in sorted(by_rank):
        paths = sorted(by_rank[rank])
        rng.shuffle(paths)
        n = len(paths)
        n_val = max(1, round(n * fractions[1])) if n >= 3 and fractions[1] > 0 else 0
        n_test = max(1, round(n * fractions[2])) if n >= 3 and fractions[2] > 0 else 0
        cut = {
            "test": paths[:n_test],
            "val": paths[n_test : n_test + n_val],
            "train": paths[n_test + n_val :],
        }
        for split, part in cut.items():
            rows.extend((p, rank_names[rank], split) for p in sorted(part))
    missing = [rank_names[r] for r in range(len(rank_names)) if r not in by_rank]
    if missing:
        raise DataError(f"--data {root}: no images for rank(s) {missing} (expected a sub-folder per rank)")
    return rows


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
                "rank_names": names,
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
    on the images under ``root/<rank name>/``.

    The split (:func:`split_rows`, seeded by ``seed``) is written to ``<run folder>/data.csv`` first; the run
    then saves its own ``splits/`` as every run does. ``overrides`` (``key=value``) apply last.

    Returns:
        the :class:`ordinalclip.api.Run`.
    """
    from ordinalclip import api
    from ordinalclip.configtools import merge, to_dict
    from ordinalclip.engine.run import make_run_dir

    names = folder_rank_names(root, rank_names)
    rows = split_rows(root, names, seed=seed)
    overrides = list(overrides)
    # the split file's name is known before the run folder is: fill it in once the folder exists
    base = merge(
        to_dict(api.resolve_config(config)), image_folder_config(root, names, "data.csv", few_shot, context)
    )
    cfg = api.resolve_config(base, overrides)
    out = Path(run_dir) if run_dir is not None else make_run_dir(cfg.output_dir, cfg.name)
    out.mkdir(parents=True, exist_ok=True)
    base["data"]["train"] = str(write_rows(rows, out / "data.csv").resolve())
    return api.fit(base, overrides=overrides, run_dir=out)
