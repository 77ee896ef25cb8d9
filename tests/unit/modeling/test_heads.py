"""Baseline heads: CORAL / CORN losses and probabilities by hand, zero-shot CLIP against open_clip's encode_text."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ordinalclip.losses import coral_loss, corn_loss, model_loss
from ordinalclip.metrics import ordinal_metrics, rank_probabilities
from ordinalclip.modeling import (
    ClipConfig,
    ClipTextTower,
    FeatureTower,
    ImageTowerConfig,
    LinearClassifier,
    ModelConfig,
    OrdinalBinaryHead,
    PromptConfig,
    build_model,
    load_clip,
    zero_shot_prototypes,
)
from tests.helpers import tiny_clip_custom


def _bce(z: float, t: float) -> float:
    p = 1 / (1 + math.exp(-z))
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def test_coral_loss_by_hand():
    logits = torch.tensor([[0.5, -1.0], [2.0, 0.3]])
    labels = torch.tensor([1, 2])  # levels [1, 0] and [1, 1]
    expected = ((_bce(0.5, 1) + _bce(-1.0, 0)) + (_bce(2.0, 1) + _bce(0.3, 1))) / 2
    assert abs(float(coral_loss(logits, labels)) - expected) < 1e-6


def test_corn_loss_by_hand():
    logits = torch.tensor([[0.5, -1.0, 0.2], [2.0, 0.3, -0.4], [0.1, 0.7, 1.5]])
    labels = torch.tensor([0, 2, 1])
    # task 0 uses all (targets y>0: 0,1,1); task 1 uses y>=1 (rows 1,2; targets y>1: 1,0); task 2 uses y>=2 (row 1,
    # target 0)
    terms = [_bce(0.5, 0), _bce(2.0, 1), _bce(0.1, 1), _bce(0.3, 1), _bce(0.7, 0), _bce(-0.4, 0)]
    assert abs(float(corn_loss(logits, labels)) - sum(terms) / len(terms)) < 1e-6


def test_probabilities_by_hand():
    z = torch.tensor([[0.0, math.log(1 / 3)]])  # sigmoid: 0.5, 0.25
    coral = rank_probabilities(z, "coral")
    torch.testing.assert_close(coral, torch.tensor([[0.5, 0.25, 0.25]]))
    corn = rank_probabilities(z, "corn")  # P(>0)=.5, P(>1)=.5*.25=.125
    torch.testing.assert_close(corn, torch.tensor([[0.5, 0.375, 0.125]]))
    m = ordinal_metrics(z, torch.tensor([1]), kind="corn")
    assert abs(m["mae_exp"] - abs(0.375 + 2 * 0.125 - 1)) < 1e-6 and m["mae_max"] == 1.0
    torch.testing.assert_close(
        rank_probabilities(torch.tensor([[1.0, 2.0]])), F.softmax(torch.tensor([[1.0, 2.0]]), 1)
    )


def test_model_loss_dispatch():
    logits = torch.randn(4, 5)
    labels = torch.tensor([0, 1, 4, 2])
    assert set(model_loss(logits, labels)) == {"loss", "ce", "kl"}
    ce_only = model_loss(logits, labels, kl_weight=0)
    assert torch.allclose(ce_only["loss"], F.cross_entropy(logits, labels))
    assert torch.allclose(
        model_loss(logits[:, :4], labels, "coral")["loss"], coral_loss(logits[:, :4], labels)
    )
    with pytest.raises(ValueError, match="unknown output kind"):
        model_loss(logits, labels, "probit")


def test_heads_train_end_to_end_on_features():
    torch.manual_seed(0)
    x = torch.randn(64, 6)
    y = (x[:, 0] > -0.7).long() + (x[:, 0] > 0).long() + (x[:, 0] > 0.7).long()
    for make in (
        lambda t: LinearClassifier(t, 4),
        lambda t: OrdinalBinaryHead(t, 4, "coral"),
        lambda t: OrdinalBinaryHead(t, 4, "corn"),
    ):
        model = make(FeatureTower(6))
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        for _ in range(150):
            opt.zero_grad()
            model_loss(model(x), y, model.output_kind, kl_weight=0)["loss"].backward()
            opt.step()
        assert ordinal_metrics(model(x).detach(), y, model.output_kind)["mae_max"] < 0.2, model.output_kind


def test_zero_shot_prototypes_match_open_clip_encode_text():
    torch.manual_seed(0)
    bundle = load_clip(custom=tiny_clip_custom())
    tower = ClipTextTower(bundle.model, bundle.tokenizer)
    names = ["young", "middle aged", "old"]
    templates = ["a photo of a {} person.", "a {} face."]
    import open_clip

    tok = open_clip.get_tokenizer("ViT-B-32")
    with torch.no_grad():
        ref = sum(
            F.normalize(bundle.model.encode_text(tok([t.format(n) for n in names])), dim=-1)
            for t in templates
        )
    torch.testing.assert_close(
        zero_shot_prototypes(tower, names, templates), F.normalize(ref, dim=-1), atol=1e-5, rtol=0
    )
    with pytest.raises(ValueError, match="needs a"):
        zero_shot_prototypes(tower, names, ["no slot"])


def test_zero_shot_through_build_model():
    cfg = ModelConfig(
        arch="zeroshot",
        num_ranks=3,
        clip=ClipConfig(name=None, custom=tiny_clip_custom()),
        image=ImageTowerConfig(kind="clip"),
        prompts=PromptConfig(rank_names=["a", "b", "c"]),
    )
    model = build_model(cfg)
    assert not any(p.requires_grad for p in model.parameters() if p is model.weight)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    cfg.prompts.rank_names = ["a", "b"]
    with pytest.raises(ValueError, match="C=3 rank names"):
        build_model(cfg)


def test_zero_shot_fit_evaluates_without_training(tmp_path):
    from ordinalclip.api import fit
    from tests.helpers import NUM_RANKS, list_data, tiny_config

    data = list_data(tmp_path / "data")
    model = {
        "arch": "zeroshot",
        "num_ranks": NUM_RANKS,
        "clip": {"name": None, "custom": tiny_clip_custom()},
        "image": {"kind": "clip"},
        "prompts": {"rank_names": ["zero", "one", "two", "three"]},
        "zero_shot_templates": ["a photo of {} things.", "{}."],
    }
    run = fit(tiny_config(tmp_path, data, model))
    state = torch.load(run.last_checkpoint, map_location="cpu", weights_only=True)
    assert state["global_step"] == 0  # no optimizer step
    # The reported test metrics, recomputed outside the engine: the checkpoint's model on the test images
    # through torchvision's eval transform (resize 36, centre crop 32, CLIP's statistics), then sklearn.
    import numpy as np
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from PIL import Image
    from sklearn.metrics import accuracy_score, mean_absolute_error
    from torchvision import transforms as T

    from ordinalclip.checkpoint import load_checkpoint

    net, _ = load_checkpoint(run.last_checkpoint)
    tf = T.Compose(
        [
            T.Resize((36, 36)),
            T.CenterCrop(32),
            T.ToTensor(),
            T.Normalize(OPENAI_DATASET_MEAN, OPENAI_DATASET_STD),
        ]
    )
    rows = [line.split() for line in Path(data["test"]).read_text().splitlines()]
    images = torch.stack([tf(Image.open(Path(data["root"]) / rel).convert("RGB")) for rel, _ in rows])
    labels = np.array([int(label) for _, label in rows])
    with torch.no_grad():
        probs = net(images).double().softmax(1).numpy()
    pred_exp, pred_max = probs @ np.arange(NUM_RANKS), probs.argmax(1)
    got = run.metrics["last"]["test"]
    assert got["mae_exp"] == pytest.approx(mean_absolute_error(labels, pred_exp), abs=1e-5)
    assert got["mae_max"] == pytest.approx(mean_absolute_error(labels, pred_max), abs=1e-9)
    assert got["acc_max"] == pytest.approx(accuracy_score(labels, pred_max), abs=1e-9)
