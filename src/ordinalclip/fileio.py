"""Writing files so that a crash never leaves a half-written one.

The outputs of the library (checkpoints, exports, configs, metrics, splits, feature caches, prediction CSVs,
the demo data sets' lists) are written through :func:`atomic_write`: the bytes go to a temporary file in the
target's own folder (same file system, so the final ``os.replace`` is atomic), are flushed to disk, and only
then replace the target. A crash at any point leaves either the previous file or the new one. Temporary files
are named ``.<name>.<random>.tmp``, so a folder's leftovers from a killed process are recognisable.

Written in place instead: log files (appended line by line), the run lock's owner note (``engine/run.py``),
the images of the blur demo data set (its folder only counts as built once its marker, written last, exists),
a run's ``prototypes*.npy`` (``api.py``) and the demo's ``results.csv`` (``app/demo.py``).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_write_text", "publish", "temp_beside", "write_json"]

StrPath = str | os.PathLike[str]


def temp_beside(path: StrPath) -> Path:
    """Create an empty temporary file ``.<name>.<random>.tmp`` in ``path``'s folder (created if missing).

    Mode 0o666 lets the umask decide permissions, so the published file reads like any other output
    (``mkstemp`` would leave it owner-only).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:  # pragma: no cover - 32 random bits colliding
            continue


def publish(tmp: StrPath, path: StrPath) -> None:
    """Flush ``tmp`` to disk and rename it over ``path`` in one step."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def atomic_write(path: StrPath, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    If ``write`` raises (or the process is interrupted), the temporary file is removed and ``path`` is left as
    it was. Returns ``path`` as a :class:`~pathlib.Path`.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> atomic_write(folder / "a.txt", lambda tmp: tmp.write_text("hello")).read_text()
        'hello'
        >>> sorted(p.name for p in folder.iterdir())  # no temporary file left behind
        ['a.txt']
    """
    target = Path(path)
    tmp = temp_beside(target)
    try:
        write(tmp)
        publish(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: StrPath, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(data: Any, path: StrPath) -> Path:
    """Write ``data`` as indented JSON (one trailing newline) to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
