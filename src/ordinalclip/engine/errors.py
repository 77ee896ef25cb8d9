"""Why a training run stopped early: a non-finite loss, or a signal (after writing a checkpoint to resume
from)."""

from __future__ import annotations


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; no checkpoint is written from that state."""

    def __init__(self, value: float, step: int, epoch: int, batch: int) -> None:
        self.value, self.step, self.epoch, self.batch = value, step, epoch, batch
        super().__init__(
            f"non-finite training loss ({value}) at step {step} (epoch {epoch}, batch {batch}); "
            "training stopped"
        )


class TrainingInterrupted(RuntimeError):
    """Training stopped on a signal after writing a checkpoint that ``--resume`` continues from."""

    def __init__(self, signame: str, checkpoint: str | None, step: int) -> None:
        self.signame, self.checkpoint, self.step = signame, checkpoint, step
        where = f"checkpoint written to {checkpoint}" if checkpoint else "no checkpoint written"
        super().__init__(f"interrupted by {signame} at step {step}; {where}")
