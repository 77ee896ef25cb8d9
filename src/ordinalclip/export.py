"""Deployable exports: the image tower and the frozen prototype head, with no text tower.

An export is two files side by side:

* ``model.safetensors``: the image tower's tensors under ``image_tower.*``, ``prototypes`` (C, E) as trained
  (raw; normalised on use, as in training) and ``log_logit_scale`` (a 0-d tensor);
  (or ``model.onnx``: the same head as one ONNX graph ``images (B, 3, H, W) -> logits (B, C)``, dynamic B,
  run by any ONNX runtime; its sidecar is ``model.onnx.json``, so both formats can share a folder);
* ``model.json``: format name and version, the ordinalclip version, the :class:`ModelConfig` (enough to
  rebuild the tower's architecture), C, the rank values and names, the preprocessing, the creation time, the
  sha256 of the safetensors file, and ``sidecar_sha256``: the sha256 of the sidecar's own content (every other
  entry, as JSON with sorted keys, ``separators=(",", ":")`` and ASCII escapes), so that an edited number (a
  rank value, the crop size) cannot silently shift predictions.

Reading uses safetensors and JSON only, never pickle, so an export from anywhere cannot run code, and checks
every sidecar entry (types, ranges, lengths), naming the file and the entry of anything wrong. Both files are
written to a temporary file in the target folder first and then renamed over the target, so a crash mid-write
leaves an earlier export at the same path intact.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import sys
import types
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ordinalclip import __version__
from ordinalclip.checkpoint import load_checkpoint, state_mismatch
from ordinalclip.configtools import ConfigError, from_dict, to_dict
from ordinalclip.data.samples import DataError
from ordinalclip.engine.splits import rank_space
from ordinalclip.engine.transforms import tower_preprocess, transform_settings
from ordinalclip.fileio import publish, temp_beside
from ordinalclip.modeling.backbones.image import ClipImageTower, output_dim
from ordinalclip.modeling.build import build_image_tower
from ordinalclip.modeling.config import ClipConfig, ModelConfig
from ordinalclip.modeling.ordinalclip import CosineClassifier, OrdinalCLIP

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "ExportError",
    "ExportedModel",
    "OnnxModel",
    "export_head",
    "export_model",
    "head_from_checkpoint",
    "load_export",
    "load_any_export",
    "load_onnx_export",
    "sidecar_path",
]

log = logging.getLogger(__name__)

FORMAT_NAME = "ordinalclip-export"
FORMAT_VERSION = 1


from ordinalclip.errors import ExportError  # noqa: E402  (defined with its family)


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


# --------------------------------------------------------------------------------------------- writing


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_digest(meta: Mapping[str, Any]) -> str:
    """The ``sidecar_sha256`` of a sidecar dict: sha256 of its other entries as canonical JSON."""
    body = {k: v for k, v in meta.items() if k != "sidecar_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _check_preprocess(preprocess: Mapping[str, Any] | None, images: bool) -> dict[str, Any]:
    """Normalise ``preprocess`` to ``{"size", "resize", "mean", "std"}`` (``resize`` defaults to ``size``)."""
    if not preprocess:
        if images:
            raise ExportError(
                "preprocess must give the eval transform of an image tower: "
                "{'size': crop, 'resize': side before the crop, 'mean': [3], 'std': [3]}"
            )
        return {}
    missing = [k for k in ("size", "mean", "std") if k not in preprocess]
    if missing:
        raise ExportError(f"preprocess is missing {missing}; got keys {sorted(preprocess)}")
    out: dict[str, Any] = {
        "size": int(preprocess["size"]),
        "resize": int(preprocess.get("resize") or preprocess["size"]),
        "mean": [float(v) for v in preprocess["mean"]],
        "std": [float(v) for v in preprocess["std"]],
    }
    if len(out["mean"]) != 3 or len(out["std"]) != 3:
        raise ExportError(f"preprocess mean and std need 3 values each; got {out['mean']} and {out['std']}")
    if out["size"] > out["resize"]:
        raise ExportError(f"preprocess crop size {out['size']} is larger than the resize {out['resize']}")
    return out


EXPORT_FORMATS = {".safetensors": "safetensors", ".onnx": "onnx"}
ONNX_INPUT, ONNX_OUTPUT = "images", "logits"
ONNX_OPSET = 18


def export_format(out: str | os.PathLike[str], format: str | None = None) -> str:
    """``"safetensors"`` or ``"onnx"``: ``format`` if given (it must agree with ``out``'s suffix), else the
    suffix's."""
    suffix = Path(out).suffix.lower()
    if format is None:
        if suffix not in EXPORT_FORMATS:
            raise ExportError(
                f"an export is written to a .safetensors file or an .onnx file (the sidecar "
                f"goes beside it); got {out}"
            )
        return EXPORT_FORMATS[suffix]
    if format not in EXPORT_FORMATS.values():
        known = sorted(EXPORT_FORMATS.values())
        raise ExportError(f"unknown export format {format!r}; expected one of {known}")
    if EXPORT_FORMATS.get(suffix) != format:
        want = next(k for k, v in EXPORT_FORMATS.items() if v == format)
        raise ExportError(
            f"the {format} format is written to a {want} file (the sidecar goes beside it); got {out}"
        )
    return format


def sidecar_path(weights: str | os.PathLike[str]) -> Path:
    """The JSON sidecar of an export: ``model.json`` beside ``model.safetensors``, ``model.onnx.json`` beside
    ``model.onnx`` (so both formats of one model can sit in one folder, as ``model.onnx.data`` would)."""
    weights = Path(weights)
    if weights.suffix.lower() == ".onnx":
        return weights.with_name(weights.name + ".json")
    return weights.with_suffix(".json")


def _write_safetensors(model: CosineClassifier, tmp: Path) -> None:
    from safetensors import torch as st

    # clone: safetensors refuses tensors that share memory, and a tower may tie weights
    tensors = {
        f"image_tower.{k}": v.detach().cpu().contiguous().clone()
        for k, v in model.image_tower.state_dict().items()
    }
    tensors["prototypes"] = model.weight.detach().cpu().contiguous().clone()
    tensors["log_logit_scale"] = model.logit_scale.value.detach().cpu().reshape(()).clone()
    st.save_file(tensors, str(tmp), metadata={"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION)})


def onnx_example_input(
    model_config: ModelConfig, preprocess: Mapping[str, Any], batch: int = 2
) -> torch.Tensor:
    """A random input of the shape the exported graph takes: (B, 3, size, size) images or (B, F) features."""
    if model_config.image.kind == "features":
        if model_config.image.input_dim is None:
            raise ExportError("model.image.input_dim is not set: cannot tell the width of the feature input")
        return torch.randn(batch, int(model_config.image.input_dim))
    size = int(preprocess["size"])
    return torch.randn(batch, 3, size, size)


def _write_onnx(model: CosineClassifier, example: torch.Tensor, tmp: Path) -> dict[str, Any]:
    """Trace ``model`` with torch's exporter (``torch.export`` based; the TorchScript one is deprecated) into
    one self-contained ONNX file whose batch dimension is dynamic. Returns what the sidecar says about the
    graph."""
    try:
        import onnx  # noqa: F401  (the exporter needs onnx and onnxscript)
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ExportError(
            f"ONNX export needs the onnx extra: pip install 'ordinalclip[onnx]' ({err})"
        ) from None
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    model = model.eval()
    with torch.no_grad():
        torch.onnx.export(
            model,
            (example,),
            str(tmp),
            dynamo=True,
            external_data=False,
            verbose=False,
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            opset_version=ONNX_OPSET,
            dynamic_shapes=({0: batch},),
        )
    return {
        "input": ONNX_INPUT,
        "output": ONNX_OUTPUT,
        "opset": ONNX_OPSET,
        "input_shape": ["batch", *example.shape[1:]],
        "output_shape": ["batch", int(model.num_ranks)],
    }


def export_head(
    model: nn.Module,
    model_config: ModelConfig,
    out: str | os.PathLike[str],
    rank_values: list[float] | None = None,
    rank_names: list[str] | None = None,
    preprocess: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    format: str | None = None,
) -> Path:
    """Write ``model`` as an export: ``out`` (safetensors or ONNX) and its sidecar (:func:`sidecar_path`).

    Args:
        model: an OrdinalCLIP (frozen into its head with :meth:`OrdinalCLIP.to_head`) or a cosine head whose
            ``weight`` is (C, E) and whose image tower gives (B, E) features.
        model_config: the config ``model`` was built from (stored so the tower's architecture can be rebuilt).
        out: the ``.safetensors`` or ``.onnx`` path.
        rank_values: the label value of each rank (C floats; default ``0..C-1``).
        rank_names: optional C display names.
        preprocess: the eval transform: ``{"size", "resize", "mean", "std"}`` (``resize`` defaults to
            ``size``); may be empty for a precomputed-features tower.
        extra: anything JSON-serialisable to keep in the sidecar (e.g. the run's metrics).
        format: ``"safetensors"`` (tensors read by this package) or ``"onnx"`` (a graph ``images (B, 3, H,
            W) -> logits (B, C)`` for any ONNX runtime, dynamic B); default: from the suffix of ``out``.

    Returns:
        The path of the weights file (``out``).
    """
    if isinstance(model, OrdinalCLIP):
        model = model.to_head()
    if not isinstance(model, CosineClassifier):
        raise ExportError(
            f"only prototype models (ordinalclip, cosine, zeroshot) can be exported, got "
            f"{type(model).__name__}; predict from its checkpoint instead"
        )
    out = Path(out)
    kind = export_format(out, format)
    num_ranks, embed_dim = (int(n) for n in model.weight.shape)
    if model_config.num_ranks != num_ranks:
        raise ExportError(
            f"model_config.num_ranks is {model_config.num_ranks} but the model has {num_ranks} prototypes"
        )
    values = [float(i) for i in range(num_ranks)] if rank_values is None else [float(v) for v in rank_values]
    if len(values) != num_ranks:
        raise ExportError(f"{len(values)} rank values for {num_ranks} ranks")
    if rank_names is not None and len(rank_names) != num_ranks:
        raise ExportError(f"{len(rank_names)} rank names for {num_ranks} ranks")
    prep = _check_preprocess(preprocess, model_config.image.kind != "features")
    hf_config = getattr(model.image_tower, "hf_config", None)
    if hf_config is not None and model_config.clip.hf_config is None:
        # a transformers tower is rebuilt from its config, not from the (local, maybe absent) model folder
        model_config = dataclasses.replace(
            model_config, clip=dataclasses.replace(model_config.clip, hf_config=hf_config)
        )

    out.parent.mkdir(parents=True, exist_ok=True)

    sidecar = sidecar_path(out)
    tmp_weights = temp_beside(out)
    tmp_sidecar = temp_beside(sidecar)
    try:
        graph = None
        if kind == "onnx":
            example = onnx_example_input(model_config, prep).to(model.weight.device)
            graph = _write_onnx(model, example, tmp_weights)
        else:
            _write_safetensors(model, tmp_weights)
        meta = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "ordinalclip_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "weights_file": out.name,
            "sha256": _sha256(tmp_weights),
            "num_ranks": num_ranks,
            "embed_dim": embed_dim,
            "rank_values": values,
            "rank_names": list(rank_names) if rank_names is not None else None,
            "preprocess": prep,
            "model": to_dict(model_config),
            "extra": dict(extra or {}),
        }
        if graph is not None:
            meta["onnx"] = graph
        meta["sidecar_sha256"] = sidecar_digest(meta)
        tmp_sidecar.write_text(json.dumps(meta, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        # Both files are complete before either rename; a crash between the two renames leaves a pair whose
        # sha256 disagrees, which load_export reports instead of loading mismatched files.
        publish(tmp_weights, out)
        publish(tmp_sidecar, sidecar)
    except BaseException:
        tmp_weights.unlink(missing_ok=True)
        tmp_sidecar.unlink(missing_ok=True)
        raise
    return out


def head_from_checkpoint(
    checkpoint: str | os.PathLike[str],
) -> tuple[nn.Module, Any, list[float], list[str] | None, dict[str, Any]]:
    """Load a training checkpoint for inference: ``(head, run_config, rank_values, rank_names, preprocess)``.

    An OrdinalCLIP is frozen into its cosine head (the text tower is dropped); other models come back as they
    are. ``preprocess`` is the run's eval transform (``{}`` for a features tower).
    """
    model, cfg = load_checkpoint(checkpoint)
    head = model.to_head() if isinstance(model, OrdinalCLIP) else model
    head.eval()
    try:
        space = rank_space(cfg)
        values, names = [float(v) for v in space.values()], (list(space.names) if space.names else None)
    except DataError as err:  # a rank-names file that has moved since training: the names are only labels
        log.warning("%s; predictions keep the rank values but have no rank names", err)
        values = [float(i + cfg.data.rank_offset) for i in range(cfg.model.num_ranks)]
        names = None
    prep = {} if cfg.model.image.kind == "features" else transform_settings(cfg, tower_preprocess(model))
    return head, cfg, values, names, prep


def export_model(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    extra: Mapping[str, Any] | None = None,
    format: str | None = None,
) -> Path:
    """Export a training checkpoint (or run folder): load it, freeze the prototypes, write ``out``
    (safetensors or ONNX, see :func:`export_head`) and its JSON sidecar. ``ordinalclip.export(checkpoint,
    out)`` calls this."""
    export_format(out, format)  # a wrong name fails before the checkpoint loads
    head, cfg, values, names, prep = head_from_checkpoint(checkpoint)
    info = {"checkpoint": str(checkpoint), **dict(extra or {})}
    return export_head(
        head, cfg.model, out, rank_values=values, rank_names=names, preprocess=prep, extra=info, format=format
    )


# --------------------------------------------------------------------------------------------- reading


def _clip_vision_spec(clip: ClipConfig, state: Mapping[str, torch.Tensor]) -> tuple[int, Any, bool]:
    """``(embed_dim, vision_cfg, quick_gelu)`` of the CLIP visual tower that ``clip`` describes.

    ``state`` holds the exported tower tensors (``visual.*``); an architecture inferred from an OpenAI file
    (``name: null``) is inferred again from them, with the same rules as open_clip's OpenAI builder.
    """
    import open_clip

    if clip.custom is not None:
        return int(clip.custom["embed_dim"]), clip.custom["vision_cfg"], bool(clip.quick_gelu)
    if clip.name is not None:
        cfg = open_clip.get_model_config(clip.name)
        if cfg is None:
            raise ExportError(f"the export's CLIP architecture {clip.name!r} is unknown to this open_clip")
        return int(cfg["embed_dim"]), cfg["vision_cfg"], bool(cfg.get("quick_gelu", False) or clip.quick_gelu)
    quick = True if clip.quick_gelu is None else clip.quick_gelu
    if "visual.proj" in state:  # ViT
        conv = state["visual.conv1.weight"]
        grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        layers = sum(1 for k in state if k.endswith(".attn.in_proj_weight"))
        spec = {
            "layers": layers,
            "width": conv.shape[0],
            "patch_size": conv.shape[-1],
            "image_size": conv.shape[-1] * grid,
        }
        return int(state["visual.proj"].shape[1]), spec, quick
    if "visual.attnpool.positional_embedding" not in state:
        raise ExportError(
            "cannot infer the CLIP visual architecture: the export has neither ViT nor ResNet keys"
        )
    counts = tuple(
        len({k.split(".")[2] for k in state if k.startswith(f"visual.layer{b}.")}) for b in (1, 2, 3, 4)
    )
    grid = round((state["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
    spec = {
        "layers": counts,
        "width": state["visual.layer1.0.conv1.weight"].shape[0],
        "patch_size": None,
        "image_size": grid * 32,
    }
    return int(state["visual.attnpool.c_proj.weight"].shape[0]), spec, quick


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
        from open_clip.model import _build_vision_tower

        width, vision_cfg, quick_gelu = _clip_vision_spec(cfg.clip, state)
        visual = _build_vision_tower(width, vision_cfg, quick_gelu, None)
        prep = {k: preprocess[k] for k in ("size", "mean", "std") if k in preprocess}
        return ClipImageTower(visual, preprocess=prep or None)
    image_cfg = dataclasses.replace(cfg.image, weights=None, imagenet_weights=False)
    return build_image_tower(image_cfg, embed_dim, None)


def _load_tower_state(tower: nn.Module, state: Mapping[str, torch.Tensor], where: Path) -> None:
    parts = state_mismatch(tower, state)
    if parts:
        raise ExportError(
            f"{where}: the image tower weights do not fit the architecture in the sidecar's model config: "
            f"{'; '.join(parts)} (export vs architecture)"
        )
    tower.load_state_dict(dict(state), strict=True)


def _export_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    path = Path(path)
    if path.suffix not in (".safetensors", ".json"):
        raise ExportError(f"an export is a .safetensors file with a .json sidecar; got {path}")
    return path.with_suffix(".safetensors"), path.with_suffix(".json")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _field_error(sidecar: Path, key: str, expected: str, value: Any) -> ExportError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return ExportError(f"{sidecar}: entry {key!r}: expected {expected}, got {shown}")


def _stored_model_config(meta: dict[str, Any], sidecar: Path) -> ModelConfig:
    """The sidecar's ``model`` entry as a :class:`ModelConfig` (an error naming the sidecar and the key)."""
    try:
        return from_dict(ModelConfig, meta["model"], path="model")
    except ConfigError as err:
        raise ExportError(
            f"{sidecar}: entry 'model': the stored model config does not fit this ordinalclip: {err}"
        ) from None


def _check_sidecar(meta: dict[str, Any], sidecar: Path) -> ModelConfig:
    """Types, ranges and lengths of every sidecar entry; returns the stored model config."""
    for key in ("sha256", "num_ranks", "rank_values", "model"):
        if key not in meta:
            raise ExportError(f"{sidecar}: sidecar has no {key!r} entry")
    sha = meta["sha256"]
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise _field_error(sidecar, "sha256", "64 lower-case hex digits", sha)
    num_ranks = meta["num_ranks"]
    if not _is_int(num_ranks) or num_ranks < 1:
        raise _field_error(sidecar, "num_ranks", "an integer >= 1", num_ranks)
    values = meta["rank_values"]
    if not isinstance(values, list) or not all(_is_number(v) for v in values):
        raise _field_error(sidecar, "rank_values", "a list of finite numbers", values)
    if len(values) != num_ranks:
        raise ExportError(
            f"{sidecar}: entry 'rank_values': {len(values)} rank values for C = {num_ranks} ranks"
        )
    names = meta.get("rank_names")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _field_error(sidecar, "rank_names", "null or a list of strings", names)
        if len(names) != num_ranks:
            raise ExportError(
                f"{sidecar}: entry 'rank_names': {len(names)} rank names for C = {num_ranks} ranks"
            )
    embed_dim = meta.get("embed_dim")
    if embed_dim is not None and (not _is_int(embed_dim) or embed_dim < 1):
        raise _field_error(sidecar, "embed_dim", "an integer >= 1", embed_dim)
    for key in ("weights_file", "ordinalclip_version", "created"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise _field_error(sidecar, key, "a string", meta[key])
    if meta.get("extra") is not None and not isinstance(meta["extra"], dict):
        raise _field_error(sidecar, "extra", "a mapping", meta["extra"])
    if not isinstance(meta["model"], dict):
        raise _field_error(sidecar, "model", "a mapping (the model config)", meta["model"])
    cfg = _stored_model_config(meta, sidecar)
    if cfg.num_ranks != num_ranks:
        raise ExportError(
            f"{sidecar}: entry 'model.num_ranks' is {cfg.num_ranks} but 'num_ranks' is {num_ranks}"
        )
    _check_stored_preprocess(meta.get("preprocess"), cfg.image.kind != "features", sidecar)
    return cfg


def _check_stored_preprocess(prep: Any, images: bool, sidecar: Path) -> None:
    if prep is None or prep == {}:
        if images:
            raise ExportError(
                f"{sidecar}: entry 'preprocess' is empty, but the image tower needs its eval "
                "transform {'size', 'resize', 'mean', 'std'}"
            )
        return
    if not isinstance(prep, dict):
        raise _field_error(sidecar, "preprocess", "a mapping {'size', 'resize', 'mean', 'std'}", prep)
    unknown = sorted(str(k) for k in prep if k not in ("size", "resize", "mean", "std"))
    missing = [k for k in ("size", "resize", "mean", "std") if k not in prep]
    if unknown or missing:
        raise ExportError(
            f"{sidecar}: entry 'preprocess': expected the keys size, resize, mean, std; "
            f"missing {missing}, unknown {unknown}"
        )
    for key in ("size", "resize"):
        if not _is_int(prep[key]) or not 1 <= prep[key] <= 1 << 16:
            raise _field_error(sidecar, f"preprocess.{key}", "an integer in [1, 65536]", prep[key])
    if prep["size"] > prep["resize"]:
        raise ExportError(
            f"{sidecar}: entry 'preprocess.size' ({prep['size']}) is larger than "
            f"'preprocess.resize' ({prep['resize']})"
        )
    for key in ("mean", "std"):
        value = prep[key]
        if not isinstance(value, list) or len(value) != 3 or not all(_is_number(v) for v in value):
            raise _field_error(sidecar, f"preprocess.{key}", "3 finite numbers (R, G, B)", value)
    if any(v <= 0 for v in prep["std"]):
        raise _field_error(sidecar, "preprocess.std", "positive values", prep["std"])


def read_export_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The sidecar of the export at ``path`` (either file of the pair), with its format, every entry and its
    integrity (``sidecar_sha256``) checked. Raises :class:`ExportError` naming the file and the entry."""
    _, sidecar = _export_paths(path)
    if not sidecar.is_file():
        raise ExportError(
            f"export sidecar not found: {sidecar} (an export is a .safetensors file and the .json "
            "written beside it)"
        )
    try:
        meta = json.loads(sidecar.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ExportError(f"{sidecar}: not a valid JSON sidecar ({type(err).__name__}: {err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ExportError(
            f"{sidecar}: not an ordinalclip export (format is {found!r}, expected {FORMAT_NAME!r})"
        )
    version = meta.get("format_version")
    if version != FORMAT_VERSION or not _is_int(version):
        raise ExportError(
            f"{sidecar}: export was written by format version {version} (ordinalclip "
            f"{meta.get('ordinalclip_version', '?')}), this ordinalclip ({__version__}) reads format version "
            f"{FORMAT_VERSION}; re-export the checkpoint with this version, or load it with the version that "
            "wrote it"
        )
    _check_sidecar(meta, sidecar)
    recorded = meta.get("sidecar_sha256")
    if recorded is None:
        log.warning(
            "%s has no sidecar_sha256 (written before ordinalclip checked sidecars): its entries are "
            "checked for type and range only; re-export to protect it",
            sidecar,
        )
    else:
        try:
            digest = sidecar_digest(meta)
        except ValueError:  # NaN/inf numbers somewhere in 'extra'
            digest = None
        if recorded != digest:
            raise ExportError(
                f"{sidecar}: entry 'sidecar_sha256' does not match the sidecar's content: an entry "
                "(e.g. rank_values or preprocess) was edited after export; re-export the checkpoint "
                "instead of editing its sidecar"
            )
    return meta


def load_export(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> ExportedModel:
    """Load an export (either file of the pair) for inference; safetensors and JSON only, no text tower.

    Checks the format version, the sha256 of the weights, and that the prototypes (C, E) fit C and the rebuilt
    tower's E, with errors that say which file and what disagrees.
    """
    from safetensors.torch import load_file

    weights, sidecar = _export_paths(path)
    meta = read_export_metadata(path)
    if not weights.is_file():
        raise ExportError(f"export weights not found: {weights} (sidecar {sidecar} exists)")
    digest = _sha256(weights)
    if digest != meta["sha256"]:
        raise ExportError(
            f"{weights}: sha256 {digest} does not match {meta['sha256']} recorded in {sidecar}; the "
            "file was modified, truncated, or belongs to another export"
        )
    cfg = from_dict(ModelConfig, meta["model"], path="model")  # checked by read_export_metadata
    try:
        tensors = load_file(str(weights))
    except Exception as err:  # safetensors raises its own error types for a damaged or truncated file
        raise ExportError(
            f"{weights}: not a readable safetensors file ({type(err).__name__}: {err})"
        ) from None
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
    if output_dim(tower) != embed_dim:
        raise ExportError(
            f"{weights}: prototypes are ({num_ranks}, {embed_dim}) but the image tower of the "
            f"sidecar's model config outputs {output_dim(tower)}-d features"
        )
    _load_tower_state(tower, state, weights)
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


class OnnxModel(nn.Module):
    """An ONNX export run by onnxruntime behind the interface of :class:`ExportedModel`: ``forward(x) ->
    logits`` (torch tensors in and out), ``num_ranks``, ``rank_values``, ``rank_names``, ``preprocess``,
    ``model_config``, ``metadata``. It has no parameters; the graph runs on the CPU (or on the providers
    given)."""

    output_kind = "softmax"

    def __init__(
        self,
        path: Path,
        metadata: dict[str, Any],
        model_config: ModelConfig,
        providers: list[str] | None = None,
        threads: int | None = None,
    ):
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ExportError(
                f"{path}: running an ONNX export needs onnxruntime: pip install 'ordinalclip[onnx]' ({err})"
            ) from None
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: the optimiser's notes are not the user's business
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own exception types for a corrupt or foreign graph
            raise ExportError(f"{path}: onnxruntime cannot load this graph: {err}") from None
        graph = metadata.get("onnx") or {}
        self.input_name = graph.get("input", ONNX_INPUT)
        self.num_ranks = int(metadata["num_ranks"])
        self.rank_values = [float(v) for v in metadata["rank_values"]]
        names = metadata.get("rank_names")
        self.rank_names = list(names) if names is not None else None
        self.preprocess = dict(metadata.get("preprocess") or {})
        self.model_config = model_config
        self.metadata = metadata
        self.path = path

    @property
    def takes_images(self) -> bool:
        return self.model_config.image.kind != "features"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images or (B, F) features -> (B, C) logits, computed by onnxruntime."""
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        (logits,) = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(logits)


def load_onnx_export(
    path: str | os.PathLike[str], providers: list[str] | None = None, threads: int | None = None
) -> OnnxModel:
    """Load an ONNX export (``model.onnx`` with ``model.onnx.json`` beside it) into onnxruntime.

    The sidecar is read and checked as for a safetensors export (:func:`read_export_metadata`), and the sha256
    of the graph must match it. ``threads``: onnxruntime's intra-op threads (default: its own choice, all
    cores).
    """
    path = Path(path)
    if path.name.lower().endswith(".onnx.json"):
        path = path.with_suffix("")
    if path.suffix.lower() != ".onnx":
        raise ExportError(f"an ONNX export is a .onnx file with a .onnx.json sidecar; got {path}")
    sidecar = sidecar_path(path)
    meta = read_export_metadata(sidecar)
    if not path.is_file():
        raise ExportError(f"ONNX graph not found: {path} (sidecar {sidecar} exists)")
    if "onnx" not in meta or Path(str(meta.get("weights_file", ""))).suffix != ".onnx":
        raise ExportError(
            f"{sidecar}: this sidecar describes a {meta.get('weights_file')!r} export, not an ONNX graph"
        )
    digest = _sha256(path)
    if digest != meta["sha256"]:
        raise ExportError(
            f"{path}: sha256 {digest} does not match {meta['sha256']} recorded in {sidecar}; "
            "the file was modified, truncated, or belongs to another export"
        )
    cfg = _stored_model_config(meta, sidecar)
    return OnnxModel(path, meta, cfg, providers, threads)


def load_any_export(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> nn.Module:
    """An export of either format: :func:`load_onnx_export` for ``.onnx`` (or its ``.onnx.json``), else
    :func:`load_export`."""
    name = Path(path).name.lower()
    if name.endswith(".onnx") or name.endswith(".onnx.json"):
        return load_onnx_export(path)
    return load_export(path, device)


class _CallableModule(types.ModuleType):
    """``ordinalclip.export`` is this module and, called, :func:`export_model`.

    ``import ordinalclip as oc; oc.export(ckpt, "model.onnx")`` reads naturally, but importing the submodule
    ``ordinalclip.export`` (which any loader does) sets the package attribute ``export`` to the module and
    would hide a function of that name. Making the module callable keeps both meanings working in any import
    order.
    """

    def __call__(
        self,
        checkpoint: str | os.PathLike[str],
        out: str | os.PathLike[str],
        format: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Path:
        return export_model(checkpoint, out, extra=extra, format=format)


sys.modules[__name__].__class__ = _CallableModule
