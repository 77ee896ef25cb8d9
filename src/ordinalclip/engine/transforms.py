"""The image transforms of a run: crop size, resize and normalisation from the data config and the image
tower's own preprocessing constants (``tower.preprocess``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ordinalclip.config import RunConfig
from ordinalclip.configtools import ConfigError
from ordinalclip.data import IMAGENET_MEAN, IMAGENET_STD, build_transforms

Transform = Callable[[Any], torch.Tensor]


def tower_preprocess(model: nn.Module) -> dict[str, Any]:
    """The preprocessing constants a model's image tower declares (``{size, mean, std}``, timm towers also
    ``resize``; ``{}`` if none)."""
    return dict(getattr(getattr(model, "image_tower", None), "preprocess", None) or {})


def transform_settings(cfg: RunConfig, preprocess: Mapping[str, Any]) -> dict[str, Any]:
    """Crop size, resize and normalisation the transforms use: ``{size, resize, mean, std}``.

    ``preprocess`` is the image tower's own constants (:func:`tower_preprocess`); ``cfg.data`` overrides them.
    """
    d = cfg.data
    pre = preprocess
    size = d.image_size or int(pre.get("size") or 224)
    # a tower's own resize (timm's crop_pct) holds for its own crop size only
    own = int(pre["resize"]) if pre.get("resize") and d.image_size is None else None
    resize = d.resize or own or max(size, round(size * 256 / 224))
    if size > resize:
        raise ConfigError(f"data.image_size ({size}) is larger than data.resize ({resize})")
    if d.mean is not None and d.std is not None:
        mean, std = list(d.mean), list(d.std)
    elif d.normalize == "imagenet" or not pre.get("mean"):
        mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    else:
        mean, std = [float(v) for v in pre["mean"]], [float(v) for v in pre["std"]]
    return {"size": size, "resize": resize, "mean": mean, "std": std}


def eval_transform(cfg: RunConfig, preprocess: Mapping[str, Any]) -> Transform | None:
    """PIL image -> (3, S, S) tensor for evaluation (Resize -> CenterCrop -> Normalize), or ``None`` for
    feature inputs (``model.image.kind: features``)."""
    if cfg.model.image.kind == "features":
        return None
    return build_transforms(False, **transform_settings(cfg, preprocess))


def train_transform(cfg: RunConfig, preprocess: Mapping[str, Any]) -> Transform | None:
    """The training transform: random crop + flip with ``data.augment``, else :func:`eval_transform`."""
    if cfg.model.image.kind == "features":
        return None
    return build_transforms(cfg.data.augment, **transform_settings(cfg, preprocess))
