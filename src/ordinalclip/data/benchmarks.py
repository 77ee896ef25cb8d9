"""Adapters for the paper's benchmarks: train/val/test sample lists + the rank space, from a user's root.

The datasets themselves are not redistributable; download them yourself and arrange (or link) the list
files as below. All list files use the reference format ``relative/path label`` (one image per line,
whitespace-separated, ``#`` comments allowed); labels may be integers or the rank names shown.

MORPH II (``morph2(root)``), the reference layout::

    root/data_list/ET_proto_train.txt   train
    root/data_list/ET_proto_val.txt     validation
    root/data_list/ET_proto_test.txt    test (optional)
    root/<paths from the lists>         images, list paths are relative to root

    101 ranks; labels are ages used directly (rank = age, offset 0).
    The reference configs evaluate on ET_proto_val.txt for both validation and test (reference notes §3.4).
    Without a separate test list this adapter returns ``test=None`` and warns; it never reuses val as test.

Adience (``adience(root, fold=k)``), 5-fold protocol, k in 0..4::

    root/folds/fold_{k}/train.txt, val.txt (optional), test.txt
    root/<paths from the lists>

    8 age groups, ranks 0..7 named "0-2", "4-6", "8-13", "15-20", "25-32", "38-43", "48-53", "60-".

Image aesthetics (``aesthetics(root, category="all")``), categories nature, animal, urban, people::

    root/lists/{category}_train.txt, {category}_val.txt (optional), {category}_test.txt
    root/<paths from the lists>

    5 ranks, labels 1..5 (offset 1). category="all" concatenates the four categories; every sample's
    ``group`` holds its category so per-category metrics can be computed.

Historical image dating (``hci(root, fold=k)``), HistoricalColor-ECCV2012, k in 0..4::

    root/data/labels/fold_{k}/train.txt, val.txt (optional), test.txt
    root/data/imgs/decades/<paths from the lists>   (override with images_root=)

    5 ranks, labels 0..4 named "1930s", "1940s", "1950s", "1960s", "1970s".

A missing optional list gives ``None`` for that split and a warning; a missing required one is an error
naming the expected path. Image files are not checked here; call ``check_files`` before training.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .samples import DataError, RankSpace, Sample, StrPath, read_list_file

ADIENCE_GROUPS: tuple[str, ...] = ("0-2", "4-6", "8-13", "15-20", "25-32", "38-43", "48-53", "60-")
HCI_DECADES: tuple[str, ...] = ("1930s", "1940s", "1950s", "1960s", "1970s")
AESTHETICS_CATEGORIES: tuple[str, ...] = ("nature", "animal", "urban", "people")
SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class Benchmark:
    """Sample lists of one benchmark (``None`` = that split has no list) and its rank space."""

    name: str
    ranks: RankSpace
    train: list[Sample]
    val: list[Sample] | None
    test: list[Sample] | None

    def splits(self) -> dict[str, list[Sample] | None]:
        """``{"train": [...], "val": [...] or None, "test": [...] or None}``."""
        return {"train": self.train, "val": self.val, "test": self.test}

    def __getitem__(self, split: str) -> list[Sample] | None:
        if split not in SPLITS:
            raise KeyError(f"unknown split {split!r}; expected one of {SPLITS}")
        return self.splits()[split]


def _read(
    list_path: Path, images_root: Path, ranks: RankSpace, required: bool, name: str, group: str | None = None
) -> list[Sample] | None:
    if list_path.is_file():
        return read_list_file(list_path, images_root, ranks, group=group)
    if required:
        raise DataError(f"{name}: list file not found: {list_path}")
    return None


def _check_root(root: StrPath, name: str) -> Path:
    path = Path(root)
    if not path.is_dir():
        raise DataError(f"{name}: dataset root not found: {root}")
    return path


def _fold_dir(base: Path, fold: int, name: str) -> Path:
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold <= 4:
        raise ValueError(f"{name}: fold must be an integer in 0..4, got {fold!r}")
    return base / f"fold_{fold}"


def _folds(name: str, list_dir: Path, images_root: Path, ranks: RankSpace) -> Benchmark:
    train = _read(list_dir / "train.txt", images_root, ranks, True, name)
    val = _read(list_dir / "val.txt", images_root, ranks, False, name)
    test = _read(list_dir / "test.txt", images_root, ranks, True, name)
    if val is None:
        warnings.warn(
            f"{name}: no {list_dir / 'val.txt'}; val is None (select checkpoints on train "
            "loss or 'last', not on test)",
            UserWarning,
            stacklevel=3,
        )
    assert train is not None
    return Benchmark(name, ranks, train, val, test)


def morph2(root: StrPath, images_root: StrPath | None = None) -> Benchmark:
    """MORPH II in the reference layout (see the module docstring); 101 ranks, rank = age."""
    base = _check_root(root, "morph2")
    images = Path(images_root) if images_root is not None else base
    ranks = RankSpace(101)
    lists = base / "data_list"
    train = _read(lists / "ET_proto_train.txt", images, ranks, True, "morph2")
    val = _read(lists / "ET_proto_val.txt", images, ranks, True, "morph2")
    test = _read(lists / "ET_proto_test.txt", images, ranks, False, "morph2")
    if test is None:
        warnings.warn(
            f"morph2: no {lists / 'ET_proto_test.txt'}; test is None. The reference reports on "
            "ET_proto_val.txt for both validation and test (selection on test); this adapter does not "
            "reuse val as test. Provide a held-out test list for unbiased numbers.",
            UserWarning,
            stacklevel=2,
        )
    assert train is not None and val is not None
    return Benchmark("morph2", ranks, train, val, test)


def adience(root: StrPath, fold: int = 0, images_root: StrPath | None = None) -> Benchmark:
    """Adience age groups, fold ``fold`` of 5 (see the module docstring); 8 named ranks."""
    base = _check_root(root, "adience")
    ranks = RankSpace(len(ADIENCE_GROUPS), names=ADIENCE_GROUPS)
    images = Path(images_root) if images_root is not None else base
    return _folds("adience", _fold_dir(base / "folds", fold, "adience"), images, ranks)


def hci(root: StrPath, fold: int = 0, images_root: StrPath | None = None) -> Benchmark:
    """Historical image dating (HCI decades), fold ``fold`` of 5 (see the module docstring); 5 named ranks."""
    base = _check_root(root, "hci")
    ranks = RankSpace(len(HCI_DECADES), names=HCI_DECADES)
    images = Path(images_root) if images_root is not None else base / "data" / "imgs" / "decades"
    return _folds("hci", _fold_dir(base / "data" / "labels", fold, "hci"), images, ranks)


def aesthetics(root: StrPath, category: str = "all", images_root: StrPath | None = None) -> Benchmark:
    """Image aesthetics, one category or ``"all"`` (see the module docstring); 5 ranks, labels 1..5.

    Every sample's ``group`` is its category.
    """
    base = _check_root(root, "aesthetics")
    if category != "all" and category not in AESTHETICS_CATEGORIES:
        raise ValueError(
            f"aesthetics: unknown category {category!r}; expected 'all' or one of {AESTHETICS_CATEGORIES}"
        )
    categories = AESTHETICS_CATEGORIES if category == "all" else (category,)
    ranks = RankSpace(5, offset=1)
    images = Path(images_root) if images_root is not None else base
    lists = base / "lists"
    out: dict[str, list[Sample] | None] = {}
    for split in SPLITS:
        parts = [
            _read(lists / f"{c}_{split}.txt", images, ranks, split != "val", "aesthetics", group=c)
            for c in categories
        ]
        missing = [f"{c}_{split}.txt" for c, part in zip(categories, parts) if part is None]
        if missing and len(missing) < len(parts):
            raise DataError(
                f"aesthetics: {split} lists exist for some categories but not for {missing} "
                f"in {lists}; provide all or none"
            )
        out[split] = None if missing else [s for part in parts if part is not None for s in part]
    if out["val"] is None:
        warnings.warn(
            f"aesthetics: no {category}_val.txt lists in {lists}; val is None", UserWarning, stacklevel=2
        )
    train = out["train"]
    assert train is not None
    return Benchmark(f"aesthetics-{category}", ranks, train, out["val"], out["test"])


BENCHMARKS: dict[str, Callable[..., Benchmark]] = {
    "morph2": morph2,
    "adience": adience,
    "aesthetics": aesthetics,
    "hci": hci,
}


def load_benchmark(name: str, root: StrPath, **kwargs: object) -> Benchmark:
    """``load_benchmark("adience", root, fold=2)``: look an adapter up by name and call it."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; available: {sorted(BENCHMARKS)}")
    return BENCHMARKS[name](root, **kwargs)
