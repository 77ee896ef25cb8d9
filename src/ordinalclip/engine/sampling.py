"""Samplers and loaders behind exact, reproducible resume.

* the training order is a permutation drawn from ``(seed, epoch)`` alone (:class:`EpochSampler`), and every
  training sample's random augmentation is drawn from ``(seed, epoch, index)`` alone (:class:`SeededItems`),
  so neither depends on the global RNG, the number of workers or where a run was interrupted;
* the training loader is *stateful* for Lightning (:class:`ResumableLoader`): a checkpoint written in the
  middle of an epoch records how many batches were done, and a resumed run skips exactly those.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


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

    def __init__(
        self, *args: Any, progress: Callable[[], tuple[int, int]] | None = None, **kwargs: Any
    ) -> None:
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
