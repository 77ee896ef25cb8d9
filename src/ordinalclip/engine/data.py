"""From a :class:`DataConfig` to data loaders: sample lists per split, protocols, transforms, samplers.

Reproducibility and exact resume rest on two choices here:

* the training order is a permutation drawn from ``(seed, epoch)`` alone (:class:`EpochSampler`), and every
  training sample's random augmentation is drawn from ``(seed, epoch, index)`` alone (:class:`SeededItems`), so
  neither depends on the global RNG, the number of workers or where a run was interrupted;
* the training loader is *stateful* for Lightning (``state_dict``/``load_state_dict``): a checkpoint written in
  the middle of an epoch records how many batches were done, and a resumed run skips exactly those.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ordinalclip.config import RunConfig
from ordinalclip.configtools import ConfigError
from ordinalclip.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataError,
    FeatureDataset,
    ImageDataset,
    RankSpace,
    Sample,
    build_transforms,
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

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
Transform = Callable[[Any], torch.Tensor]


# ---------------------------------------------------------------------------------------------- sample lists


@dataclass
class ResolvedData:
    """The samples of each split (``None`` = no such split) and how labels map to ranks.

    For ``data.format: features`` a sample's path is a reference ``FILE#SPLIT/ROW`` to one row of a feature file
    (``SPLIT`` is the split filter the file was read with, ``all`` for none).
    """

    ranks: RankSpace
    splits: dict[str, list[Sample] | None]
    features: bool = False
    notes: list[str] = field(default_factory=list)

    def sizes(self) -> dict[str, int | None]:
        return {k: (len(v) if v is not None else None) for k, v in self.splits.items()}


def rank_space(cfg: RunConfig) -> RankSpace:
    """The label -> rank mapping of the data config, with ``model.num_ranks`` ranks."""
    d = cfg.data
    names: list[str] | None = d.rank_names
    if d.rank_names_file:
        path = Path(d.rank_names_file)
        if not path.is_file():
            raise DataError(f"data.rank_names_file not found: {path}")
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    try:
        return RankSpace(cfg.model.num_ranks, names=names, offset=d.rank_offset)
    except ValueError as err:
        raise ConfigError(f"data rank names vs model.num_ranks={cfg.model.num_ranks}: {err}") from None


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
    """Per split: the file/folder to read and whether it was given explicitly (else defaulted to ``train``)."""
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
        return read_csv_samples(source, root, ranks, path_column=c.path, label_column=c.label,
                                split_column=c.split, split=filt, group_column=c.group)
    if d.format == "folder":
        return read_folder_samples(source, ranks)
    if d.format == "features":
        ds = _load_feature_file(cfg, source, filt, ranks)
        width = cfg.model.image.input_dim
        if width is not None and ds.num_features != width:
            raise ConfigError(f"model.image.input_dim is {width} but {source} holds {ds.num_features}-wide "
                              f"features: set model.image.input_dim: {ds.num_features}")
        return [Sample(_feature_ref(source, filt, i), int(y), f"{source}[{filt or 'all'}] row {i}")
                for i, y in enumerate(ds.labels.tolist())]
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
        return bench.ranks, bench.splits()
    if d.format == "demo":
        from ordinalclip.data.demo import build_blur_dataset

        demo = build_blur_dataset(d.root, levels=cfg.model.num_ranks, crops_per_photo=d.demo.crops_per_photo,
                                  size=d.demo.size, seed=d.demo.seed, progress=False)
        ranks = RankSpace(demo.num_ranks, names=demo.rank_names)
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


def _check_num_ranks(cfg: RunConfig, num_ranks: int, what: str) -> None:
    if cfg.model.num_ranks != num_ranks:
        raise ConfigError(f"model.num_ranks is {cfg.model.num_ranks} but {what} has {num_ranks} ranks: "
                          f"set model.num_ranks: {num_ranks}")


def resolve_data(cfg: RunConfig, check: bool = True) -> ResolvedData:
    """Read every split's samples, apply the few-shot / label-shift protocols, check that files exist.

    With ``data.splits_dir`` the splits saved by an earlier run are reused as they are (no re-sampling).
    """
    d = cfg.data
    features = d.format == "features"
    if features and cfg.model.image.kind != "features":
        raise ConfigError("data.format 'features' needs model.image.kind: features (and model.image.input_dim)")
    notes: list[str] = []
    if d.splits_dir is not None:
        folder = Path(d.splits_dir)
        if not (folder / "train.txt").is_file():
            raise DataError(f"data.splits_dir: no train.txt in {folder}")
        ranks = _ranks_for_saved_splits(cfg)
        splits = {s: (load_split(folder / f"{s}.txt") if (folder / f"{s}.txt").is_file() else None)
                  for s in SPLITS}
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
            notes.append(f"few-shot: {d.few_shot.shots} per rank (seed {seed}) -> {len(train)} training samples")
        if train is not None and d.label_shift.top_k is not None:
            seed = d.label_shift.seed if d.label_shift.seed is not None else cfg.trainer.seed
            train = label_shift(train, d.label_shift.top_k, d.label_shift.scale, seed)
            notes.append(f"label shift: top {d.label_shift.top_k} ranks x {d.label_shift.scale} (seed {seed}) "
                         f"-> {len(train)} training samples")
        splits["train"] = train
    for split in SPLITS:
        samples = splits.get(split)
        if samples is None and split != "train":
            continue  # no such split (a missing training split is an error too)
        if not samples:
            name = "training" if split == "train" else split
            raise DataError(f"the {name} split is empty: no samples in {_split_origin(cfg, split)}")
    if splits["val"] is not None and splits["test"] is not None and _same(splits["val"], splits["test"]):
        warnings.warn("val and test hold the same samples: test numbers are then selected on test "
                      "(spec 8.4); give a held-out test list for unbiased results", UserWarning, stacklevel=2)
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


# ------------------------------------------------------------------------------------------------ transforms


def _preprocess(model: nn.Module) -> dict[str, Any]:
    return dict(getattr(getattr(model, "image_tower", None), "preprocess", None) or {})


def transform_settings(cfg: RunConfig, model: nn.Module) -> dict[str, Any]:
    """Crop size, resize and normalisation the transforms use: ``{size, resize, mean, std}``."""
    d = cfg.data
    pre = _preprocess(model)
    size = d.image_size or int(pre.get("size") or 224)
    resize = d.resize or max(size, round(size * 256 / 224))
    if size > resize:
        raise ConfigError(f"data.image_size ({size}) is larger than data.resize ({resize})")
    if d.mean is not None and d.std is not None:
        mean, std = list(d.mean), list(d.std)
    elif d.normalize == "imagenet" or not pre.get("mean"):
        mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    else:
        mean, std = [float(v) for v in pre["mean"]], [float(v) for v in pre["std"]]
    return {"size": size, "resize": resize, "mean": mean, "std": std}


def eval_transform(cfg: RunConfig, model: nn.Module) -> Transform | None:
    """PIL image -> (3, S, S) tensor for evaluation (Resize -> CenterCrop -> Normalize), or ``None`` for
    feature inputs (``model.image.kind: features``)."""
    if cfg.model.image.kind == "features":
        return None
    return build_transforms(False, **transform_settings(cfg, model))


def train_transform(cfg: RunConfig, model: nn.Module) -> Transform | None:
    """The training transform: random crop + flip with ``data.augment``, else :func:`eval_transform`."""
    if cfg.model.image.kind == "features":
        return None
    return build_transforms(cfg.data.augment, **transform_settings(cfg, model))


# ------------------------------------------------------------------------------------------ datasets, samplers


def mix_seed(*values: int) -> int:
    """A 63-bit seed from a few integers (deterministic, unlike ``hash`` of a tuple across interpreters)."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * 0x100000001B3 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 29
    return h & 0x7FFFFFFFFFFFFFFF


