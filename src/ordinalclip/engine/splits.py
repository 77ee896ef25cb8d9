"""From a :class:`DataConfig` to the samples of each split: sources, protocols (few-shot, label shift), saved
splits and the label -> rank mapping."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ordinalclip.config import RunConfig
from ordinalclip.config.typed import ConfigError
from ordinalclip.data import (
    DataError,
    FeatureDataset,
    RankSpace,
    Sample,
    check_files,
    few_shot,
    label_shift,
    load_benchmark,
    load_features,
    load_split,
    read_csv_samples,
    read_folder_samples,
    read_list_file,
    save_split,
)
from ordinalclip.run_settings import data_rank_names, rank_space

log = logging.getLogger(__name__)

__all__ = [
    "ResolvedData",
    "SPLITS",
    "build_feature_rows",
    "data_rank_names",
    "parse_feature_ref",
    "rank_space",
    "resolve_data",
    "save_splits",
]

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class ResolvedData:
    """The samples of each split (``None`` = no such split) and how labels map to ranks.

    For ``data.format: features`` a sample's path is a reference ``FILE#SPLIT/ROW`` to one row of a feature
    file (``SPLIT`` is the split filter the file was read with, ``all`` for none).
    """

    ranks: RankSpace
    splits: dict[str, list[Sample] | None]
    features: bool = False
    notes: list[str] = field(default_factory=list)

    def sizes(self) -> dict[str, int | None]:
        return {k: (len(v) if v is not None else None) for k, v in self.splits.items()}


def _feature_ref(path: str, split: str | None, row: int) -> str:
    return f"{path}#{split or 'all'}/{row}"


def parse_feature_ref(ref: str) -> tuple[str, str | None, int]:
    """``FILE#SPLIT/ROW`` -> ``(FILE, SPLIT or None, ROW)``."""
    path, sep, rest = ref.rpartition("#")
    split, _, row = rest.partition("/")
    if not sep or not row.isdigit():
        raise DataError(f"not a feature-row reference (FILE#SPLIT/ROW): {ref!r}")
    return path, (None if split == "all" else split), int(row)


def _load_feature_file(cfg: RunConfig, path: str, split: str | None, ranks: RankSpace) -> FeatureDataset:
    c = cfg.data.columns
    return load_features(path, split, ranks=ranks, label_column=c.label, split_column=c.split or "split")


def _split_sources(cfg: RunConfig) -> dict[str, tuple[str | None, bool]]:
    """Per split: the file/folder to read and whether it was given explicitly (else defaulted to
    ``train``)."""
    d = cfg.data
    shared = d.columns.split is not None and d.format in ("csv", "features")
    out: dict[str, tuple[str | None, bool]] = {"train": (d.train, True)}
    for split in ("val", "test"):
        given = getattr(d, split)
        out[split] = (given, True) if given is not None or not shared else (d.train, False)
    return out


def _read_split(cfg: RunConfig, split: str, source: str, ranks: RankSpace) -> list[Sample]:
    d = cfg.data
    filt = split if d.columns.split is not None else None
    if d.format == "list":
        root = d.root if d.root is not None else os.path.dirname(os.path.abspath(source))
        return read_list_file(source, root, ranks)
    if d.format == "csv":
        root = d.root if d.root is not None else os.path.dirname(os.path.abspath(source))
        c = d.columns
        return read_csv_samples(
            source,
            root,
            ranks,
            path_column=c.path,
            label_column=c.label,
            split_column=c.split,
            split=filt,
            group_column=c.group,
        )
    if d.format == "folder":
        return read_folder_samples(source, ranks)
    if d.format == "features":
        ds = _load_feature_file(cfg, source, filt, ranks)
        width = cfg.model.image.input_dim
        if width is not None and ds.num_features != width:
            raise ConfigError(
                f"model.image.input_dim is {width} but {source} holds {ds.num_features}-wide "
                f"features: set model.image.input_dim: {ds.num_features}"
            )
        return [
            Sample(_feature_ref(source, filt, i), int(y), f"{source}[{filt or 'all'}] row {i}")
            for i, y in enumerate(ds.labels.tolist())
        ]
    raise AssertionError(d.format)


