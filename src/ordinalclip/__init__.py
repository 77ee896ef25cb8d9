"""ordinalclip: language-guided ordinal regression (OrdinalCLIP, Li et al., NeurIPS 2022).

One import for everything a user calls::

    import ordinalclip as oc

    run = oc.fit("tiny")                                   # a built-in config by name, or a .yaml file
    print(oc.evaluate(run.best_checkpoint)["metrics"])
    oc.export(run.best_checkpoint, "model.onnx")           # or "model.safetensors"; quantize="int8"
    predictor = oc.load("model.onnx")                      # also a .ckpt, a .safetensors or a run folder
    predictor.predict(["face.jpg"])                        # [{"expectation", "rank", "value", "name", ...}]
    model, transform = oc.create_model("tiny")             # an untrained model and its eval transform

Loading: ``oc.load`` takes anything that holds a model and gives a :class:`Predictor`;
``oc.load_checkpoint`` gives a training checkpoint's module and config, ``oc.load_export`` a safetensors
export's torch module; all take ``device=``.

The names are resolved on first use (PEP 562), so ``import ordinalclip`` (and ``ordinalclip --help``) does not
import torch or Lightning, and ``oc.load("model.onnx")`` never does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> (module, attribute)
_LAZY: dict[str, tuple[str, str]] = {
    "fit": ("ordinalclip.api", "fit"),
    "fit_folds": ("ordinalclip.api", "fit_folds"),
    "evaluate": ("ordinalclip.api", "evaluate"),
    "resolve_config": ("ordinalclip.api", "resolve_config"),
    "Run": ("ordinalclip.api", "Run"),
    "load_checkpoint": ("ordinalclip.checkpoint", "load_checkpoint"),
    "load": ("ordinalclip.runtime.predictor", "load"),
    "Predictor": ("ordinalclip.runtime.predictor", "Predictor"),
    "export": ("ordinalclip.exports.write", "export_model"),
    "load_export": ("ordinalclip.exports.load", "load_export"),
    "create_model": ("ordinalclip.factory", "create_model"),
    "build_model": ("ordinalclip.modeling.build", "build_model"),
    "features": ("ordinalclip.tower_features", "features"),
    "fit_image_folder": ("ordinalclip.image_folders", "fit_image_folder"),
    "builtin_configs": ("ordinalclip.config.builtin", "builtin_configs"),
    "RunConfig": ("ordinalclip.config", "RunConfig"),
    "DataConfig": ("ordinalclip.config", "DataConfig"),
    "OptimConfig": ("ordinalclip.config", "OptimConfig"),
    "LossConfig": ("ordinalclip.config", "LossConfig"),
    "TrainerConfig": ("ordinalclip.config", "TrainerConfig"),
    "FewShotConfig": ("ordinalclip.config", "FewShotConfig"),
    "ModelConfig": ("ordinalclip.modeling.config", "ModelConfig"),
    "ClipConfig": ("ordinalclip.modeling.config", "ClipConfig"),
    "ImageTowerConfig": ("ordinalclip.modeling.config", "ImageTowerConfig"),
    "TextTowerConfig": ("ordinalclip.modeling.config", "TextTowerConfig"),
    "PromptConfig": ("ordinalclip.modeling.config", "PromptConfig"),
}

__all__ = [
    "__version__",
    "ClipConfig",
    "DataConfig",
    "FewShotConfig",
    "ImageTowerConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "Predictor",
    "PromptConfig",
    "Run",
    "RunConfig",
    "TextTowerConfig",
    "TrainerConfig",
    "build_model",
    "builtin_configs",
    "create_model",
    "evaluate",
    "export",
    "features",
    "fit",
    "fit_folds",
    "fit_image_folder",
    "load",
    "load_checkpoint",
    "load_export",
    "resolve_config",
]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'ordinalclip' has no attribute {name!r}")
    value = getattr(importlib.import_module(target[0]), target[1])
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # for type checkers and IDEs; never run
    from ordinalclip.api import Run, evaluate, fit, fit_folds, resolve_config
    from ordinalclip.checkpoint import load_checkpoint
    from ordinalclip.config import (
        DataConfig,
        FewShotConfig,
        LossConfig,
        OptimConfig,
        RunConfig,
        TrainerConfig,
    )
    from ordinalclip.config.builtin import builtin_configs
    from ordinalclip.exports.load import load_export
    from ordinalclip.exports.write import export_model as export
    from ordinalclip.factory import create_model
    from ordinalclip.modeling.build import build_model
    from ordinalclip.modeling.config import (
        ClipConfig,
        ImageTowerConfig,
        ModelConfig,
        PromptConfig,
        TextTowerConfig,
    )
    from ordinalclip.runtime.predictor import Predictor, load