class SeededItems(Dataset):
    """Training view of a dataset: item ``(index, epoch)`` draws its random augmentation from
    ``(seed, epoch, index)`` only, so it is the same in any worker, order, or resumed run."""

    def __init__(self, base: Dataset, seed: int) -> None:
        self.base = base
        self.seed = seed

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, epoch = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mix_seed(self.seed, epoch, index))
            return self.base[index]


class IndexedItems(Dataset):
    """Evaluation view: ``dataset[i] -> (input, label, i)`` (the index maps outputs back to samples)."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, Any, int]:
        x, y = self.base[index]
        return x, y, index


class EpochSampler(Sampler):
    """Yields ``(index, epoch)``: a permutation drawn from ``(seed, epoch)``, this rank's shard of it.

    The permutation is padded (repeating its start) to a multiple of ``num_replicas`` so every rank gets
    ``ceil(n / num_replicas)`` items, like ``DistributedSampler``. ``skip`` items are left out of the next
    iteration only (resuming in the middle of an epoch).
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True, num_replicas: int = 1, rank: int = 0) -> None:
        if n < 1:
            raise ValueError("EpochSampler needs at least one item")
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.n / self.num_replicas)

    def order(self, epoch: int) -> list[int]:
        """This rank's indices in ``epoch``."""
        if self.shuffle:
            g = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
            perm = torch.randperm(self.n, generator=g).tolist()
        else:
            perm = list(range(self.n))
        total = len(self) * self.num_replicas
        perm += (perm * math.ceil(total / self.n))[: total - self.n]
        return perm[self.rank :: self.num_replicas]

    def __iter__(self):
        epoch, skip = self.epoch, self.skip
        self.skip = 0
        for index in self.order(epoch)[skip:]:
            yield index, epoch


class ShardSampler(Sampler):
    """Evaluation: indices ``rank, rank + R, ...`` (no padding; uneven shards are gathered with padding)."""

    def __init__(self, n: int, num_replicas: int = 1, rank: int = 0) -> None:
        self.indices = list(range(rank, n, num_replicas))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return iter(self.indices)


