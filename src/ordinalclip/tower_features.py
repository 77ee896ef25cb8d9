"""Image features from a pretrained tower, and a head trained on them put back on that tower.

* :func:`image_features` / :func:`features` (``oc.features``, ``ordinalclip features IMAGES -o feats.npz``):
  the pretrained trunk's features of images, with the tower's own preprocessing; the ``.npz`` records the
  tower (``tower``: JSON with its kind and preprocessing) beside ``features``, ``path`` and, where known,
  ``labels`` and ``split``.
* :func:`image_model_from_features_run`: a run trained on such features (``model.image.kind: features``)
  becomes a model that takes images: the tower the features came from (recorded in the features file, or
  named) with the run's trained projection, prototypes and logit scale. Its logits on an image equal the
  features model's on that image's features.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ordinalclip.config.typed import ConfigError

__all__ = [
    "TOWERS",
    "build_pretrained_tower",
    "features",
    "image_features",
    "image_model_from_features_run",
    "recorded_tower",
    "tower_transform_settings",
]

TOWERS = ("efficientnet_lite0",)  # pretrained towers that install offline with the package's extras


def build_pretrained_tower(kind: str, output_dim: int | None = None) -> nn.Module:
    """The pretrained image tower ``kind`` (see :data:`TOWERS`), with a projection to ``output_dim`` (None:
    the trunk's own width, no projection)."""
    if kind == "efficientnet_lite0":
        from ordinalclip.modeling.backbones.efficientnet import EfficientNetLite0Tower

        return EfficientNetLite0Tower(output_dim=output_dim, pretrained=True)
    import difflib

    close = difflib.get_close_matches(kind, TOWERS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(
        f"image tower {kind!r} is not one features can be extracted with{hint}; known: {TOWERS}"
    )


def tower_transform_settings(kind: str, tower: nn.Module | None = None) -> dict[str, Any]:
    """``{size, resize, mean, std}``: the eval transform a run with image tower ``kind`` uses by default."""
    from ordinalclip.config import RunConfig
    from ordinalclip.engine.transforms import transform_settings

    cfg = RunConfig()
    cfg.model.image.kind = kind  # type: ignore[assignment]
    pre = dict(getattr(tower if tower is not None else build_pretrained_tower(kind), "preprocess", {}) or {})
    return transform_settings(cfg, pre)


@torch.no_grad()
def image_features(
    images: Sequence[str | os.PathLike[str]],
    tower: str = "efficientnet_lite0",
    batch_size: int = 32,
    cache_dir: str | os.PathLike[str] | None = None,
    preprocess: dict[str, Any] | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """``(features (N, F) float32, tower record)`` of image files with the pretrained ``tower``'s trunk.

    ``preprocess`` overrides the transform (``{size, resize, mean, std}``; default: the tower's own, as a run
    uses it). With ``cache_dir`` the features go through the same content-keyed cache as training runs
    (:class:`ordinalclip.engine.cache.FeatureCache`): an image encoded once is never encoded again.
    """
    from ordinalclip.data import ImageDataset, Sample, build_transforms
    from ordinalclip.engine.cache import FeatureCache, encode_for_cache, tower_cache_config
    from ordinalclip.modeling.config import ImageTowerConfig, ModelConfig

    if not images:
        raise ValueError("image_features got no images")
    net = build_pretrained_tower(tower).eval()
    prep = dict(preprocess) if preprocess is not None else tower_transform_settings(tower, net)
    tf = build_transforms(False, **prep)
    samples = [Sample(os.fspath(p), 0, os.fspath(p)) for p in images]
    dataset = ImageDataset(samples, tf)
    record = {"kind": tower, "preprocess": prep, "dim": int(getattr(net, "output_dim", 0))}
    if cache_dir is not None:
        # the key a training run with this tower computes (engine.cache.build_feature_cache)
        model_cfg = ModelConfig(image=ImageTowerConfig(kind=tower))  # type: ignore[arg-type]
        cache = FeatureCache(net, tower_cache_config(model_cfg), cache_dir, batch_size=batch_size)
        return cache.features(dataset), record
    out = []
    for i in range(0, len(dataset), batch_size):
        batch = torch.stack([dataset[j][0] for j in range(i, min(i + batch_size, len(dataset)))])
        out.append(encode_for_cache(net, batch).float())
    return torch.cat(out), record


def features(
    images: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str] | None = None,
    tower: str = "efficientnet_lite0",
    rank_names: Sequence[str] | None = None,
    batch_size: int = 32,
    cache_dir: str | os.PathLike[str] | None = None,
) -> np.ndarray:
    """Features (N, F) of ``images`` (a folder, a list file or CSV as ``ordinalclip predict`` reads them, or
    a list of files); with ``out`` also written as a ``.npz`` a features run reads (``data.format:
    features``).

    The ``.npz`` holds ``features``, ``path``, ``tower`` (JSON: kind, preprocessing, width) and, when every
    image has one, ``labels``: a CSV/list file's label column, or the sub-folder of a folder of rank folders;
    labels that are not integers are mapped to rank indices with ``rank_names`` (lowest first). A CSV's
    ``split`` column is kept as ``split``.
    """
    from ordinalclip.data import DataError
    from ordinalclip.data.samples import read_csv_rows
    from ordinalclip.fileio import atomic_write
    from ordinalclip.predict import read_inputs

    names: list[str]
    labels: list[str | None]
    splits: list[str] | None = None
    if isinstance(images, (str, os.PathLike)):
        src = Path(images)
        items = read_inputs(src)
        files, names = [i.file for i in items], [i.name for i in items]
        if src.is_dir():
            labels = [Path(n).parts[0] if len(Path(n).parts) == 2 else None for n in names]
        else:
            labels = [i.label for i in items]
        if src.is_file() and src.suffix.lower() == ".csv":
            header, rows = read_csv_rows(src)
            if "split" in header:
                splits = [r[header.index("split")].strip() for _, r in rows]
    else:
        files = [os.fspath(p) for p in images]
        names, labels = list(files), [None] * len(files)
    feats, record = image_features(files, tower, batch_size=batch_size, cache_dir=cache_dir)
    array = feats.numpy().astype(np.float32)
    if out is None:
        return array
    arrays: dict[str, Any] = {
        "features": array,
        "path": np.array(names),
        "tower": np.array(json.dumps(record)),
    }
    if all(label is not None for label in labels):
        if rank_names:
            index = {n: i for i, n in enumerate(rank_names)}
            unknown = sorted({str(lab) for lab in labels if lab not in index})
            if unknown:
                raise DataError(f"labels {unknown[:5]} are not among the rank names {list(rank_names)}")
            arrays["labels"] = np.array([index[str(lab)] for lab in labels], dtype=np.int64)
        elif all(str(lab).lstrip("-").isdigit() for lab in labels):
            arrays["labels"] = np.array([int(str(lab)) for lab in labels], dtype=np.int64)
        else:
            raise DataError(
                f"the labels of {images} are names ({sorted({str(lab) for lab in labels})[:5]}): pass the "
                "rank names, lowest first (--rank-names / rank_names=), to store them as rank indices"
            )
    if splits is not None:
        arrays["split"] = np.array(splits)

    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:  # a file object: np.savez would add ".npz" to a path
            np.savez(fh, **arrays)

    atomic_write(Path(out), write)
    return array


def recorded_tower(cfg: Any) -> dict[str, Any] | None:
    """The tower record (``{kind, preprocess, dim}``) of a features run's training file (``cfg`` a
    RunConfig), or None when the file is gone or has none (then name the tower)."""
    path = cfg.data.train
    if (
        cfg.data.format != "features"
        or not path
        or not str(path).endswith(".npz")
        or not Path(path).is_file()
    ):
        return None
    with np.load(path, allow_pickle=False) as npz:
        if "tower" not in npz.files:
            return None
        record: dict[str, Any] = json.loads(str(npz["tower"]))
        return record


def image_model_from_features_run(
    checkpoint: str | os.PathLike[str], tower: str | None = None
) -> tuple[nn.Module, Any, list[float], list[str] | None, dict[str, Any]]:
    """A features run's head on the image tower its features came from: ``(head, model config, rank values,
    rank names, preprocess)``, what :func:`ordinalclip.exports.write.export_loaded` takes.

    ``tower`` names the tower (:data:`TOWERS`); default: the record in the run's features file
    (:func:`features` writes it). The trained projection of the features tower becomes the image tower's
    projection (an identity becomes an explicit identity matrix), so ``head(images)`` equals the features
    model on ``image_features(images)``.
    """
    import dataclasses

    from ordinalclip.checkpoint import head_from_checkpoint
    from ordinalclip.modeling.backbones.image import FeatureTower

    head, cfg, values, names, _ = head_from_checkpoint(checkpoint)
    feature_tower = getattr(head, "image_tower", None)
    if cfg.model.image.kind != "features" or not isinstance(feature_tower, FeatureTower):
        raise ConfigError(f"{checkpoint}: not a features run (model.image.kind is {cfg.model.image.kind!r})")
    record = recorded_tower(cfg)
    if tower is None and record is None:
        raise ConfigError(
            f"{checkpoint}: its features file ({cfg.data.train}) records no image tower: name the one that "
            f"made the features (--image-tower, one of {TOWERS})"
        )
    kind = tower or str(record["kind"])  # type: ignore[index]
    net = build_pretrained_tower(kind, output_dim=feature_tower.output_dim)
    trunk_dim = int(getattr(net, "feature_dim", 0))
    if trunk_dim != feature_tower.input_dim:
        raise ConfigError(
            f"{checkpoint}: the run's features are {feature_tower.input_dim}-d but {kind} gives {trunk_dim}-d"
        )
    with torch.no_grad():
        proj = feature_tower.proj
        weight = proj.weight if isinstance(proj, nn.Linear) else torch.eye(feature_tower.input_dim)
        target: Any = net.proj
        target.weight.copy_(weight)
    head.image_tower = net.eval()
    prep = (
        dict(record["preprocess"])
        if record and record.get("kind") == kind
        else tower_transform_settings(kind, net)
    )
    # kind is one of TOWERS: build_pretrained_tower refused anything else
    image_cfg = dataclasses.replace(cfg.model.image, kind=kind, input_dim=None, project="auto")  # type: ignore[arg-type]
    model_cfg = dataclasses.replace(cfg.model, image=image_cfg, embed_dim=feature_tower.output_dim)
    return head, model_cfg, values, names, prep


def export_onto_tower(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    tower: str | None = None,
    format: str | None = None,
    quantize: str | None = None,
) -> Path | None:
    """Export a features run onto its image tower (:func:`image_model_from_features_run`), so the export
    takes images; None (nothing written) when ``checkpoint`` is not a features run, or records no tower and
    none is named. ``tower="none"`` keeps the export on features."""
    from ordinalclip.checkpoint import config_of, read_checkpoint
    from ordinalclip.exports.write import export_loaded
    from ordinalclip.runtime.sidecar import export_format

    export_format(out, format)
    if tower == "none":
        return None
    cfg = config_of(read_checkpoint(checkpoint), checkpoint)
    if cfg.model.image.kind != "features":
        if tower is not None:
            raise ConfigError(
                f"--image-tower: {checkpoint} was trained on images (model.image.kind: "
                f"{cfg.model.image.kind}); its export has its own tower already"
            )
        return None
    if tower is None and recorded_tower(cfg) is None:
        return None
    loaded = image_model_from_features_run(checkpoint, tower)
    model_cfg = loaded[1]
    return export_loaded(checkpoint, loaded, out, {"features_tower": model_cfg.image.kind}, format, quantize)
