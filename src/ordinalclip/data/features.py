"""Precomputed feature vectors + labels (for training heads/prompts on a frozen image tower).

Three file formats, all read by :func:`load_features`:

* ``.npz``: arrays ``features`` (N, F), ``labels`` (N,), optional ``split`` (N,) as strings
  (``"train"``/``"val"``/``"test"``) or integer codes.
* ``.npy`` + CSV: the ``.npy`` holds ``features`` (N, F); the CSV (default: same name with ``.csv``) has a
  header, a label column and an optional split column; CSV data row i describes feature row i.
* ``.safetensors``: tensors ``features`` (N, F), ``labels`` (N,), optional ``split`` (N,) integer codes.

Integer split codes follow :data:`SPLIT_CODES`: 0 = train, 1 = val, 2 = test. Labels are raw label values:
with a :class:`RankSpace` they are mapped to ranks (``label - offset``, CSV labels may also be rank names)
and range-checked; without one they must already be rank indices >= 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .samples import DataError, RankSpace, StrPath, column_index, read_csv_rows

SPLIT_CODES: dict[str, int] = {"train": 0, "val": 1, "test": 2}


class FeatureDataset(Dataset):
    """``dataset[i] -> (features[i] float32 (F,), labels[i] long scalar)`` over in-memory tensors."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, source: str = "<memory>") -> None:
        if features.ndim != 2:
            raise DataError(f"{source}: features must be 2-D (N, F), got shape {tuple(features.shape)}")
        if labels.ndim != 1:
            raise DataError(f"{source}: labels must be 1-D (N,), got shape {tuple(labels.shape)}")
        if features.shape[0] != labels.shape[0]:
            raise DataError(
                f"{source}: row-count mismatch: {features.shape[0]} feature rows but {labels.shape[0]} labels"
            )
        self.features = features.to(torch.float32)
        self.labels = labels.to(torch.long)
        self.source = source

    @property
    def num_features(self) -> int:
        """Feature width F."""
        return int(self.features.shape[1])

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[index], self.labels[index]


