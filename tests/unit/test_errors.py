"""The error family: one base, each error keeps its builtin base, the old import paths name the same class."""

from __future__ import annotations

import importlib

import pytest

from ordinalclip import errors

# (module that raises it, class name, builtin base it had before the family, exit code of the CLI)
FAMILY = [
    ("ordinalclip.config.typed", "ConfigError", ValueError, 2),
    ("ordinalclip.app.sweep", "SweepError", ValueError, 2),
    ("ordinalclip.app.launchers", "MissingExtraError", ValueError, 2),
    ("ordinalclip.data", "DataError", ValueError, 2),
    ("ordinalclip.checkpoint", "CheckpointError", ValueError, 2),
    ("ordinalclip.runtime.sidecar", "ExportError", ValueError, 2),
    ("ordinalclip.modeling", "ClipLoadError", RuntimeError, 2),
    ("ordinalclip.engine.run", "RunDirInUse", RuntimeError, 2),
    ("ordinalclip.app.plots", "ReportDependencyError", ImportError, 2),
    ("ordinalclip.engine.errors", "NonFiniteLossError", RuntimeError, 1),
    ("ordinalclip.metrics", "NonFiniteOutputError", RuntimeError, 1),
]


@pytest.mark.parametrize(("module", "name", "builtin", "code"), FAMILY, ids=[f[1] for f in FAMILY])
def test_each_error_is_in_the_family_under_its_old_name(module, name, builtin, code):
    cls = getattr(errors, name)
    assert getattr(importlib.import_module(module), name) is cls
    assert issubclass(cls, errors.OrdinalClipError) and issubclass(cls, builtin)
    assert cls.exit_code == code


def test_sweep_errors_are_config_errors():
    assert issubclass(errors.SweepError, errors.ConfigError)
    assert issubclass(errors.MissingExtraError, errors.ConfigError)


@pytest.mark.parametrize(("signame", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_an_interrupted_run_exits_as_a_shell_does_for_its_signal(signame, code):
    err = errors.TrainingInterrupted(signame, "runs/x/checkpoints/last.ckpt", 7)
    assert err.exit_code == code
    assert (
        str(err) == f"interrupted by {signame} at step 7; checkpoint written to runs/x/checkpoints/last.ckpt"
    )


def test_the_messages_carry_their_numbers():
    assert str(errors.NonFiniteLossError(float("nan"), 12, 2, 3)) == (
        "non-finite training loss (nan) at step 12 (epoch 2, batch 3); training stopped"
    )
    err = errors.NonFiniteOutputError("test images", 2, 10, "a.png")
    assert (err.bad, err.total) == (2, 10) and str(err).startswith(
        "non-finite model output: 2 of 10 test images"
    )