def _read_sources(cfg: RunConfig) -> tuple[RankSpace, dict[str, list[Sample] | None]]:
    d = cfg.data
    if d.format == "benchmark":
        kwargs: dict[str, Any] = {"images_root": d.images_root}
        if d.benchmark in ("adience", "hci"):
            kwargs["fold"] = d.fold
        if d.benchmark == "aesthetics":
            kwargs["category"] = d.category
        if d.root is None:
            raise ConfigError(f"data.root: the {d.benchmark} benchmark needs its dataset root folder")
        bench = load_benchmark(str(d.benchmark), d.root, **kwargs)
        _check_num_ranks(cfg, bench.ranks.num_ranks, f"benchmark {d.benchmark}")
        _check_rank_names(cfg, bench.ranks.names, f"the {d.benchmark} benchmark")
        return bench.ranks, bench.splits()
    if d.format == "demo":
        from ordinalclip.data.blur import build_blur_dataset

        demo = build_blur_dataset(
            d.root,
            levels=cfg.model.num_ranks,
            crops_per_photo=d.demo.crops_per_photo,
            size=d.demo.size,
            seed=d.demo.seed,
            progress=False,
        )
        ranks = RankSpace(demo.num_ranks, names=demo.rank_names)
        _check_rank_names(cfg, ranks.names, "the built-in demo data")
        return ranks, {s: read_list_file(demo.list_file(s), demo.root, ranks) for s in SPLITS}
    ranks = rank_space(cfg)
    if d.train is None:
        raise ConfigError(f"data.train: the {d.format} format needs a training file or folder")
    splits: dict[str, list[Sample] | None] = {}
    for split, (source, explicit) in _split_sources(cfg).items():
        if source is None:
            splits[split] = None
            continue
        try:
            splits[split] = _read_split(cfg, split, source, ranks)
        except DataError as err:
            if explicit or "no rows with" not in str(err):
                raise
            log.warning("no %s rows in %s: the run has no %s split", split, source, split)
            splits[split] = None
    return ranks, splits


def _check_rank_names(cfg: RunConfig, names: Sequence[str] | None, what: str) -> None:
    """Refuse data.rank_names (or a file) that a built-in data set would silently replace with its own."""
    d = cfg.data
    if d.rank_names_file is not None:
        raise ConfigError(f"data.rank_names_file: {what} names its own ranks; remove data.rank_names_file")
    if d.rank_names is not None and list(d.rank_names) != list(names or []):
        theirs = ", ".join(names) if names else "none: they are numbered"
        raise ConfigError(
            f"data.rank_names: {what} names its own ranks ({theirs}); remove data.rank_names (the run's "
            "config.yaml records them)"
        )


def _check_num_ranks(cfg: RunConfig, num_ranks: int, what: str) -> None:
    if cfg.model.num_ranks != num_ranks:
        raise ConfigError(
            f"model.num_ranks is {cfg.model.num_ranks} but {what} has {num_ranks} ranks: "
            f"set model.num_ranks: {num_ranks}"
        )


