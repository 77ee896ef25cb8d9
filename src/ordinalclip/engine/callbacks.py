"""Callbacks that never lose finished work: a checkpoint on SIGTERM/SIGINT, and evaluation-only runs."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L

from ordinalclip.engine.errors import TrainingInterrupted

log = logging.getLogger(__name__)


class InterruptCheckpoint(L.Callback):
    """On SIGTERM or SIGINT, finish the current batch, write ``last.ckpt`` and stop with
    :class:`TrainingInterrupted` (exact mid-epoch resume: the training loader is stateful).

    The checkpoint is written at the next optimizer-step boundary (with gradient accumulation, accumulated
    gradients are not part of a checkpoint). A second Ctrl-C stops at once. Only in single-process runs:
    under DDP Lightning's own SIGTERM handling stops the run and the last epoch's checkpoint remains.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum
        log.warning("received %s: writing a checkpoint after the current batch", signal.Signals(signum).name)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.received = None
        if trainer.world_size > 1 or threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handler)

    def restore(self) -> None:
        """Put the signal handlers found at fit start back. Call after ``trainer.fit`` returns or raises:
        Lightning's teardown re-installs the handlers it found (ours), so hooks inside fit are too early."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.received is None:
            return
        # batch_progress.current is a _ProcessedTracker at run time (Lightning types it as its base class)
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed  # type: ignore[attr-defined]
        at_boundary = done % trainer.accumulate_grad_batches == 0 or done >= trainer.num_training_batches
        if not at_boundary:
            return
        trainer.save_checkpoint(self.path, weights_only=False)
        name = signal.Signals(self.received).name
        raise TrainingInterrupted(name, str(self.path), trainer.global_step)


class EvaluateOnly(L.Callback):
    """Stops ``fit`` before its first step and saves the untouched model as ``path`` (``last.ckpt``), so that
    the run evaluates the initial model: zero-shot CLIP, or an untrained prompt learner (the paper's
    zero-shot and untrained-prompt rows)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.path)


class ValidateAtStart(L.Callback):
    """Validates the model as built before the first optimizer step, as a candidate of ``best`` (a
    ``ModelCheckpoint`` monitoring a validation metric): a run whose training only hurts keeps its step-0
    weights as ``best.ckpt``, so it never ends worse on validation than it started (``trainer.
    validate_at_start``).

    A resumed run (global step > 0) has had its start validated already: the checkpoint callback's state,
    best score included, comes back with the checkpoint. A run that evaluates the model as built
    (:class:`EvaluateOnly` has asked the trainer to stop) is not validated twice.
    """

    def __init__(self, best: Any) -> None:
        self.best = best

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != 0 or trainer.should_stop:
            return
        # ModelCheckpoint skips saving at the global step it saved last, 0 when nothing was saved ("no steps
        # taken"): step 0 is exactly the candidate wanted here
        self.best._last_global_step_saved = -1
        loop = trainer.fit_loop.epoch_loop.val_loop
        trainer.validating = True  # the active loop is the validation loop, as in the epoch loop
        try:
            loop.run()
        finally:
            trainer.training = True
        if self.best._last_global_step_saved != 0:
            # a ModelCheckpoint that saves at the end of training epochs (validating every epoch) did not save
            # at this validation: offer it step 0 as it offers every epoch end (top-k by the monitor)
            self.best._save_topk_checkpoint(trainer, self.best._monitor_candidates(trainer))
        log.info("validated the model as built (step 0) as a candidate for the best checkpoint")
