"""An ONNX export run by onnxruntime: numpy in, numpy out, no torch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ordinalclip.runtime.sidecar import (
    ONNX_INPUT,
    ExportError,
    file_sha256,
    read_export_metadata,
    sidecar_path,
    stored_model_config,
)

__all__ = ["OnnxModel", "load_onnx_export", "softmax"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """(B, C) logits -> (B, C) probabilities, in float32, stable for large logits."""
    x = np.asarray(logits, dtype=np.float32)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class OnnxModel:
    """An ONNX export in an onnxruntime session, with what inference needs from its sidecar.

    Calling it maps ``(B, 3, H, W)`` images (or ``(B, F)`` features) to ``(B, C)`` logits; a numpy array in
    gives a numpy array, a torch tensor in gives a torch tensor (for comparisons with the torch model).
    Attributes: ``num_ranks``, ``rank_values``, ``rank_names``, ``preprocess``, ``model_config`` (the stored
    :class:`~ordinalclip.modeling.config.ModelConfig`), ``metadata`` (the whole sidecar), ``path``.
    """

    output_kind = "softmax"

    def __init__(
        self,
        path: Path,
        metadata: dict[str, Any],
        model_config: Any,
        providers: list[str] | None = None,
        threads: int | None = None,
    ):
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ExportError(
                f"{path}: running an ONNX export needs onnxruntime: "
                f"pip install 'ordinalclip[runtime]' ({err})"
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
        self._check_graph(sidecar_path(path))

    def _check_graph(self, sidecar: Path) -> None:
        """The sidecar's preprocess size and rank count against the graph's fixed input / output dims, so a
        disagreeing pair fails here, naming the entry, and not with a traceback at the first batch."""
        inputs = {i.name: i for i in self.session.get_inputs()}
        if self.input_name not in inputs:
            raise ExportError(
                f"{sidecar}: entry 'onnx.input' {self.input_name!r} is not an input of {self.path} "
                f"(it has {sorted(inputs)})"
            )
        in_shape = list(inputs[self.input_name].shape)
        size = self.preprocess.get("size")
        if self.takes_images and size is not None and len(in_shape) == 4:
            fixed = [d for d in in_shape[2:] if isinstance(d, int)]
            if any(d != int(size) for d in fixed):
                raise ExportError(
                    f"{sidecar}: entry 'preprocess.size' is {size} but the graph {self.path} takes "
                    f"inputs of shape {in_shape}"
                )
        out_shape = list(self.session.get_outputs()[0].shape)
        classes = out_shape[-1] if out_shape else None
        if isinstance(classes, int) and classes != self.num_ranks:
            raise ExportError(
                f"{sidecar}: entry 'num_ranks' is {self.num_ranks} but the graph {self.path} gives "
                f"outputs of shape {out_shape}"
            )

    @property
    def takes_images(self) -> bool:
        """False for a precomputed-features tower (its inputs are (B, F) vectors, not images)."""
        return bool(self.model_config.image.kind != "features")

    def run(self, x: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) images or (B, F) features -> (B, C) float32 logits."""
        (logits,) = self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})
        return np.asarray(logits)

    def __call__(self, x: Any) -> Any:
        if isinstance(x, np.ndarray):
            return self.run(x)
        from ordinalclip.exports.torch_backend import as_array, as_tensors  # a tensor: torch is loaded

        return as_tensors({"logits": self.run(as_array(x))})["logits"]


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
    digest = file_sha256(path)
    if digest != meta["sha256"]:
        raise ExportError(
            f"{path}: sha256 {digest} does not match {meta['sha256']} recorded in {sidecar}; "
            "the file was modified, truncated, or belongs to another export"
        )
    return OnnxModel(path, meta, stored_model_config(meta, sidecar), providers, threads)