def resolve_data(cfg: RunConfig, check: bool = True) -> ResolvedData:
    """Read every split's samples, apply the few-shot / label-shift protocols, check that files exist.

    With ``data.splits_dir`` the splits saved by an earlier run are reused as they are (no re-sampling).
    """
    d = cfg.data
    features = d.format == "features"
    if features and cfg.model.image.kind != "features":
        raise ConfigError(
            "data.format 'features' needs model.image.kind: features (and model.image.input_dim)"
        )
    notes: list[str] = []
    if d.splits_dir is not None:
        folder = Path(d.splits_dir)
        if not (folder / "train.txt").is_file():
            raise DataError(f"data.splits_dir: no train.txt in {folder}")
        ranks = _ranks_for_saved_splits(cfg)
        splits = {
            s: (load_split(folder / f"{s}.txt") if (folder / f"{s}.txt").is_file() else None) for s in SPLITS
        }
        for samples in splits.values():
            for s in samples or ():
                if not 0 <= s.label < ranks.num_ranks:
                    raise DataError(f"{s.source}: rank {s.label} outside 0..{ranks.num_ranks - 1}")
        notes.append(f"splits reused from {folder}")
    else:
        ranks, splits = _read_sources(cfg)
        train = splits["train"]
        if train is not None and d.few_shot.shots is not None:
            seed = d.few_shot.seed if d.few_shot.seed is not None else cfg.trainer.seed
            train = few_shot(train, d.few_shot.shots, seed, strict=d.few_shot.strict)
            notes.append(
                f"few-shot: {d.few_shot.shots} per rank (seed {seed}) -> {len(train)} training samples"
            )
        if train is not None and d.label_shift.top_k is not None:
            seed = d.label_shift.seed if d.label_shift.seed is not None else cfg.trainer.seed
            train = label_shift(train, d.label_shift.top_k, d.label_shift.scale, seed)
            notes.append(
                f"label shift: top {d.label_shift.top_k} ranks x {d.label_shift.scale} (seed {seed}) "
                f"-> {len(train)} training samples"
            )
        splits["train"] = train
    for split in SPLITS:
        samples = splits.get(split)
        if samples is None and split != "train":
            continue  # no such split (a missing training split is an error too)
        if not samples:
            name = "training" if split == "train" else split
            raise DataError(f"the {name} split is empty: no samples in {_split_origin(cfg, split)}")
    if splits["val"] is not None and splits["test"] is not None and _same(splits["val"], splits["test"]):
        warnings.warn(
            "val and test hold the same samples: test numbers are then selected on test "
            "(reference notes §3.4); give a held-out test list for unbiased results",
            UserWarning,
            stacklevel=2,
        )
    if check and not features:
        check_files([s for samples in splits.values() for s in samples or ()])
    return ResolvedData(ranks, splits, features=features, notes=notes)


def _split_origin(cfg: RunConfig, split: str) -> str:
    """Where the samples of ``split`` were read from, for error messages."""
    d = cfg.data
    if d.splits_dir is not None:
        return str(Path(d.splits_dir) / f"{split}.txt")
    if d.format in ("benchmark", "demo"):
        return f"the {d.benchmark or d.format} {split} list"
    source, _ = _split_sources(cfg)[split]
    if d.columns.split is not None and d.format in ("csv", "features"):
        return f"{source} (rows with {d.columns.split}={split})"
    return f"{source} (data.{split})"


def _same(a: Sequence[Sample], b: Sequence[Sample]) -> bool:
    return sorted(s.path for s in a) == sorted(s.path for s in b)


def _ranks_for_saved_splits(cfg: RunConfig) -> RankSpace:
    if cfg.data.format in ("list", "csv", "folder", "features"):
        return rank_space(cfg)
    return RankSpace(cfg.model.num_ranks)  # names only matter when parsing labels, saved splits hold ranks


def save_splits(data: ResolvedData, folder: str | os.PathLike[str]) -> dict[str, str]:
    """Write each split as ``folder/<split>.txt`` (reusable with ``data.splits_dir``); returns the paths."""
    out = {}
    for split, samples in data.splits.items():
        if samples is not None:
            path = Path(folder) / f"{split}.txt"
            save_split(samples, path)
            out[split] = str(path)
    return out


def build_feature_rows(cfg: RunConfig, samples: Sequence[Sample], ranks: RankSpace) -> FeatureDataset:
    """The feature rows that ``FILE#SPLIT/ROW`` samples refer to, in sample order."""
    loaded: dict[tuple[str, str | None], FeatureDataset] = {}
    rows = []
    for s in samples:
        path, split, row = parse_feature_ref(s.path)
        if (path, split) not in loaded:
            loaded[(path, split)] = _load_feature_file(cfg, path, split, ranks)
        ds = loaded[(path, split)]
        if row >= len(ds):
            raise DataError(f"{s.source}: row {row} but {path} [{split or 'all'}] has {len(ds)} rows")
        rows.append(ds.features[row])
    features = torch.stack(rows) if rows else torch.empty(0, 0)
    return FeatureDataset(features, torch.tensor([s.label for s in samples], dtype=torch.long))
