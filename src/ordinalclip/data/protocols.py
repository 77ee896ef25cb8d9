"""Training-set protocols of the paper (reference notes §2.2): few-shot and label-distribution shift, plus
split files.

Both samplers draw from their own ``random.Random(seed)`` (never the global RNG), visit labels in sorted
order and return the kept samples in their original list order, so a (samples, arguments, seed) triple
always gives the same subset. Save the result with :func:`save_split` to make a run repeatable without
re-sampling. Val/test lists are never resampled.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from ordinalclip.fileio import atomic_write_text

from .samples import DataError, Sample, StrPath, _decoded_lines

_SPLIT_HEADER = "# ordinalclip split: path<TAB>rank[<TAB>group]"


def _by_label(samples: Sequence[Sample]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = defaultdict(list)
    for i, sample in enumerate(samples):
        groups[sample.label].append(i)
    return groups


def few_shot(samples: Sequence[Sample], shots: int, seed: int, strict: bool = False) -> list[Sample]:
    """Keep ``shots`` random samples per label.

    Labels with fewer than ``shots`` samples keep all of them (the reference behaviour, so the result can
    have fewer than ``shots * num_labels`` samples); with ``strict=True`` such a label is a DataError
    naming the label and its count instead.
    """
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    rng = random.Random(seed)
    keep: list[int] = []
    for label, idx in sorted(_by_label(samples).items()):
        if len(idx) < shots:
            if strict:
                raise DataError(f"few-shot: label {label} has only {len(idx)} samples, {shots} requested")
            keep += idx
        else:
            keep += rng.sample(idx, shots)
    return [samples[i] for i in sorted(keep)]


def label_shift(samples: Sequence[Sample], top_k: int, scale: float, seed: int) -> list[Sample]:
    """Thin out the ``top_k`` most frequent labels to ``max(int(n * scale), 1)`` random samples each.

    Labels are ranked by their count in ``samples`` (descending, ties by smaller label first); the other
    labels keep everything. ``top_k`` larger than the number of labels thins all of them.
    """
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    rng = random.Random(seed)
    groups = _by_label(samples)
    thinned = set(sorted(groups, key=lambda label: (-len(groups[label]), label))[:top_k])
    keep: list[int] = []
    for label, idx in sorted(groups.items()):
        keep += rng.sample(idx, max(int(len(idx) * scale), 1)) if label in thinned else idx
    return [samples[i] for i in sorted(keep)]


def save_split(samples: Sequence[Sample], path: StrPath) -> None:
    """Write samples as a tab-separated list file: ``path<TAB>rank[<TAB>group]`` per line (UTF-8).

    Labels are written as rank indices, image paths exactly as stored (usually root-joined). Tabs keep paths
    with spaces intact; tabs and newlines inside paths or groups are rejected.
    """
    lines = [_SPLIT_HEADER]
    for s in samples:
        for what, text in (("path", s.path), ("group", s.group or "")):
            if any(c in text for c in "\t\n\r"):
                raise DataError(f"{s.source}: cannot save a {what} containing a tab or newline: {text!r}")
        if not s.path.strip() or s.path.startswith("#"):
            raise DataError(f"{s.source}: cannot save path {s.path!r} (blank or starting with '#')")
        lines.append("\t".join([s.path, str(s.label)] + ([s.group] if s.group is not None else [])))
    atomic_write_text(path, "\n".join(lines) + "\n")


def load_split(path: StrPath) -> list[Sample]:
    """Read a file written by :func:`save_split` back (``source`` becomes ``path:line``)."""
    samples: list[Sample] = []
    for number, line in _decoded_lines(path, "split file"):
        if not line.strip() or line.startswith("#"):
            continue
        source = f"{path}:{number}"
        fields = line.split("\t")
        if len(fields) not in (2, 3):
            raise DataError(
                f"{source}: expected 'path<TAB>rank[<TAB>group]', got {len(fields)} tab-separated fields"
            )
        label = fields[1].strip()
        if not label.isascii() or not label.isdigit():
            raise DataError(f"{source}: rank {label!r} is not a non-negative integer")
        samples.append(Sample(fields[0], int(label), source, fields[2] if len(fields) == 3 else None))
    return samples
