"""timm image towers: timm's own features (classifier removed) from a local weights file or random weights, a
projection to the joint width, and timm's preprocessing."""

from __future__ import annotations

import pytest
import timm
import timm.data
import torch
from safetensors.torch import save_file

from ordinalclip.config import RunConfig
from ordinalclip.config.typed import from_dict
from ordinalclip.engine.transforms import tower_preprocess, transform_settings
from ordinalclip.modeling import ModelConfig, build_model
from ordinalclip.modeling.backbones.image import TimmTower
from ordinalclip.modeling.config import ImageTowerConfig


def test_local_weights_give_timms_own_pooled_features(tmp_path):
    torch.manual_seed(0)
    reference = timm.create_model("test_resnet", pretrained=False).eval()  # with its classifier, as released
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    tower = TimmTower("test_resnet", 12, weights=str(path)).eval()
    assert (
        tower.load_report.shape_mismatch == [] and len(tower.load_report.unexpected) == 2
    )  # fc.weight, fc.bias
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        pooled = reference.forward_head(reference.forward_features(images), pre_logits=True)
        torch.testing.assert_close(tower.net(images), pooled, atol=1e-6, rtol=0)
        torch.testing.assert_close(tower(images), pooled @ tower.proj.weight.t(), atol=1e-6, rtol=0)
    assert tower(images).shape == (2, 12)


def test_preprocessing_is_timms_data_config():
    tower = TimmTower("test_vit", 8)
    cfg = timm.data.resolve_data_config({}, model=tower.net)
    assert cfg["input_size"] == (3, 160, 160) and cfg["crop_pct"] == 0.95
    assert tower.preprocess == {
        "size": 160,
        "resize": round(160 / 0.95),
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
    }
    model = build_model(
        ModelConfig(
            arch="linear",
            num_ranks=3,
            embed_dim=8,
            image=ImageTowerConfig(kind="timm", timm_model="test_vit"),
        )
    )
    run = from_dict(RunConfig, {"model": {"arch": "linear", "num_ranks": 3}, "data": {}})
    assert transform_settings(run, tower_preprocess(model)) == {
        "size": 160,
        "resize": 168,
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
    }
    # an explicit crop size takes the usual resize rule, not the tower's
    run.data.image_size = 64
    assert transform_settings(run, tower_preprocess(model))["resize"] == round(64 * 256 / 224)


def test_bad_names_and_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown timm model 'test_resnt'.*test_resnet"):
        TimmTower("test_resnt", 8)
    with pytest.raises(ValueError, match="needs model.image.timm_model"):
        build_model(ModelConfig(arch="linear", num_ranks=3, embed_dim=8, image=ImageTowerConfig(kind="timm")))
    path = tmp_path / "other.safetensors"
    save_file({"something.else": torch.zeros(3)}, str(path))
    with pytest.raises(ValueError, match="has no tensor that fits timm model 'test_resnet'"):
        TimmTower("test_resnet", 8, weights=str(path))
