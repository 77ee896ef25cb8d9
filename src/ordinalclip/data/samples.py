"""Sample records, the label -> rank mapping and the three sample-list parsers (list file, CSV, folders).

Every parser returns ``list[Sample]`` and raises :class:`DataError` (a ``ValueError``) whose message starts
with ``file:line`` for anything malformed, so a bad line in a 50k-line list is found at once.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


from ordinalclip.errors import DataError

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
)

StrPath = str | os.PathLike[str]


@dataclass(frozen=True)
class Sample:
    """One labelled image.

    ``path`` is the image path (images root already joined), ``label`` the rank index in ``0..C-1``,
    ``source`` where the sample came from (``"list.txt:12"``) for error messages, and ``group`` an optional
    sub-set name (e.g. the aesthetics category) for per-group metrics.
    """

    path: str
    label: int
    source: str
    group: str | None = None


@dataclass(frozen=True)
class RankSpace:
    """How raw labels map to rank indices ``0..num_ranks-1``.

    A raw label is either one of ``names`` (matched exactly, names take precedence) or an integer with
    ``rank = integer - offset`` (ages 16..77 with ``offset=16`` -> ranks 0..61).
    """

    num_ranks: int
    names: Sequence[str] | None = None
    offset: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.num_ranks, bool) or not isinstance(self.num_ranks, int) or self.num_ranks < 2:
            raise ValueError(f"num_ranks must be an integer >= 2, got {self.num_ranks!r}")
        if isinstance(self.offset, bool) or not isinstance(self.offset, int):
            raise ValueError(f"offset must be an integer, got {self.offset!r}")
        if self.names is not None:
            names = tuple(str(n) for n in self.names)
            if len(names) != self.num_ranks:
                raise ValueError(f"names has {len(names)} entries but num_ranks is {self.num_ranks}")
            stripped = [n.strip() for n in names]
            if any(not n for n in stripped) or stripped != list(names):
                raise ValueError(f"rank names must be non-empty without surrounding whitespace: {names!r}")
            if len(set(names)) != len(names):
                dup = sorted({n for n in names if names.count(n) > 1})
                raise ValueError(f"rank names must be unique; repeated: {dup}")
            object.__setattr__(self, "names", names)

    @cached_property
    def _index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names or ())}

    def values(self) -> torch.Tensor:
        """Label value of every rank, float32 ``(C,)``: ``rank + offset`` (predicted rank -> label units)."""
        import torch  # here, not at the top: the deploy runtime reads samples without torch

        return torch.arange(self.num_ranks, dtype=torch.float32) + self.offset

    def name(self, rank: int) -> str:
        """Display name of rank ``rank``: its name, or its integer label."""
        if not 0 <= rank < self.num_ranks:
            raise IndexError(f"rank {rank} outside 0..{self.num_ranks - 1}")
        return self.names[rank] if self.names is not None else str(rank + self.offset)

    def to_rank(self, raw: str, source: str) -> int:
        """Map a raw label (rank name or integer label) to its rank index; ``source`` names the line."""
        text = raw.strip()
        if text in self._index:
            return self._index[text]
        lo, hi = self.offset, self.offset + self.num_ranks - 1
        value = _parse_int(text)
        if value is None:
            if self.names is not None:
                close = difflib.get_close_matches(text, self.names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                shown = ", ".join(repr(n) for n in self.names[:10]) + (", ..." if self.num_ranks > 10 else "")
                raise DataError(
                    f"{source}: unknown class {text!r}: expected a rank name ({shown}) "
                    f"or an integer label in [{lo}, {hi}]{hint}"
                )
            raise DataError(
                f"{source}: label {text!r} is not an integer (expected an integer in [{lo}, {hi}])"
            )
        if not lo <= value <= hi:
            note = f" (rank = label - {self.offset})" if self.offset else ""
            raise DataError(
                f"{source}: label {value} is out of range: expected an integer in [{lo}, {hi}] "
                f"for {self.num_ranks} ranks{note}"
            )
        return value - self.offset


def _parse_int(text: str) -> int | None:
    """``"16"`` and ``"16.0"`` -> 16; anything that is not an integral finite number -> None."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    if not math.isfinite(number) or not number.is_integer():
        return None
    return int(number)


