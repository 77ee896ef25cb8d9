"""The training engine on Lightning 2: data loaders, the LightningModule, optimizers, the Trainer, run folders.

The Python entry points are in :mod:`ordinalclip.api`; this package holds the parts they are built from.
"""

from ordinalclip.engine.cache import FeatureCache, weights_digest
from ordinalclip.engine.callbacks import (
    AtomicCheckpointIO,
    InterruptCheckpoint,
    NonFiniteLossError,
    TrainingInterrupted,
    atomic_torch_save,
)
from ordinalclip.engine.data import (
    EpochSampler,
    OrdinalDataModule,
    ResolvedData,
    eval_transform,
    resolve_data,
    save_splits,
    train_transform,
    transform_settings,
)
from ordinalclip.engine.module import OrdinalModule
from ordinalclip.engine.optim import apply_freezing, build_optimizer, build_scheduler, lr_factor, param_groups
from ordinalclip.engine.trainer import build_eval_trainer, build_trainer

__all__ = [
    "AtomicCheckpointIO",
    "EpochSampler",
    "FeatureCache",
    "InterruptCheckpoint",
    "NonFiniteLossError",
    "OrdinalDataModule",
    "OrdinalModule",
    "ResolvedData",
    "TrainingInterrupted",
    "apply_freezing",
    "atomic_torch_save",
    "build_eval_trainer",
    "build_optimizer",
    "build_scheduler",
    "build_trainer",
    "eval_transform",
    "lr_factor",
    "param_groups",
    "resolve_data",
    "save_splits",
    "train_transform",
    "transform_settings",
    "weights_digest",
]
