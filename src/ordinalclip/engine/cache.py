"""On-disk cache of a frozen image tower's features.

When the image tower does not train, its output for an image never changes: computing it once and training the
prompt learner on the stored vectors gives the same run at a fraction of the cost. A cache file is keyed by
everything its content depends on: the tower config, a checksum of the tower's weights, the transform, the
sample list (paths, file sizes and modification times) and the torch version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ordinalclip.data import DataError, ImageDataset
from ordinalclip.fileio import atomic_write

log = logging.getLogger(__name__)


def weights_digest(module: nn.Module) -> str:
    """Checksum of a module's state (names, dtypes, shapes and bytes of every tensor)."""
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _file_stamp(path: str) -> list[Any]:
    try:
        st = os.stat(path)
    except OSError:
        return [path, None, None]
    return [path, st.st_size, st.st_mtime_ns]


class FeatureCache:
    """Features of a frozen ``tower`` for image datasets, stored as ``<folder>/<key>.safetensors``.

    Args:
        tower: the image tower, ``(B, 3, H, W) -> (B, E)``; used in eval mode, float32, without gradients.
        tower_config: plain dict describing the tower (part of the key).
        folder: where cache files live.
        batch_size, num_workers: for the one pass over the images.
    """

    def __init__(
        self,
        tower: nn.Module,
        tower_config: dict[str, Any],
        folder: str | os.PathLike[str],
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        self.tower = tower
        self.tower_config = tower_config
        self.folder = Path(folder)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self._digest: str | None = None
        self._memo: dict[str, torch.Tensor] = {}
        self.paths: list[Path] = []

    def key(self, dataset: ImageDataset) -> str:
        """Cache key of ``dataset`` (hex)."""
        if self._digest is None:
            self._digest = weights_digest(self.tower)
        payload = {
            "tower": self.tower_config,
            "weights": self._digest,
            "transform": repr(dataset.transform),
            "samples": [_file_stamp(s.path) for s in dataset.samples],
            "torch": torch.__version__,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]

    def features(self, dataset: ImageDataset, device: torch.device | str = "cpu") -> torch.Tensor:
        """``(N, E)`` float32 features of ``dataset`` in its order (read from the cache or computed once)."""
        from safetensors.torch import load_file, save_file

        key = self.key(dataset)
        if key in self._memo:
            return self._memo[key]
        path = self.folder / f"{key}.safetensors"
        if path.is_file():
            try:
                feats = load_file(str(path))["features"]
            except Exception as err:  # a damaged file is recomputed, never trusted
                log.warning("feature cache %s unreadable (%s): recomputing", path, err)
            else:
                if feats.shape[0] == len(dataset):
                    self._memo[key] = feats
                    self.paths.append(path)
                    return feats
        feats = self._compute(dataset, torch.device(device))
        atomic_write(path, lambda tmp: save_file({"features": feats.contiguous()}, str(tmp)))
        log.info("feature cache: wrote %d x %d features to %s", feats.shape[0], feats.shape[1], path)
        self._memo[key] = feats
        self.paths.append(path)
        return feats

    @torch.no_grad()
    def _compute(self, dataset: ImageDataset, device: torch.device) -> torch.Tensor:
        if len(dataset) == 0:
            raise DataError("feature cache: empty dataset")
        tower = self.tower
        first = next(tower.parameters(), None)
        home = first.device if first is not None else torch.device("cpu")
        was_training = tower.training
        tower.eval().to(device)
        try:
            loader = DataLoader(dataset, batch_size=self.batch_size, num_workers=self.num_workers)
            out = [tower(x.to(device)).float().cpu() for x, _ in loader]
        finally:
            tower.to(home).train(was_training)
        return torch.cat(out)
