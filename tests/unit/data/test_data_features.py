"""Precomputed features in .npz, .npy + CSV and .safetensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file
from torch.utils.data import DataLoader

from ordinalclip.data import SPLIT_CODES, DataError, FeatureDataset, RankSpace, load_features

FEATS = np.arange(12, dtype=np.float64).reshape(4, 3)  # row i = [3i, 3i+1, 3i+2]
AGES = RankSpace(62, offset=16)


def test_integer_split_codes_select_the_documented_rows(tmp_path):
    # A file written elsewhere with the documented integer codes (0 train, 1 val, 2 test) and the same rows
    # named by strings select the same rows, split by split.
    codes, names = np.array([1, 0, 2, 1]), np.array(["val", "train", "test", "val"])
    np.savez(tmp_path / "codes.npz", features=FEATS, labels=np.arange(4), split=codes)
    np.savez(tmp_path / "names.npz", features=FEATS, labels=np.arange(4), split=names)
    for split, rows in (("train", [1]), ("val", [0, 3]), ("test", [2])):
        by_code = load_features(tmp_path / "codes.npz", split)
        by_name = load_features(tmp_path / "names.npz", split)
        assert by_code.labels.tolist() == by_name.labels.tolist() == rows
        assert SPLIT_CODES[split] == codes[rows[0]]
    np.savez(tmp_path / "no_val.npz", features=FEATS, labels=np.arange(4), split=np.array([0, 0, 2, 2]))
    with pytest.raises(DataError, match="no rows with split 'val'"):
        load_features(tmp_path / "no_val.npz", "val")


def test_npz_with_string_split_and_offset(tmp_path):
    path = tmp_path / "f.npz"
    np.savez(
        path,
        features=FEATS,
        labels=np.array([16, 20, 77, 30]),
        split=np.array(["train", "val", "train", "val"]),
    )
    ds = load_features(path, ranks=AGES)
    assert ds.features.dtype == torch.float32 and ds.labels.dtype == torch.long
    assert ds.labels.tolist() == [0, 4, 61, 14] and ds.num_features == 3 and len(ds) == 4
    val = load_features(path, "val", ranks=AGES)
    assert torch.equal(val.features, torch.tensor([[3.0, 4.0, 5.0], [9.0, 10.0, 11.0]]))
    assert val.labels.tolist() == [4, 14]
    x, y = val[1]
    assert x.tolist() == [9.0, 10.0, 11.0] and y.item() == 14


def test_npz_with_int_codes_and_float_labels(tmp_path):
    path = tmp_path / "f.npz"
    np.savez(
        path,
        features=FEATS.astype(np.float16),
        labels=np.array([0.0, 1.0, 2.0, 1.0]),
        split=np.array([0, 2, 2, 1]),
    )
    test = load_features(path, "test")
    assert test.labels.tolist() == [1, 2] and test.features[:, 0].tolist() == [3.0, 6.0]


def test_npy_with_csv_labels_names_and_split(tmp_path):
    np.save(tmp_path / "feats.npy", FEATS.astype(np.float32))
    (tmp_path / "feats.csv").write_text("label,split\n0-2,train\n8-13,test\n4-6,train\n15-20,test\n")
    groups = RankSpace(4, names=["0-2", "4-6", "8-13", "15-20"])
    ds = load_features(tmp_path / "feats.npy", "train", ranks=groups)
    assert ds.labels.tolist() == [0, 1] and ds.features[:, 0].tolist() == [0.0, 6.0]
    # an explicit CSV path and custom column names
    (tmp_path / "other.csv").write_text("y\n3\n2\n1\n0\n")
    ds = load_features(tmp_path / "feats.npy", labels_csv=tmp_path / "other.csv", label_column="y")
    assert ds.labels.tolist() == [3, 2, 1, 0]


def test_npy_csv_errors_name_the_line(tmp_path):
    np.save(tmp_path / "feats.npy", FEATS)
    (tmp_path / "feats.csv").write_text("label\n1\n2\nx\n4\n")
    with pytest.raises(DataError, match=r"feats\.csv:4: label 'x' is not an integer rank index"):
        load_features(tmp_path / "feats.npy")
    (tmp_path / "feats.csv").write_text("label\n1\n2\n3\n")
    with pytest.raises(DataError, match=r"row-count mismatch: 4 feature rows but 3 labels in .*feats\.csv"):
        load_features(tmp_path / "feats.npy")
    with pytest.raises(DataError, match="label CSV not found"):
        load_features(tmp_path / "feats.npy", labels_csv=tmp_path / "missing.csv")


def test_safetensors_with_int_split(tmp_path):
    path = tmp_path / "f.safetensors"
    save_file(
        {
            "features": FEATS.astype(np.float32),
            "labels": np.array([1, 2, 3, 4], np.int64),
            "split": np.array([1, 1, 0, 2], np.int64),
        },
        str(path),
    )
    val = load_features(path, "val", ranks=RankSpace(5, offset=1))
    assert val.labels.tolist() == [0, 1] and val.features.shape == (2, 3)
    assert val.features[1].tolist() == [3.0, 4.0, 5.0]
    assert len(load_features(path)) == 4


@pytest.mark.parametrize(
    ("arrays", "kwargs", "expected"),
    [
        (dict(features=FEATS, labels=np.arange(3)), {}, "row-count mismatch: 4 feature rows but 3 labels"),
        (dict(features=FEATS, labels=np.arange(4), split=np.zeros(5, int)), {}, "4 feature rows but 5 split"),
        (dict(features=FEATS), {}, r"missing arrays \['labels'\]"),
        (dict(features=FEATS[0], labels=np.arange(1)), {}, r"numeric \(N, F\) array"),
        (dict(features=FEATS, labels=np.arange(4)), dict(split="val"), "has no split column"),
        (
            dict(features=FEATS, labels=np.arange(4), split=np.zeros(4, int)),
            dict(split="test"),
            r"no rows with split 'test'; present: \[0\]",
        ),
        (
            dict(features=FEATS, labels=np.arange(4), split=np.zeros(4, int)),
            dict(split="holdout"),
            "has no integer code",
        ),
        (
            dict(features=FEATS, labels=np.array([16, 17, 15, 16])),
            dict(ranks=AGES),
            r"label row 2 is 15, expected \[16, 77\]",
        ),
        (dict(features=FEATS, labels=np.array([0, -1, 2, 3])), {}, "label row 1 is -1, expected >= 0"),
        (
            dict(features=FEATS, labels=np.array([0, 1, 2.5, 3])),
            {},
            "label row 2 is .*2.5.*expected an integer",
        ),
        (
            dict(features=np.where(FEATS == 7, np.nan, FEATS), labels=np.arange(4)),
            {},
            r"feature row 2 contains NaN",
        ),
    ],
)
def test_npz_errors(tmp_path, arrays, kwargs, expected):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=expected):
        load_features(path, **kwargs)


def test_unreadable_and_unsupported_files(tmp_path):
    obj = tmp_path / "obj.npz"
    np.savez(obj, features=FEATS, labels=np.arange(4), split=np.array(["a", None, "b", "c"], dtype=object))
    with pytest.raises(DataError, match="object arrays are not supported"):
        load_features(obj)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 20)
    with pytest.raises(DataError, match=r"junk\.safetensors: cannot read"):
        load_features(junk)
    (tmp_path / "f.pt").write_bytes(b"")
    with pytest.raises(DataError, match="unsupported feature file type '.pt'"):
        load_features(tmp_path / "f.pt")
    with pytest.raises(DataError, match="feature file not found"):
        load_features(tmp_path / "none.npz")


def test_feature_dataset_batches_and_checks_shapes():
    ds = FeatureDataset(torch.ones(5, 2, dtype=torch.float64), torch.arange(5, dtype=torch.int32))
    xb, yb = next(iter(DataLoader(ds, batch_size=5)))
    assert (
        xb.dtype == torch.float32
        and xb.shape == (5, 2)
        and yb.dtype == torch.long
        and yb.tolist() == list(range(5))
    )
    with pytest.raises(DataError, match="row-count mismatch: 5 feature rows but 4 labels"):
        FeatureDataset(torch.ones(5, 2), torch.arange(4))
    with pytest.raises(DataError, match="2-D"):
        FeatureDataset(torch.ones(5), torch.arange(5))
