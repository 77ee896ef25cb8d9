""":class:`Predictor`: one model (an export, a checkpoint, a run folder or a module) for repeated predictions.

Everything between an image and its prediction row is numpy: decoding (:mod:`~ordinalclip.runtime.decode`),
the sidecar's eval transform (:mod:`~ordinalclip.runtime.preprocess`), probabilities, expectation, rank, value
and name. The model itself is a *backend*: an ``.onnx`` export runs in onnxruntime
(:mod:`~ordinalclip.runtime.onnx`) and imports no torch; anything else is a torch module, loaded by
:mod:`ordinalclip.exports.torch_backend` on demand.

Predictions are in label units: with rank values ``v`` (e.g. ages 16..77) and rank probabilities ``p``,
``pred_exp = sum_i p_i v_i`` (the expectation), ``pred_max = v[r]`` and ``pred_rank = r`` with ``r`` the point
prediction (``argmax p``; for CORAL / CORN heads the number of thresholds passed, see
:func:`ordinalclip.metrics.point_predictions`). A model has one headline prediction,
:attr:`Predictor.prediction` (``"expectation"`` or ``"argmax"``: the run's ``trainer.prediction``, an export's
sidecar entry), that ``value`` / ``rank`` / ``name`` give and every display leads with.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from ordinalclip.runtime.decode import read_image, to_display_rgb
from ordinalclip.runtime.onnx import OnnxModel, load_onnx_export, softmax
from ordinalclip.runtime.predictions import headline_rank, headline_value
from ordinalclip.runtime.preprocess import preprocess_image
from ordinalclip.runtime.sidecar import PREDICTIONS, ExportError

__all__ = ["Backend", "Predictor", "is_onnx_path", "load"]

StrPath = str | os.PathLike[str]


class Backend(Protocol):
    """What :class:`Predictor` runs: ``scores(batch) -> (logits, probs, rank)`` as numpy arrays."""

    module: Any  # the model object (an OnnxModel or a torch module)
    device: str
    rank_values: list[float]
    rank_names: list[str] | None
    preprocess: dict[str, Any]
    prediction: str  # the headline prediction: "expectation" or "argmax"

    def scores(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(B, ...) inputs -> (B, C) logits (B, C-1 for CORAL/CORN), (B, C) probabilities, (B,) ranks."""
        ...


