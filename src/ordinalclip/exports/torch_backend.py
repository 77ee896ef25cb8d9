"""A torch model behind :class:`ordinalclip.runtime.predictor.Predictor`: a checkpoint, a run folder, a
safetensors export or a module, run on a torch device; numpy arrays in and out."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ordinalclip.checkpoint import head_from_checkpoint
from ordinalclip.exports.load import load_export
from ordinalclip.metrics import point_predictions
from ordinalclip.modeling.ordinalclip import OrdinalCLIP
from ordinalclip.runtime.sidecar import ExportError

__all__ = ["TorchBackend", "torch_backend"]


class TorchBackend:
    """A module mapping (B, ...) inputs to (B, C) logits (B, C-1 for CORAL/CORN), with its rank values,
    names and eval transform."""

    def __init__(
        self,
        module: nn.Module,
        device: str | torch.device,
        rank_values: list[float],
        rank_names: list[str] | None,
        preprocess: dict[str, Any],
    ):
        self.device = str(torch.device(device))
        self.module = module.to(self.device).eval()
        self.output_kind: str = getattr(module, "output_kind", "softmax")
        self.rank_values = rank_values
        self.rank_names = rank_names
        self.preprocess = preprocess

    @torch.no_grad()
    def scores(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(B, ...) float32 inputs -> (B, C) logits, (B, C) probabilities, (B,) point predictions."""
        logits = self.module(torch.from_numpy(np.ascontiguousarray(batch)).to(self.device))
        probs, _, rank = point_predictions(logits, self.output_kind)
        return logits.float().cpu().numpy(), probs.float().cpu().numpy(), rank.cpu().numpy()


def torch_backend(
    model: str | os.PathLike[str] | nn.Module, device: str | torch.device = "cpu"
) -> TorchBackend:
    """A model for inference from a safetensors export (or its ``.json``), a training checkpoint (``.ckpt``),
    a run folder (its best, else last, checkpoint) or a module. An OrdinalCLIP is frozen into its prototype
    head, so the text tower never runs at inference."""
    if isinstance(model, OrdinalCLIP):
        model = model.to_head()  # same logits, without running the text tower for every batch
    if isinstance(model, nn.Module):
        head: Any = model  # any head with num_ranks (duck-typed)
        values = getattr(model, "rank_values", None)
        values = list(values) if values is not None else [float(i) for i in range(int(head.num_ranks))]
        prep = getattr(model, "preprocess", None) or getattr(
            getattr(model, "image_tower", None), "preprocess", {}
        )
        return TorchBackend(model, device, values, getattr(model, "rank_names", None), dict(prep or {}))
    path = Path(model)
    if path.suffix.lower() in (".safetensors", ".json"):
        exported = load_export(path, device)
        return TorchBackend(
            exported, device, exported.rank_values, exported.rank_names, dict(exported.preprocess)
        )
    if path.suffix == ".ckpt" or path.is_dir():  # a run folder means its best (else last) checkpoint
        loaded, _cfg, values, names, prep = head_from_checkpoint(path, device)
        return TorchBackend(loaded, device, values, names, prep)
    raise ExportError(
        f"cannot tell what {path} is: expected an export (.safetensors / .onnx / .json), a "
        "Lightning checkpoint (.ckpt) or a run folder"
    )
