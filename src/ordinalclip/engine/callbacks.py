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
