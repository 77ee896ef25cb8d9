"""Every open_clip text-tower family through our prompt path equals the family's own ``encode_text``.

Invariant: prompts built from a sentence's tokens (context = its words, rank = its last word) give the features
``model.encode_text(tokenizer([sentence]))`` gives, within 1e-5, for causal towers (fast path) and non-causal ones
(full-length path, padded as the tokenizer pads, pooled as the model pools). Tiny random models, offline tokenizers.
"""

from __future__ import annotations

import open_clip
import pytest
import torch

from ordinalclip.modeling import (
    ClipBundle,
    ClipLoadError,
    ClipTextTower,
    PlainPromptLearner,
    Preprocess,
    load_clip,
)
from ordinalclip.modeling.backbones.text import OpenClipHFTextTower, open_clip_text_tower
from ordinalclip.modeling.heads import encode_texts
from tests.helpers import save_tiny_roberta, save_word_tokenizer, tiny_clip_custom

CONTEXT = "a photo of the old"
RANKS = ["man", "woman", "dog"]
SENTENCES = [f"{CONTEXT} {r}." for r in RANKS]
VISION = {"layers": 1, "width": 32, "patch_size": 16, "image_size": 32, "head_width": 16}


def _text_cfg(**kw) -> dict:
    return {"context_length": 16, "vocab_size": 64, "width": 32, "heads": 2, "layers": 2, **kw}


# name -> (custom kwargs, tokenizer folder options or None for open_clip's BPE tokenizer)
FAMILIES = {
    "clip_causal_argmax": (tiny_clip_custom(), None),
    "mobileclip_noncausal_argmax": (
        {
            "embed_dim": 24,
            "vision_cfg": VISION,
            "text_cfg": {
                "context_length": 77,
                "vocab_size": 49408,
                "width": 32,
                "heads": 2,
                "layers": 2,
                "no_causal_mask": True,
            },
        },
        None,
    ),
    "siglip_noncausal_last": (
        {
            "custom_text": True,
            "embed_dim": 24,
            "vision_cfg": VISION,
            "text_cfg": _text_cfg(
                no_causal_mask=True,
                pool_type="last",
                proj_bias=True,
                tokenizer_kwargs={"clean": "canonicalize"},
            ),
        },
        {"pad_is_eos": True},
    ),
    "bidirectional_first": (
        {
            "custom_text": True,
            "embed_dim": 24,
            "vision_cfg": VISION,
            "text_cfg": _text_cfg(no_causal_mask=True, pool_type="first"),
        },
        {"bos": True},
    ),
    "metaclip2_causal_eos": (
        {
            "custom_text": True,
            "embed_dim": 24,
            "vision_cfg": VISION,
            "text_cfg": _text_cfg(pool_type="eos", eos_id=1),
        },
        {"bos": True},
    ),
}


# open_clip's Hugging Face text encoders (RoBERTa / XLM-R / mT5 CLIPs): bidirectional, padding masked, mean or CLS
HF_ENCODERS = {"roberta_mean": "mean_pooler", "roberta_cls": "cls_pooler"}


@pytest.fixture(scope="module")
def towers(tmp_path_factory):
    out = {}
    for name, (custom, tok) in FAMILIES.items():
        folder = None
        if tok is not None:
            folder = str(save_word_tokenizer(tmp_path_factory.mktemp(name), **tok))
        torch.manual_seed(0)
        bundle = load_clip(custom=custom, tokenizer=folder)
        out[name] = (bundle, ClipTextTower(bundle.model, bundle.tokenizer))
    roberta = str(save_tiny_roberta(tmp_path_factory.mktemp("roberta")))
    for name, pooler in HF_ENCODERS.items():
        torch.manual_seed(0)
        custom = {
            "custom_text": True,
            "embed_dim": 24,
            "vision_cfg": VISION,
            "text_cfg": {
                "context_length": 16,
                "hf_model_name": roberta,
                "hf_tokenizer_name": roberta,
                "hf_model_pretrained": False,
                "hf_pooler_type": pooler,
                "hf_proj_type": "linear",
            },
        }
        bundle = load_clip(custom=custom)
        out[name] = (bundle, open_clip_text_tower(bundle.model, bundle.tokenizer))
    # CoCa: causal, a class token appended after the padded text and pooled (pads hidden from it)
    torch.manual_seed(0)
    coca = open_clip.CoCa(
        embed_dim=24,
        multimodal_cfg={"width": 32, "heads": 2, "layers": 1, "context_length": 76},
        text_cfg={
            "context_length": 76,
            "width": 32,
            "heads": 2,
            "layers": 2,
            "embed_cls": True,
            "output_tokens": True,
        },
        vision_cfg={**VISION, "output_tokens": True},
    ).eval()
    tok = open_clip.tokenizer.SimpleTokenizer(context_length=76)
    out["coca_class_token"] = (ClipBundle(coca, tok, Preprocess(), "coca"), ClipTextTower(coca, tok))
    return out


