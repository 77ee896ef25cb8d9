"""End-to-end golden tests: the reference code's outputs on the tiny deterministic CLIP (tests/data/reference).

The checkpoint is written in OpenAI format and read through our OpenAI loader; the prompt learner, the three text
paths, the losses, the predictions and the gradients must all reproduce the reference within its tolerances.
"""

from __future__ import annotations

import math

import pytest
import torch

from ordinalclip.losses import ordinalclip_loss
from ordinalclip.metrics import predict_from_logits
from ordinalclip.modeling import ClipImageTower, ClipTextTower, OrdinalCLIP, RankPromptLearner, load_clip
from tests.helpers import load_reference

VECTORS = load_reference("tiny_clip_vectors.json")
TOL = {k: v["recommended_atol"] for k, v in VECTORS["tolerance"]["per_quantity"].items()}
CASES = {
    # name: (C, C', interpolation, context sentence or None, m)
    "VISIBLE-1": (100, 5, "linear", "age estimation: the age of the person is", 10),
    "VISIBLE-2": (10, 2, "inv_prop", None, 4),
}


def _t(case: dict, key: str) -> torch.Tensor:
    return torch.tensor(case["tensors"][key]["values"], dtype=torch.float32)


def _images() -> torch.Tensor:
    b, c, h, w = torch.meshgrid(
        *(torch.arange(n, dtype=torch.float64) for n in (6, 3, 32, 32)), indexing="ij"
    )
    return torch.sin(0.1 * (b + 1) * (c + 1) + 0.05 * h - 0.03 * w).float()


def _build(tiny_clip_file, name: str, path: str) -> tuple[OrdinalCLIP, dict]:
    case = VECTORS["cases"][name]
    num_ranks, num_base, interp, sentence, m = CASES[name]
    assert case["config"]["num_ranks_C"] == num_ranks and case["config"]["num_base_ranks_Cprime"] == num_base
    bundle = load_clip(pretrained=str(tiny_clip_file))
    text = ClipTextTower(bundle.model, bundle.tokenizer, path=path)
    learner = RankPromptLearner(
        text, num_ranks, num_base, interp, context_init=sentence, num_context_tokens=m
    )
    with torch.no_grad():
        if sentence is None:
            t, d = torch.meshgrid(
                torch.arange(m, dtype=torch.float64), torch.arange(64, dtype=torch.float64), indexing="ij"
            )
            learner.context.copy_(0.02 * torch.cos(0.5 * (t + 1) + 0.1 * d))
        k, t, d = torch.meshgrid(
            *(torch.arange(n, dtype=torch.float64) for n in (num_base, 1, 64)), indexing="ij"
        )
        learner.base_ranks.copy_(0.02 * torch.sin(0.3 * (k + 1) * (d + 1) + t))
    model = OrdinalCLIP(ClipImageTower(bundle.model.visual), learner, text, float(bundle.model.logit_scale))
    return model, case


def test_checkpoint_loads_as_reference(tiny_clip_file):
    bundle = load_clip(pretrained=str(tiny_clip_file))
    info = VECTORS["tiny_clip"]
    # every effective weight is the stored float16 value held in float32
    state = bundle.model.state_dict()
    for key, ref in info["per_tensor_checksum"].items():
        assert state[key].dtype == torch.float32
        assert math.isclose(float(state[key].double().sum()), ref["sum"], rel_tol=1e-9, abs_tol=1e-9), key
    assert float(bundle.model.logit_scale) == 2.66015625
    # OpenAI's build_model takes both head counts as width // 64 and uses QuickGELU
    assert bundle.model.transformer.resblocks[0].attn.num_heads == 1
    assert type(bundle.model.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"


@pytest.mark.parametrize("path", ["naive", "truncated", "shared_prefix"])
@pytest.mark.parametrize("name", list(CASES))
def test_reference_case(tiny_clip_file, name: str, path: str):
    model, case = _build(tiny_clip_file, name, path)
    labels = torch.tensor(case["labels"])
    assert labels.tolist() == [min(x, CASES[name][0] - 1) for x in [0, 5, 5, 10**6, 17, 42]]

    torch.testing.assert_close(
        model.prompt_learner.interpolation, _t(case, "interpolation_weights"), atol=1e-7, rtol=0
    )
    torch.testing.assert_close(
        model.prompt_learner.context.detach(), _t(case, "context_embeds"), atol=1e-7, rtol=0
    )
    prompts = model.prompt_learner()
    assert prompts.length == case["sequence_length_L"] and int(prompts.eot_index[0]) == case["eot_index"]
    full = prompts.full(77)
    ref_sum = case["sentence_embeds_checksum"]
    assert math.isclose(float(full.double().sum()), ref_sum["sum"], rel_tol=1e-6)
    assert math.isclose(float(full.double().pow(2).sum()), ref_sum["sum_sq"], rel_tol=1e-6)

    images = _images()
    text_raw = model.text_features()
    torch.testing.assert_close(text_raw, _t(case, "text_features_raw"), atol=TOL["text_features_raw"], rtol=0)
    torch.testing.assert_close(model.prototypes(), _t(case, "prototypes"), atol=TOL["prototypes"], rtol=0)
    image_raw = model.image_tower(images)
    torch.testing.assert_close(
        image_raw, _t(case, "image_features_raw"), atol=TOL["image_features_raw"], rtol=0
    )
    torch.testing.assert_close(
        model.encode_image(images), _t(case, "image_features"), atol=TOL["image_features"], rtol=0
    )

    logits = model(images)
    torch.testing.assert_close(logits, _t(case, "logits"), atol=TOL["logits"], rtol=0)
    losses = ordinalclip_loss(logits, labels)
    scal = case["scalars"]
    assert abs(float(losses["ce"]) - scal["ce_loss"]) < TOL["losses"]
    assert abs(float(losses["kl"]) - scal["kl_loss"]) < TOL["losses"]
    assert abs(float(losses["loss"]) - scal["loss_total"]) < TOL["losses"]

    pred_exp, pred_max = predict_from_logits(logits.detach())
    torch.testing.assert_close(pred_exp.float(), _t(case, "pred_exp"), atol=TOL["pred_exp"], rtol=0)
    ref_logits = _t(case, "logits")
    for b, (robust, ref_max) in enumerate(zip(case["pred_max_robust"], case["pred_max"])):
        if robust:
            assert int(pred_max[b]) == ref_max
        else:  # any rank whose reference logit is within atol of the row maximum
            assert ref_logits[b, int(pred_max[b])] >= ref_logits[b].max() - TOL["logits"]

    losses["loss"].backward()
    learner = model.prompt_learner
    torch.testing.assert_close(
        learner.context.grad, _t(case, "grad_context_embeds"), atol=TOL["grads"], rtol=0
    )
    torch.testing.assert_close(
        learner.base_ranks.grad, _t(case, "grad_rank_embeds"), atol=TOL["grads"], rtol=0
    )
    # the text tower stays frozen: no gradient reaches its own weights
    assert all(p.grad is None for p in model.text_tower.parameters())


def test_exported_head_gives_identical_logits(tiny_clip_file):
    model, _ = _build(tiny_clip_file, "VISIBLE-1", "shared_prefix")
    model.eval()
    images = _images()
    with torch.no_grad():
        expected = model(images)
        head = model.to_head()
    del model
    assert not any("text" in n for n, _ in head.named_modules())
    with torch.no_grad():
        got = head(images)
    assert torch.equal(got, expected)
    torch.testing.assert_close(got, _t(VECTORS["cases"]["VISIBLE-1"], "logits"), atol=TOL["logits"], rtol=0)
