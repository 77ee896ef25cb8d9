"""Build ``ordinalclip-runtime``: the deploy runtime of this repository as its own wheel, without torch.

The wheel holds the package ``ordinalclip`` reduced to what runs an ONNX export: sidecar checks, the image
decoder, the numpy preprocessing, onnxruntime, the predictions CSV, ``ordinalclip predict`` and
``ordinalclip serve`` (with the ``serve`` extra). Its dependencies are numpy, Pillow, PyYAML and onnxruntime.
It is the full ``ordinalclip``'s alternative for a serving container, not an add-on: install one or the other
(as with opencv-python / opencv-python-headless); the full install holds every file of this one.

    python packaging/runtime/build_wheel.py OUT_DIR [PYTHON]    # prints the wheel's path
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"

# every module the runtime runs (tests/unit/test_layers.py checks that, at import time, they import nothing
# else of the package and nothing of the training stack)
MODULES = (
    "ordinalclip/__init__.py",
    "ordinalclip/py.typed",
    "ordinalclip/lazy.py",
    "ordinalclip/errors.py",
    "ordinalclip/config/__init__.py",
    "ordinalclip/config/typed.py",
    "ordinalclip/fileio.py",
    "ordinalclip/predict.py",
    "ordinalclip/modeling/__init__.py",
    "ordinalclip/modeling/config.py",
    "ordinalclip/data/__init__.py",
    "ordinalclip/data/samples.py",
    "ordinalclip/runtime/__init__.py",
    "ordinalclip/runtime/decode.py",
    "ordinalclip/runtime/onnx.py",
    "ordinalclip/runtime/predictions.py",
    "ordinalclip/runtime/predictor.py",
    "ordinalclip/runtime/preprocess.py",
    "ordinalclip/runtime/sidecar.py",
    "ordinalclip/app/__init__.py",
    "ordinalclip/app/cli.py",
    "ordinalclip/app/commands/__init__.py",
    "ordinalclip/app/commands/common.py",
    "ordinalclip/app/commands/model.py",
    "ordinalclip/app/commands/sweep.py",
    "ordinalclip/app/commands/tools.py",
    "ordinalclip/app/launchers.py",
    "ordinalclip/app/pagekit.py",
    "ordinalclip/app/tables.py",
    "ordinalclip/app/serve.py",
    "ordinalclip/app/serve_page.html",
)

PYPROJECT = """\
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "ordinalclip-runtime"
version = "{version}"
description = "Run ordinalclip's ONNX exports (predict, serve) without torch: numpy, Pillow and onnxruntime."
requires-python = ">=3.10"
license = "MIT"
dependencies = ["numpy>=1.24", "pillow>=9", "pyyaml>=6", "onnxruntime>=1.18"]

[project.optional-dependencies]
serve = ["fastapi>=0.110", "uvicorn>=0.29", "python-multipart>=0.0.9"]

[project.scripts]
ordinalclip = "ordinalclip.app.cli:main"

[tool.setuptools]
packages = [
  "ordinalclip", "ordinalclip.app", "ordinalclip.app.commands", "ordinalclip.config", "ordinalclip.data",
  "ordinalclip.modeling", "ordinalclip.runtime",
]

[tool.setuptools.package-data]
ordinalclip = ["py.typed", "app/*.html"]
"""


def version() -> str:
    text = (SRC / "ordinalclip" / "__init__.py").read_text(encoding="utf-8")
    found = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    if found is None:
        raise SystemExit("no __version__ in src/ordinalclip/__init__.py")
    return found.group(1)


def build(out_dir: Path, python: str = sys.executable) -> Path:
    """Stage the runtime's files with their own pyproject and build the wheel into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ordinalclip-runtime-") as tmp:
        stage = Path(tmp)
        for name in MODULES:
            target = stage / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(SRC / name, target)
        (stage / "pyproject.toml").write_text(PYPROJECT.format(version=version()), encoding="utf-8")
        subprocess.run(
            [
                python,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                str(stage),
                "-w",
                str(out_dir),
            ],
            check=True,
        )
    (wheel,) = out_dir.glob(f"ordinalclip_runtime-{version()}-*.whl")
    return wheel


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    print(build(Path(sys.argv[1]), *sys.argv[2:]))