class OnnxBackend:
    """An :class:`OnnxModel` as a :class:`Backend` (softmax heads only: every export is one)."""

    def __init__(self, model: OnnxModel):
        self.module = model
        self.device = "cpu"  # onnxruntime's CPU provider; results come back as host arrays
        self.rank_values = list(model.rank_values)
        self.rank_names = model.rank_names
        self.preprocess = dict(model.preprocess)
        self.takes_images = model.takes_images
        self.prediction = model.prediction

    def scores(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        logits = self.module.run(batch)
        probs = softmax(logits)
        return logits, probs, probs.argmax(axis=1)


def is_onnx_path(model: object) -> bool:
    """True for a path to an ONNX export (``.onnx`` or its ``.onnx.json`` sidecar)."""
    if not isinstance(model, (str, os.PathLike)):
        return False
    name = Path(model).name.lower()
    return name.endswith(".onnx") or name.endswith(".onnx.json")


def _backend(model: Any, device: Any) -> Any:
    if isinstance(model, OnnxModel):
        return OnnxBackend(model)
    if is_onnx_path(model):
        return OnnxBackend(load_onnx_export(model))
    try:
        from ordinalclip.exports.torch_backend import torch_backend  # checkpoints, .safetensors, modules
    except ModuleNotFoundError as err:  # the runtime install (ordinalclip-runtime) has no torch
        raise ExportError(
            f"{model}: only .onnx exports run on the ordinalclip runtime; this needs the full install with "
            f"torch: pip install ordinalclip ({err})"
        ) from None
    return torch_backend(model, device)


def _device_keyword(device: Any, map_location: Any, where: str) -> Any:
    if map_location is None:
        return device
    warnings.warn(
        f"{where}(map_location=...) is deprecated; use device=...", DeprecationWarning, stacklevel=3
    )
    return map_location


class Predictor:
    """A model loaded once for repeated predictions (notebooks, services).

    Args:
        model: an export (``.safetensors``, ``.onnx`` or its ``.json``), a training checkpoint (``.ckpt``) or
            run folder, or a module (e.g. :func:`ordinalclip.load_export`'s result, or a head with
            ``num_ranks``). An ``.onnx`` export runs in onnxruntime without importing torch.
        device: where a torch model runs (an ONNX graph runs on the CPU).
        rank_values: override the label value of each rank (C floats).
        preprocess: override ``{"size", "resize", "mean", "std"}`` of the eval transform.
        prediction: override the headline prediction, ``"expectation"`` or ``"argmax"`` (default: the
            model's, see :attr:`prediction`).
        map_location: deprecated spelling of ``device``.

    Attributes:
        prediction: the headline prediction that :meth:`predict`'s ``value`` / ``rank`` / ``name`` give: a
            checkpoint's ``trainer.prediction``, an export's sidecar ``prediction`` (``"argmax"`` for a
            sidecar written without one), else ``"expectation"`` (the default config's).
    """

    def __init__(
        self,
        model: Any,
        device: Any = "cpu",
        rank_values: Sequence[float] | None = None,
        preprocess: Mapping[str, Any] | None = None,
        prediction: str | None = None,
        *,
        map_location: Any = None,
    ):
        backend = _backend(model, _device_keyword(device, map_location, "Predictor"))
        self.backend = backend
        self.model = backend.module
        self.device = backend.device
        self.output_kind: str = getattr(backend.module, "output_kind", "softmax")
        values = rank_values if rank_values is not None else backend.rank_values
        self.rank_values = [float(v) for v in values]
        names = backend.rank_names
        self.rank_names = list(names) if names is not None else None
        self.preprocess = dict(preprocess if preprocess is not None else backend.preprocess)
        self.prediction = str(prediction if prediction is not None else backend.prediction)
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {list(PREDICTIONS)}, got {self.prediction!r}")
        num_ranks = getattr(backend.module, "num_ranks", None)
        if num_ranks is not None and len(self.rank_values) != int(num_ranks):
            raise ValueError(f"{len(self.rank_values)} rank values for a model with {num_ranks} ranks")
        self._values = np.asarray(self.rank_values, dtype=np.float32)

    @property
    def num_ranks(self) -> int:
        return len(self.rank_values)

    @property
    def takes_images(self) -> bool:
        return bool(self.preprocess)

    def _need_images(self) -> None:
        if not self.takes_images:
            raise ValueError(
                "this model takes precomputed feature vectors, not images (its tower is 'features'); "
                "pass arrays or tensors with preprocessed=True"
            )

    def preprocess_image(self, img: Image.Image) -> np.ndarray:
        """A PIL image -> the model's (3, size, size) float32 input (decoded as a viewer shows it, then the
        eval transform in numpy; the same pixels as :meth:`transform`)."""
        self._need_images()
        return preprocess_image(to_display_rgb(img), self.preprocess)

    def transform(self) -> Any:
        """The eval transform as a torchvision ``Compose`` (imports torch): Resize((r, r)) -> CenterCrop(size)
        -> ToTensor -> Normalize."""
        self._need_images()
        from ordinalclip.exports.torch_backend import eval_transform

        return eval_transform(self.preprocess)

    def predict_arrays(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Predictions for a preprocessed (B, 3, H, W) batch (or (B, F) features), as numpy arrays.

        Returns ``logits`` (B, C) (B, C-1 for CORAL/CORN), ``probs`` (B, C), ``pred_exp`` (B,) expectation
        over the rank values, ``pred_max`` (B,) value of the predicted rank, ``exp_rank`` (B,) expectation
        over the rank indices, ``pred_rank`` (B,) predicted rank index (argmax; CORAL / CORN: number of
        thresholds passed), and the headline (:attr:`prediction`): ``value`` (B,) in label units and
        ``rank`` (B,) its rank index (the expectation: rounded to the nearest rank).
        """
        logits, probs, rank = self.backend.scores(np.asarray(batch, dtype=np.float32))
        if probs.shape[1] != self.num_ranks:
            raise ValueError(
                f"the model gives {probs.shape[1]} rank probabilities but there are "
                f"{self.num_ranks} rank values"
            )
        rank = rank.astype(np.int64)
        probs = probs.astype(np.float32, copy=False)
        out = {
            "logits": logits,
            "probs": probs,
            "pred_exp": probs @ self._values,
            "exp_rank": probs @ np.arange(self.num_ranks, dtype=np.float32),
            "pred_max": self._values[rank],
            "pred_rank": rank,
        }
        out["value"] = headline_value(self.prediction, out["pred_exp"], out["pred_max"]).astype(np.float32)
        out["rank"] = headline_rank(self.prediction, out["exp_rank"], rank)
        return out

    def predict_batch(self, batch: Any) -> dict[str, Any]:
        """:meth:`predict_arrays` for a numpy array or a torch tensor; a tensor in gives CPU tensors out."""
        if isinstance(batch, np.ndarray):
            return self.predict_arrays(batch)
        from ordinalclip.exports.torch_backend import as_array, as_tensors  # a tensor: torch is loaded

        return as_tensors(self.predict_arrays(as_array(batch)))

    def prepare(self, images: Sequence[Any], preprocessed: bool = False) -> np.ndarray:
        """Images -> the model's (B, ...) float32 input batch.

        PIL images get :meth:`preprocess_image`. Torch tensors are (3, H, W) floats in [0, 1] (what
        ``ToTensor`` gives) and get the same resize, crop and normalisation (torchvision's tensor ops); with
        ``preprocessed=True`` arrays and tensors are used as they are.
        """
        prepared: list[np.ndarray] = []
        for i, img in enumerate(images):
            if isinstance(img, Image.Image):
                if preprocessed:
                    raise TypeError(f"images[{i}] is a PIL image but preprocessed=True expects arrays")
                prepared.append(self.preprocess_image(img))
            elif isinstance(img, np.ndarray) and preprocessed:
                prepared.append(img.astype(np.float32, copy=False))
            elif hasattr(img, "detach"):  # a torch tensor
                from ordinalclip.exports.torch_backend import as_array, tensor_transform

                if not preprocessed:
                    self._need_images()
                    img = tensor_transform(self.preprocess)(img)
                prepared.append(as_array(img))
            else:
                raise TypeError(
                    f"images[{i}] is a {type(img).__name__}; expected a PIL image or a tensor (or, with "
                    "preprocessed=True, an array)"
                )
        return np.stack(prepared).astype(np.float32, copy=False)

    def predict_images(
        self, images: Sequence[Any], preprocessed: bool = False, batch_size: int = 64
    ) -> dict[str, np.ndarray]:
        """Predictions for a list of images, in order, as numpy arrays (keys and shapes of
        :meth:`predict_arrays`); inputs as in :meth:`prepare`."""
        if not images:
            raise ValueError("predict_images got no images")
        parts = [
            self.predict_arrays(self.prepare(images[i : i + batch_size], preprocessed))
            for i in range(0, len(images), batch_size)
        ]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def predict(self, images: Any) -> list[dict[str, Any]]:
        """Predictions for one image or a list of them, one plain dict per image (JSON-ready), the headline
        prediction (:attr:`prediction`) first::

            {"prediction": "expectation", "value": 31.2, "rank": 15, "name": "31",
             "expectation": 31.2, "exp_rank": 15.2, "pred_value": 32.0, "pred_rank": 16, "pred_name": "32",
             "probabilities": [C floats]}

        ``value`` is the headline in label units, ``rank`` its rank index (the expectation: rounded to the
        nearest rank) and ``name`` that rank's name (None without names); ``expectation`` is
        ``sum_i p_i v_i`` over the rank values and ``exp_rank`` over the rank indices; ``pred_value``,
        ``pred_rank`` and ``pred_name`` are the argmax's (CORAL / CORN: thresholds passed). Images are file
        paths, PIL images or (3, H, W) tensors in [0, 1]; features models take (F,) arrays or tensors.
        """
        single = isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)) or hasattr(images, "detach")
        items: list[Any] = [images] if single else list(images)
        if not items:
            raise ValueError("predict got no inputs")
        if not self.takes_images:
            return self.rows(self.predict_images(items, preprocessed=True))
        opened = [read_image(x) if isinstance(x, (str, os.PathLike)) else x for x in items]
        return self.rows(self.predict_images(opened))

    def rows(self, out: Mapping[str, Any]) -> list[dict[str, Any]]:
        """:meth:`predict_arrays` output as one JSON-ready dict per image (see :meth:`predict`)."""
        names = self.rank_names
        rows = []
        for value, rank, exp, exp_rank, top_value, top, probs in zip(
            out["value"].tolist(),
            out["rank"].tolist(),
            out["pred_exp"].tolist(),
            out["exp_rank"].tolist(),
            out["pred_max"].tolist(),
            out["pred_rank"].tolist(),
            out["probs"].tolist(),
        ):
            rows.append(
                {
                    "prediction": self.prediction,
                    "value": value,
                    "rank": rank,
                    "name": names[rank] if names is not None else None,
                    "expectation": exp,
                    "exp_rank": exp_rank,
                    "pred_value": top_value,
                    "pred_rank": top,
                    "pred_name": names[top] if names is not None else None,
                    "probabilities": probs,
                }
            )
        return rows


def load(model: Any, device: Any = "cpu", *, map_location: Any = None) -> Predictor:
    """A :class:`Predictor` for anything that holds a model: a checkpoint (``.ckpt``), a run folder, an export
    (``.safetensors`` or ``.onnx``) or a module: ``ordinalclip.load("model.onnx").predict(["a.jpg"])``.
    ``map_location`` is the deprecated spelling of ``device``."""
    return Predictor(model, device=_device_keyword(device, map_location, "load"))
