"""Bad input data through the ``ordinalclip`` command: corrupt images, missing files, bad labels, empty splits
and too-large few-shot requests, rank-name files of the wrong length; and property checks of label parsing.

A user error exits with code 2 and one ``error: ...`` line naming the file and line.
"""

from __future__ import annotations

import csv
import io
import json
import string
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ordinalclip.config import RunConfig
from ordinalclip.config.typed import from_dict
from ordinalclip.data import DataError, RankSpace, read_csv_samples, read_list_file
from ordinalclip.engine.splits import resolve_data
from tests.helpers import (
    NUM_RANKS,
    list_config,
    list_files,
    make_images,
    run_cli,
    tiny_config,
    tiny_model_dict,
    user_error,
    write_lists,
)

NAMES = ["young", "adult", "middle", "old"]
PREP = {"size": 32, "resize": 36, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


# ---------------------------------------------------------------------------------------------- 1. bad images


def _truncated_png(path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


@pytest.mark.slow
def test_bad_images_through_the_cli_name_their_line_or_are_skipped_and_counted(tmp_path, capsys, caplog):
    data = tmp_path / "d"
    data.mkdir()
    items = make_images(data, counts={"train": 2})
    _truncated_png(data / "cut.png")
    (data / "notes.jpg").write_text("a text file with an image name")
    items["train"] += [("cut.png", 1), ("notes.jpg", 2)]  # lines 9 and 10
    train = write_lists(data, items)["train"]
    config = list_config(tmp_path, {"root": str(data), "train": train}, trainer={"max_epochs": 1})

    code, _, err = run_cli(["train", "-c", config], capsys)
    assert code == 2
    message = user_error(err)
    assert (
        f"{train}:9: cannot read image {data / 'cut.png'}" in message
        or f"{train}:10: cannot read image {data / 'notes.jpg'}" in message
    ), message

    run_dir = tmp_path / "skipping"
    code, _, err = run_cli(
        ["train", "-c", config, "--set", "data.on_bad_image=skip", "--run-dir", str(run_dir)], capsys
    )
    assert code == 0, err
    assert "skipping 2 of 10 unreadable images" in caplog.text  # the log
    metrics = json.loads((run_dir / "metrics.json").read_text())  # the run summary
    assert metrics["data"]["skipped_images"] == 2
    assert {(s["source"], Path(s["path"]).name) for s in metrics["skipped_images"]} == {
        (f"{train}:9", "cut.png"),
        (f"{train}:10", "notes.jpg"),
    }
    assert metrics["last"]["step"] == 2  # 8 good images in batches of 4


# ------------------------------------------------------------------------------------------- 2. missing files


def test_missing_files_are_reported_together_before_a_run_folder_exists(root, tmp_path, capsys):
    train = tmp_path / "train.txt"
    train.write_text((root / "train.txt").read_text() + "gone/a.png 0\ngone/b.png 3\n")
    test = tmp_path / "test.txt"
    test.write_text("gone/c.png 1\n" + (root / "test.txt").read_text())
    config = list_config(tmp_path, {"root": str(root), "train": str(train), "test": str(test)})
    code, _, err = run_cli(["train", "-c", config], capsys)
    assert code == 2
    message = user_error(err)
    assert message.startswith("error: 3 of 15 image files are missing:")
    for name, source in (
        ("gone/a.png", f"{train}:9"),
        ("gone/b.png", f"{train}:10"),
        ("gone/c.png", f"{test}:1"),
    ):
        assert f"{root / name}  (from {source})" in message
    assert not (tmp_path / "runs").exists()


# -------------------------------------------------------------------------------------------------- 3. labels


@pytest.mark.parametrize(
    ("label", "names", "expected"),
    [
        ("9", None, "label 9 is out of range: expected an integer in [0, 3]"),
        ("two", None, "label 'two' is not an integer"),
        ("olld", NAMES, "unknown class 'olld'"),
    ],
)
def test_bad_labels_through_the_cli_name_file_and_line(root, tmp_path, capsys, label, names, expected):
    train = tmp_path / "train.txt"
    train.write_text(f"# header\nimg/train/0_0.png 0\n\nimg/train/1_0.png {label}\n")
    config = list_config(tmp_path, {"root": str(root), "train": str(train), "rank_names": names})
    code, _, err = run_cli(["train", "-c", config], capsys)
    assert code == 2
    message = user_error(err)
    assert message.startswith(f"error: {train}:4: {expected}"), message
    if names:
        assert "did you mean 'old'?" in message
    assert not (tmp_path / "runs").exists()


def test_bad_csv_label_through_the_cli_names_file_and_line(root, tmp_path, capsys):
    table = tmp_path / "ages.csv"
    table.write_text("file,age\nimg/train/0_0.png,16\nimg/train/1_0.png,15\n")
    config = list_config(
        tmp_path,
        {
            "format": "csv",
            "root": str(root),
            "train": str(table),
            "rank_offset": 16,
            "columns": {"path": "file", "label": "age"},
        },
    )
    code, _, err = run_cli(["train", "-c", config], capsys)
    assert code == 2
    assert user_error(err).startswith(
        f"error: {table}:3: label 15 is out of range: expected an integer in [16, 19]"
    )


# ----------------------------------------------------------------------------------------- 4. empty, few-shot


def test_empty_split_and_too_large_few_shot(root, tmp_path, capsys):
    empty = tmp_path / "val.txt"
    empty.write_text("# no images yet\n\n")
    config = list_config(tmp_path, {**list_files(root, "train"), "val": str(empty)})
    code, _, err = run_cli(["train", "-c", config], capsys)
    assert code == 2
    assert user_error(err) == f"error: the val split is empty: no samples in {empty} (data.val)"

    config = list_config(
        tmp_path, {**list_files(root, "train", "val"), "few_shot": {"shots": 3, "strict": True}}
    )
    code, _, err = run_cli(["train", "-c", config], capsys)
    assert code == 2
    assert user_error(err) == "error: few-shot: label 0 has only 2 samples, 3 requested"
    assert not (tmp_path / "runs").exists()

    # the documented fallback (strict: false, the reference behaviour): short ranks keep all their samples
    cfg = from_dict(
        RunConfig,
        tiny_config(tmp_path, {"format": "list", **list_files(root, "train"), "few_shot": {"shots": 3}}),
    )
    data = resolve_data(cfg)
    assert np.bincount([s.label for s in data.splits["train"]]).tolist() == [2, 2, 2, 2]
    assert "few-shot: 3 per rank (seed 3) -> 8 training samples" in data.notes


# ---------------------------------------------------------------------------------------------- 6. rank names


@pytest.mark.parametrize("learner", ["rank", "plain"])
def test_rank_names_file_with_a_wrong_count_names_the_file_and_both_counts(root, tmp_path, capsys, learner):
    names = tmp_path / "names.txt"
    names.write_text("a\nb\nc\nd\ne\n")  # 5: neither C=4 nor C'=2
    key = "base_rank_names_file" if learner == "rank" else "rank_names_file"
    model = tiny_model_dict(prompts={"learner": learner, "num_base_ranks": 2, key: str(names)})
    config = list_config(tmp_path, list_files(root, "train"), model)
    code, _, err = run_cli(["train", "-c", config], capsys)
    assert code == 2
    message = user_error(err)
    assert str(names) in message and "5" in message and "C=4" in message and "C'=2" in message, message


# ------------------------------------------------------------------------------------------------- hypothesis


label_st = st.integers(0, NUM_RANKS - 1).map(str) | st.sampled_from(NAMES)
bad_label_st = st.one_of(
    st.integers().filter(lambda v: not 0 <= v < NUM_RANKS).map(str),
    st.text(string.ascii_letters + "-_.", min_size=1, max_size=8).filter(lambda t: t not in NAMES),
    st.sampled_from(["1.5", "nan", "inf", "3e9", "OLD", "young!"]),
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60, deadline=None)
@given(
    labels=st.lists(label_st, max_size=12),
    noise=st.lists(st.sampled_from(["", "# note 9", "  "]), max_size=12),
    bad=bad_label_st,
    data=st.data(),
)
def test_a_bad_label_anywhere_is_reported_at_its_line(tmp_path, labels, noise, bad, data):
    ranks = RankSpace(NUM_RANKS, names=NAMES)
    position = data.draw(st.integers(0, len(labels)))
    rows = labels[:position] + [bad] + labels[position:]

    lines, bad_line = [], 0
    for i, label in enumerate(rows):
        if i < len(noise):
            lines.append(noise[i])
        lines.append(f"img/{i}.png {label}")
        if i == position:
            bad_line = len(lines)
    listing = tmp_path / "l.txt"
    listing.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        read_list_file(listing, "", ranks)
    assert str(err.value).startswith(f"{listing}:{bad_line}: "), str(err.value)

    table = tmp_path / "t.csv"
    with open(table, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(
            [["path", "label"], *([f"img/{i}.png", r] for i, r in enumerate(rows))]
        )
    with pytest.raises(DataError) as err:
        read_csv_samples(table, "", ranks)
    assert str(err.value).startswith(f"{table}:{position + 2}: "), str(err.value)


names_st = st.lists(
    st.text(string.ascii_lowercase + " _", min_size=1, max_size=6).map(str.strip).filter(bool),
    min_size=2,
    max_size=12,
    unique=True,
)


@given(names=names_st, offset=st.integers(-100, 100), data=st.data())
def test_names_and_integer_labels_agree(names, offset, data):
    space = RankSpace(len(names), names=names, offset=offset)
    rank = data.draw(st.integers(0, len(names) - 1))
    assert space.to_rank(names[rank], "f:1") == space.to_rank(str(rank + offset), "f:1") == rank
    assert space.name(rank) == names[rank] and space.values()[rank].item() == rank + offset
    with pytest.raises(DataError, match=r"^f:2: label .* is out of range"):
        space.to_rank(str(offset + len(names) + data.draw(st.integers(0, 1000))), "f:2")
