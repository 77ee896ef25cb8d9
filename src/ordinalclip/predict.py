"""``ordinalclip predict``: every image of a folder, list file or CSV through a model, into a predictions CSV.

Torch-free for an ``.onnx`` export: images are decoded and preprocessed in PIL + numpy and run by the
:class:`~ordinalclip.runtime.predictor.Predictor`'s backend (onnxruntime, or torch for checkpoints and
safetensors exports). The CSV's columns are those of :mod:`ordinalclip.runtime.predictions`: the model's
headline prediction first (``prediction``, ``value``, ``rank``, ``rank_name``), then both predictions, each
column naming its unit (``exp_value`` / ``pred_value`` in label units, ``exp_rank`` / ``pred_rank`` in rank
indices).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ordinalclip.data.samples import (
    IMAGE_EXTENSIONS,
    DataError,
    Sample,
    check_files,
    column_index,
    read_csv_rows,
)
from ordinalclip.errors import NonFiniteOutputError
from ordinalclip.fileio import atomic_write
from ordinalclip.runtime.decode import read_image
from ordinalclip.runtime.predictions import PredictionsWriter
from ordinalclip.runtime.predictor import Predictor, load
from ordinalclip.runtime.sidecar import sidecar_path

__all__ = ["InputImage", "Predictor", "load", "predict", "read_inputs"]

log = logging.getLogger(__name__)

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
    * one image file (an image extension): that image, named as given;
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
        raise DataError(
            f"inputs not found: {src} (expected a folder of images, an image, a list file or a CSV)"
        )
    if src.suffix.lower() in {e.lower() for e in IMAGE_EXTENSIONS}:
        # an image is never a list file; read as one it failed with "not valid UTF-8"
        return [InputImage(str(inputs), str(src), None, str(src))]
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


def _input_files(model_path: StrPath, inputs: StrPath) -> list[Path]:
    """Every file ``predict`` reads: the model (its sidecar, ONNX external data, a run folder's checkpoints
    and config) and the input list or CSV."""
    model = Path(model_path)
    files = [model]
    name = model.name.lower()
    if name.endswith(".onnx.json"):
        files += [model.with_name(model.name[: -len(".json")])]
    elif name.endswith(".json"):
        files += [model.with_suffix(".safetensors")]
    elif model.suffix.lower() in (".onnx", ".safetensors"):
        files += [sidecar_path(model)]
    files += [f.with_name(f.name + ".data") for f in files if f.suffix.lower() == ".onnx"]
    if model.is_dir():  # a run folder: its checkpoints and config
        files += sorted(model.rglob("*.ckpt")) + [model / "config.yaml"]
    if not Path(inputs).is_dir():
        files.append(Path(inputs))
    return files


def _refuse_overwriting_inputs(out_csv: StrPath, model_path: StrPath, inputs: StrPath) -> None:
    """A ``DataError`` when ``out_csv`` is one of the files the command reads (it would be replaced by
    CSV text: a model lost, or the input list rewritten under the run)."""
    out = Path(out_csv)
    for path in _input_files(model_path, inputs):
        same = out.resolve() == path.resolve()
        if not same and out.exists() and path.exists():
            with contextlib.suppress(OSError):
                same = os.path.samefile(out, path)  # a hard link, or another spelling of one file
        if same:
            raise DataError(f"output {out} is {path}, an input of this command; choose another --out file")


def _decode(item: InputImage, predictor: Predictor) -> np.ndarray | str:
    """One input -> the model's input array, or (for a file that cannot be decoded) the reason."""
    try:
        return predictor.preprocess_image(read_image(item.file, item.source))
    except FileNotFoundError:
        return f"image file not found: {item.file}"
    # PIL's decoders raise a zoo of types (OSError, SyntaxError, ValueError, struct.error, EOFError,
    # DecompressionBombError, ...) for bad files; all of them mean "this file is not a usable image".
    except Exception as err:
        return f"cannot read image {item.file}: {type(err).__name__}: {err}"


def _bad_list(bad: list[tuple[InputImage, str]], limit: int | None) -> str:
    shown = bad if limit is None else bad[:limit]
    lines = [f"  {it.source}: {why}" for it, why in shown]
    if len(shown) < len(bad):
        lines.append(f"  ... and {len(bad) - len(shown)} more")
    return "\n".join(lines)


