"""Label mapping, list / CSV / folder parsers and the missing-file report."""

from __future__ import annotations

import csv
import string
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ordinalclip.data import (
    DataError,
    RankSpace,
    Sample,
    check_files,
    read_csv_samples,
    read_folder_samples,
    read_list_file,
)

AGES = RankSpace(62, offset=16)  # ages 16..77
GROUPS = RankSpace(4, names=["0-2", "4-6", "8-13", "15-20"])


# ----------------------------------------------------------------------------------------- RankSpace


def test_rank_space_maps_integers_and_names():
    assert AGES.to_rank("16", "f:1") == 0
    assert AGES.to_rank(" 77 ", "f:1") == 61
    assert AGES.to_rank("20.0", "f:1") == 4
    assert GROUPS.to_rank("8-13", "f:1") == 2
    assert GROUPS.to_rank("3", "f:1") == 3  # integer labels still work next to names
    assert torch.equal(AGES.values()[:3], torch.tensor([16.0, 17.0, 18.0]))
    assert AGES.values().shape == (62,)
    assert AGES.name(0) == "16" and GROUPS.name(3) == "15-20"


@pytest.mark.parametrize(
    ("space", "raw", "expected"),
    [
        (AGES, "15", "label 15 is out of range: expected an integer in [16, 77]"),
        (AGES, "78", "label 78 is out of range"),
        (AGES, "abc", "label 'abc' is not an integer"),
        (AGES, "16.5", "label '16.5' is not an integer"),
        (AGES, "nan", "label 'nan' is not an integer"),
        (AGES, "inf", "label 'inf' is not an integer"),
        (GROUPS, "4-7", "unknown class '4-7'"),
        (GROUPS, "4", "label 4 is out of range: expected an integer in [0, 3]"),
    ],
)
def test_rank_space_errors_name_the_source(space, raw, expected):
    with pytest.raises(DataError) as info:
        space.to_rank(raw, "labels.txt:7")
    assert str(info.value).startswith("labels.txt:7: ")
    assert expected in str(info.value)


def test_rank_space_suggests_the_closest_name():
    with pytest.raises(DataError, match=r"did you mean '4-6'\?"):
        GROUPS.to_rank("4-7", "x:1")
    with pytest.raises(DataError) as info:
        GROUPS.to_rank("zebra", "x:1")
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_ranks=1),
        dict(num_ranks=3, names=["a", "b"]),
        dict(num_ranks=2, names=["a", "a"]),
        dict(num_ranks=2, names=["a", " b"]),
        dict(num_ranks=2, offset=1.5),
    ],
)
def test_rank_space_rejects_bad_definitions(kwargs):
    with pytest.raises(ValueError):
        RankSpace(**kwargs)


names_st = st.lists(
    st.text(alphabet=string.ascii_letters + "-_.", min_size=1, max_size=8),
    min_size=2,
    max_size=12,
    unique=True,
).filter(lambda ns: not any(n.lstrip("+-").replace(".", "", 1).isdigit() for n in ns))


@given(num_ranks=st.integers(2, 200), offset=st.integers(-1000, 1000), data=st.data())
def test_rank_space_integer_round_trip(num_ranks, offset, data):
    space = RankSpace(num_ranks, offset=offset)
    rank = data.draw(st.integers(0, num_ranks - 1))
    assert space.to_rank(str(rank + offset), "f:1") == rank
    assert space.values()[rank].item() == rank + offset


@given(names=names_st, data=st.data())
def test_rank_space_name_round_trip(names, data):
    space = RankSpace(len(names), names=names)
    rank = data.draw(st.integers(0, len(names) - 1))
    assert space.to_rank(names[rank], "f:1") == rank
    assert space.name(rank) == names[rank]


@given(raw=st.text(max_size=20), num_ranks=st.integers(2, 50), offset=st.integers(-5, 5))
def test_rank_space_arbitrary_text_gives_rank_or_data_error(raw, num_ranks, offset):
    space = RankSpace(num_ranks, offset=offset)
    try:
        rank = space.to_rank(raw, "f:3")
    except DataError as err:
        assert str(err).startswith("f:3: ")
    else:
        assert 0 <= rank < num_ranks


# ----------------------------------------------------------------------------------------- list files


def test_read_list_file(tmp_path):
    lst = tmp_path / "train.txt"
    lst.write_text("# header comment\na/1.jpg 16\n   \nb/2.jpg\t20 21 22\r\nc/3.jpg 77\n", encoding="utf-8")
    samples = read_list_file(lst, "/data/imgs", AGES)
    assert samples == [
        Sample("/data/imgs/a/1.jpg", 0, f"{lst}:2"),
        Sample("/data/imgs/b/2.jpg", 4, f"{lst}:4"),  # first of several labels
        Sample("/data/imgs/c/3.jpg", 61, f"{lst}:5"),
    ]


