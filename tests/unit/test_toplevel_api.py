"""``import ordinalclip as oc``: the names, loaded lazily, so the command's help and ``configs`` stay light."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import ordinalclip as oc
from tests.helpers import REPO_ROOT

SRC = REPO_ROOT / "src"
HEAVY = ("torch", "lightning", "open_clip", "torchvision")


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    return out.stdout


@pytest.mark.parametrize(
    "argv", [["--help"], ["train", "--help"], ["serve", "--help"], ["configs"], ["configs", "show", "tiny"]]
)
def test_help_and_configs_import_no_torch(argv):
    out = _run(f"""
        import sys
        from ordinalclip.app.cli import main
        code = main({argv!r})
        print("RC", code)
        print("HEAVY", sorted(m for m in {HEAVY!r} if m in sys.modules))
    """)
    assert "RC 0" in out and "HEAVY []" in out


def test_import_is_light_and_names_load_on_use():
    out = _run(f"""
        import sys
        import ordinalclip as oc
        print("HEAVY", sorted(m for m in {HEAVY!r} if m in sys.modules))
        oc.RunConfig
        print("AFTER", "torch" in sys.modules)
    """)
    assert "HEAVY []" in out and "AFTER True" in out


def test_the_public_names():
    from ordinalclip import api, export, predict
    from ordinalclip.config import RunConfig
    from ordinalclip.modeling.build import build_model
    from ordinalclip.modeling.config import ModelConfig

    assert oc.fit is api.fit and oc.evaluate is api.evaluate and oc.load is predict.load
    assert oc.build_model is build_model and oc.RunConfig is RunConfig and oc.ModelConfig is ModelConfig
    assert set(oc.__all__) == {"__version__", *oc._LAZY} and set(oc.__all__) <= set(dir(oc))
    assert all(getattr(oc, name) is not None for name in oc.__all__)
    # ordinalclip.export is the module (import ordinalclip.export works as ever) and, called, export_model
    assert oc.export is export and callable(oc.export)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        oc.nope  # noqa: B018


def test_export_is_callable_in_any_import_order(tmp_path):
    out = _run(f"""
        import ordinalclip.predict          # imports ordinalclip.export first
        import ordinalclip as oc
        try:
            oc.export("{tmp_path}/missing.ckpt", "{tmp_path}/m.onnx")
        except Exception as err:
            print(type(err).__name__, err)
    """)
    assert "missing.ckpt" in out  # it got as far as reading the checkpoint
