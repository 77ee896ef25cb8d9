"""The run folder: ``<output_dir>/<name>-<timestamp>/`` with config, environment, logs, checkpoints, metrics.

Layout::

    config.yaml        the resolved config (rebuilds the run: ``ordinalclip train -c config.yaml``)
    env.json           package versions, python, platform, git revision of the ordinalclip sources
    splits/            train.txt / val.txt / test.txt actually used (reusable: data.splits_dir)
    checkpoints/       best.ckpt (by trainer.monitor), last.ckpt
    logs/csv/          metrics.csv per (re)start; logs/tensorboard/ when tensorboard is installed
    metrics.json       final val/test metrics of the best and the last checkpoint
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import ordinalclip

PACKAGES = ("ordinalclip", "torch", "torchvision", "lightning", "open_clip_torch", "numpy", "safetensors",
            "pyyaml", "scikit-learn", "pillow")


def make_run_dir(output_dir: str | os.PathLike[str], name: str) -> Path:
    """Create and return a fresh ``output_dir/<name>-<YYYYmmdd-HHMMSS>`` (suffixed ``-2``, ``-3`` if
    taken)."""
    base = Path(output_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k in range(1, 1000):
        path = base / (f"{name}-{stamp}" + (f"-{k}" if k > 1 else ""))
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a run folder under {base}")


def _git(args: list[str], cwd: Path) -> str | None:
    # GIT_OPTIONAL_LOCKS=0: read-only, never refresh the index of the user's repository.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, env=env)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``{"revision", "dirty"}`` of the git checkout holding ``path``, or None outside one."""
    cwd = Path(path)
    cwd = cwd if cwd.is_dir() else cwd.parent
    revision = _git(["rev-parse", "HEAD"], cwd)
    if revision is None:
        return None
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return {"revision": revision, "dirty": bool(status) if status is not None else None}


def environment() -> dict[str, Any]:
    """Versions and platform facts for ``env.json``."""
    versions: dict[str, str | None] = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    info: dict[str, Any] = {
        "ordinalclip": ordinalclip.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "git": git_state(Path(ordinalclip.__file__).parent),
        "argv": list(sys.argv),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        import torch

        info["torch_cuda"] = torch.version.cuda
        info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # a broken CUDA setup must not stop a run from recording what it can
        info["cuda_devices"] = None
    return info
