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

from ordinalclip.lazy import lazy_exports

# every name of the three modules' __all__ and the model's config classes, imported on first use
__getattr__, __dir__ = lazy_exports(
    __name__,
    globals(),
    # typed first: the names the torch-free runtime looks up are found without importing the run config
    ("ordinalclip.config.typed", "ordinalclip.config.run", "ordinalclip.config.builtin"),
    {"ordinalclip.modeling.config": "ClipConfig ImageTowerConfig ModelConfig PromptConfig TextTowerConfig"},
)

if TYPE_CHECKING:  # for type checkers; never run
    from ordinalclip.config.builtin import *  # noqa: F403
    from ordinalclip.config.run import *  # noqa: F403
    from ordinalclip.config.typed import *  # noqa: F403
    from ordinalclip.modeling.config import ClipConfig as ClipConfig
    from ordinalclip.modeling.config import ImageTowerConfig as ImageTowerConfig
    from ordinalclip.modeling.config import ModelConfig as ModelConfig
    from ordinalclip.modeling.config import PromptConfig as PromptConfig
    from ordinalclip.modeling.config import TextTowerConfig as TextTowerConfig
