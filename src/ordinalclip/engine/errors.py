"""Why a training run stopped early: a non-finite loss, or a signal (after writing a checkpoint to resume
from). Both are defined in :mod:`ordinalclip.errors` with the rest of the family."""

from __future__ import annotations

from ordinalclip.errors import NonFiniteLossError, TrainingInterrupted

__all__ = ["NonFiniteLossError", "TrainingInterrupted"]
