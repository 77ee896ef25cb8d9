"""The training engine on Lightning 2: data splits, loaders, the LightningModule, optimizers, the Trainer, run
folders.

The Python entry points are in :mod:`ordinalclip.api`; this package holds the parts they are built from.
"""

from ordinalclip.engine.cache import FeatureCache, weights_digest
from ordinalclip.engine.callbacks import EvaluateOnly, InterruptCheckpoint
from ordinalclip.engine.checkpoint_io import AtomicCheckpointIO, atomic_torch_save
from ordinalclip.engine.datamodule import OrdinalDataModule
from ordinalclip.engine.errors import NonFiniteLossError, TrainingInterrupted
from ordinalclip.engine.module import OrdinalModule
from ordinalclip.engine.optim import apply_freezing, build_optimizer, build_scheduler, lr_factor, param_groups
from ordinalclip.engine.sampling import EpochSampler
from ordinalclip.engine.splits import ResolvedData, rank_space, resolve_data, save_splits
from ordinalclip.engine.trainer import build_eval_trainer, build_trainer
from ordinalclip.engine.transforms import (
    eval_transform,
    tower_preprocess,
    train_transform,
    transform_settings,
)

__all__ = [
    "AtomicCheckpointIO",
    "EpochSampler",
    "EvaluateOnly",
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
    "rank_space",
    "resolve_data",
    "save_splits",
    "tower_preprocess",
    "train_transform",
    "transform_settings",
    "weights_digest",
]
