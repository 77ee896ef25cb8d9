"""Checkpoint writes that a crash cannot truncate: Lightning's checkpoint I/O over
:func:`ordinalclip.fileio.atomic_write`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ordinalclip.fileio import atomic_write


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash at any point leaves either the old file or the new one, never a truncated one.
    """

    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            torch.save(obj, fh)

    atomic_write(path, write)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O whose writes are atomic (see :func:`atomic_torch_save`)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        atomic_torch_save(checkpoint, path)
