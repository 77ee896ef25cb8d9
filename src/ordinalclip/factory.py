"""``ordinalclip.create_model``: a model and its eval transform from a config, like open_clip's factory.

Example::

    >>> import ordinalclip as oc
    >>> model, transform = oc.create_model("tiny")      # a built-in config name, a .yaml file or a config
    >>> type(model).__name__, transform.transforms[1].size
    ('OrdinalCLIP', (32, 32))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

from ordinalclip.config import RunConfig, load_run_config
from ordinalclip.config.typed import apply_overrides, from_dict, to_dict
from ordinalclip.modeling.build import build_model
from ordinalclip.modeling.config import ModelConfig
from ordinalclip.run_settings import tower_preprocess, transform_settings

__all__ = ["create_model"]


def create_model(
    name_or_config: str | os.PathLike[str] | RunConfig | ModelConfig,
    overrides: Iterable[str] = (),
    device: Any = "cpu",
) -> tuple[nn.Module, Callable[[Any], Any] | None]:
    """``(model, transform)`` for a built-in config name (``"tiny"``, ``"morph"``), a ``.yaml`` path, a
    :class:`RunConfig` or a :class:`ModelConfig`, with ``key.path=value`` overrides.

    The model is untrained apart from its pretrained towers (as :func:`ordinalclip.build_model` builds it),
    in eval mode on ``device``; ``transform`` maps a PIL image to the (3, S, S) tensor the model takes (the
    run's eval transform: resize, centre crop, normalise), or is None for a precomputed-features tower.
    """
    overrides = list(overrides)
    if isinstance(name_or_config, ModelConfig):
        cfg = RunConfig(model=name_or_config)
    elif isinstance(name_or_config, RunConfig):
        cfg = name_or_config
    else:
        cfg = load_run_config([name_or_config], overrides)
        overrides = []
    if overrides:
        cfg = from_dict(RunConfig, apply_overrides(to_dict(cfg), overrides))
    model = build_model(cfg.model).to(device).eval()
    if cfg.model.image.kind == "features":
        return model, None
    from ordinalclip.data.images import build_transforms

    return model, build_transforms(False, **transform_settings(cfg, tower_preprocess(model)))