def load_features(
    path: StrPath,
    split: str | None = None,
    *,
    ranks: RankSpace | None = None,
    labels_csv: StrPath | None = None,
    label_column: str = "label",
    split_column: str = "split",
) -> FeatureDataset:
    """Load features ``(N, F)`` float32 and labels ``(N,)`` long from .npz, .npy + CSV or .safetensors.

    ``split`` keeps only the rows of that split (the file must then have a split column/array).
    ``labels_csv``/``label_column``/``split_column`` apply to the .npy + CSV format only.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"feature file not found: {path}")
    suffix = path.suffix.lower()
    label_file = path
    labels: np.ndarray | list[tuple[str, str]]  # arrays, or (text, "file:line") pairs from a label CSV
    if suffix == ".npz":
        features, labels, splits = _read_npz(path)
    elif suffix == ".npy":
        features = _np_load(path)
        label_file = Path(labels_csv) if labels_csv is not None else path.with_suffix(".csv")
        labels, splits = _read_label_csv(label_file, label_column, split_column)
    elif suffix == ".safetensors":
        features, labels, splits = _read_safetensors(path)
    else:
        raise DataError(
            f"{path}: unsupported feature file type {suffix!r}; use .npz, .npy (+ .csv) or .safetensors"
        )

    features = np.asarray(features)
    if features.ndim != 2 or features.dtype.kind not in "iuf":
        raise DataError(
            f"{path}: 'features' must be a numeric (N, F) array, got {features.dtype} {features.shape}"
        )
    n = features.shape[0]
    for name, arr in (("labels", labels), ("split", splits)):
        if arr is None:
            continue
        if isinstance(arr, np.ndarray) and arr.ndim != 1:
            raise DataError(f"{path}: '{name}' must be 1-D (N,), got shape {arr.shape}")
        if len(arr) != n:
            raise DataError(
                f"{path}: row-count mismatch: {n} feature rows but {len(arr)} {name}"
                + (f" in {label_file}" if label_file != path else "")
            )
    # Checked after the cast to float32, the precision the model sees: a float64 value such as 1e300 is finite
    # in the file but infinite in float32.
    with np.errstate(over="ignore", invalid="ignore"):
        features = np.ascontiguousarray(features, dtype=np.float32)
    bad_rows = np.flatnonzero(~np.isfinite(features).all(axis=1))
    if bad_rows.size:
        raise DataError(
            f"{path}: feature row {int(bad_rows[0])} contains NaN or inf, or values beyond float32's range "
            f"(|x| > {float(np.finfo(np.float32).max):.3g}) ({bad_rows.size} rows in all)"
        )

    rank_labels = _to_ranks(labels, ranks, path)
    if split is not None:
        keep = _split_mask(splits, split, path)
        features, rank_labels = features[keep], rank_labels[keep]
    return FeatureDataset(
        torch.from_numpy(np.ascontiguousarray(features)),
        torch.from_numpy(rank_labels),
        source=str(path),
    )


def _np_load(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read numpy file: {err}") from None


_NPZ_HINTS = {
    "features": "store features as a numeric (N, F) array",
    "labels": "store labels as integers",
    "split": "store split as strings or int codes",
}


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as err:  # zipfile/numpy raise many types for damaged archives
        raise DataError(f"{path}: cannot read .npz ({type(err).__name__}: {err})") from None
    with npz:
        missing = [k for k in ("features", "labels") if k not in npz.files]
        if missing:
            raise DataError(f"{path}: missing arrays {missing}; found {npz.files}")
        arrays: dict[str, np.ndarray] = {}
        for name in ("features", "labels", "split"):
            if name not in npz.files:
                continue
            try:  # one array at a time, so that an error names the array it is about
                arrays[name] = npz[name]
            except Exception as err:
                pickled = "allow_pickle" in str(err)
                hint = (
                    f"; object arrays are not supported (they need pickle): {_NPZ_HINTS[name]}"
                    if pickled
                    else ""
                )
                raise DataError(
                    f"{path}: cannot read array {name!r} ({type(err).__name__}: {err}){hint}"
                ) from None
    return arrays["features"], arrays["labels"], arrays.get("split")


def _read_safetensors(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises its own error type for a damaged header
        raise DataError(f"{path}: cannot read .safetensors: {err}") from None
    missing = [k for k in ("features", "labels") if k not in tensors]
    if missing:
        raise DataError(f"{path}: missing tensors {missing}; found {sorted(tensors)}")
    split = tensors.get("split")
    # bfloat16 has no numpy dtype, hence the float32 cast before .numpy()
    return (
        tensors["features"].float().numpy(),
        tensors["labels"].numpy(),
        None if split is None else split.numpy(),
    )


def _read_label_csv(
    path: Path, label_column: str, split_column: str
) -> tuple[list[tuple[str, str]], np.ndarray | None]:
    """CSV labels as ``(text, "file:line")`` pairs (kept textual so rank names work) and the split column."""
    header, rows = read_csv_rows(path, "label CSV")
    i_label = column_index(header, label_column, path)
    i_split = header.index(split_column) if split_column in header else None
    labels = [(row[i_label], f"{path}:{number}") for number, row in rows]
    splits = None if i_split is None else np.array([row[i_split].strip() for _, row in rows], dtype=str)
    return labels, splits


def _to_ranks(labels: np.ndarray | list[tuple[str, str]], ranks: RankSpace | None, path: Path) -> np.ndarray:
    """Raw labels -> int64 rank indices ``(N,)``, erroring on the first bad row."""
    if isinstance(labels, list):
        convert = ranks.to_rank if ranks is not None else _plain_rank
        return np.array([convert(text, source) for text, source in labels], dtype=np.int64)
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
        raise DataError(f"{path}: 'labels' must be numeric, got dtype {labels.dtype}")
    if np.issubdtype(labels.dtype, np.floating):
        integral = np.isfinite(labels) & (labels == np.round(labels))
        if not integral.all():
            bad = int(np.flatnonzero(~integral)[0])
            raise DataError(f"{path}: label row {bad} is {labels[bad]!r}, expected an integer")
    as_int = labels.astype(np.int64)
    lo = ranks.offset if ranks is not None else 0
    hi = ranks.offset + ranks.num_ranks - 1 if ranks is not None else None
    outside = (as_int < lo) | ((as_int > hi) if hi is not None else False)
    if outside.any():
        bad = int(np.flatnonzero(outside)[0])
        expected = f"[{lo}, {hi}]" if hi is not None else ">= 0 (rank indices; pass ranks= to map raw labels)"
        raise DataError(
            f"{path}: label row {bad} is {int(as_int[bad])}, expected {expected}"
            f" ({int(outside.sum())} bad rows in all)"
        )
    return as_int - lo


def _plain_rank(text: str, source: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise DataError(
            f"{source}: label {text!r} is not an integer rank index "
            "(pass ranks= to map names or offset labels)"
        ) from None
    if value < 0:
        raise DataError(f"{source}: label {value} is negative; expected a rank index >= 0")
    return value


def _split_mask(splits: np.ndarray | None, split: str, path: Path) -> np.ndarray:
    if splits is None:
        raise DataError(f"{path}: split={split!r} requested but the file has no split column/array")
    if np.issubdtype(splits.dtype, np.integer):
        if split not in SPLIT_CODES:
            raise DataError(f"{path}: split {split!r} has no integer code; codes are {SPLIT_CODES}")
        keep = splits == SPLIT_CODES[split]
        present = sorted({int(v) for v in np.unique(splits)})
    elif splits.dtype.kind in "US":
        values = splits.astype(str)
        keep = values == split
        present = sorted(set(np.unique(values).tolist()))
    else:
        raise DataError(
            f"{path}: 'split' must hold strings or integer codes {SPLIT_CODES}, got {splits.dtype}"
        )
    if not keep.any():
        raise DataError(
            f"{path}: no rows with split {split!r}; present: {present} (int codes: {SPLIT_CODES})"
        )
    return keep
