"""The Lightning Trainer of a run: devices, precision, loggers, checkpoints (best + last), interrupts."""

from __future__ import annotations

import importlib.util
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

from ordinalclip.config import FEW_SHOT_MIN_STEPS, RunConfig, validates_at_start
from ordinalclip.engine.callbacks import InterruptCheckpoint, ValidateAtStart
from ordinalclip.engine.checkpoint_io import AtomicCheckpointIO

log = logging.getLogger(__name__)

# Lightning chatter that does not apply to how the engine uses it (tiny epochs, frozen towers kept in eval
# mode on purpose, resuming into an existing checkpoint folder).
_QUIET = (
    r".*does not have many workers.*",
    r".*smaller than the logging interval.*",
    r".*module\(s\) in eval mode.*",
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*`srun` command is available.*",
    r".*Total length of .* across ranks is zero.*",
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*configure_optimizers` returned `None`.*",  # a model with nothing to train is evaluated as built
)


def _not_a_tip(record: logging.LogRecord) -> bool:
    """Lightning advertises its cloud products ("💡 Tip: ... try installing litlogger") on every fit."""
    return not str(record.msg).startswith("💡 Tip")


def quiet_lightning() -> None:
    for pattern in _QUIET:
        warnings.filterwarnings("ignore", message=pattern)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _not_a_tip not in rank_zero.filters:
        rank_zero.addFilter(_not_a_tip)


def precision_arg(precision: int | str) -> str:
    """Our ``trainer.precision`` -> Lightning's: 32 -> '32-true', the mixed ones unchanged."""
    return "32-true" if str(precision) == "32" else str(precision)


def build_loggers(cfg: RunConfig, run_dir: Path) -> list[Logger]:
    """CSV (``logs/csv/version_N``) and TensorBoard (``logs/tensorboard/version_N``, only if installed)."""
    loggers: list[Logger] = []
    for name in dict.fromkeys(cfg.trainer.loggers):
        if name == "csv":
            loggers.append(CSVLogger(save_dir=run_dir / "logs", name="csv"))
        elif name == "tensorboard":
            if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
                loggers.append(
                    TensorBoardLogger(save_dir=run_dir / "logs", name="tensorboard", default_hp_metric=False)
                )
            else:
                log.info("tensorboard is not installed: logging to CSV only (pip install tensorboard)")
    return loggers


def min_steps(cfg: RunConfig) -> int:
    """The step budget of a run: ``trainer.min_steps``, or its default (FEW_SHOT_MIN_STEPS for few-shot
    runs)."""
    if cfg.trainer.min_steps is not None:
        return cfg.trainer.min_steps
    return FEW_SHOT_MIN_STEPS if cfg.data.few_shot.shots is not None else 0


def apply_step_budget(cfg: RunConfig, num_train: int) -> dict[str, int]:
    """Raise ``cfg.trainer.max_epochs`` (in place) so that training takes at least :func:`min_steps` optimizer
    steps on ``num_train`` samples, and ``check_val_every_n_epoch`` by the same factor; returns the budget.

    Steps per epoch = ceil(ceil(num_train / batch_size) / accumulate_grad_batches) in one process (the loader
    keeps the last, smaller batch). Under DDP each process sees 1/world of the batches: budget accordingly.
    """
    t = cfg.trainer
    batches = math.ceil(num_train / cfg.data.batch_size) if num_train else 0
    per_epoch = math.ceil(batches / t.accumulate_grad_batches)
    want = min_steps(cfg)
    configured = t.max_epochs
    if want and per_epoch and per_epoch * t.max_epochs < want:
        epochs = math.ceil(want / per_epoch)
        every = t.check_val_every_n_epoch
        t.check_val_every_n_epoch = max(every, every * epochs // t.max_epochs)
        t.max_epochs = epochs
        log.info(
            "step budget: %d training samples give %d optimizer step(s) per epoch; trainer.min_steps=%d "
            "raises trainer.max_epochs from %d to %d (validating every %d epochs)",
            num_train,
            per_epoch,
            want,
            configured,
            epochs,
            t.check_val_every_n_epoch,
        )
    return {
        "min_steps": want,
        "steps_per_epoch": per_epoch,
        "max_epochs": t.max_epochs,
        "max_epochs_configured": configured,
        "planned_steps": per_epoch * t.max_epochs,
    }


@dataclass
class TrainerBundle:
    """A Trainer and the callbacks the API reads back."""

    trainer: L.Trainer
    checkpoint: ModelCheckpoint | None
    interrupt: InterruptCheckpoint | None


def _common(cfg: RunConfig) -> dict:
    t = cfg.trainer
    return dict(
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=precision_arg(t.precision),
        deterministic=t.deterministic,
        enable_progress_bar=t.progress_bar,
        enable_model_summary=t.progress_bar,
        use_distributed_sampler=False,
        plugins=[AtomicCheckpointIO()],
    )


def build_trainer(
    cfg: RunConfig, run_dir: str | Path, has_val: bool = True, callbacks: Sequence[L.Callback] = ()
) -> TrainerBundle:
    """The training Trainer: checkpoints ``run_dir/checkpoints/{best,last}.ckpt`` (best by ``trainer.monitor``
    when there is a validation split), the loggers, and a checkpoint on SIGTERM/SIGINT."""
    quiet_lightning()
    t = cfg.trainer
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    # Two callbacks: ModelCheckpoint(save_last=True) refreshes last.ckpt only in steps where it also saved a
    # top-k checkpoint (Lightning >= 2.3), so a run that stops improving would keep a stale "last".
    best = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best",
        monitor=t.monitor,
        mode=t.monitor_mode,
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    last = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="last",
        monitor=None,
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    interrupt = InterruptCheckpoint(ckpt_dir / "last.ckpt")
    start = [ValidateAtStart(best)] if has_val and validates_at_start(cfg) else []
    loggers = build_loggers(cfg, run_dir)
    trainer = L.Trainer(
        **_common(cfg),
        max_epochs=t.max_epochs,
        accumulate_grad_batches=t.accumulate_grad_batches,
        gradient_clip_val=t.gradient_clip_val,
        logger=loggers or False,
        callbacks=[*callbacks, *start, interrupt, *([best] if has_val else []), last],
        log_every_n_steps=t.log_every_n_steps,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        limit_val_batches=None if has_val else 0,
        # validating the whole split at step 0 checks what the sanity check would
        num_sanity_val_steps=None if has_val and not start else 0,
        default_root_dir=run_dir,
    )
    return TrainerBundle(trainer, best if has_val else None, interrupt)


def build_eval_trainer(cfg: RunConfig) -> L.Trainer:
    """A Trainer for evaluation only: no loggers, no checkpoints."""
    quiet_lightning()
    return L.Trainer(**_common(cfg), logger=False, enable_checkpointing=False)
