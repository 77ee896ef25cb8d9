"""What a run config says about inference, shared by training and deployment: the label -> rank mapping and
the eval transform's settings.

Both the engine (training, evaluation) and the export / predict path read these; they live here, below both,
so that the deploy path never imports :mod:`ordinalclip.engine`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ordinalclip.config import DataConfig, RunConfig
from ordinalclip.config.typed import ConfigError
from ordinalclip.data.samples import DataError, RankSpace
from ordinalclip.modeling.build import read_rank_names
from ordinalclip.runtime.preprocess import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["data_rank_names", "rank_space", "tower_preprocess", "transform_settings"]


def data_rank_names(d: DataConfig) -> list[str] | None:
    """``data.rank_names``, or the names read from ``data.rank_names_file`` (a :class:`DataError` naming the
    key)."""
    if not d.rank_names_file:
        return d.rank_names
    try:
        return read_rank_names(d.rank_names_file)
    except (FileNotFoundError, ValueError) as err:
        raise DataError(f"data.rank_names_file: {err}") from None


def rank_space(cfg: RunConfig) -> RankSpace:
    """The label -> rank mapping of the data config, with ``model.num_ranks`` ranks."""
    d = cfg.data
    names = data_rank_names(d)
    try:
        return RankSpace(cfg.model.num_ranks, names=names, offset=d.rank_offset)
    except ValueError as err:
        raise ConfigError(f"data rank names vs model.num_ranks={cfg.model.num_ranks}: {err}") from None


def tower_preprocess(model: Any) -> dict[str, Any]:
    """The preprocessing constants a model's image tower declares (``{size, mean, std}``, timm towers also
    ``resize``; ``{}`` if none)."""
    return dict(getattr(getattr(model, "image_tower", None), "preprocess", None) or {})


def transform_settings(cfg: RunConfig, preprocess: Mapping[str, Any]) -> dict[str, Any]:
    """Crop size, resize and normalisation the transforms use: ``{size, resize, mean, std}``.

    ``preprocess`` is the image tower's own constants (:func:`tower_preprocess`); ``cfg.data`` overrides them.
    """
    d = cfg.data
    pre = preprocess
    size = d.image_size or int(pre.get("size") or 224)
    # a tower's own resize (timm's crop_pct) holds for its own crop size only
    own = int(pre["resize"]) if pre.get("resize") and d.image_size is None else None
    resize = d.resize or own or max(size, round(size * 256 / 224))
    if size > resize:
        raise ConfigError(f"data.image_size ({size}) is larger than data.resize ({resize})")
    if d.mean is not None and d.std is not None:
        mean, std = list(d.mean), list(d.std)
    elif d.normalize == "imagenet" or not pre.get("mean"):
        mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    else:
        mean, std = [float(v) for v in pre["mean"]], [float(v) for v in pre["std"]]
    return {"size": size, "resize": resize, "mean": mean, "std": std}
