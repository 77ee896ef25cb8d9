"""Inference on images with an export or a training checkpoint: a CSV of predictions, or tensors in Python.

Predictions are in label units: with rank values ``v`` (e.g. ages 16..77) and rank probabilities ``p``,
``pred_exp = sum_i p_i v_i`` (the expectation), ``pred_max = v[r]`` and ``pred_rank = r`` with ``r`` the point
prediction (``argmax p``; for CORAL / CORN heads the number of thresholds passed, see
:func:`ordinalclip.metrics.point_predictions`).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms as T

from ordinalclip.data.images import ImageDataset, build_transforms, to_display_rgb
from ordinalclip.data.samples import (
    IMAGE_EXTENSIONS,
    DataError,
    Sample,
    check_files,
    column_index,
    read_csv_rows,
)
from ordinalclip.export import ExportError, OnnxModel, head_from_checkpoint, load_any_export
from ordinalclip.fileio import atomic_write
from ordinalclip.metrics import NonFiniteOutputError, point_predictions
from ordinalclip.modeling.ordinalclip import OrdinalCLIP

__all__ = ["InputImage", "LoadedModel", "Predictor", "load", "load_model", "predict", "read_inputs"]

StrPath = str | os.PathLike[str]


@dataclass(frozen=True)
class InputImage:
    """One image to predict: ``name`` as written to the CSV, ``file`` to open, optional raw ``label``."""

    name: str
    file: str
    label: str | None
    source: str


def _list_lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"list file not found: {path}") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 text ({err.reason} at byte {err.start})") from None
    return list(enumerate(text.splitlines(), start=1))


def read_inputs(
    inputs: StrPath, root: StrPath | None = None, path_column: str = "path", label_column: str = "label"
) -> list[InputImage]:
    """The images named by ``inputs``.

    * a folder: every image below it (recursive), sorted; names are relative to the folder;
    * a ``.csv`` file with a header: the ``path_column`` column, and ``label_column`` where the header has it;
    * any other file: a list file, ``path [label ...]`` per line (the reference format) or just ``path``;
      blank lines and ``#`` comments are skipped.

    List and CSV paths are relative to ``root`` if given, else to the list file's folder; names are written as
    they appear in the file.
    """
    src = Path(inputs)
    if src.is_dir():
        exts = {e.lower() for e in IMAGE_EXTENSIONS}
        files = sorted(
            p
            for p in src.rglob("*")
            if p.is_file()
            and p.suffix.lower() in exts
            and not any(part.startswith(".") for part in p.relative_to(src).parts)
        )
        if not files:
            raise DataError(f"no images with extensions {sorted(exts)} under {src}")
        return [InputImage(p.relative_to(src).as_posix(), str(p), None, str(p)) for p in files]
    if not src.is_file():
        raise DataError(f"inputs not found: {src} (expected a folder of images, a list file or a CSV)")
    base = Path(root) if root is not None else src.parent
    items: list[InputImage] = []
    if src.suffix.lower() == ".csv":
        header, rows = read_csv_rows(src)
        i_path = column_index(header, path_column, src)
        i_label = header.index(label_column) if label_column in header else None
        for number, row in rows:
            name = row[i_path].strip()
            if not name:
                raise DataError(f"{src}:{number}: empty {path_column!r} field")
            label = row[i_label].strip() if i_label is not None else None
            items.append(InputImage(name, os.path.join(base, name), label or None, f"{src}:{number}"))
    else:
        for number, line in _list_lines(src):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            label = fields[1] if len(fields) > 1 else None
            items.append(InputImage(fields[0], os.path.join(base, fields[0]), label, f"{src}:{number}"))
    if not items:
        raise DataError(f"{src}: lists no images")
    return items


class LoadedModel(NamedTuple):
    """A model ready for inference and what its predictions need."""

    module: nn.Module  # forward(x) -> (B, C) logits (B, C - 1 for CORAL/CORN)
    rank_values: list[float]  # label value of each rank
    rank_names: list[str] | None
    preprocess: dict[str, Any]  # {"size", "resize", "mean", "std"}; {} for a features tower


def load_model(model: StrPath | nn.Module) -> LoadedModel:
    """A model for inference from an export (``.safetensors`` / ``.onnx`` / their ``.json``), a training
    checkpoint (``.ckpt``), a run folder (its best, else last, checkpoint) or a module. An OrdinalCLIP is
    frozen into its prototype head, so the text tower never runs at inference."""
    if isinstance(model, OrdinalCLIP):
        model = model.to_head()  # same logits, without running the text tower for every batch
    if isinstance(model, nn.Module):
        values = getattr(model, "rank_values", None)
        head: Any = model  # any head with num_ranks (duck-typed)
        num_ranks = int(head.num_ranks)
        values = list(values) if values is not None else [float(i) for i in range(num_ranks)]
        prep = getattr(model, "preprocess", None) or getattr(
            getattr(model, "image_tower", None), "preprocess", {}
        )
        return LoadedModel(model, values, getattr(model, "rank_names", None), dict(prep or {}))
    path = Path(model)
    if path.suffix.lower() in (".safetensors", ".json", ".onnx"):
        exported: Any = load_any_export(path)  # ExportedModel or OnnxModel: the same attributes
        return LoadedModel(exported, exported.rank_values, exported.rank_names, exported.preprocess)
    if path.suffix == ".ckpt" or path.is_dir():  # a run folder means its best (else last) checkpoint
        head, _cfg, values, names, prep = head_from_checkpoint(path)
        return LoadedModel(head, values, names, prep)
    raise ExportError(
        f"cannot tell what {path} is: expected an export (.safetensors / .onnx / .json), a "
        "Lightning checkpoint (.ckpt) or a run folder"
    )


class Predictor:
    """A model loaded once for repeated predictions (notebooks, services).

    Args:
        model: an export (``.safetensors``, ``.onnx`` or its ``.json``), a training checkpoint (``.ckpt``) or
            run folder, or a module (e.g. :func:`ordinalclip.export.load_export`'s result, or a head with
            ``num_ranks``).
        device: where to run.
        rank_values: override the label value of each rank (C floats).
        preprocess: override ``{"size", "resize", "mean", "std"}`` of the eval transform.
    """

    def __init__(
        self,
        model: StrPath | nn.Module,
        device: str | torch.device = "cpu",
        rank_values: Sequence[float] | None = None,
        preprocess: Mapping[str, Any] | None = None,
    ):
        module, values, names, prep = load_model(model)
        # an ONNX graph runs in onnxruntime on the CPU and hands back CPU tensors
        self.device = torch.device("cpu" if isinstance(module, OnnxModel) else device)
        self.model = module.to(self.device).eval()
        self.output_kind: str = getattr(module, "output_kind", "softmax")
        self.rank_values = [float(v) for v in (rank_values if rank_values is not None else values)]
        self.rank_names = list(names) if names is not None else None
        self.preprocess = dict(preprocess if preprocess is not None else prep)
        num_ranks = getattr(module, "num_ranks", None)
        if num_ranks is not None and len(self.rank_values) != int(num_ranks):
            raise ValueError(f"{len(self.rank_values)} rank values for a model with {num_ranks} ranks")
        self._values = torch.tensor(self.rank_values, dtype=torch.float32, device=self.device)

    @property
    def num_ranks(self) -> int:
        return len(self.rank_values)

    @property
    def takes_images(self) -> bool:
        return bool(self.preprocess)

    def transform(self) -> T.Compose:
        """The eval transform for PIL images: Resize((r, r)) -> CenterCrop(size) -> ToTensor -> Normalize."""
        if not self.takes_images:
            raise ValueError(
                "this model takes precomputed feature vectors, not images (its tower is 'features'); "
                "pass tensors with preprocessed=True"
            )
        p = self.preprocess
        return build_transforms(
            False, size=int(p["size"]), resize=int(p.get("resize") or p["size"]), mean=p["mean"], std=p["std"]
        )

    def _tensor_transform(self) -> T.Compose:
        p = self.preprocess
        side = int(p.get("resize") or p["size"])
        return T.Compose(
            [T.Resize((side, side)), T.CenterCrop(int(p["size"])), T.Normalize(p["mean"], p["std"])]
        )

    @torch.no_grad()
    def predict_batch(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Predictions for a preprocessed (B, 3, H, W) batch (or (B, F) features).

        Returns a dict of tensors on the CPU: ``logits`` (B, C) (B, C-1 for CORAL/CORN), ``probs`` (B, C),
        ``pred_exp`` (B,) expectation over the rank values, ``pred_max`` (B,) value of the predicted rank,
        ``pred_rank`` (B,) predicted rank index (argmax; CORAL / CORN: number of thresholds passed).
        """
        logits = self.model(batch.to(self.device))
        probs, _, rank = point_predictions(logits, self.output_kind)
        if probs.shape[1] != self.num_ranks:
            raise ValueError(
                f"the model gives {probs.shape[1]} rank probabilities but there are "
                f"{self.num_ranks} rank values"
            )
        return {
            "logits": logits.cpu(),
            "probs": probs.cpu(),
            "pred_exp": (probs @ self._values).cpu(),
            "pred_max": self._values[rank].cpu(),
            "pred_rank": rank.cpu(),
        }

    def predict_images(
        self, images: Sequence[Image.Image | torch.Tensor], preprocessed: bool = False, batch_size: int = 64
    ) -> dict[str, torch.Tensor]:
        """Predictions for a list of images, in order (see :meth:`predict_batch` for the keys and shapes).

        PIL images go through :meth:`transform`. Tensors are (3, H, W) floats in [0, 1] (what ``ToTensor``
        gives) and get the same resize, crop and normalisation; with ``preprocessed=True`` they are used as
        they are.
        """
        if not images:
            raise ValueError("predict_images got no images")
        pil = self.transform() if not preprocessed else None
        tens = self._tensor_transform() if not preprocessed else None
        prepared: list[torch.Tensor] = []
        for i, img in enumerate(images):
            if isinstance(img, Image.Image):
                if pil is None:
                    raise TypeError(f"images[{i}] is a PIL image but preprocessed=True expects tensors")
                prepared.append(pil(to_display_rgb(img)))
            elif isinstance(img, torch.Tensor):
                prepared.append(img if tens is None else tens(img))
            else:
                raise TypeError(f"images[{i}] is a {type(img).__name__}; expected a PIL image or a tensor")
        parts = [
            self.predict_batch(torch.stack(prepared[i : i + batch_size]))
            for i in range(0, len(prepared), batch_size)
        ]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def predict(self, images: ImageLike | Sequence[ImageLike]) -> list[dict[str, Any]]:
        """Predictions for one image or a list of them, one plain dict per image (JSON-ready)::

            {"expectation": 31.2, "rank": 15, "value": 31.0, "name": "31", "probabilities": [C floats]}

        ``expectation`` is ``sum_i p_i v_i`` over the rank values, ``rank`` the argmax index, ``value`` its
        rank value and ``name`` its rank name (None without names). Images are file paths, PIL images or
        (3, H, W) tensors in [0, 1]; features models take (F,) tensors.
        """
        items: list[Any] = (
            [images] if isinstance(images, (str, os.PathLike, Image.Image, torch.Tensor)) else list(images)
        )
        if not self.takes_images:
            batch = torch.stack([torch.as_tensor(x, dtype=torch.float32) for x in items]) if items else None
            if batch is None:
                raise ValueError("predict got no inputs")
            return self.rows(self.predict_batch(batch))
        opened = [_open_image(x) if isinstance(x, (str, os.PathLike)) else x for x in items]
        return self.rows(self.predict_images(opened))

    def rows(self, out: Mapping[str, torch.Tensor]) -> list[dict[str, Any]]:
        """:meth:`predict_batch` output as one JSON-ready dict per image (see :meth:`predict`)."""
        rows = []
        for exp, rank, value, probs in zip(
            out["pred_exp"].tolist(),
            out["pred_rank"].tolist(),
            out["pred_max"].tolist(),
            out["probs"].tolist(),
        ):
            name = self.rank_names[rank] if self.rank_names is not None else None
            rows.append(
                {"expectation": exp, "rank": rank, "value": value, "name": name, "probabilities": probs}
            )
        return rows


