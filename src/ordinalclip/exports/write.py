"""Writing an export: a trained model frozen into its prototype head, as safetensors or ONNX, with its
JSON sidecar (the format: :mod:`ordinalclip.runtime.sidecar`); ONNX graphs optionally quantised to int8.

Both files are written to a temporary file in the target folder first and then renamed over the target, so a
crash mid-write leaves an earlier export at the same path intact.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ordinalclip import __version__
from ordinalclip.checkpoint import head_from_checkpoint
from ordinalclip.config.typed import to_dict
from ordinalclip.fileio import publish, temp_beside
from ordinalclip.modeling.config import ModelConfig
from ordinalclip.modeling.ordinalclip import CosineClassifier, OrdinalCLIP
from ordinalclip.runtime.sidecar import (
    FORMAT_NAME,
    FORMAT_VERSION,
    ONNX_INPUT,
    ONNX_OPSET,
    ONNX_OUTPUT,
    ExportError,
    check_preprocess,
    export_format,
    file_sha256,
    sidecar_digest,
    sidecar_path,
)

__all__ = [
    "QUANTIZE_MODES",
    "export_head",
    "export_loaded",
    "export_model",
    "onnx_example_input",
    "quantize_int8",
]

QUANTIZE_MODES = ("int8",)


def check_quantize(quantize: str | None, kind: str) -> None:
    """A :class:`ExportError` for an unknown quantisation, or one asked of a safetensors export."""
    if quantize is None:
        return
    if quantize not in QUANTIZE_MODES:
        raise ExportError(f"unknown quantisation {quantize!r}; expected one of {list(QUANTIZE_MODES)}")
    if kind != "onnx":
        raise ExportError(f"--quantize {quantize} applies to an ONNX export (an .onnx file), not {kind}")


def quantize_int8(graph: Path) -> None:
    """Rewrite the ONNX graph at ``graph`` with int8 weights in its matrix products (MatMul, Gemm: a ViT's
    attention and MLP, every head) by onnxruntime's dynamic quantisation: weights stored as int8, activations
    quantised per batch at run time, so no calibration set is needed.

    Convolutions stay float32. On the demo's EfficientNet-Lite0 blur task, int8 convolutions changed the rank
    of 48% of the test images (dynamic, ConvInteger, also 7-10x slower on CPU) or 21% (static QDQ calibrated
    on 128 training images); with the matrix products alone 0.8% change and the MAE moves by 0.05%
    (``benchmarks/deploy.py``).
    """
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as err:
        raise ExportError(
            f"int8 quantisation needs onnxruntime: pip install 'ordinalclip[onnx]' ({err})"
        ) from None
    prepared, quantized = temp_beside(graph), temp_beside(graph)
    try:
        # shape inference and graph folding first, as onnxruntime recommends: more of the graph quantises
        quant_pre_process(str(graph), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(
            str(prepared),
            str(quantized),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
        )
        os.replace(quantized, graph)
    finally:
        prepared.unlink(missing_ok=True)
        quantized.unlink(missing_ok=True)


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
    quantize: str | None = None,
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
        quantize: ``"int8"`` to store the ONNX graph's weights as int8 (:func:`quantize_int8`); ONNX only.

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
    check_quantize(quantize, kind)
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
    prep = check_preprocess(preprocess, model_config.image.kind != "features")
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
            if quantize is not None:
                quantize_int8(tmp_weights)
                graph["quantization"] = quantize
        else:
            _write_safetensors(model, tmp_weights)
        meta = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "ordinalclip_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "weights_file": out.name,
            "sha256": file_sha256(tmp_weights),
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


def export_model(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    extra: Mapping[str, Any] | None = None,
    format: str | None = None,
    quantize: str | None = None,
) -> Path:
    """Export a training checkpoint (or run folder): load it, freeze the prototypes, write ``out``
    (safetensors or ONNX, see :func:`export_head`; ``quantize="int8"`` for an int8 ONNX graph) and its JSON
    sidecar. This is ``ordinalclip.export(checkpoint, out)``."""
    check_quantize(quantize, export_format(out, format))  # a wrong name fails before the checkpoint loads
    head, cfg, values, names, prep = head_from_checkpoint(checkpoint)
    return export_loaded(checkpoint, (head, cfg.model, values, names, prep), out, extra, format, quantize)


def export_loaded(
    checkpoint: str | os.PathLike[str],
    loaded: tuple[nn.Module, ModelConfig, list[float], list[str] | None, Mapping[str, Any]],
    out: str | os.PathLike[str],
    extra: Mapping[str, Any] | None = None,
    format: str | None = None,
    quantize: str | None = None,
) -> Path:
    """:func:`export_head` of ``loaded`` = ``(head, model config, rank values, rank names, preprocess)``, a
    head loaded from ``checkpoint``; the sidecar's ``extra`` names the checkpoint first."""
    head, model_config, values, names, prep = loaded
    return export_head(
        head,
        model_config,
        out,
        rank_values=values,
        rank_names=names,
        preprocess=prep,
        extra={"checkpoint": str(checkpoint), **dict(extra or {})},
        format=format,
        quantize=quantize,
    )
