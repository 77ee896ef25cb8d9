"""Loading a safetensors export into torch: the image tower rebuilt from the sidecar's model config, the
frozen prototype head, no text tower (and so never the text tower's library, nor Lightning).

The sidecar is read and checked by :mod:`ordinalclip.runtime.sidecar`; the tensors are read with safetensors,
never pickle, so an export from anywhere cannot run code.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ordinalclip.checkpoint import state_mismatch
from ordinalclip.config.typed import from_dict
from ordinalclip.modeling.backbones.image import ClipImageTower, output_dim
from ordinalclip.modeling.build import build_image_tower
from ordinalclip.modeling.config import ModelConfig
from ordinalclip.modeling.ordinalclip import CosineClassifier
from ordinalclip.runtime.sidecar import (
    ExportError,
    export_paths,
    export_prediction,
    read_export_metadata,
    read_sealed,
)

__all__ = ["ExportedModel", "build_export_tower", "load_export"]


class ExportedModel(CosineClassifier):
    """A loaded export: a fixed cosine head (``forward(images) -> (B, C) logits``) plus what inference needs.

    Attributes:
        rank_values: the label value of each rank (C floats), e.g. ages 16..77; predictions are reported in
        these. rank_names: optional display names of the C ranks.
        preprocess: ``{"size", "resize", "mean", "std"}`` of the eval transform (empty for a features tower).
        model_config: the :class:`ModelConfig` the export was trained with.
        metadata: the whole JSON sidecar.
    """

    def __init__(
        self,
        image_tower: nn.Module,
        prototypes: torch.Tensor,
        log_logit_scale: float,
        *,
        rank_values: list[float],
        rank_names: list[str] | None,
        preprocess: dict[str, Any],
        model_config: ModelConfig,
        metadata: dict[str, Any],
    ):
        super().__init__(
            image_tower, int(prototypes.shape[0]), log_logit_scale, prototypes=prototypes, learnable=False
        )
        self.rank_values = [float(v) for v in rank_values]
        self.rank_names = list(rank_names) if rank_names is not None else None
        self.preprocess = dict(preprocess)
        self.model_config = model_config
        self.metadata = metadata
        self.eval()

    @property
    def takes_images(self) -> bool:
        """False for a precomputed-features tower (its inputs are (B, F) vectors, not images)."""
        return self.model_config.image.kind != "features"

    @property
    def prediction(self) -> str:
        """The headline prediction the sidecar records (``"expectation"`` or ``"argmax"``; see
        :func:`~ordinalclip.runtime.sidecar.export_prediction`)."""
        return export_prediction(self.metadata)


def build_export_tower(
    cfg: ModelConfig, state: Mapping[str, torch.Tensor], embed_dim: int, preprocess: Mapping[str, Any]
) -> nn.Module:
    """An untrained image tower with the architecture of ``cfg`` (no pretrained weights, no text tower)."""
    if cfg.image.kind == "clip" and (cfg.clip.hf_config or cfg.clip.hf_model):
        from ordinalclip.modeling.backbones.hf_clip import HFClipImageTower

        if cfg.clip.hf_config is None:
            raise ExportError(
                "an export of a Hugging Face CLIP tower needs its architecture (model.clip.hf_config); "
                "re-export the checkpoint with this ordinalclip"
            )
        prep = {k: preprocess[k] for k in ("size", "mean", "std") if k in preprocess}
        return HFClipImageTower.from_config(cfg.clip.hf_config, preprocess=prep)
    if cfg.image.kind == "clip":
        from ordinalclip.modeling.backbones.clip import build_clip_vision_tower

        visual = build_clip_vision_tower(cfg.clip, state)
        prep = {k: preprocess[k] for k in ("size", "mean", "std") if k in preprocess}
        return ClipImageTower(visual, preprocess=prep or None)
    image_cfg = dataclasses.replace(cfg.image, weights=None, imagenet_weights=False)
    return build_image_tower(image_cfg, embed_dim, None)


def _check_tower_fits(
    tower: nn.Module, state: Mapping[str, torch.Tensor], num_ranks: int, embed_dim: int, weights: Path
) -> None:
    """The rebuilt ``tower`` against the export's tensors: its output width against the (C, E) prototypes,
    then every tower tensor's name and shape."""
    if output_dim(tower) != embed_dim:
        raise ExportError(
            f"{weights}: prototypes are ({num_ranks}, {embed_dim}) but the image tower of the "
            f"sidecar's model config outputs {output_dim(tower)}-d features"
        )
    parts = state_mismatch(tower, state)
    if parts:
        raise ExportError(
            f"{weights}: the image tower weights do not fit the architecture in the sidecar's model config: "
            f"{'; '.join(parts)} (export vs architecture)"
        )