def _encode_text(bundle, texts):
    with torch.no_grad():
        if isinstance(bundle.model, open_clip.CoCa):
            return bundle.model.encode_text(bundle.tokenizer(texts), normalize=False)
        return bundle.model.encode_text(bundle.tokenizer(texts))


@pytest.mark.parametrize("family", [*FAMILIES, "coca_class_token", *HF_ENCODERS])
def test_prompts_from_a_sentence_equal_encode_text(towers, family):
    bundle, tower = towers[family]
    learner = PlainPromptLearner(tower, len(RANKS), context_init=CONTEXT, rank_names=RANKS)
    ours = tower(learner())
    theirs = _encode_text(bundle, SENTENCES)
    assert ours.shape == theirs.shape == (len(RANKS), tower.output_dim)
    assert (ours - theirs).abs().max() <= 1e-5
    # plain strings of different lengths (padded per row) give the same too
    texts = ["a dog.", "the old man is a teenager.", "photo"]
    with torch.no_grad():
        assert (encode_texts(tower, texts) - _encode_text(bundle, texts)).abs().max() <= 1e-5


def test_fast_path_only_where_exact(towers):
    assert towers["clip_causal_argmax"][1].exact_shortcuts
    assert towers["metaclip2_causal_eos"][1].exact_shortcuts
    assert isinstance(towers["roberta_mean"][1], OpenClipHFTextTower)
    for name in (
        "mobileclip_noncausal_argmax",
        "siglip_noncausal_last",
        "bidirectional_first",
        "coca_class_token",
        *HF_ENCODERS,
    ):
        assert not towers[name][1].exact_shortcuts


def test_layout_read_from_the_tokenizer(towers):
    _, siglip = towers["siglip_noncausal_last"]
    # T5-style: no start token, </s> (id 1) at the end and as padding; canonicalising drops the period
    assert (siglip.start_ids, siglip.end_ids, siglip.pad_id, siglip.period_ids) == ([], [1], 1, [])
    _, clip = towers["clip_causal_argmax"]
    assert (clip.start_ids, clip.end_ids, clip.pad_id) == ([49406], [49407], 0)


def test_noncausal_padding_changes_the_feature(towers):
    """Why the full-length path: a non-causal tower's feature depends on the padding (a truncated pass differs)."""
    _, tower = towers["siglip_noncausal_last"]
    learner = PlainPromptLearner(tower, len(RANKS), context_init=CONTEXT, rank_names=RANKS)
    prompts = learner()
    assert (tower.forward_full(prompts, None) - tower(prompts)).abs().max() > 1e-3


def test_gradients_reach_the_prompts_of_a_noncausal_tower(towers):
    _, tower = towers["siglip_noncausal_last"]
    learner = PlainPromptLearner(tower, len(RANKS), context_init=CONTEXT, rank_names=RANKS)
    tower(learner()).pow(2).sum().backward()
    assert learner.context.grad.abs().sum() > 0 and learner.ranks.grad.abs().sum() > 0
    assert all(p.grad is None for p in tower.parameters())


def test_missing_tokenizer_folder_is_a_clear_error(tmp_path):
    custom = FAMILIES["siglip_noncausal_last"][0]
    with pytest.raises(ClipLoadError, match="model.clip.tokenizer: .* is not a folder"):
        load_clip(custom=custom, tokenizer=str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClipLoadError, match="could not read a Hugging Face tokenizer"):
        load_clip(custom=custom, tokenizer=str(tmp_path / "empty"))
