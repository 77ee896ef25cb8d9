"""Hugging Face ``CLIPModel`` / ``SiglipModel`` folders as towers: prompts built from a sentence's tokens give
``get_text_features`` of the sentence, images give ``get_image_features`` (tiny random models, offline)."""

from __future__ import annotations

import pytest
import torch

from ordinalclip.modeling import ClipLoadError, ModelConfig, PlainPromptLearner, build_model
from ordinalclip.modeling.backbones.hf_clip import (
    HFClipImageTower,
    HFClipTextTower,
    hf_text_tower,
    load_hf_clip,
)
from ordinalclip.modeling.backbones.text import ClipTextTower
from ordinalclip.modeling.config import ClipConfig, ImageTowerConfig, PromptConfig
from ordinalclip.modeling.heads import encode_texts
from tests.helpers import save_tiny_hf_clip

CONTEXT = "a photo of the old"
RANKS = ["man", "woman", "dog"]


@pytest.fixture(scope="module", params=["clip", "siglip"])
def folder(request, tmp_path_factory):
    return save_tiny_hf_clip(tmp_path_factory.mktemp(request.param), request.param)


def _text_features(bundle, texts):
    with torch.no_grad():
        return bundle.model.get_text_features(**bundle.tokenizer.batch(texts)).pooler_output


@pytest.mark.parametrize("path", ["shared_prefix", "naive"])
def test_prompts_from_a_sentence_equal_get_text_features(folder, path):
    bundle = load_hf_clip(str(folder))
    towers = [
        hf_text_tower(bundle.model, bundle.tokenizer, path=path),
        HFClipTextTower(bundle.model, bundle.tokenizer, path=path),
    ]
    # CLIP runs as open_clip's text transformer (shared-prefix fast path); SigLIP as itself
    assert isinstance(towers[0], ClipTextTower if folder.name.startswith("clip") else HFClipTextTower)
    theirs = _text_features(bundle, [f"{CONTEXT} {r}." for r in RANKS])
    texts = ["a dog.", "the old man is a teenager.", "photo"]
    for tower in towers:
        learner = PlainPromptLearner(tower, len(RANKS), context_init=CONTEXT, rank_names=RANKS)
        ours = tower(learner())
        assert ours.shape == theirs.shape == (3, tower.output_dim)
        assert (ours - theirs).abs().max() <= 1e-5
        with torch.no_grad():
            assert (encode_texts(tower, texts) - _text_features(bundle, texts)).abs().max() <= 1e-5
        if not tower.exact_shortcuts:  # SigLIP pools the last padded position: a truncated pass would differ
            assert (tower.forward_full(learner(), None) - ours).abs().max() > 1e-3


def test_image_features_equal_get_image_features(folder):
    bundle = load_hf_clip(str(folder))
    tower = HFClipImageTower.from_model(bundle.model, bundle.preprocess.to_dict())
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        theirs = bundle.model.get_image_features(pixel_values=images).pooler_output
        assert (tower(images) - theirs).abs().max() <= 1e-5
    # the architecture alone (what an export stores) rebuilds a tower that loads the same weights
    rebuilt = HFClipImageTower.from_config(tower.hf_config)
    rebuilt.load_state_dict(tower.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(images), theirs, atol=1e-5, rtol=0)


def test_build_model_from_a_folder_gives_ordinalclip(folder):
    cfg = ModelConfig(
        num_ranks=5,
        clip=ClipConfig(hf_model=str(folder)),
        image=ImageTowerConfig(kind="clip"),
        prompts=PromptConfig(num_base_ranks=2, context_init=CONTEXT),
    )
    model = build_model(cfg)
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    assert model.image_tower.preprocess["size"] == 32
    logits.sum().backward()
    assert model.prompt_learner.context.grad.abs().sum() > 0


def test_missing_folder_is_one_clear_error(tmp_path):
    with pytest.raises(ClipLoadError, match="model.clip.hf_model: .* not a local Hugging Face model folder"):
        load_hf_clip(str(tmp_path / "nope"))
