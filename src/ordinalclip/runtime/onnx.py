"""An ONNX export run by onnxruntime: numpy in, numpy out, no torch."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ordinalclip.runtime.sidecar import (
    ONNX_INPUT,
    ExportError,
    export_prediction,
    read_export_metadata,
    read_sealed,
    sidecar_path,
    stored_model_config,
)

__all__ = ["OnnxModel", "load_onnx_export", "softmax"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """(B, C) logits -> (B, C) probabilities, in float32, stable for large logits."""
    x = np.asarray(logits, dtype=np.float32)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# Field numbers of onnx.proto (ONNX IR), for the few messages that can hold a tensor: the model's graph, its
# functions and training graphs; a graph's nodes, initializers and sparse initializers; a node's attributes;
# an attribute's tensor(s), sparse tensor(s) and subgraph(s); a sparse tensor's values and indices.
_MODEL, _GRAPH, _NODE, _ATTRIBUTE, _FUNCTION, _TRAINING, _TENSOR, _SPARSE = range(8)
_CHILDREN: dict[int, dict[int, int]] = {
    _MODEL: {7: _GRAPH, 25: _FUNCTION, 20: _TRAINING},  # ModelProto
    _TRAINING: {1: _GRAPH, 2: _GRAPH},  # TrainingInfoProto: initialization, algorithm
    _GRAPH: {1: _NODE, 5: _TENSOR, 15: _SPARSE},  # GraphProto: node, initializer, sparse_initializer
    _FUNCTION: {7: _NODE, 11: _ATTRIBUTE},  # FunctionProto: node, attribute_proto (defaults)
    _NODE: {5: _ATTRIBUTE},  # NodeProto: attribute
    _ATTRIBUTE: {5: _TENSOR, 6: _GRAPH, 10: _TENSOR, 11: _GRAPH, 22: _SPARSE, 23: _SPARSE},  # t g tensors ...
    _SPARSE: {1: _TENSOR, 2: _TENSOR},  # SparseTensorProto: values, indices
}
_TENSOR_NAME, _EXTERNAL_DATA, _DATA_LOCATION, _EXTERNAL = 8, 13, 14, 1  # TensorProto fields; EXTERNAL = 1


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """The protobuf varint at ``pos`` -> (value, position after it)."""
    value = shift = 0
    while shift < 70:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise ValueError("varint longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[tuple[int, int | None, memoryview | None]]:
    """Yield ``(field number, varint value or None, sub-buffer or None)`` of one protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, value, None
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError(f"field {number} runs past the end of its message")
            yield number, None, buf[pos : pos + size]
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:  # groups (3, 4) are not in onnx.proto; 6, 7 are not wire types
            raise ValueError(f"wire type {wire} in field {number}")
    if pos != len(buf):
        raise ValueError("a fixed-size field runs past the end of its message")


def _external_tensors(graph: bytes) -> list[tuple[str, str]]:
    """``(tensor name, location)`` of every tensor in a serialised ONNX model that keeps its data outside the
    model bytes (``data_location: EXTERNAL``, or any ``external_data`` entry), wherever it sits: initializers,
    sparse initializers, node attributes (``Constant``), subgraphs (``If``, ``Loop``, ``Scan``), functions.
    A walk of the protobuf wire format (the runtime has no ``onnx`` package), with a stack, not recursion, so
    a deeply nested hostile graph cannot exhaust Python's stack. Raises ``ValueError`` on malformed bytes."""
    found: list[tuple[str, str]] = []
    stack: list[tuple[int, memoryview]] = [(_MODEL, memoryview(graph))]
    while stack:
        kind, buf = stack.pop()
        if kind == _TENSOR:
            name, location, external = "", "", False
            for number, value, sub in _fields(buf):
                if number == _TENSOR_NAME and sub is not None:
                    name = bytes(sub).decode("utf-8", "replace")
                elif number == _DATA_LOCATION and value == _EXTERNAL:
                    external = True
                elif number == _EXTERNAL_DATA and sub is not None:
                    external = True
                    entry = {k: v for k, _, v in _fields(sub) if v is not None}  # key = 1, value = 2
                    if bytes(entry.get(1, b"")) == b"location":
                        location = bytes(entry.get(2, b"")).decode("utf-8", "replace")
            if external:
                found.append((name, location))
            continue
        children = _CHILDREN[kind]
        inner = [(children[n], sub) for n, _, sub in _fields(buf) if sub is not None and n in children]
        stack.extend(reversed(inner))  # popped in file order, so the first one found is the first in the file
    return found


def _refuse_external_data(graph: bytes, path: Path) -> None:
    """An ``ExportError`` naming ``path`` and the tensor when the graph keeps any tensor in an external data
    file. The sidecar's sha256 seals the graph's bytes only, so data read from beside it would be unchecked
    (and onnxruntime, given bytes, would look for it in the working directory); an ordinalclip export always
    holds every tensor inside the graph."""
    try:
        external = _external_tensors(graph)
    except ValueError as err:
        raise ExportError(f"{path}: not a readable ONNX graph ({err})") from None
    if external:
        name, location = external[0]
        more = f" (and {len(external) - 1} more tensors)" if len(external) > 1 else ""
        where = f"an external file {location!r}" if location else "an external file"
        raise ExportError(
            f"{path}: tensor {name!r}{more} keeps its data in {where}; external data "
            "is outside the sha256 the sidecar records, so it is refused: export the model again with "
            "`ordinalclip export` (one self-contained graph)"
        )


class OnnxModel:
    """An ONNX export in an onnxruntime session, with what inference needs from its sidecar.

    ``graph``: the serialised model, the bytes whose sha256 was checked (onnxruntime does not read ``path``).
    Calling it maps ``(B, 3, H, W)`` images (or ``(B, F)`` features) to ``(B, C)`` logits; a numpy array in
    gives a numpy array, a torch tensor in gives a torch tensor (for comparisons with the torch model).
    Attributes: ``num_ranks``, ``rank_values``, ``rank_names``, ``preprocess``, ``model_config`` (the stored
    :class:`~ordinalclip.modeling.config.ModelConfig`), ``metadata`` (the whole sidecar), ``path``.
    """

    output_kind = "softmax"

    def __init__(
        self,
        path: Path,
        graph: bytes,
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
                graph, options, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own exception types for a corrupt or foreign graph
            raise ExportError(f"{path}: onnxruntime cannot load this graph: {err}") from None
        described = metadata.get("onnx") or {}
        self.input_name = described.get("input", ONNX_INPUT)
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

    @property
    def prediction(self) -> str:
        """The headline prediction the sidecar records (``"expectation"`` or ``"argmax"``; see
        :func:`~ordinalclip.runtime.sidecar.export_prediction`)."""
        return export_prediction(self.metadata)

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
    of the graph must match it; onnxruntime gets the bytes that were hashed (the file is read once), and a
    graph that keeps any tensor's data in an external file (beside it, outside that sha256) is refused.
    ``threads``: onnxruntime's intra-op threads (default: its own choice, all
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
    graph = read_sealed(path, meta, sidecar)  # these checked bytes are what onnxruntime runs
    _refuse_external_data(graph, path)
    return OnnxModel(path, graph, meta, stored_model_config(meta, sidecar), providers, threads)
