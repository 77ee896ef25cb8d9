"""Writing files so that a crash never leaves a half-written one.

The outputs of the library (checkpoints, exports, configs, metrics, splits, feature caches, prediction CSVs,
the demo data sets' lists) are written through :func:`atomic_write`: the bytes go to a temporary file in the
target's own folder (same file system, so the final ``os.replace`` is atomic), are flushed to disk, and only
then replace the target. A crash at any point leaves either the previous file or the new one. Temporary files
are named ``.<name>.<random>.tmp`` (``<name>`` shortened where the whole would pass the file system's name
limit), so a folder's leftovers from a killed process are recognisable. The published file gets the
permissions a plain ``open(path, "w")`` would give it: those of the file it replaces, else ``0o666`` less the
umask, whatever the writer (``safetensors`` writes 0600) left on the temporary file. A failed write's
``OSError`` names the target.

Written in place instead: log files (appended line by line), the run lock's owner note (``engine/run.py``),
the images of the blur demo data set (its folder only counts as built once its marker, written last, exists),
a run's ``prototypes*.npy`` (``api.py``) and the demo's ``results.csv`` (``app/demo``).
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_write_text", "plain_mode", "publish", "temp_beside", "write_json"]

StrPath = str | os.PathLike[str]

NAME_MAX = 255  # bytes in one file name on Linux, macOS and Windows file systems alike
_TEMP_EXTRA = len(".") + len(".12345678.tmp")  # what temp_beside adds around the target's name


def _temp_stem(name: str) -> str:
    """``name``, cut (at a character boundary) so that ``.<stem>.<random>.tmp`` fits in :data:`NAME_MAX`
    bytes: a legal 242-255 byte name must not fail only because of its temporary file's longer name."""
    room = NAME_MAX - _TEMP_EXTRA
    if len(os.fsencode(name)) <= room:
        return name
    return os.fsencode(name)[:room].decode("utf-8", errors="ignore") or "x"


def temp_beside(path: StrPath) -> Path:
    """Create an empty temporary file ``.<name>.<random>.tmp`` in ``path``'s folder (created if missing).

    Mode 0o666 lets the umask decide permissions, so the published file reads like any other output
    (``mkstemp`` would leave it owner-only); :func:`publish` sets them again in case the writer replaced it.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    stem = _temp_stem(target.name)
    while True:
        tmp = target.with_name(f".{stem}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:  # pragma: no cover - 32 random bits colliding
            continue


_umask_lock = threading.Lock()


def _umask() -> int:
    """The process's umask (read from /proc where it can be, else set and put back under a lock)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def plain_mode(path: StrPath) -> int:
    """The permission bits ``open(path, "w")`` leaves on ``path``: an existing file's own, else 0o666 less
    the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def publish(tmp: StrPath, path: StrPath) -> None:
    """Give ``tmp`` the permissions of a plain write of ``path`` (:func:`plain_mode`), flush it to disk and
    rename it over ``path`` in one step."""
    mode = plain_mode(path)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != mode:
            os.fchmod(fd, mode)
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
    if target.is_dir():  # found now, not after the work of write() (os.replace would refuse at the end)
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
    tmp = temp_beside(target)
    try:
        write(tmp)
        publish(tmp, target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.filename is None or os.fspath(err.filename) == os.fspath(tmp):
            # a full disk or a failing device raises without a file name, or with the temporary file's:
            # name the file the user asked for
            raise type(err)(err.errno, err.strerror or str(err), str(target)) from err
        raise
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