def _decoded_lines(path: StrPath, what: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` of a UTF-8 file; decoding errors name the line (not just the byte)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{what} not found: {path}") from None
    except OSError as err:
        raise DataError(f"cannot read {what} {path}: {err}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            yield number, raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as err:
            raise DataError(
                f"{path}:{number}: not valid UTF-8 text ({err.reason} at byte {err.start})"
            ) from None


def read_list_file(path: StrPath, root: StrPath, ranks: RankSpace, group: str | None = None) -> list[Sample]:
    """Parse a reference-style list file: ``relative/path label [more labels...]`` per line.

    Fields are whitespace-separated (so paths cannot contain spaces, as in the reference lists); only the
    first label is used (the reference code takes the middle one at eval time and a random one at train
    time when a line has several). Blank lines and lines starting with ``#`` are skipped. Sample paths are
    ``os.path.join(root, relative_path)``.
    """
    samples: list[Sample] = []
    for number, line in _decoded_lines(path, "list file"):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        source = f"{path}:{number}"
        fields = text.split()
        if len(fields) < 2:
            raise DataError(f"{source}: expected 'relative/path label', got {_clip(text)!r} (no label)")
        label = ranks.to_rank(fields[1], source)
        samples.append(Sample(os.path.join(os.fspath(root), fields[0]), label, source, group))
    return samples


def _clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def read_csv_rows(path: StrPath, what: str = "CSV file") -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Read a UTF-8 CSV with a header: ``(header, [(line_number, fields), ...])``; blank rows skipped.

    Raises DataError with ``file:line`` for undecodable text, CSV syntax errors and rows whose field count
    differs from the header.
    """
    text = "\n".join(line for _, line in _decoded_lines(path, what))
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next((row for row in reader if row), None)
        if header is None:
            raise DataError(f"{path}: empty {what}, expected a header line")
        header = [h.strip() for h in header]
        rows: list[tuple[int, list[str]]] = []
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(
                    f"{path}:{reader.line_num}: expected {len(header)} fields ({', '.join(header)}), "
                    f"got {len(row)}"
                )
            rows.append((reader.line_num, row))
    except csv.Error as err:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV: {err}") from None
    return header, rows


def column_index(header: list[str], column: str, path: StrPath) -> int:
    """Index of ``column`` in a CSV header, or DataError listing the columns that exist."""
    if column not in header:
        close = difflib.get_close_matches(column, header, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DataError(f"{path}:1: no column {column!r} in header {header}{hint}")
    return header.index(column)


def read_csv_samples(
    path: StrPath,
    root: StrPath,
    ranks: RankSpace,
    path_column: str = "path",
    label_column: str = "label",
    split_column: str | None = None,
    split: str | None = None,
    group_column: str | None = None,
) -> list[Sample]:
    """Parse a CSV with a header row into samples (paths relative to ``root``).

    With ``split`` set, only rows whose ``split_column`` (default ``"split"``) equals it are kept; a split
    value that no row has is an error. ``group_column`` fills ``Sample.group``.
    """
    header, rows = read_csv_rows(path)
    i_path = column_index(header, path_column, path)
    i_label = column_index(header, label_column, path)
    if split is not None and split_column is None:
        split_column = "split"
    i_split = column_index(header, split_column, path) if split_column is not None else None
    i_group = column_index(header, group_column, path) if group_column is not None else None
    samples: list[Sample] = []
    seen_splits: set[str] = set()
    for number, row in rows:
        source = f"{path}:{number}"
        if i_split is not None:
            value = row[i_split].strip()
            seen_splits.add(value)
            if split is not None and value != split:
                continue
        rel = row[i_path]
        if not rel.strip():
            raise DataError(f"{source}: empty {path_column!r} field")
        label = ranks.to_rank(row[i_label], source)
        group = row[i_group].strip() if i_group is not None else None
        samples.append(Sample(os.path.join(os.fspath(root), rel), label, source, group))
    if split is not None and not samples:
        raise DataError(
            f"{path}: no rows with {split_column}={split!r}; splits present: {sorted(seen_splits)}"
        )
    return samples


def read_folder_samples(
    root: StrPath, ranks: RankSpace, extensions: Iterable[str] = IMAGE_EXTENSIONS
) -> list[Sample]:
    """One sub-folder per rank: ``root/<rank name or integer label>/<image>``.

    Sub-folder names go through ``ranks.to_rank`` (so an unknown folder is an error with a suggestion);
    hidden folders and files without an image extension are ignored. Samples come sorted by rank, then
    file name; ``source`` is the image path itself.
    """
    root_path = Path(root)
    if not root_path.is_dir():
        raise DataError(f"image folder not found: {root}")
    exts = {e.lower() for e in extensions}
    samples: list[Sample] = []
    for folder in sorted(p for p in root_path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        rank = ranks.to_rank(folder.name, f"{folder} (rank folder)")
        for file in sorted(folder.iterdir()):
            if file.is_file() and file.suffix.lower() in exts:
                samples.append(Sample(str(file), rank, str(file)))
    if not samples:
        raise DataError(f"no images with extensions {sorted(exts)} in the rank sub-folders of {root}")
    samples.sort(key=lambda s: (s.label, s.path))
    return samples


def check_files(samples: Sequence[Sample], limit: int = 20) -> None:
    """Raise one DataError listing every missing image file (the first ``limit`` by name, then a count)."""
    missing = [s for s in samples if not os.path.isfile(s.path)]
    if not missing:
        return
    lines = [f"  {s.path}  (from {s.source})" for s in missing[:limit]]
    if len(missing) > limit:
        lines.append(f"  ... and {len(missing) - limit} more")
    raise DataError(f"{len(missing)} of {len(samples)} image files are missing:\n" + "\n".join(lines))
