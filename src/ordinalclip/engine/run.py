"""The run folder: ``<output_dir>/<name>-<timestamp>/`` with config, environment, logs, checkpoints, metrics.

Layout::

    config.yaml        the resolved config (rebuilds the run: ``ordinalclip train -c config.yaml``)
    env.json           package versions, python, platform, git revision of the ordinalclip sources
    splits/            train.txt / val.txt / test.txt actually used (reusable: data.splits_dir)
    checkpoints/       best.ckpt (by trainer.monitor), last.ckpt
    logs/csv/          metrics.csv per (re)start; logs/tensorboard/ when tensorboard is installed
    metrics.json       final val/test metrics of the best and the last checkpoint
    .ordinalclip.lock  held by the process training in the folder (one run per folder, see run_dir_lock)
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import filelock

import ordinalclip
from ordinalclip.errors import ConfigError, RunDirInUse

log = logging.getLogger(__name__)

LOCK_NAME = ".ordinalclip.lock"
OWNER_NAME = ".ordinalclip.lock.owner"  # who holds the lock (the lock file itself is truncated by contenders)

PACKAGES = (
    "ordinalclip",
    "torch",
    "torchvision",
    "lightning",
    "open_clip_torch",
    "numpy",
    "safetensors",
    "pyyaml",
    "scikit-learn",
    "pillow",
)


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


# ---------------------------------------------------------------------------------------- one run per folder


@contextlib.contextmanager
def run_dir_lock(run_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold an exclusive lock on ``run_dir`` (which must exist) for the duration of the ``with`` block.

    The lock is an OS file lock (``filelock``) on ``run_dir/.ordinalclip.lock``: the kernel drops it when its
    process dies, so a lock left by a killed run never blocks the next one. A second process (or a second run
    in this one) raises :class:`RunDirInUse` at once, naming the holder when it can. Where the file system
    cannot lock (some network mounts), the run goes ahead with a warning.
    """
    folder = Path(run_dir)
    lock = filelock.FileLock(folder / LOCK_NAME, timeout=0)
    try:
        lock.acquire()
        locked = True
    except filelock.Timeout:
        try:
            holder = f" (held by {(folder / OWNER_NAME).read_text(encoding='utf-8').strip()})"
        except OSError:
            holder = ""
        raise RunDirInUse(
            f"run folder {folder} is in use by another ordinalclip run{holder}; wait for it to "
            "end, or choose another --run-dir"
        ) from None
    except OSError as err:
        log.warning(
            "cannot lock the run folder %s (%s): nothing stops a second run from using it", folder, err
        )
        locked = False
    if not locked:
        yield folder / LOCK_NAME
        return
    try:
        owner = f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
        (folder / OWNER_NAME).write_text(owner + "\n", encoding="utf-8")
        yield folder / LOCK_NAME
    finally:
        (folder / OWNER_NAME).unlink(missing_ok=True)
        lock.release()


def remove_stale_temps(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files (``.<name>.<random>.tmp``, see :mod:`ordinalclip.fileio`) that a killed run
    left in ``run_dir`` and its sub-folders (a completed write renames its temporary over the target; a
    leftover one is never used).

    Only call this while holding :func:`run_dir_lock`: a live run's temporaries look the same. Returns what
    was removed (each is logged).
    """
    folder = Path(run_dir)
    removed = []
    for path in sorted([*folder.glob(".*.tmp"), *folder.glob("*/.*.tmp")]):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
            log.info("removed a temporary file left by an interrupted run: %s", path)
    return removed


# ------------------------------------------------------------------------------------------- continuing a run


def trained_epochs(run_dir: str | os.PathLike[str]) -> int | None:
    """How many epochs the checkpoints of ``run_dir`` have completed (the most of ``last.ckpt`` and
    ``best.ckpt``; None without a readable one). Tensors are memory-mapped, not read: cheap for any size."""
    import torch

    done: list[int] = []
    for name in ("last.ckpt", "best.ckpt"):
        path = Path(run_dir) / "checkpoints" / name
        if not path.is_file():
            continue
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            progress = ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"]
            done.append(int(progress))
        except Exception:  # noqa: BLE001 - a damaged checkpoint is reported by the resume itself
            continue
    return max(done) if done else None


def check_resume_epochs(run_dir: str | os.PathLike[str], max_epochs: int) -> None:
    """Refuse to continue ``run_dir`` with ``max_epochs`` below what it has already trained: Lightning would
    train nothing, and the run's config.yaml would be rewritten with the lower count."""
    done = trained_epochs(run_dir)
    if done is not None and max_epochs < done:
        raise ConfigError(
            f"--resume: {run_dir} has already trained {done} epochs, more than trainer.max_epochs = "
            f"{max_epochs}: nothing would be trained (config.yaml is left as it is); to train further set "
            f"trainer.max_epochs above {done}, to evaluate use 'ordinalclip eval {run_dir}'"
        )
