"""Which frozen parts of a model a checkpoint can leave out, and what a checkpoint holds.

A frozen tower (or trunk) that its config rebuilds with the same weights, from an installed package or a named
pretrained source, need not be stored: :func:`ordinalclip.checkpoint.load_checkpoint` rebuilds it. The
checkpoint then holds what trained (projection, prompts) and stays small.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

__all__ = ["checkpoint_note", "rebuildable_trunk_prefixes"]


def rebuildable_trunk_prefixes(model: nn.Module, cfg: Any) -> list[str]:
    """State-dict prefixes (in the LightningModule: ``model.`` first) of a frozen image trunk that the config
    rebuilds exactly: EfficientNet-Lite0 with the package's ImageNet weights (``cfg`` a RunConfig)."""
    image = cfg.model.image
    tower = getattr(model, "image_tower", None)
    trunk = getattr(tower, "trunk", None)
    if image.kind != "efficientnet_lite0" or not image.imagenet_weights or image.weights is not None:
        return []
    if not isinstance(trunk, nn.Module) or any(p.requires_grad for p in trunk.parameters()):
        return []
    return ["model.image_tower.trunk."]


def checkpoint_note(path: str | os.PathLike[str]) -> str:
    """``"best.ckpt 2.1 MB (left out, rebuilt on load: model.text_tower.)"``: a checkpoint's size and the
    frozen parts it does not store."""
    from ordinalclip.checkpoint import CHECKPOINT_KEY

    size = os.path.getsize(path) / 1e6
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    omitted = (ckpt.get(CHECKPOINT_KEY) or {}).get("omitted") or []
    left = f"left out, rebuilt on load: {', '.join(omitted)}" if omitted else "every tower stored"
    return f"{os.path.basename(path)} {size:.1f} MB ({left})"
