"""On-disk cache of a frozen image trunk's features, keyed per image by its content.

When the pretrained part of the image tower does not train, its output for an image never changes: computing
it once and training the rest (the projection, the prompt learner) on the stored vectors gives the same run at
a fraction of the cost. Towers with a trunk/projection split (``encode_trunk`` + ``project``: EfficientNet,
timm) store the trunk's features, so the projection may train; other towers (CLIP) store their whole output.

The cache is a folder per encoder (tower config, a checksum of the trunk's weights, the eval transform and
the torch version: :meth:`FeatureCache.encoder_key`) holding shards of ``(content digest, feature)`` rows: the
same image file is encoded once whatever list, CSV, folder or run it comes from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from ordinalclip.data import DataError, ImageDataset
from ordinalclip.fileio import atomic_write

log = logging.getLogger(__name__)

DIGEST_BYTES = 16


def weights_digest(module: nn.Module, exclude: Sequence[str] = ()) -> str:
    """Checksum of a module's state (names, dtypes, shapes and bytes of every tensor), leaving out the
    tensors whose names start with one of ``exclude``."""
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        if exclude and name.startswith(tuple(exclude)):
            continue
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def content_digest(path: str | os.PathLike[str]) -> bytes:
    """blake2b-128 of a file's bytes (the cache key of one image)."""
    h = hashlib.blake2b(digest_size=DIGEST_BYTES)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.digest()


def has_trunk(tower: nn.Module) -> bool:
    """True for towers with a trunk/projection split (``encode_trunk`` and ``project``)."""
    return callable(getattr(tower, "encode_trunk", None)) and callable(getattr(tower, "project", None))


