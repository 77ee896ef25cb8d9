"""The Lightning DataModule of a run: datasets and loaders for a resolved data set.

It knows the data (:class:`~ordinalclip.engine.splits.ResolvedData`), the image tower's preprocessing
constants and, optionally, a feature cache; it never sees the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from ordinalclip.config import RunConfig
from ordinalclip.data import DataError, FeatureDataset, ImageDataset, Sample
from ordinalclip.engine.sampling import EpochSampler, IndexedItems, ResumableLoader, SeededItems, ShardSampler
from ordinalclip.engine.splits import SPLITS, ResolvedData, build_feature_rows
from ordinalclip.engine.transforms import eval_transform, train_transform


class OrdinalDataModule(L.LightningDataModule):
    """Loaders for a resolved data set; ``preprocess`` are the image tower's constants (size, mean, std).

    With ``feature_cache`` (a :class:`~ordinalclip.engine.cache.FeatureCache`) every split is served as the
    frozen image tower's features, computed once on local rank 0 (``prepare_data``) and read from disk.
    """

    def __init__(
        self,
        cfg: RunConfig,
        data: ResolvedData,
        preprocess: Mapping[str, Any] | None = None,
        feature_cache: Any = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.preprocess = dict(
            preprocess or {}
        )  # the image tower's constants (engine.transforms.tower_preprocess)
        self.data = data
        self.feature_cache = feature_cache
        self._datasets: dict[str, Dataset] = {}
        self._images: dict[str, ImageDataset] = {}

    # -- datasets --------------------------------------------------------------------------------------------
    def image_dataset(self, split: str) -> ImageDataset:
        """Images of ``split`` with the transform that split uses (bad images skipped per
        ``on_bad_image``)."""
        if split not in self._images:
            samples = self.data.splits[split]
            assert samples is not None
            use_train_tf = split == "train" and self.feature_cache is None
            make = train_transform if use_train_tf else eval_transform
            tf = make(self.cfg, self.preprocess)
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

    # -- loaders ---------------------------------------------------------------------------------------------
    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def train_dataloader(self) -> DataLoader:
        world, rank = self._world()
        ds = self.dataset("train")
        sampler = EpochSampler(len(ds), self.cfg.trainer.seed, True, world, rank)  # type: ignore[arg-type]
        trainer = self.trainer

        def progress() -> tuple[int, int]:
            assert trainer is not None  # only called while a trainer iterates the loader
            # batch_progress.current is a _ProcessedTracker at run time (Lightning types it as its base class)
            loop = trainer.fit_loop.epoch_loop
            return trainer.current_epoch, loop.batch_progress.current.processed  # type: ignore[attr-defined]

        return ResumableLoader(
            SeededItems(ds, self.cfg.trainer.seed),
            batch_size=self.cfg.data.batch_size,
            sampler=sampler,
            num_workers=self.cfg.data.num_workers,
            persistent_workers=self.cfg.data.num_workers > 0,
            progress=progress,
        )

    def eval_dataloader(self, split: str) -> DataLoader:
        world, rank = self._world()
        ds = self.dataset(split)
        return DataLoader(
            IndexedItems(ds),
            batch_size=self.cfg.data.eval_batch_size or self.cfg.data.batch_size,
            sampler=ShardSampler(len(ds), world, rank),  # type: ignore[arg-type]
            num_workers=self.cfg.data.num_workers,
        )

    def val_dataloader(self) -> DataLoader | list:
        return self.eval_dataloader("val") if self.has("val") else []

    def test_dataloader(self) -> DataLoader | list:
        return self.eval_dataloader("test") if self.has("test") else []
