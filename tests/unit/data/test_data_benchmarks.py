"""Benchmark adapters on tiny generated trees in each documented layout."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from PIL import Image

from ordinalclip.data import (
    ADIENCE_GROUPS,
    HCI_DECADES,
    DataError,
    ImageDataset,
    adience,
    aesthetics,
    check_files,
    hci,
    load_benchmark,
    morph2,
)


def _tree(images_root: Path, list_file: Path, rows: list[tuple[str, str]]) -> None:
    """Write 8x8 PNGs under images_root and a reference list file naming them."""
    list_file.parent.mkdir(parents=True, exist_ok=True)
    for rel, _ in rows:
        (images_root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (40, 80, 120)).save(images_root / rel)
    list_file.write_text("".join(f"{rel} {label}\n" for rel, label in rows))


def _pairs(samples, root: Path) -> list[tuple[str, int]]:
    return [(str(Path(s.path).relative_to(root)), s.label) for s in samples]


def test_morph2_without_test_list_warns_and_never_reuses_val(tmp_path):
    _tree(
        tmp_path,
        tmp_path / "data_list/ET_proto_train.txt",
        [("Album2/001_16M.png", "16"), ("Album2/002_77F.png", "77")],
    )
    _tree(tmp_path, tmp_path / "data_list/ET_proto_val.txt", [("Album2/003_40M.png", "40")])
    with pytest.warns(UserWarning, match="no .*ET_proto_test.txt; test is None"):
        bench = morph2(tmp_path)
    assert bench.ranks.num_ranks == 101 and bench.ranks.offset == 0
    assert _pairs(bench.train, tmp_path) == [("Album2/001_16M.png", 16), ("Album2/002_77F.png", 77)]
    assert _pairs(bench["val"], tmp_path) == [("Album2/003_40M.png", 40)]
    assert bench.test is None and bench.splits()["test"] is None
    check_files(bench.train + bench.val)
    image, label = ImageDataset(bench.train)[1]
    assert image.shape == (3, 8, 8) and label == 77


def test_morph2_with_test_list(tmp_path):
    for name, age in [("train", "20"), ("val", "30"), ("test", "100")]:
        _tree(tmp_path, tmp_path / f"data_list/ET_proto_{name}.txt", [(f"{name}.png", age)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bench = morph2(tmp_path)
    assert _pairs(bench.test, tmp_path) == [("test.png", 100)]
    assert load_benchmark("morph2", tmp_path).test == bench.test


def test_morph2_missing_required_lists(tmp_path):
    with pytest.raises(DataError, match="dataset root not found"):
        morph2(tmp_path / "absent")
    _tree(tmp_path, tmp_path / "data_list/ET_proto_train.txt", [("a.png", "20")])
    with pytest.raises(DataError, match=r"morph2: list file not found: .*ET_proto_val\.txt"):
        morph2(tmp_path)


def test_adience_fold_with_names_and_integers(tmp_path):
    fold = tmp_path / "folds" / "fold_2"
    _tree(tmp_path, fold / "train.txt", [("faces/a.png", "0"), ("faces/b.png", "60-")])
    _tree(tmp_path, fold / "val.txt", [("faces/c.png", "8-13")])
    _tree(tmp_path, fold / "test.txt", [("faces/d.png", "25-32"), ("faces/e.png", "7")])
    bench = adience(tmp_path, fold=2)
    assert bench.ranks.names == ADIENCE_GROUPS and bench.ranks.num_ranks == 8
    assert _pairs(bench.train, tmp_path) == [("faces/a.png", 0), ("faces/b.png", 7)]
    assert [s.label for s in bench.val] == [2]
    assert [s.label for s in bench.test] == [4, 7]
    with pytest.raises(DataError, match=r"adience: list file not found: .*fold_0/train\.txt"):
        adience(tmp_path, fold=0)
    with pytest.raises(ValueError, match="fold must be an integer in 0..4"):
        adience(tmp_path, fold=5)


def test_adience_missing_val_warns_and_bad_label_names_line(tmp_path):
    fold = tmp_path / "folds" / "fold_0"
    _tree(tmp_path, fold / "train.txt", [("a.png", "0-2")])
    _tree(tmp_path, fold / "test.txt", [("b.png", "4-6")])
    with pytest.warns(UserWarning, match="val is None"):
        assert adience(tmp_path).val is None
    (fold / "test.txt").write_text("b.png 4-6\nc.png 38-44\n")
    with pytest.raises(DataError, match=r"fold_0/test\.txt:2: unknown class '38-44'.*did you mean '38-43'"):
        adience(tmp_path)


def test_aesthetics_all_categories_keep_groups(tmp_path):
    lists = tmp_path / "lists"
    for i, cat in enumerate(["nature", "animal", "urban", "people"]):
        for split in ["train", "val", "test"]:
            _tree(tmp_path, lists / f"{cat}_{split}.txt", [(f"{cat}/{split}{i}.png", str(i + 1))])
    bench = aesthetics(tmp_path)
    assert bench.ranks.num_ranks == 5 and bench.ranks.offset == 1
    assert [(s.group, s.label) for s in bench.train] == [
        ("nature", 0),
        ("animal", 1),
        ("urban", 2),
        ("people", 3),
    ]
    assert [s.group for s in bench.test] == ["nature", "animal", "urban", "people"]
    people = aesthetics(tmp_path, "people")
    assert _pairs(people.val, tmp_path) == [("people/val3.png", 3)] and people.name == "aesthetics-people"
    with pytest.raises(ValueError, match="unknown category 'portrait'"):
        aesthetics(tmp_path, "portrait")


def test_aesthetics_partial_val_lists_are_an_error(tmp_path):
    lists = tmp_path / "lists"
    for cat in ["nature", "animal", "urban", "people"]:
        for split in ["train", "test"]:
            _tree(tmp_path, lists / f"{cat}_{split}.txt", [(f"{cat}.png", "5")])
    with pytest.warns(UserWarning, match="val is None"):
        assert aesthetics(tmp_path).val is None
    _tree(tmp_path, lists / "urban_val.txt", [("urban.png", "3")])
    with pytest.raises(
        DataError, match=r"val lists exist for some categories but not for \['nature_val.txt'"
    ):
        aesthetics(tmp_path)
    (lists / "people_train.txt").write_text("people.png 6\n")
    with pytest.raises(
        DataError, match=r"people_train\.txt:1: label 6 is out of range: expected an integer in \[1, 5\]"
    ):
        aesthetics(tmp_path, "people")


def test_hci_decades_under_default_images_root(tmp_path):
    labels = tmp_path / "data" / "labels" / "fold_1"
    images = tmp_path / "data" / "imgs" / "decades"
    _tree(images, labels / "train.txt", [("1930s/a.png", "0"), ("1970s/b.png", "1970s")])
    _tree(images, labels / "val.txt", [("1950s/c.png", "2")])
    _tree(images, labels / "test.txt", [("1960s/d.png", "1960s")])
    bench = load_benchmark("hci", tmp_path, fold=1)
    assert bench.ranks.names == HCI_DECADES
    assert _pairs(bench.train, images) == [("1930s/a.png", 0), ("1970s/b.png", 4)]
    assert [s.label for s in bench.val] == [2] and [s.label for s in bench.test] == [3]
    check_files(bench.train + bench.val + bench.test)
    other = hci(tmp_path, fold=1, images_root=tmp_path / "elsewhere")
    assert other.train[0].path == str(tmp_path / "elsewhere" / "1930s/a.png")
    with pytest.raises(ValueError, match="unknown benchmark 'imdb'"):
        load_benchmark("imdb", tmp_path)