class ResumableLoader(DataLoader):
    """Training loader that Lightning saves and restores with the loop state (``_Stateful`` protocol).

    ``progress()`` returns ``(epoch, batches done in it)`` at checkpoint time; restoring sets the sampler to
    that epoch and skips the done batches (or moves to the next epoch when it was complete).
    """

    def __init__(self, *args: Any, progress: Callable[[], tuple[int, int]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.progress = progress

    def state_dict(self) -> dict[str, int]:
        epoch, batches = self.progress() if self.progress is not None else (0, 0)
        return {"epoch": int(epoch), "batches": int(batches)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, batches = int(state["epoch"]), int(state["batches"])
        if batches >= len(self):
            epoch, batches = epoch + 1, 0
        sampler = self.sampler
        assert isinstance(sampler, EpochSampler)
        sampler.set_epoch(epoch)
        sampler.skip = batches * int(self.batch_size or 1)


# ----------------------------------------------------------------------------------------------- data module


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


class OrdinalDataModule(L.LightningDataModule):
    """Loaders for a resolved data set.

    With ``feature_cache`` (a :class:`~ordinalclip.engine.cache.FeatureCache`) every split is served as the
    frozen image tower's features, computed once on local rank 0 (``prepare_data``) and read from disk.
    """

    def __init__(self, cfg: RunConfig, model: nn.Module, data: ResolvedData, feature_cache: Any = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = model
        self.data = data
        self.feature_cache = feature_cache
        self._datasets: dict[str, Dataset] = {}
        self._images: dict[str, ImageDataset] = {}

    # -- datasets ------------------------------------------------------------------------------------------------
    def image_dataset(self, split: str) -> ImageDataset:
        """Images of ``split`` with the transform that split uses (bad images skipped per ``on_bad_image``)."""
        if split not in self._images:
            samples = self.data.splits[split]
            assert samples is not None
            use_train_tf = split == "train" and self.feature_cache is None
            tf = train_transform(self.cfg, self.model) if use_train_tf else eval_transform(self.cfg, self.model)
            self._images[split] = ImageDataset(samples, tf, on_error=self.cfg.data.on_bad_image)
        return self._images[split]

    @property
    def skipped(self) -> list[tuple[Sample, str]]:
        return [bad for ds in self._images.values() for bad in ds.skipped]

    def groups(self, split: str) -> list[str | None]:
        """Group of every sample of ``split``, in dataset order."""
        return [s.group for s in self.eval_samples(split)]

    def eval_samples(self, split: str) -> list[Sample]:
        """The samples of ``split`` in the order evaluation indexes them."""
        return (self.data.splits[split] or []) if self.data.features else self.image_dataset(split).samples

    def has(self, split: str) -> bool:
        return self.data.splits.get(split) is not None

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def prepare_data(self) -> None:
        if self.feature_cache is not None:
            for split in SPLITS:
                if self.has(split):
                    self.feature_cache.features(self.image_dataset(split), self._device())

    def dataset(self, split: str) -> Dataset:
        """The (unwrapped) dataset of ``split``: ``(input, label)`` items."""
        if split not in self._datasets:
            samples = self.data.splits[split]
            if samples is None:
                raise DataError(f"the run has no {split} split (data.{split} is not set)")
            if self.data.features:
                ds: Dataset = build_feature_rows(self.cfg, samples, self.data.ranks)
            elif self.feature_cache is not None:
                images = self.image_dataset(split)
                feats = self.feature_cache.features(images, self._device())
                ds = FeatureDataset(feats, torch.tensor(images.labels, dtype=torch.long))
            else:
                ds = self.image_dataset(split)
            self._datasets[split] = ds
        return self._datasets[split]

    def setup(self, stage: str | None = None) -> None:
        for split in SPLITS:
            if self.has(split):
                self.dataset(split)

    # -- loaders -------------------------------------------------------------------------------------------------
    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def train_dataloader(self) -> DataLoader:
        world, rank = self._world()
        ds = self.dataset("train")
        sampler = EpochSampler(len(ds), self.cfg.trainer.seed, True, world, rank)  # type: ignore[arg-type]
        trainer = self.trainer

        def progress() -> tuple[int, int]:
            return trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.processed

        return ResumableLoader(SeededItems(ds, self.cfg.trainer.seed), batch_size=self.cfg.data.batch_size,
                               sampler=sampler, num_workers=self.cfg.data.num_workers,
                               persistent_workers=self.cfg.data.num_workers > 0, progress=progress)

    def eval_dataloader(self, split: str) -> DataLoader:
        world, rank = self._world()
        ds = self.dataset(split)
        return DataLoader(IndexedItems(ds), batch_size=self.cfg.data.eval_batch_size or self.cfg.data.batch_size,
                          sampler=ShardSampler(len(ds), world, rank),  # type: ignore[arg-type]
                          num_workers=self.cfg.data.num_workers)

    def val_dataloader(self) -> DataLoader | list:
        return self.eval_dataloader("val") if self.has("val") else []

    def test_dataloader(self) -> DataLoader | list:
        return self.eval_dataloader("test") if self.has("test") else []