def _batches(
    items: list[InputImage], predictor: Predictor, batch_size: int, workers: int, on_error: str
) -> Iterator[tuple[list[InputImage], np.ndarray]]:
    """Decoded batches in input order; decoding runs on ``workers`` threads (PIL releases the GIL).

    An unreadable image is left out (``on_error="skip"``: every one named in the log at the end) or, by
    default, stops the predictions after decoding the rest, so that the one error names every bad file."""
    bad: list[tuple[InputImage, str]] = []
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            good: list[InputImage] = []
            arrays: list[np.ndarray] = []
            for item, out in zip(chunk, pool.map(lambda it: _decode(it, predictor), chunk)):
                if isinstance(out, str):
                    bad.append((item, out))
                else:
                    good.append(item)
                    arrays.append(out)
            if good and (on_error == "skip" or not bad):
                yield good, np.stack(arrays)
    if bad and on_error != "skip":
        raise DataError(f"{len(bad)} of {len(items)} images cannot be read:\n" + _bad_list(bad, 20))
    if bad:
        log.warning("skipped %d of %d unreadable images:\n%s", len(bad), len(items), _bad_list(bad, None))


def predict(
    model_path: StrPath,
    inputs: StrPath,
    out_csv: StrPath,
    probabilities: bool = False,
    batch_size: int = 64,
    device: Any = "cpu",
    num_workers: int = 0,
    *,
    root: StrPath | None = None,
    path_column: str = "path",
    label_column: str = "label",
    on_error: Literal["raise", "skip"] = "raise",
) -> Path:
    """Predict every image of ``inputs`` (see :func:`read_inputs`) and write ``out_csv``.

    Columns (:mod:`ordinalclip.runtime.predictions`): ``path``, ``label`` (only when the inputs have labels;
    as written there), the headline prediction (:attr:`Predictor.prediction`): ``prediction`` (its name),
    ``value`` (label units), ``rank`` (rank index), ``rank_name`` (when the model has rank names); then
    ``exp_value``, ``pred_value`` (label units), ``exp_rank``, ``pred_rank`` (rank indices), and with
    ``probabilities`` also ``p_0 .. p_{C-1}``. Missing files are all reported at once
    before anything runs; an unreadable image stops with its file and line, or is left out of the CSV (and
    logged) with ``on_error="skip"``. ``num_workers``: threads decoding images (0: one). The CSV is written
    atomically.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    _refuse_overwriting_inputs(out_csv, model_path, inputs)
    predictor = Predictor(model_path, device=device)
    if not predictor.takes_images:
        raise ValueError(
            f"{model_path} takes precomputed feature vectors, not images; predict needs an image model"
        )
    items = read_inputs(inputs, root=root, path_column=path_column, label_column=label_column)
    check_files([Sample(it.file, i, it.source) for i, it in enumerate(items)])
    has_labels = any(it.label is not None for it in items)

    def write(tmp: Path) -> None:
        # streamed to the temporary file, so a million-image folder does not sit in memory
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = PredictionsWriter(
                fh,
                label=has_labels,
                values=True,
                num_probs=predictor.num_ranks if probabilities else 0,
                prediction=predictor.prediction,
                rank_names=predictor.rank_names,
            )
            for chunk, batch in _batches(items, predictor, batch_size, num_workers, on_error):
                out = predictor.predict_arrays(batch)
                bad = ~np.isfinite(out["logits"]).all(axis=1)
                if bad.any():  # NaN rows would be written as "nan" predictions in a run that exits 0
                    first = chunk[int(np.flatnonzero(bad)[0])]
                    raise NonFiniteOutputError(
                        "images of this batch",
                        int(bad.sum()),
                        int(bad.size),
                        f"{first.name} ({first.source})",
                    )
                for j, item in enumerate(chunk):
                    writer.write(
                        item.name,
                        out["probs"][j] if probabilities else None,
                        label=item.label,
                        exp_value=out["pred_exp"][j],
                        pred_value=out["pred_max"][j],
                        exp_rank=out["exp_rank"][j],
                        pred_rank=out["pred_rank"][j],
                    )

    out_path = Path(out_csv)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(out_path, write)