def test_read_list_file_names_and_group(tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_text("x.png 8-13\ny.png 0\n")
    samples = read_list_file(lst, tmp_path, GROUPS, group="people")
    assert [(s.label, s.group) for s in samples] == [(2, "people"), (0, "people")]


@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        ("lonely.jpg", "no label"),
        ("a.jpg sixteen", "not an integer"),
        ("a.jpg 15", "out of range"),
        ("a.jpg 99", "out of range"),
        ("a.jpg 16.5", "not an integer"),
    ],
)
def test_read_list_file_bad_lines_name_file_and_line(tmp_path, bad_line, expected):
    lst = tmp_path / "morph_train.txt"
    lst.write_text(f"ok/1.jpg 30\n# comment\n{bad_line}\nok/2.jpg 31\n")
    with pytest.raises(DataError) as info:
        read_list_file(lst, tmp_path, AGES)
    assert "morph_train.txt:3:" in str(info.value)
    assert expected in str(info.value)


def test_read_list_file_bad_encoding_and_missing_file(tmp_path):
    lst = tmp_path / "latin1.txt"
    lst.write_bytes(b"a.jpg 20\n\xe9t\xe9.jpg 21\n")
    with pytest.raises(DataError, match=r"latin1\.txt:2: not valid UTF-8"):
        read_list_file(lst, tmp_path, AGES)
    with pytest.raises(DataError, match="list file not found"):
        read_list_file(tmp_path / "nope.txt", tmp_path, AGES)


def test_read_list_file_tolerates_bom(tmp_path):
    lst = tmp_path / "bom.txt"
    lst.write_bytes(b"\xef\xbb\xbfa.jpg 20\n")
    assert read_list_file(lst, "", AGES) == [Sample("a.jpg", 4, f"{lst}:1")]


path_st = st.text(alphabet=string.ascii_letters + string.digits + "/._-()#", min_size=1, max_size=20).filter(
    lambda p: not p.startswith("#")
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(path_st, st.integers(16, 77), st.sampled_from([" ", "\t", "  \t "])), max_size=15
    ),
    noise=st.lists(st.sampled_from(["", "   ", "# comment 12", "#"]), max_size=15),
)
def test_list_file_round_trip(tmp_path, rows, noise):
    lines, expected = [], []
    for i, (path, age, sep) in enumerate(rows):
        if i < len(noise):
            lines.append(noise[i])
        lines.append(f"{path}{sep}{age}")
        expected.append((path, age - 16, len(lines)))
    lst = tmp_path / "rt.txt"
    lst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    samples = read_list_file(lst, "", AGES)
    assert [(s.path, s.label, s.source) for s in samples] == [(p, r, f"{lst}:{n}") for p, r, n in expected]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=80, deadline=None)
@given(content=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda t: t.encode("utf-8"))))
def test_list_file_garbage_gives_only_data_error(tmp_path, content):
    lst = tmp_path / "garbage.txt"
    lst.write_bytes(content)
    try:
        samples = read_list_file(lst, "", GROUPS)
    except DataError as err:
        assert "garbage.txt" in str(err)
    else:
        assert all(0 <= s.label < 4 for s in samples)


# ----------------------------------------------------------------------------------------- CSV


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


def test_read_csv_samples_with_split_and_custom_columns(tmp_path):
    table = tmp_path / "faces.csv"
    _write_csv(
        table,
        [
            ["file", "age", "fold", "site"],
            ["a.jpg", "16", "train", "x"],
            ["b,with comma.jpg", "40", "test", "y"],
            ["c.jpg", "77", "train", "y"],
        ],
    )
    kw = dict(path_column="file", label_column="age", split_column="fold")
    everything = read_csv_samples(table, "/r", AGES, **kw, group_column="site")
    assert [(s.path, s.label, s.source, s.group) for s in everything] == [
        ("/r/a.jpg", 0, f"{table}:2", "x"),
        ("/r/b,with comma.jpg", 24, f"{table}:3", "y"),
        ("/r/c.jpg", 61, f"{table}:4", "y"),
    ]
    train = read_csv_samples(table, "/r", AGES, **kw, split="train")
    assert [s.path for s in train] == ["/r/a.jpg", "/r/c.jpg"]
    # split without split_column uses a column called "split"
    other = tmp_path / "o.csv"
    _write_csv(other, [["path", "label", "split"], ["a.jpg", "0-2", "val"], ["b.jpg", "4-6", "test"]])
    assert [s.label for s in read_csv_samples(other, "", GROUPS, split="test")] == [1]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([["path", "age"], ["a.jpg", "20"]], r":1: no column 'label' in header \['path', 'age'\]"),
        ([["pth", "label"], ["a.jpg", "20"]], r":1: no column 'path'.*did you mean 'pth'\?"),
        ([["path", "label"], ["a.jpg", "20"], ["b.jpg", "20", "extra"]], r":3: expected 2 fields"),
        ([["path", "label"], ["a.jpg", "20"], ["", "20"]], r":3: empty 'path' field"),
        ([["path", "label"], ["a.jpg", "20"], ["b.jpg", "200"]], r":3: label 200 is out of range"),
        ([["path", "label"], ["a.jpg", "x"]], r":2: label 'x' is not an integer"),
    ],
)
def test_read_csv_samples_errors(tmp_path, rows, expected):
    table = tmp_path / "bad.csv"
    _write_csv(table, rows)
    with pytest.raises(DataError, match=rf"bad\.csv{expected}"):
        read_csv_samples(table, "", AGES)


