"""Every configuration of ordinalclip, from one place::

    from ordinalclip.config import RunConfig, ModelConfig, load_run_config, from_dict, builtin_configs

    cfg = load_run_config(["tiny"], ["optim.lr=3e-4"])    # built-in names or YAML files, then --set overrides

The package has three modules, each with one job:

* :mod:`ordinalclip.config.run`: the run config (:class:`RunConfig` and its sections ``data``, ``optim``,
  ``loss``, ``trainer``), its value checks (:func:`check_run_config`), the headline prediction
  (:func:`headline`), the training recipes (:func:`apply_recipe`) and :func:`load_run_config`;
* :mod:`ordinalclip.config.typed`: generic typed dataclasses <-> plain dicts and YAML (:func:`from_dict`,
  :func:`to_dict`, :func:`load_yaml`, :func:`save_yaml`), ``key.path=value`` overrides, composition with
  ``base:``, and the renamed keys and values read under their new names (:class:`ConfigDeprecationWarning`);
* :mod:`ordinalclip.config.builtin`: the configs shipped inside the package (``tiny``, ``morph``, ...), found
  by name.

The model's config (:class:`ModelConfig`, :class:`ImageTowerConfig`, :class:`TextTowerConfig`,
:class:`PromptConfig`, :class:`ClipConfig`) is re-exported here but defined in
:mod:`ordinalclip.modeling.config`, next to the modules it builds: the model layer imports nothing above it
(``tests/unit/test_layers.py``), so it never imports the run config, and a model is built from its
``ModelConfig`` alone.

Names are imported on first use (PEP 562, :mod:`ordinalclip.lazy`): the torch-free deploy runtime imports
:mod:`ordinalclip.config.typed` to check export sidecars and gets neither the run config nor the built-in
configs with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ordinalclip.lazy import lazy_attributes

_RUN = "ordinalclip.config.run"
_TYPED = "ordinalclip.config.typed"
_BUILTIN = "ordinalclip.config.builtin"
_MODEL = "ordinalclip.modeling.config"

# attribute -> defining module, imported on first use (see ordinalclip.lazy)
_WHERE = {
    **dict.fromkeys(
        (
            "CsvColumns",
            "DataConfig",
            "DemoDataConfig",
            "FewShotConfig",
            "LabelShiftConfig",
            "LossConfig",
            "OptimConfig",
            "RunConfig",
            "TrainerConfig",
            "FEW_SHOT_MIN_STEPS",
            "MAX_SEED",
            "MAX_TEXT_RANKS",
            "PRIOR_LR",
            "PRIOR_WEIGHT",
            "PRIOR_WEIGHT_FULL",
            "apply_recipe",
            "check_run_config",
            "headline",
            "load_run_config",
            "prior_applies",
            "text_width",
        ),
        _RUN,
    ),
    **dict.fromkeys(
        (
            "ConfigDeprecationWarning",
            "ConfigError",
            "apply_overrides",
            "deprecated",
            "from_dict",
            "load_config",
            "load_yaml",
            "merge",
            "parse_override",
            "save_yaml",
            "to_dict",
        ),
        _TYPED,
    ),
    **dict.fromkeys(
        (
            "RENAMED_CONFIGS",
            "BuiltinConfig",
            "builtin_config_dir",
            "builtin_configs",
            "config_path",
            "is_config_name",
        ),
        _BUILTIN,
    ),
    **dict.fromkeys(
        ("ClipConfig", "ImageTowerConfig", "ModelConfig", "PromptConfig", "TextTowerConfig"),
        _MODEL,
    ),
}
__getattr__, __dir__ = lazy_attributes(__name__, _WHERE, globals())

if TYPE_CHECKING:  # for type checkers; never run
    from ordinalclip.config.builtin import (
        RENAMED_CONFIGS,
        BuiltinConfig,
        builtin_config_dir,
        builtin_configs,
        config_path,
        is_config_name,
    )
    from ordinalclip.config.run import (
        FEW_SHOT_MIN_STEPS,
        MAX_SEED,
        MAX_TEXT_RANKS,
        PRIOR_LR,
        PRIOR_WEIGHT,
        PRIOR_WEIGHT_FULL,
        CsvColumns,
        DataConfig,
        DemoDataConfig,
        FewShotConfig,
        LabelShiftConfig,
        LossConfig,
        OptimConfig,
        RunConfig,
        TrainerConfig,
        apply_recipe,
        check_run_config,
        headline,
        load_run_config,
        prior_applies,
        text_width,
    )
    from ordinalclip.config.typed import (
        ConfigDeprecationWarning,
        ConfigError,
        apply_overrides,
        deprecated,
        from_dict,
        load_config,
        load_yaml,
        merge,
        parse_override,
        save_yaml,
        to_dict,
    )
    from ordinalclip.modeling.config import (
        ClipConfig,
        ImageTowerConfig,
        ModelConfig,
        PromptConfig,
        TextTowerConfig,
    )

__all__ = [
    "BuiltinConfig",
    "ClipConfig",
    "ConfigDeprecationWarning",
    "ConfigError",
    "CsvColumns",
    "DataConfig",
    "DemoDataConfig",
    "FEW_SHOT_MIN_STEPS",
    "FewShotConfig",
    "ImageTowerConfig",
    "LabelShiftConfig",
    "LossConfig",
    "MAX_SEED",
    "MAX_TEXT_RANKS",
    "ModelConfig",
    "OptimConfig",
    "PRIOR_LR",
    "PRIOR_WEIGHT",
    "PRIOR_WEIGHT_FULL",
    "PromptConfig",
    "RENAMED_CONFIGS",
    "RunConfig",
    "TextTowerConfig",
    "TrainerConfig",
    "apply_overrides",
    "apply_recipe",
    "builtin_config_dir",
    "builtin_configs",
    "check_run_config",
    "config_path",
    "deprecated",
    "from_dict",
    "headline",
    "is_config_name",
    "load_config",
    "load_run_config",
    "load_yaml",
    "merge",
    "parse_override",
    "prior_applies",
    "save_yaml",
    "text_width",
    "to_dict",
]
