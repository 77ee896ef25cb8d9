"""A torch model behind :class:`ordinalclip.runtime.predictor.Predictor`: a checkpoint, a run folder, a
safetensors export or a module, run on a torch device; numpy arrays in and out."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
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

__all__ = ["TorchBackend", "as_array", "as_tensors", "eval_transform", "tensor_transform", "torch_backend"]


def as_array(x: torch.Tensor) -> np.ndarray:
    """A tensor as a float32 numpy array on the host."""
    return x.detach().to("cpu", torch.float32).contiguous().numpy()


def as_tensors(out: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Numpy outputs as CPU tensors (for callers that gave tensors)."""
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}


def eval_transform(preprocess: Mapping[str, Any]) -> Callable[[Any], torch.Tensor]:
    """The sidecar's eval transform for PIL images in torchvision: Resize((r, r)) -> CenterCrop(size) ->
    ToTensor -> Normalize (the numpy one, :func:`ordinalclip.runtime.preprocess.preprocess_image`, gives the
    same pixels)."""
    from ordinalclip.data.images import build_transforms

    p = preprocess
    return build_transforms(
        False, size=int(p["size"]), resize=int(p.get("resize") or p["size"]), mean=p["mean"], std=p["std"]
    )


def tensor_transform(preprocess: Mapping[str, Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    """The same resize, crop and normalisation for (3, H, W) float tensors in [0, 1] (torch's tensor
    resize: close to Pillow's, not equal)."""
    from torchvision import transforms as T

    p = preprocess
    side = int(p.get("resize") or p["size"])
    return T.Compose([T.Resize((side, side)), T.CenterCrop(int(p["size"])), T.Normalize(p["mean"], p["std"])])


class TorchBackend:
    """A module mapping (B, ...) inputs to (B, C) logits (B, C-1 for CORAL/CORN), with its rank values,
    names, eval transform and headline prediction (``"expectation"`` or ``"argmax"``)."""

    def __init__(
        self,
        module: nn.Module,
        device: str | torch.device,
        rank_values: list[float],
        rank_names: list[str] | None,
        preprocess: dict[str, Any],
        prediction: str = "expectation",
    ):
        self.prediction = prediction
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
    head, so the text tower never runs at inference. The headline prediction is a checkpoint's
    ``trainer.prediction``, an export's sidecar entry, a module's ``prediction`` attribute, else
    ``"expectation"``."""
    if isinstance(model, OrdinalCLIP):
        model = model.to_head()  # same logits, without running the text tower for every batch
    if isinstance(model, nn.Module):
        head: Any = model  # any head with num_ranks (duck-typed)
        values = getattr(model, "rank_values", None)
        values = list(values) if values is not None else [float(i) for i in range(int(head.num_ranks))]
        prep = getattr(model, "preprocess", None) or getattr(
            getattr(model, "image_tower", None), "preprocess", {}
        )
        prediction = getattr(model, "prediction", None) or "expectation"  # an ExportedModel: its sidecar's
        return TorchBackend(
            model, device, values, getattr(model, "rank_names", None), dict(prep or {}), prediction
        )
    path = Path(model)
    if path.suffix.lower() in (".safetensors", ".json"):
        return torch_backend(load_export(path, device), device)
    if path.suffix == ".ckpt" or path.is_dir():  # a run folder means its best (else last) checkpoint
        loaded, cfg, values, names, prep = head_from_checkpoint(path, device)
        return TorchBackend(loaded, device, values, names, prep, cfg.trainer.prediction)
    raise ExportError(
        f"cannot tell what {path} is: expected an export (.safetensors / .onnx / .json), a "
        "Lightning checkpoint (.ckpt) or a run folder"
    )
