"""Engine data layer: every input format, protocols and saved splits, transforms, samplers, resumable loader.

The tiny generated datasets and run configs shared with the other tests are in tests/helpers.py.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from PIL import Image

from ordinalclip.config import RunConfig
from ordinalclip.config.typed import ConfigError, from_dict
from ordinalclip.data import IMAGENET_MEAN, IMAGENET_STD, DataError, ImageDataset, Sample, build_transforms
from ordinalclip.engine.sampling import EpochSampler, ResumableLoader, SeededItems
from ordinalclip.engine.splits import build_feature_rows, parse_feature_ref, resolve_data, save_splits
from ordinalclip.engine.transforms import eval_transform, tower_preprocess, transform_settings
from ordinalclip.modeling import build_model
from tests.helpers import (
    COUNTS,
    NUM_RANKS,
    make_features,
    make_folders,
    make_images,
    tiny_clip_custom,
    write_csv,
    write_lists,
)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    write_lists(root, make_images(root))
    return root


def _run_cfg(data: dict[str, Any], **model: Any) -> RunConfig:
    return from_dict(RunConfig, {"model": {"num_ranks": NUM_RANKS, **model}, "data": data})


# --------------------------------------------------------------------------------------------------- formats


def _pairs(samples: list[Sample]) -> list[tuple[str, int]]:
    return sorted((Path(s.path).name, s.label) for s in samples)


def test_list_csv_and_folder_formats_read_the_same_samples(image_root: Path):
    items = {
        s: [(f"img/{s}/{n.name}", int(n.name[0])) for n in sorted((image_root / "img" / s).iterdir())]
        for s in COUNTS
    }
    csv_path = write_csv(image_root, items, offset=16)
    folders = make_folders(image_root, items)
    from_list = resolve_data(
        _run_cfg(
            {"format": "list", "root": str(image_root), **{s: str(image_root / f"{s}.txt") for s in COUNTS}}
        )
    )
    from_csv = resolve_data(
        _run_cfg(
            {
                "format": "csv",
                "root": str(image_root),
                "train": csv_path,
                "rank_offset": 16,
                "columns": {"path": "file", "label": "age", "split": "part"},
            }
        )
    )
    from_folder = resolve_data(_run_cfg({"format": "folder", **folders}))
    for split, n in COUNTS.items():
        expected = sorted((Path(rel).name, label) for rel, label in items[split])
        assert len(expected) == n * NUM_RANKS
        assert _pairs(from_list.splits[split]) == expected
        assert _pairs(from_csv.splits[split]) == expected  # age 16 + r -> rank r, one file split by column
        assert _pairs(from_folder.splits[split]) == expected
    # list paths are joined to data.root and exist
    assert all(Path(s.path).is_file() for s in from_list.splits["train"])


def test_features_format_refers_to_rows_of_the_file(tmp_path: Path):
    path = make_features(tmp_path / "f.npz")
    cfg = _run_cfg(
        {"format": "features", "train": path, "columns": {"split": "split"}},
        image={"kind": "features", "input_dim": 8},
    )
    data = resolve_data(cfg)
    assert data.features and data.sizes() == {s: n * NUM_RANKS for s, n in COUNTS.items()}
    raw = np.load(path)
    for split in COUNTS:
        rows = build_feature_rows(cfg, data.splits[split], data.ranks)
        expected = raw["features"][raw["split"] == split]
        assert torch.equal(rows.features, torch.from_numpy(expected))
        assert rows.labels.tolist() == raw["labels"][raw["split"] == split].tolist()
    assert parse_feature_ref(data.splits["val"][3].path) == (path, "val", 3)
    with pytest.raises(ConfigError, match="image.kind: features"):
        resolve_data(_run_cfg({"format": "features", "train": path}))
    with pytest.raises(ConfigError, match="input_dim is 6 but .* holds 8-wide features"):
        resolve_data(
            _run_cfg({"format": "features", "train": path}, image={"kind": "features", "input_dim": 6})
        )


def test_few_shot_and_label_shift_splits_are_saved_and_reused(image_root: Path, tmp_path: Path):
    base = {"format": "list", "root": str(image_root), **{s: str(image_root / f"{s}.txt") for s in COUNTS}}
    shots = resolve_data(_run_cfg({**base, "few_shot": {"shots": 2, "seed": 5}}))
    train = shots.splits["train"]
    assert sorted(np.bincount([s.label for s in train]).tolist()) == [2] * NUM_RANKS
    again = resolve_data(_run_cfg({**base, "few_shot": {"shots": 2, "seed": 5}}))
    assert again.splits["train"] == train  # same seed, same subset
    others = [
        resolve_data(_run_cfg({**base, "few_shot": {"shots": 2, "seed": s}})).splits["train"]
        for s in range(6, 10)
    ]
    assert any(o != train for o in others)  # the seed matters
    save_splits(shots, tmp_path / "splits")
    reused = resolve_data(
        _run_cfg({**base, "splits_dir": str(tmp_path / "splits"), "few_shot": {"shots": 1, "seed": 99}})
    )  # protocols not re-applied
    for split in COUNTS:
        assert [(s.path, s.label) for s in reused.splits[split]] == [
            (s.path, s.label) for s in shots.splits[split]
        ]

    shift = resolve_data(_run_cfg({**base, "label_shift": {"top_k": 2, "scale": 0.5, "seed": 1}}))
    counts = sorted(np.bincount([s.label for s in shift.splits["train"]]).tolist())
    assert counts == [2, 2, 4, 4]  # two ranks thinned to int(4 * 0.5)
    assert shift.splits["val"] == shots.splits["val"]  # val/test untouched


def test_missing_files_are_reported_together(image_root: Path, tmp_path: Path):
    bad = tmp_path / "train.txt"
    bad.write_text("img/train/0_0.png 0\nnope/a.png 1\nnope/b.png 2\n")
    with pytest.raises(DataError) as err:
        resolve_data(_run_cfg({"format": "list", "root": str(image_root), "train": str(bad)}))
    assert "2 of 3 image files are missing" in str(err.value)
    assert f"{bad}:2" in str(err.value) and f"{bad}:3" in str(err.value)


def test_same_val_and_test_lists_warn(image_root: Path):
    val = str(image_root / "val.txt")
    with pytest.warns(UserWarning, match="val and test hold the same samples"):
        resolve_data(
            _run_cfg(
                {
                    "format": "list",
                    "root": str(image_root),
                    "train": str(image_root / "train.txt"),
                    "val": val,
                    "test": val,
                }
            )
        )


def test_empty_training_split_is_an_error(tmp_path: Path):
    (tmp_path / "train.txt").write_text("# nothing\n")
    with pytest.raises(DataError, match="training split is empty"):
        resolve_data(_run_cfg({"format": "list", "train": str(tmp_path / "train.txt")}))


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "rank names file not found"), (b"\n  \n", "no rank names"), (b"\xff\xfe young", "not UTF-8")],
)
def test_rank_names_file_errors_name_the_config_key(image_root: Path, tmp_path: Path, content, problem):
    from ordinalclip.api import _self_contained

    names = tmp_path / "names.txt"
    if content is not None:
        names.write_bytes(content)
    data = {"format": "list", "root": str(image_root), "train": str(image_root / "train.txt")}
    with pytest.raises(DataError, match=rf"^data\.rank_names_file: .*{problem}"):
        resolve_data(_run_cfg({**data, "rank_names_file": str(names)}))
    with pytest.raises(DataError, match=rf"^data\.rank_names_file: .*{problem}"):
        _self_contained(_run_cfg({**data, "rank_names_file": str(names)}))
    with pytest.raises(ConfigError, match=rf"^model\.prompts\.rank_names_file: .*{problem}"):
        _self_contained(_run_cfg(data, prompts={"learner": "plain", "rank_names_file": str(names)}))
    with pytest.raises(ConfigError, match=rf"^model\.prompts\.base_rank_names_file: .*{problem}"):
        _self_contained(_run_cfg(data, prompts={"base_rank_names_file": str(names)}))


# ------------------------------------------------------------------------------------------------ transforms


@pytest.fixture(scope="module")
def tiny_model():
    cfg = _run_cfg({}, clip={"name": None, "custom": tiny_clip_custom()}, prompts={"num_base_ranks": 2})
    return build_model(cfg.model)


@pytest.mark.parametrize(
    "data, mean, std",
    [
        ({}, OPENAI_DATASET_MEAN, OPENAI_DATASET_STD),  # default: what the tower's weights expect
        ({"normalize": "imagenet"}, IMAGENET_MEAN, IMAGENET_STD),
        ({"mean": [0.5, 0.25, 0.0], "std": [0.5, 0.25, 1.0]}, (0.5, 0.25, 0.0), (0.5, 0.25, 1.0)),
    ],
)
def test_eval_transform_normalisation(tiny_model, data, mean, std):
    cfg = _run_cfg(data)
    settings = transform_settings(cfg, tower_preprocess(tiny_model))
    assert settings["size"] == 32 and settings["resize"] == 37  # the tiny ViT's input; round(32 * 256 / 224)
    out = eval_transform(cfg, tower_preprocess(tiny_model))(Image.new("RGB", (50, 40), (255, 0, 128)))
    pixel = torch.tensor([1.0, 0.0, 128 / 255])
    expected = (pixel - torch.tensor(mean)) / torch.tensor(std)
    assert out.shape == (3, 32, 32)
    assert torch.allclose(out[:, 5, 7], expected.float(), atol=1e-5)


def test_features_tower_has_no_image_transform():
    cfg = _run_cfg({}, image={"kind": "features", "input_dim": 8})
    assert eval_transform(cfg, tower_preprocess(torch.nn.Identity())) is None


# -------------------------------------------------------------------------------------- samplers and loaders


def test_epoch_sampler_is_a_function_of_seed_and_epoch():
    a, b = EpochSampler(10, seed=7), EpochSampler(10, seed=7)
    b.set_epoch(1)
    b.set_epoch(0)
    assert list(a) == list(b)  # nothing but (seed, epoch) matters
    assert sorted(i for i, _ in a) == list(range(10))
    a.set_epoch(1)
    assert [i for i, _ in a] != [i for i, _ in b] and {e for _, e in a} == {1}
    assert list(EpochSampler(10, seed=8)) != list(b)
    shards = [EpochSampler(10, seed=7, num_replicas=3, rank=r) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    covered = [i for s in shards for i, _ in s]
    assert sorted(set(covered)) == list(range(10)) and len(covered) == 12  # padded by repeating the start
    c = EpochSampler(10, seed=7)
    c.skip = 6
    assert list(c) == list(b)[6:] and list(c) == list(b)  # skip applies to the next pass only


class _RandomTensor(torch.utils.data.Dataset):
    """Item i is a random draw (stands in for a random augmentation)."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.rand(3), i


