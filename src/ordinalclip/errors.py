"""Every error ``ordinalclip`` raises on purpose: one base class, :class:`OrdinalClipError`, with the specific
errors under it.

Each class also keeps the builtin base it had before the family existed (``ValueError`` for bad input,
``RuntimeError`` for a run that cannot go on, ``ImportError`` for a missing extra), so ``except ValueError``
still catches a :class:`ConfigError`. ``exit_code`` is what ``ordinalclip`` exits with when the error ends a
command: 2 for a problem in what the user gave (a config, data, a checkpoint, a folder), 1 for a broken model
or environment. The modules that raise them re-export them (``ordinalclip.config.typed.ConfigError`` is this
class).

This module imports nothing of ordinalclip, so every layer (``modeling``, ``losses``, ``metrics``) may use it.
"""

from __future__ import annotations

USAGE_ERROR = 2  # the user's input is wrong: fix it and run again
FAILURE = 1  # the model or the environment failed


class OrdinalClipError(Exception):
    """The base of every error ordinalclip raises on purpose; ``exit_code`` is the command's exit status."""

    exit_code: int = USAGE_ERROR


# ------------------------------------------------------------------------------------------- user input


class ConfigError(OrdinalClipError, ValueError):
    """A config file, override or value that does not fit the config schema."""


class SweepError(ConfigError):
    """The sweep folder does not fit the sweep (a cell run with other settings, a folder that is not a
    cell)."""


class MissingExtraError(ConfigError):
    """A launcher's optional dependency is not installed."""


class DataError(OrdinalClipError, ValueError):
    """A problem with the user's data: a malformed line, a missing or unreadable file, a bad label."""


class CheckpointError(OrdinalClipError, ValueError):
    """A checkpoint that is missing, unreadable, not ours, or from an incompatible config or version."""


class ExportError(OrdinalClipError, ValueError):
    """An export cannot be written or read: wrong format version, modified file, mismatched shapes."""


class ClipLoadError(OrdinalClipError, RuntimeError):
    """CLIP weights could not be found, downloaded or read."""


class RunDirInUse(OrdinalClipError, RuntimeError):
    """Another process holds the run folder's lock: two runs must not share checkpoints and metrics."""


class ReportDependencyError(OrdinalClipError, ImportError):
    """A report was asked for without matplotlib (the ``report`` extra)."""


# ------------------------------------------------------------------------------------ the run went wrong


class NonFiniteLossError(OrdinalClipError, RuntimeError):
    """The training loss became NaN or infinite; no checkpoint is written from that state."""

    exit_code = FAILURE

    def __init__(self, value: float, step: int, epoch: int, batch: int) -> None:
        self.value, self.step, self.epoch, self.batch = value, step, epoch, batch
        super().__init__(
            f"non-finite training loss ({value}) at step {step} (epoch {epoch}, batch {batch}); "
            "training stopped"
        )


class NonFiniteOutputError(OrdinalClipError, RuntimeError):
    """The model gave NaN or infinite logits: its predictions and metrics would be meaningless (exit 1)."""

    exit_code = FAILURE

    def __init__(self, what: str, bad: int, total: int, first: str) -> None:
        self.bad, self.total = bad, total
        super().__init__(
            f"non-finite model output: {bad} of {total} {what} have NaN or infinite logits (first: "
            f"{first}); the model or its inputs are broken, no predictions or metrics are reported"
        )


class TrainingInterrupted(OrdinalClipError, RuntimeError):
    """Training stopped on a signal after writing a checkpoint that ``--resume`` continues from; the CLI
    exits 130 (SIGINT) or 143 (SIGTERM), as a shell does for a process killed by that signal."""

    def __init__(self, signame: str, checkpoint: str | None, step: int) -> None:
        self.signame, self.checkpoint, self.step = signame, checkpoint, step
        where = f"checkpoint written to {checkpoint}" if checkpoint else "no checkpoint written"
        super().__init__(f"interrupted by {signame} at step {step}; {where}")
        self.exit_code = 130 if signame == "SIGINT" else 143
