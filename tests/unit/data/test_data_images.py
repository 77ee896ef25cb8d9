"""Reference transforms, image loading, corrupt-file handling (raise / skip)."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ordinalclip.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataError,
    ImageDataset,
    Sample,
    build_transforms,
    verify_images,
)

# (255, 0, 128) normalised by hand: (1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (128/255 - 0.406) / 0.225
EXPECTED_PIXEL = torch.tensor([2.2489083, -2.0357143, 0.4264924])


def test_constants_are_imagenet():
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406)
    assert IMAGENET_STD == (0.229, 0.224, 0.225)


@pytest.mark.parametrize("train", [True, False])
def test_constant_image_is_normalised_by_hand_values(train):
    out = build_transforms(train)(Image.new("RGB", (300, 170), (255, 0, 128)))
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    assert torch.allclose(out, EXPECTED_PIXEL.view(3, 1, 1).expand(3, 224, 224), atol=1e-5)


def test_eval_is_center_crop_of_square_resize():
    # 256x256 (so the resize is the identity): white centre 224x224, black 16-pixel frame
    img = np.zeros((256, 256, 3), np.uint8)
    img[16:240, 16:240] = 255
    out = build_transforms(False)(Image.fromarray(img))
    white = (1.0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(out, white.view(3, 1, 1).expand(3, 224, 224), atol=1e-5)
    # the resize ignores the aspect ratio: a 512x128 image becomes 256x256 before the crop
    wide = build_transforms(False, size=8, resize=16)(Image.new("RGB", (512, 128), (0, 0, 0)))
    assert wide.shape == (3, 8, 8)


def test_train_crops_randomly_and_flips():
    img = np.zeros((256, 256, 3), np.uint8)
    img[:, 128:] = 255  # left half black, right half white
    tf = build_transforms(True)
    black, white = (
        -torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD),
        (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD),
    )
    left_white = set()
    for seed in range(20):
        torch.manual_seed(seed)
        out = tf(Image.fromarray(img))
        first, last = out[:, 0, 0], out[:, 0, -1]
        flipped = torch.allclose(first, white, atol=1e-5)
        assert torch.allclose(last, black if flipped else white, atol=1e-5)
        assert torch.allclose(first, white if flipped else black, atol=1e-5)
        left_white.add(flipped)
    assert left_white == {True, False}


def test_build_transforms_rejects_crop_larger_than_resize():
    with pytest.raises(ValueError, match="larger than the resize"):
        build_transforms(True, size=300, resize=256)


# ----------------------------------------------------------------------------------------- datasets


def _png(path, mode="RGB", size=(8, 8), color=(10, 20, 30)) -> str:
    Image.new(mode, size, color if mode == "RGB" else 77).save(path)
    return str(path)


def _truncated_png(path) -> str:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return str(path)


@pytest.fixture
def mixed(tmp_path):
    rand = tmp_path / "random.jpg"
    rand.write_bytes(np.random.default_rng(1).bytes(512))
    return [
        Sample(_png(tmp_path / "rgb.png"), 3, "list.txt:1"),
        Sample(str(rand), 1, "list.txt:2"),
        Sample(_png(tmp_path / "gray.png", mode="L"), 0, "list.txt:3"),
        Sample(_truncated_png(tmp_path / "cut.png"), 2, "list.txt:4"),
    ]


def test_image_dataset_loads_rgb_and_converts_grayscale(mixed):
    ds = ImageDataset([mixed[0], mixed[2]], transform=None)
    image, label = ds[0]
    assert image.shape == (3, 8, 8) and label == 3
    assert torch.allclose(image[:, 0, 0], torch.tensor([10, 20, 30]) / 255.0)
    gray, label = ds[1]
    assert gray.shape == (3, 8, 8) and label == 0
    assert torch.allclose(gray, torch.full((3, 8, 8), 77 / 255.0))
    images, labels = next(iter(DataLoader(ds, batch_size=2)))
    assert images.shape == (2, 3, 8, 8) and labels.tolist() == [3, 0]


def test_corrupt_images_raise_naming_file_and_line(mixed):
    ds = ImageDataset(mixed, transform=build_transforms(False, size=4, resize=8))
    assert ds[0][0].shape == (3, 4, 4)
    with pytest.raises(DataError, match=r"^list\.txt:2: cannot read image .*random\.jpg"):
        ds[1]
    with pytest.raises(DataError, match=r"^list\.txt:4: cannot read image .*cut\.png"):
        ds[3]


def test_missing_image_raises_not_found(tmp_path):
    ds = ImageDataset([Sample(str(tmp_path / "nope.png"), 0, "l.txt:9")])
    with pytest.raises(DataError, match=r"l\.txt:9: image file not found: .*nope\.png"):
        ds[0]


def test_verify_images_splits_good_and_bad(mixed):
    good, bad = verify_images(mixed)
    assert good == [mixed[0], mixed[2]]
    assert [s for s, _ in bad] == [mixed[1], mixed[3]]
    assert all(reason for _, reason in bad)


def test_skip_mode_drops_bad_files_and_logs_count(mixed, caplog):
    with caplog.at_level(logging.WARNING, logger="ordinalclip.data.images"):
        ds = ImageDataset(mixed, on_error="skip")
    assert len(ds) == 2 and ds.labels == [3, 0]
    assert [s.source for s, _ in ds.skipped] == ["list.txt:2", "list.txt:4"]
    assert "skipping 2 of 4 unreadable images" in caplog.text
    assert "random.jpg (list.txt:2)" in caplog.text
    assert [ds[i][1] for i in range(len(ds))] == [3, 0]


def test_on_error_is_validated(mixed):
    with pytest.raises(ValueError, match="on_error"):
        ImageDataset(mixed, on_error="ignore")