def test_seeded_items_draw_the_same_augmentation_in_any_order():
    ds = SeededItems(_RandomTensor(), seed=11)
    forward = [ds[(i, 2)][0] for i in range(6)]
    torch.rand(100)  # the global RNG state must not matter
    backward = [ds[(i, 2)][0] for i in reversed(range(6))][::-1]
    assert all(torch.equal(f, b) for f, b in zip(forward, backward))
    assert not torch.equal(ds[(0, 3)][0], forward[0])  # another epoch, another draw
    state = torch.get_rng_state()
    ds[(1, 1)]
    assert torch.equal(torch.get_rng_state(), state)  # and the global RNG is left untouched


def test_resumable_loader_skips_done_batches_or_moves_to_next_epoch():
    sampler = EpochSampler(10, seed=1)
    loader = ResumableLoader(
        SeededItems(_RandomTensor(), 0), batch_size=2, sampler=sampler, progress=lambda: (3, 2)
    )
    assert loader.state_dict() == {"epoch": 3, "batches": 2}
    loader.load_state_dict({"epoch": 3, "batches": 2})
    assert sampler.epoch == 3 and sampler.skip == 4
    loader.load_state_dict({"epoch": 3, "batches": 5})  # len(loader) == 5: the epoch was complete
    assert sampler.epoch == 4 and sampler.skip == 0


def test_image_dataset_with_train_transform_is_reproducible_per_epoch(image_root: Path):
    samples = [Sample(str(image_root / "img/train/0_0.png"), 0, "x")]
    ds = SeededItems(ImageDataset(samples, build_transforms(True, size=24, resize=32)), seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first, again = ds[(0, 0)][0], ds[(0, 0)][0]
    assert torch.equal(first, again)
    assert any(not torch.equal(first, ds[(0, e)][0]) for e in range(1, 6))  # random crop/flip per epoch
