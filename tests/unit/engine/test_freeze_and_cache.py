"""``optim.freeze_image`` freezes a pretrained trunk, never the random projection after it; the feature cache is
keyed by image content (same bytes at another path, in another list: not encoded again) and stores the trunk's
features, through which the trained projection still runs."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from ordinalclip.config import OptimConfig
from ordinalclip.data import ImageDataset, Sample, build_transforms
from ordinalclip.engine.cache import FeatureCache, cache_decision, encode_for_cache
from ordinalclip.engine.optim import (
    apply_freezing,
    build_optimizer,
    image_trunk_frozen,
    parameter_counts,
    parameter_groups,
)
from ordinalclip.modeling import CosineClassifier, FeatureTower
from ordinalclip.modeling.backbones.image import TimmTower

timm = pytest.importorskip("timm", reason="timm is not installed")


def _tower() -> TimmTower:
    torch.manual_seed(0)
    return TimmTower("test_resnet", output_dim=6)


def test_freeze_image_freezes_the_trunk_and_trains_the_projection():
    model = CosineClassifier(_tower(), num_ranks=3)
    counts = apply_freezing(model, OptimConfig(freeze_image=True, lr=0.1))
    proj = model.image_tower.proj.weight
    assert proj.requires_grad and counts == {"projection": proj.numel(), "prototypes": 3 * 6}
    assert not any(p.requires_grad for p in model.image_tower.net.parameters())
    assert image_trunk_frozen(model)
    groups = parameter_groups(model)
    assert groups["image_tower.proj.weight"] == "projection" and groups["weight"] == "prototypes"
    opt = build_optimizer(model, OptimConfig(freeze_image=True, lr=0.1))
    assert [g["name"] for g in opt.param_groups] == ["projection", "prototypes"]
    n_trunk = sum(p.numel() for p in model.image_tower.net.parameters())
    assert parameter_counts(model) == (
        f"trainable projection {proj.numel():,} + prototypes 18 ({proj.numel() + 18:,}); "
        f"frozen image {n_trunk:,} + logit_scale 1 ({n_trunk + 1:,})"  # the cosine head's fixed scale
    )


def test_a_frozen_random_projection_is_warned_about(caplog):
    caplog.set_level(logging.WARNING, logger="ordinalclip.engine.optim")
    model = CosineClassifier(FeatureTower(8, 4, "linear"), num_ranks=3)
    apply_freezing(model, OptimConfig(freeze_image=True))
    assert "randomly initialised and frozen" in caplog.text
    caplog.clear()
    apply_freezing(
        CosineClassifier(FeatureTower(4, 4, "identity"), num_ranks=3), OptimConfig(freeze_image=True)
    )
    assert "randomly initialised" not in caplog.text


def _images(folder, n=4):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_cache_is_keyed_by_content_and_holds_trunk_features(tmp_path):
    tower = _tower().eval()
    tf = build_transforms(False, size=16, resize=16, mean=[0.5] * 3, std=[0.5] * 3)
    paths = _images(tmp_path / "a")
    copies = tmp_path / "b"
    copies.mkdir()
    for p in paths:  # the same bytes under other names, in another order (another list, CSV or folder)
        shutil.copy(p, copies / f"copy_{p.name}")
    first = ImageDataset([Sample(str(p), 0, str(p)) for p in paths], tf)
    second = ImageDataset([Sample(str(copies / f"copy_{p.name}"), 1, "x") for p in reversed(paths)], tf)
    cache = FeatureCache(tower, {"image": {"kind": "timm"}}, tmp_path / "cache")
    feats = cache.features(first)
    assert cache.encoded == 4
    with torch.no_grad():
        want = tower.net(torch.stack([first[i][0] for i in range(4)]))  # the trunk, not the projection
    torch.testing.assert_close(feats, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(encode_for_cache(tower, torch.stack([first[0][0]])), want[:1])
    other = FeatureCache(tower, {"image": {"kind": "timm"}}, tmp_path / "cache")  # another run
    again = other.features(second)
    assert other.encoded == 0 and other.reused == 4
    torch.testing.assert_close(again, feats.flip(0))
    # a retrained projection does not change the trunk's key: still no encoding
    with torch.no_grad():
        tower.proj.weight.add_(1.0)
    third = FeatureCache(tower, {"image": {"kind": "timm"}}, tmp_path / "cache")
    third.features(first)
    assert third.encoded == 0
    # another transform is another encoder
    tf2 = build_transforms(False, size=12, resize=16, mean=[0.5] * 3, std=[0.5] * 3)
    fourth = FeatureCache(tower, {"image": {"kind": "timm"}}, tmp_path / "cache")
    fourth.features(ImageDataset(first.samples, tf2))
    assert fourth.encoded == 4


def test_cache_decision_says_why():
    from ordinalclip.config import RunConfig

    cfg = RunConfig()
    model = CosineClassifier(_tower(), num_ranks=3)
    assert cache_decision(cfg, model, features_data=False) == (
        False,
        "the image tower trains (set optim.freeze_image: true to train from cached features)",
    )
    apply_freezing(model, OptimConfig(freeze_image=True))
    use, why = cache_decision(cfg, model, features_data=False)
    assert use and "trunk is frozen" in why
    cfg.data.feature_cache = False
    assert cache_decision(cfg, model, features_data=False) == (False, "data.feature_cache is false")


def test_lightning_tips_are_not_printed(caplog):
    from lightning.pytorch.utilities.rank_zero import rank_zero_info

    from ordinalclip.engine.trainer import quiet_lightning

    quiet_lightning()
    caplog.set_level(logging.INFO, logger="lightning.pytorch.utilities.rank_zero")
    rank_zero_info("💡 Tip: For seamless cloud logging and experiment tracking, try installing litlogger")
    rank_zero_info("GPU available: False")
    assert "Tip" not in caplog.text and "GPU available: False" in caplog.text