def test_read_csv_samples_unknown_split_and_empty_file(tmp_path):
    table = tmp_path / "s.csv"
    _write_csv(table, [["path", "label", "split"], ["a.jpg", "20", "train"]])
    with pytest.raises(DataError, match=r"no rows with split='valid'; splits present: \['train'\]"):
        read_csv_samples(table, "", AGES, split="valid")
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="empty CSV file"):
        read_csv_samples(empty, "", AGES)
    quoted = tmp_path / "q.csv"
    quoted.write_text('path,label\n"a.jpg"x,20\n')  # text after a closing quote
    with pytest.raises(DataError, match=r"q\.csv:2: malformed CSV"):
        read_csv_samples(quoted, "", AGES, path_column="path")


csv_path_st = st.text(
    st.characters(blacklist_characters="\r\x00", blacklist_categories=("Cs",)), min_size=1, max_size=15
).filter(lambda p: p.strip() != "")


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(csv_path_st, st.integers(16, 77)), max_size=12))
def test_csv_round_trip(tmp_path, rows):
    table = tmp_path / "rt.csv"
    _write_csv(table, [["path", "label"]] + [[p, str(a)] for p, a in rows])
    samples = read_csv_samples(table, "", AGES)
    assert [(s.path, s.label) for s in samples] == [(p, a - 16) for p, a in rows]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=80, deadline=None)
@given(content=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda t: "path,label\n" + t)))
def test_csv_garbage_gives_only_data_error(tmp_path, content):
    table = tmp_path / "garbage.csv"
    table.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    try:
        samples = read_csv_samples(table, "", AGES, split_column=None)
    except DataError as err:
        assert "garbage.csv" in str(err)
    else:
        assert all(0 <= s.label < 62 for s in samples)


# ----------------------------------------------------------------------------------------- folders


def test_read_folder_samples_orders_ranks_numerically(tmp_path):
    for folder, files in {"9": ["b.png", "a.JPG"], "10": ["c.png", "notes.txt"], ".cache": ["x.png"]}.items():
        (tmp_path / folder).mkdir()
        for name in files:
            (tmp_path / folder / name).write_bytes(b"")
    samples = read_folder_samples(tmp_path, RankSpace(11))
    assert [(Path(s.path).name, s.label) for s in samples] == [("a.JPG", 9), ("b.png", 9), ("c.png", 10)]
    assert samples[0].source == str(tmp_path / "9" / "a.JPG")


def test_read_folder_samples_by_names_and_errors(tmp_path):
    for folder in ["15-20", "0-2"]:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "img.png").write_bytes(b"")
    assert [s.label for s in read_folder_samples(tmp_path, GROUPS)] == [0, 3]
    (tmp_path / "4-7").mkdir()
    with pytest.raises(DataError, match=r"4-7 \(rank folder\): unknown class '4-7'.*did you mean '4-6'"):
        read_folder_samples(tmp_path, GROUPS)
    with pytest.raises(DataError, match="image folder not found"):
        read_folder_samples(tmp_path / "missing", GROUPS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        read_folder_samples(tmp_path / "empty", GROUPS)


# ----------------------------------------------------------------------------------------- check_files


def test_check_files_reports_all_missing_at_once(tmp_path):
    present = tmp_path / "here.png"
    present.write_bytes(b"")
    samples = [Sample(str(present), 0, "l.txt:1")] + [
        Sample(str(tmp_path / f"gone{i:02d}.png"), 0, f"l.txt:{i + 2}") for i in range(23)
    ]
    check_files(samples[:1])  # nothing missing: no error
    with pytest.raises(DataError) as info:
        check_files(samples)
    text = str(info.value)
    assert text.startswith("23 of 24 image files are missing:")
    assert "gone00.png  (from l.txt:2)" in text and "gone19.png" in text
    assert "gone20.png" not in text
    assert text.endswith("... and 3 more")