ImageLike = str | os.PathLike[str] | Image.Image | torch.Tensor


def _open_image(path: StrPath) -> Image.Image:
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"image not found: {path}") from None
    except (OSError, Image.UnidentifiedImageError) as err:
        raise DataError(f"{path}: cannot read the image ({err})") from None


def load(model: StrPath | nn.Module, device: str | torch.device = "cpu") -> Predictor:
    """A :class:`Predictor` for a checkpoint (``.ckpt``), a run folder, an export (``.safetensors`` or
    ``.onnx``) or a module: ``ordinalclip.load("model.onnx").predict(["a.jpg", "b.jpg"])``."""
    return Predictor(model, device=device)


def _number(x: float) -> str:
    return f"{x:.9g}"  # 9 significant digits round-trip a float32


def predict(
    model_path: StrPath,
    inputs: StrPath,
    out_csv: StrPath,
    probabilities: bool = False,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    *,
    root: StrPath | None = None,
    path_column: str = "path",
    label_column: str = "label",
    on_error: Literal["raise", "skip"] = "raise",
) -> Path:
    """Predict every image of ``inputs`` (see :func:`read_inputs`) and write ``out_csv``.

    Columns: ``path``, ``label`` (only when the inputs have labels; as written there), ``pred_exp``,
    ``pred_max`` (both in label units), ``pred_rank``, and with ``probabilities`` also ``p_0 .. p_{C-1}``.
    Missing files are all reported at once before anything runs; an unreadable image stops with its file and
    line, or is left out of the CSV (and logged) with ``on_error="skip"``. The CSV is written atomically.
    """
    predictor = Predictor(model_path, device=device)
    if not predictor.takes_images:
        raise ValueError(
            f"{model_path} takes precomputed feature vectors, not images; predict needs an image model"
        )
    items = read_inputs(inputs, root=root, path_column=path_column, label_column=label_column)
    samples = [Sample(it.file, i, it.source) for i, it in enumerate(items)]
    check_files(samples)
    dataset = ImageDataset(samples, transform=predictor.transform(), on_error=on_error)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    has_labels = any(it.label is not None for it in items)
    header = ["path"] + (["label"] if has_labels else []) + ["pred_exp", "pred_max", "pred_rank"]
    if probabilities:
        header += [f"p_{i}" for i in range(predictor.num_ranks)]

    def write(tmp: Path) -> None:
        # streamed to the temporary file, so a million-image folder does not sit in memory
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(header)
            for images, index in loader:
                out = predictor.predict_batch(images)
                bad = ~torch.isfinite(out["logits"]).all(dim=1)
                if bool(bad.any()):  # NaN rows would be written as "nan" predictions in a run that exits 0
                    first = items[int(index[bad][0])]
                    raise NonFiniteOutputError(
                        "images of this batch",
                        int(bad.sum()),
                        int(bad.numel()),
                        f"{first.name} ({first.source})",
                    )
                for j, i in enumerate(index.tolist()):
                    item = items[i]
                    row = [item.name] + ([item.label or ""] if has_labels else [])
                    row += [
                        _number(float(out["pred_exp"][j])),
                        _number(float(out["pred_max"][j])),
                        int(out["pred_rank"][j]),
                    ]
                    if probabilities:
                        row += [_number(float(p)) for p in out["probs"][j]]
                    writer.writerow(row)

    out_path = Path(out_csv)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(out_path, write)
