"""Few-shot and label-shift sampling (hand-computed counts), determinism, split files."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ordinalclip.data import (
    DataError,
    RankSpace,
    Sample,
    few_shot,
    label_shift,
    load_split,
    read_list_file,
    save_split,
)


def _samples(counts: dict[int, int]) -> list[Sample]:
    # interleave labels so "original order" is not the same as "grouped by label"
    out, i = [], 0
    remaining = dict(counts)
    while any(remaining.values()):
        for label in sorted(remaining):
            if remaining[label]:
                out.append(Sample(f"img/{i:03d}.jpg", label, f"train.txt:{i + 1}"))
                remaining[label] -= 1
                i += 1
    return out


def _is_ordered_subset(sub: list[Sample], full: list[Sample]) -> bool:
    positions = [full.index(s) for s in sub]
    return positions == sorted(positions) and len(set(positions)) == len(positions)


def test_few_shot_counts_and_short_labels():
    full = _samples({0: 5, 1: 2, 2: 3})
    picked = few_shot(full, shots=3, seed=1)
    assert Counter(s.label for s in picked) == {0: 3, 1: 2, 2: 3}
    assert _is_ordered_subset(picked, full)
    assert few_shot(full, shots=1, seed=5) != few_shot(full, shots=2, seed=5)
    assert Counter(s.label for s in few_shot(full, shots=10, seed=0)) == {0: 5, 1: 2, 2: 3}


def test_few_shot_strict_names_label_and_count():
    full = _samples({0: 5, 1: 2, 2: 3})
    with pytest.raises(DataError, match="few-shot: label 1 has only 2 samples, 3 requested"):
        few_shot(full, shots=3, seed=1, strict=True)
    assert len(few_shot(full, shots=2, seed=1, strict=True)) == 6
    with pytest.raises(ValueError, match="shots must be >= 1"):
        few_shot(full, shots=0, seed=1)


def test_sampling_is_deterministic_and_seed_dependent():
    full = _samples({0: 30, 1: 30})
    assert few_shot(full, 4, seed=7) == few_shot(full, 4, seed=7)
    assert len({tuple(s.path for s in few_shot(full, 4, seed=seed)) for seed in range(5)}) > 1
    assert label_shift(full, 1, 0.2, seed=3) == label_shift(full, 1, 0.2, seed=3)
    assert len({tuple(s.path for s in label_shift(full, 2, 0.2, seed=seed)) for seed in range(5)}) > 1


def test_sampling_does_not_touch_global_random_state():
    import random

    random.seed(123)
    expected = random.random()
    random.seed(123)
    few_shot(_samples({0: 9, 1: 9}), 2, seed=0)
    label_shift(_samples({0: 9, 1: 9}), 1, 0.5, seed=0)
    assert random.random() == expected


def test_label_shift_counts_by_hand():
    # counts 10, 8, 8, 3, 1; top-3 = labels 0 (10), 1 (8), 2 (8: tie with 1, smaller label first)
    full = _samples({0: 10, 1: 8, 2: 8, 3: 3, 4: 1})
    shifted = label_shift(full, top_k=3, scale=0.2, seed=0)
    # int(10*0.2)=2, int(8*0.2)=int(1.6)=1, 1; the rest untouched
    assert Counter(s.label for s in shifted) == {0: 2, 1: 1, 2: 1, 3: 3, 4: 1}
    assert _is_ordered_subset(shifted, full)
    # the tie: with k=2 label 2 (also 8) is not thinned
    assert Counter(s.label for s in label_shift(full, top_k=2, scale=0.2, seed=0)) == {
        0: 2,
        1: 1,
        2: 8,
        3: 3,
        4: 1,
    }
    # max(int(n*scale), 1): every thinned label keeps at least one; k beyond the label count thins all
    assert Counter(s.label for s in label_shift(full, top_k=99, scale=0.1, seed=0)) == {
        0: 1,
        1: 1,
        2: 1,
        3: 1,
        4: 1,
    }
    assert label_shift(full, top_k=0, scale=0.1, seed=0) == full


@pytest.mark.parametrize(("top_k", "scale"), [(-1, 0.5), (2, 0.0), (2, 1.5)])
def test_label_shift_rejects_bad_arguments(top_k, scale):
    with pytest.raises(ValueError):
        label_shift(_samples({0: 3}), top_k, scale, seed=0)


def test_saved_split_reloads_identically(tmp_path):
    full = _samples({0: 6, 1: 4, 2: 5}) + [Sample("dir with space/x y.jpg", 1, "csv:9", group="people")]
    picked = few_shot(full, shots=2, seed=42)
    split = tmp_path / "splits" / "fewshot-2-seed42.txt"
    save_split(picked, split)
    again = load_split(split)
    assert [(s.path, s.label, s.group) for s in again] == [(s.path, s.label, s.group) for s in picked]
    assert again[0].source == f"{split}:2"  # line 1 is the header comment
    # resampling with the same seed gives the saved subset back
    assert [(s.path, s.label) for s in few_shot(full, 2, seed=42)] == [(s.path, s.label) for s in again]
    # a split without spaces is also a valid reference list file (rank indices, offset 0)
    plain = tmp_path / "plain.txt"
    save_split(picked[:3], plain)
    reread = read_list_file(plain, "", RankSpace(3))
    assert [(s.path, s.label) for s in reread] == [(s.path, s.label) for s in picked[:3]]


def test_split_file_errors(tmp_path):
    with pytest.raises(DataError, match="tab or newline"):
        save_split([Sample("a\tb.jpg", 0, "l:1")], tmp_path / "s.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("a.jpg\t1\nb.jpg 2\n")
    with pytest.raises(DataError, match=r"bad\.txt:2: expected 'path<TAB>rank"):
        load_split(bad)
    bad.write_text("a.jpg\t-1\n")
    with pytest.raises(DataError, match=r"bad\.txt:1: rank '-1' is not a non-negative integer"):
        load_split(bad)


path_st = st.text(
    st.characters(blacklist_characters="\t\n\r", blacklist_categories=("Cs",)), min_size=1, max_size=15
).filter(lambda p: p.strip() and not p.startswith("#"))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=50, deadline=None)
@given(
    rows=st.lists(
        st.tuples(path_st, st.integers(0, 200), st.none() | st.sampled_from(["a", "b c"])), max_size=10
    )
)
def test_split_round_trip_property(tmp_path, rows):
    samples = [Sample(p, label, "x:1", group) for p, label, group in rows]
    save_split(samples, tmp_path / "s.txt")
    assert [(s.path, s.label, s.group) for s in load_split(tmp_path / "s.txt")] == rows
