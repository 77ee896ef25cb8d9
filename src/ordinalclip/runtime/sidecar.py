"""The export format's sidecar: names, paths, digests and the checks of every entry (torch-free).

An export is two files side by side:

* ``model.safetensors``: the image tower's tensors under ``image_tower.*``, ``prototypes`` (C, E) as trained
  (raw; normalised on use, as in training) and ``log_logit_scale`` (a 0-d tensor);
  (or ``model.onnx``: the same head as one ONNX graph ``images (B, 3, H, W) -> logits (B, C)``, dynamic B,
  run by any ONNX runtime; its sidecar is ``model.onnx.json``, so both formats can share a folder);
* ``model.json``: format name and version, the ordinalclip version, the :class:`ModelConfig` (enough to
  rebuild the tower's architecture), C, the rank values and names, the preprocessing, the creation time, the
  sha256 of the weights file, and ``sidecar_sha256``: the sha256 of the sidecar's own content (every other
  entry, as JSON with sorted keys, ``separators=(",", ":")`` and ASCII escapes), so that an edited number (a
  rank value, the crop size) cannot silently shift predictions; and ``prediction``, the model's headline
  prediction (``"expectation"`` or ``"argmax"``, the run's ``trainer.prediction``) that ``predict`` and
  ``serve`` lead with.

Format version rule: an entry added within a version is optional, and a reader gives a sidecar without it
the entry's stated default, so every sidecar of that version keeps loading; older readers, which ignore
entries they do not know, still load newer sidecars of the same version. A change an older reader would
misread bumps :data:`FORMAT_VERSION`. ``prediction`` came within version 1; a sidecar without it reads as
``"argmax"`` (:data:`OLD_EXPORT_PREDICTION`): what such exports showed first, and the prediction their
checkpoints were chosen on (``trainer.monitor`` was ``val_mae_max`` then).

Reading uses JSON only, never pickle, and checks every sidecar entry (types, ranges, lengths), naming the file
and the entry of anything wrong. This module is part of the deploy runtime: it imports no torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ordinalclip import __version__
from ordinalclip.config.typed import ConfigError, from_dict
from ordinalclip.errors import ExportError
from ordinalclip.modeling.config import ModelConfig

__all__ = [
    "EXPORT_FORMATS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "OLD_EXPORT_PREDICTION",
    "PREDICTIONS",
    "ExportError",
    "export_format",
    "export_prediction",
    "read_export_metadata",
    "read_sealed",
    "sidecar_digest",
    "sidecar_path",
]

log = logging.getLogger(__name__)

FORMAT_NAME = "ordinalclip-export"
FORMAT_VERSION = 1
PREDICTIONS = ("expectation", "argmax")  # the values of a headline prediction (trainer.prediction resolved)
OLD_EXPORT_PREDICTION = "argmax"  # the headline of a sidecar written without a 'prediction' entry


def export_prediction(meta: Mapping[str, Any]) -> str:
    """The headline prediction of a (checked) sidecar: its ``prediction`` entry, else
    :data:`OLD_EXPORT_PREDICTION` (see the format version rule above)."""
    return str(meta.get("prediction") or OLD_EXPORT_PREDICTION)


def read_sealed(path: Path, meta: Mapping[str, Any], sidecar: Path) -> bytes:
    """The bytes of an export's weights or graph file ``path``, read once and checked against the sha256 that
    its (checked) sidecar ``meta`` records: the bytes checked are the bytes a loader uses, so a file swapped
    between the check and the load cannot slip through."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta["sha256"]:
        raise ExportError(
            f"{path}: sha256 {digest} does not match {meta['sha256']} recorded in {sidecar}; the file was "
            "modified, truncated, or belongs to another export"
        )
    return data


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
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


def check_preprocess(preprocess: Mapping[str, Any] | None, images: bool) -> dict[str, Any]:
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


def export_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
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


def stored_model_config(meta: dict[str, Any], sidecar: Path) -> ModelConfig:
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
    if "prediction" in meta and meta["prediction"] not in PREDICTIONS:
        raise _field_error(sidecar, "prediction", f"one of {list(PREDICTIONS)}", meta["prediction"])
    if meta.get("extra") is not None and not isinstance(meta["extra"], dict):
        raise _field_error(sidecar, "extra", "a mapping", meta["extra"])
    if not isinstance(meta["model"], dict):
        raise _field_error(sidecar, "model", "a mapping (the model config)", meta["model"])
    cfg = stored_model_config(meta, sidecar)
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
    _, sidecar = export_paths(path)
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
