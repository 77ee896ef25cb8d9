"""The image transforms of a run: crop size, resize and normalisation from the data config and the image
tower's own preprocessing constants (``tower.preprocess``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from ordinalclip.config import RunConfig
from ordinalclip.data import build_transforms
from ordinalclip.run_settings import tower_preprocess, transform_settings

Transform = Callable[[Any], torch.Tensor]

__all__ = ["Transform", "eval_transform", "tower_preprocess", "train_transform", "transform_settings"]


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