def _check_described_tower(
    cfg: ModelConfig, shapes: Mapping[str, tuple[int, ...]], preprocess: Mapping[str, Any], weights: Path
) -> None:
    """The tower the sidecar describes, built on the meta device (no memory), against the shapes of the
    weights file's tensors: a re-sealed sidecar describing a huge tower fails here, before it is allocated."""
    prefix = "image_tower."
    state = {
        k[len(prefix) :]: torch.empty(shape, device="meta")
        for k, shape in shapes.items()
        if k.startswith(prefix)
    }
    protos = shapes.get("prototypes")
    if protos is None or len(protos) != 2:
        return  # reported with the loaded tensors below
    try:
        with torch.device("meta"):
            shadow = build_export_tower(cfg, state, int(protos[1]), preprocess)
            output_dim(shadow)  # a probe: some towers learn their width from a forward pass
    except Exception:  # a tower that cannot be built on meta: the full build below reports what is wrong
        return
    _check_tower_fits(shadow, state, int(protos[0]), int(protos[1]), weights)


def load_export(
    path: str | os.PathLike[str], device: str | torch.device = "cpu", *, map_location: Any = None
) -> ExportedModel:
    """Load an export (either file of the pair) for inference; safetensors and JSON only, no text tower.

    Checks the format version, the sha256 of the weights, and that the prototypes (C, E) fit C and the rebuilt
    tower's E, with errors that say which file and what disagrees. ``map_location`` is the deprecated
    spelling of ``device``.
    """
    if map_location is not None:
        warnings.warn("load_export(map_location=...) is deprecated; use device=...", DeprecationWarning, 2)
        device = map_location
    from safetensors.torch import load as load_bytes

    weights, sidecar = export_paths(path)
    meta = read_export_metadata(path)
    if not weights.is_file():
        raise ExportError(f"export weights not found: {weights} (sidecar {sidecar} exists)")
    data = read_sealed(weights, meta, sidecar)  # the checked bytes are the bytes loaded
    try:
        tensors = load_bytes(data)
    except Exception as err:  # safetensors raises its own error types for a damaged or truncated file
        raise ExportError(
            f"{weights}: not a readable safetensors file ({type(err).__name__}: {err})"
        ) from None
    del data  # the tensors own their memory: no third copy while the tower is built
    cfg = from_dict(ModelConfig, meta["model"], path="model")  # checked by read_export_metadata
    shapes = {k: tuple(tensors[k].shape) for k in sorted(tensors)}  # sorted, as the file's header lists them
    _check_described_tower(cfg, shapes, meta.get("preprocess") or {}, weights)
    for key in ("prototypes", "log_logit_scale"):
        if key not in tensors:
            raise ExportError(f"{weights}: no {key!r} tensor")
    protos = tensors.pop("prototypes")
    log_scale = tensors.pop("log_logit_scale")
    num_ranks = int(meta["num_ranks"])
    if protos.dim() != 2 or protos.shape[0] != num_ranks:
        raise ExportError(
            f"{weights}: prototypes are {tuple(protos.shape)} but the sidecar says C = {num_ranks}"
        )
    if not protos.is_floating_point() or not bool(torch.isfinite(protos).all()):
        raise ExportError(f"{weights}: tensor 'prototypes' must hold finite floats ({protos.dtype})")
    if log_scale.numel() != 1 or not log_scale.is_floating_point() or not math.isfinite(float(log_scale)):
        raise ExportError(
            f"{weights}: tensor 'log_logit_scale' must be one finite float, got "
            f"{log_scale.dtype} {tuple(log_scale.shape)}"
        )
    names = meta.get("rank_names")
    prefix = "image_tower."
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    others = sorted(k for k in tensors if not k.startswith(prefix))
    if others:
        raise ExportError(
            f"{weights}: unexpected tensors {others[:5]} (an export holds only the image tower, "
            "prototypes and log_logit_scale)"
        )
    preprocess = meta.get("preprocess") or {}
    embed_dim = int(protos.shape[1])
    try:
        tower = build_export_tower(cfg, state, embed_dim, preprocess)
    except ExportError:
        raise
    except Exception as err:  # a model config that passes its type checks but describes no buildable tower
        raise ExportError(
            f"{sidecar}: entry 'model': cannot build the image tower it describes "
            f"({type(err).__name__}: {err})"
        ) from None
    _check_tower_fits(tower, state, num_ranks, embed_dim, weights)
    tower.load_state_dict(dict(state), strict=True)
    model = ExportedModel(
        tower,
        protos,
        float(log_scale),
        rank_values=meta["rank_values"],
        rank_names=names,
        preprocess=preprocess,
        model_config=cfg,
        metadata=meta,
    )
    return model.to(device)