def encode_for_cache(tower: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """What the cache stores for (B, 3, H, W) images: the trunk's features (B, F) where the tower has a
    trunk/projection split, else the tower's output (B, E)."""
    return tower.encode_trunk(images) if has_trunk(tower) else tower(images)  # type: ignore[operator]


def _projection_prefixes(tower: nn.Module) -> list[str]:
    head = getattr(tower, "head_parameters", None)
    if not callable(head):
        return []
    ids = {id(p) for p in head()}
    return [n for n, p in tower.named_parameters() if id(p) in ids]


class FeatureCache:
    """Features of a frozen trunk for image datasets, stored under ``<folder>/<encoder key>/``.

    Args:
        tower: the image tower, ``(B, 3, H, W) -> (B, E)``; its trunk is run in eval mode, float32, without
            gradients (:func:`encode_for_cache`).
        tower_config: plain dict describing the tower (part of the encoder key).
        folder: where cache folders live.
        batch_size, num_workers: for the one pass over the images not cached yet.
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
        self._digests: dict[tuple[str, int, int], bytes] = {}
        self.paths: list[Path] = []
        self.encoded = 0  # images run through the trunk by this cache (the rest came from disk)
        self.reused = 0

    def encoder_key(self, transform: Any) -> str:
        """Key (hex) of what one image's cached vector depends on besides its bytes."""
        if self._digest is None:
            self._digest = weights_digest(self.tower, exclude=_projection_prefixes(self.tower))
        payload = {
            "tower": self.tower_config,
            "class": type(self.tower).__qualname__,
            "trunk_only": has_trunk(self.tower),
            "weights": self._digest,
            "transform": repr(transform),
            "torch": torch.__version__,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]

    def key(self, dataset: ImageDataset) -> str:
        """Key of ``dataset``'s features: its encoder key and the digests of its images."""
        h = hashlib.sha256(self.encoder_key(dataset.transform).encode())
        for d in self._content(dataset):
            h.update(d)
        return h.hexdigest()[:32]

    def _content(self, dataset: ImageDataset) -> list[bytes]:
        out = []
        for s in dataset.samples:
            st = os.stat(s.path)
            stamp = (s.path, st.st_size, st.st_mtime_ns)
            if stamp not in self._digests:
                self._digests[stamp] = content_digest(s.path)
            out.append(self._digests[stamp])
        return out

    def _read_store(self, folder: Path) -> dict[bytes, torch.Tensor]:
        from safetensors.torch import load_file

        rows: dict[bytes, torch.Tensor] = {}
        for shard in sorted(folder.glob("*.safetensors")):
            try:
                t = load_file(str(shard))
                digests, feats = t["digests"], t["features"]
            except Exception as err:  # a damaged shard is recomputed, never trusted
                log.warning("feature cache %s unreadable (%s): ignored", shard, err)
                continue
            if digests.shape[0] != feats.shape[0]:
                log.warning(
                    "feature cache %s: %d digests for %d rows: ignored",
                    shard,
                    *digests.shape[:1],
                    feats.shape[0],
                )
                continue
            for d, f in zip(digests.numpy(), feats):
                rows[d.tobytes()] = f
            self.paths.append(shard)
        return rows

    def features(self, dataset: ImageDataset, device: torch.device | str = "cpu") -> torch.Tensor:
        """``(N, F)`` float32 features of ``dataset`` in its order (read from the cache, the images not in it
        computed once and added)."""
        from safetensors.torch import save_file

        if len(dataset) == 0:
            raise DataError("feature cache: empty dataset")
        encoder = self.encoder_key(dataset.transform)
        digests = self._content(dataset)
        memo_key = hashlib.sha256(encoder.encode() + b"".join(digests)).hexdigest()
        if memo_key in self._memo:
            return self._memo[memo_key]
        folder = self.folder / encoder
        store = self._read_store(folder) if folder.is_dir() else {}
        missing = sorted({d: i for i, d in reversed(list(enumerate(digests))) if d not in store}.values())
        if missing:
            new = self._compute(Subset(dataset, missing), torch.device(device))
            new_digests = torch.tensor([list(digests[i]) for i in missing], dtype=torch.uint8)
            name = hashlib.sha256(b"".join(digests[i] for i in missing)).hexdigest()[:32]
            shard = folder / f"{name}.safetensors"
            tensors = {"digests": new_digests, "features": new.contiguous()}
            atomic_write(shard, lambda tmp: save_file(tensors, str(tmp)))
            self.paths.append(shard)
            log.info("feature cache: encoded %d new image(s) into %s", len(missing), shard)
            for i, f in zip(missing, new):
                store[digests[i]] = f
        self.encoded += len(missing)
        self.reused += len(digests) - len(missing)
        feats = torch.stack([store[d] for d in digests]).float()
        self._memo[memo_key] = feats
        return feats

    @torch.no_grad()
    def _compute(self, dataset: Any, device: torch.device) -> torch.Tensor:
        tower = self.tower
        first = next(tower.parameters(), None)
        home = first.device if first is not None else torch.device("cpu")
        was_training = tower.training
        tower.eval().to(device)
        try:
            loader = DataLoader(dataset, batch_size=self.batch_size, num_workers=self.num_workers)
            out = [encode_for_cache(tower, x.to(device)).float().cpu() for x, _ in loader]
        finally:
            tower.to(home).train(was_training)
        return torch.cat(out)


def cache_decision(cfg: Any, model: nn.Module, features_data: bool) -> tuple[bool, str]:
    """Whether a run trains from cached features, and why (or why not), for the log."""
    from ordinalclip.engine.optim import image_tower_frozen, image_trunk_frozen

    tower = getattr(model, "image_tower", None)
    if features_data:
        return False, "the data already are feature vectors"
    if not cfg.data.feature_cache:
        return False, "data.feature_cache is false"
    if not isinstance(tower, nn.Module):
        return False, "the model has no image tower"
    if has_trunk(tower) and image_trunk_frozen(model):
        return True, "the image trunk is frozen: its features are computed once per image"
    if image_tower_frozen(model):
        return True, "the image tower is frozen: its features are computed once per image"
    return False, "the image tower trains (set optim.freeze_image: true to train from cached features)"


def cache_folder(cfg: Any) -> str:
    """The feature cache folder of a run config: ``data.cache_dir``, else ``<output_dir>/.cache/features``."""
    return str(cfg.data.cache_dir or os.path.join(cfg.output_dir, ".cache", "features"))


def tower_cache_config(model_cfg: Any) -> dict[str, Any]:
    """The part of a model config (a ModelConfig) that the cached features depend on: the image tower's
    settings without its projection's (which the trunk's features do not depend on), and CLIP's source."""
    from ordinalclip.config.typed import to_dict

    image = to_dict(model_cfg.image)
    return {
        "image": {k: v for k, v in image.items() if k not in ("project", "input_dim")},
        "clip": to_dict(model_cfg.clip) if model_cfg.image.kind == "clip" else None,
    }


def build_feature_cache(cfg: Any, model: nn.Module, features_data: bool) -> FeatureCache | None:
    """The feature cache of a run (``cfg`` a RunConfig), or None when the run reads images; logs what trains
    (parameter counts by group), whether the cache is used and why."""
    from ordinalclip.engine.optim import parameter_counts

    log.info("parameters: %s", parameter_counts(model))  # once the data are read: what this run trains
    use, why = cache_decision(cfg, model, features_data)
    if not features_data:
        log.info("feature cache: %s (%s)", "in use" if use else "not used", why)
    if not use:
        return None
    tower: Any = model.image_tower
    return FeatureCache(
        tower,
        tower_cache_config(cfg.model),
        cache_folder(cfg),
        batch_size=cfg.data.eval_batch_size or cfg.data.batch_size,
        num_workers=cfg.data.num_workers,
    )
