"""Prompt learners and interpolation: reference matrices, layouts, name files, and exactness of the fast paths."""

from __future__ import annotations

import pytest
import torch

from ordinalclip.modeling import (
    ClipTextTower,
    PlainPromptLearner,
    RankPromptLearner,
    interpolation_matrix,
    load_clip,
)
from ordinalclip.modeling.build import build_prompt_learner
from ordinalclip.modeling.config import PromptConfig
from tests.helpers import load_reference, tiny_clip_custom

OFFICIAL = load_reference("official_vectors.json")


@pytest.mark.parametrize("key", [k for k in OFFICIAL["interpolation_weights"] if not k.startswith("normal")])
def test_interpolation_matches_reference(key: str):
    kind, nbr, nr = key.rsplit("_", 2)
    ref = OFFICIAL["interpolation_weights"][key]
    w = interpolation_matrix(int(nr[2:]), int(nbr[3:]), kind)
    assert list(w.shape) == ref["shape"]
    for row, values in ref["rows"].items():
        torch.testing.assert_close(w[int(row)], torch.tensor(values), atol=1e-7, rtol=0)
    assert abs(float(w.double().pow(2).sum()) - ref["sum_sq"]) < 1e-5
    if key in OFFICIAL["interpolation_weights_full"]:
        torch.testing.assert_close(
            w, torch.tensor(OFFICIAL["interpolation_weights_full"][key]), atol=1e-7, rtol=0
        )


def test_interpolation_hand_computed_and_never_nan():
    # C=5, C'=3 linear: b = 0, 2, 4; rank 1: raw = [1-1/4, 1-1/4, 1-3/4] = [.75, .75, .25] / 1.75
    w = interpolation_matrix(5, 3, "linear")
    torch.testing.assert_close(w[1], torch.tensor([0.75, 0.75, 0.25]) / 1.75)
    # local lerp: rank 1 is halfway between base 0 and base 1; rank 2 is base 1 exactly
    loc = interpolation_matrix(5, 3, "local_linear")
    torch.testing.assert_close(loc[1], torch.tensor([0.5, 0.5, 0.0]))
    torch.testing.assert_close(loc[2], torch.tensor([0.0, 1.0, 0.0]))
    for kind in ("linear", "inv_prop", "local_linear"):
        for c, cp in [(101, 3), (100, 9), (7, 1), (1, 1), (2, 2)]:
            m = interpolation_matrix(c, cp, kind)
            assert torch.isfinite(m).all()
            torch.testing.assert_close(m.sum(1), torch.ones(c))
    with pytest.raises(ValueError, match="normal"):
        interpolation_matrix(10, 2, "normal")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="more base ranks"):
        interpolation_matrix(3, 5)


@pytest.fixture(scope="module")
def tower() -> ClipTextTower:
    torch.manual_seed(0)
    bundle = load_clip(custom=tiny_clip_custom())
    return ClipTextTower(bundle.model, bundle.tokenizer)


def _features(tower: ClipTextTower, learner, path: str) -> torch.Tensor:
    tower.path = path
    return tower(learner())


LAYOUTS = [
    dict(position="tail"),
    dict(position="front"),
    dict(position="middle"),
    dict(position="middle", rank_specific_context=True),
    dict(position="tail", tokens_per_rank=3),
]


@pytest.mark.parametrize("kw", LAYOUTS, ids=[str(k) for k in LAYOUTS])
def test_fast_paths_equal_naive(tower, kw):
    torch.manual_seed(1)
    learner = RankPromptLearner(tower, 12, 3, context_init="a photo of a", **kw)
    naive = _features(tower, learner, "naive")
    for path in ("truncated", "shared_prefix"):
        torch.testing.assert_close(_features(tower, learner, path), naive, atol=2e-5, rtol=0)
    # gradients agree too
    grads = {}
    for path in ("naive", "shared_prefix"):
        learner.zero_grad()
        _features(tower, learner, path).pow(2).sum().backward()
        grads[path] = (learner.context.grad.clone(), learner.base_ranks.grad.clone())
    for a, b in zip(grads["naive"], grads["shared_prefix"]):
        # float32 rounding of sums over 77 vs 14 positions scales with the gradient's size
        torch.testing.assert_close(a, b, atol=max(1e-4, 2e-6 * float(b.abs().max())), rtol=1e-4)


def test_layouts_place_tokens_where_the_spec_says(tower):
    learner = RankPromptLearner(tower, 4, 2, context_init="the age of the person is", position="middle")
    seq = learner().full(77)
    emb = tower.embed_ids
    ids = tower.encode_words("the age of the person is")  # m = 6 -> V[:3] r V[3:]
    m = len(ids)
    torch.testing.assert_close(seq[0, 0], emb([tower.sot_id])[0])
    torch.testing.assert_close(seq[:, 1 : 1 + m // 2], emb(ids[: m // 2]).expand(4, -1, -1))
    torch.testing.assert_close(seq[:, 1 + m // 2], learner.rank_embeddings()[:, 0])
    torch.testing.assert_close(seq[:, 2 + m // 2 : 2 + m], emb(ids[m // 2 :]).expand(4, -1, -1))
    torch.testing.assert_close(seq[:, 2 + m], emb(tower.period_ids).expand(4, -1))
    torch.testing.assert_close(seq[:, 3 + m], emb([tower.eot_id]).expand(4, -1))
    torch.testing.assert_close(seq[:, 4 + m :], emb([0]).expand(4, 77 - 4 - m, -1))  # CLIP's pad id 0
    assert learner().eot_index.tolist() == [3 + m] * 4


def test_context_from_sentence_uses_its_token_count(tower):
    learner = RankPromptLearner(
        tower, 5, 2, context_init=OFFICIAL["init_context_tokens"]["text"], num_context_tokens=3
    )
    ids = OFFICIAL["init_context_tokens"]["token_ids"][1:-1]
    assert learner.num_context_tokens == len(ids) == 10
    torch.testing.assert_close(learner.context.detach(), tower.embed_ids(ids))


def test_rank_names_counts(tower):
    base = RankPromptLearner(tower, 10, 3, base_rank_names=["sharp", "blurred", "extremely_blurred"])
    # n_r = longest name (2 tokens: "extremely blurred"), shorter names padded with token id 0
    assert base.base_ranks.shape == (3, 2, tower.width)
    torch.testing.assert_close(base.base_ranks[0, 1].detach(), tower.embed_ids([0])[0])
    with pytest.raises(ValueError, match=r"C'=3 .* got 10 \(that is C=10"):
        RankPromptLearner(tower, 10, 3, base_rank_names=[f"r{i}" for i in range(10)])
    plain = PlainPromptLearner(tower, 3, rank_names=["young", "middle aged", "old"])
    assert plain.ranks.shape[0] == 3
    with pytest.raises(ValueError, match="C=3 rank names, got 2"):
        PlainPromptLearner(tower, 3, rank_names=["young", "old"])


BASE = ["sharp", "blurred", "extremely_blurred"]


def test_each_learner_reads_its_own_names_key(tower, tmp_path):
    # The rank learner takes the C' base-rank names of base_rank_names (or its file), the plain learner the C
    # names of rank_names: the same learners as built directly from those names.
    torch.manual_seed(0)
    direct = RankPromptLearner(tower, 10, 3, base_rank_names=BASE)
    names = tmp_path / "base.txt"
    names.write_text("\n".join(BASE) + "\n")
    for cfg in (PromptConfig(base_rank_names=BASE), PromptConfig(base_rank_names_file=str(names))):
        torch.manual_seed(0)
        built = build_prompt_learner(cfg, 10, tower)
        torch.testing.assert_close(built.base_ranks, direct.base_ranks, rtol=0, atol=0)
    plain = build_prompt_learner(PromptConfig(learner="plain", rank_names=["young", "old"]), 2, tower)
    torch.testing.assert_close(
        plain.ranks, PlainPromptLearner(tower, 2, rank_names=["young", "old"]).ranks, rtol=0, atol=0
    )


def test_the_rank_learner_names_its_ranks_with_c_rank_names(tower):
    names = ["baby", "child", "teen", "adult", "elder"]
    learner = build_prompt_learner(PromptConfig(rank_names=names), 5, tower)  # num_base_ranks left at 3
    assert isinstance(learner, RankPromptLearner) and learner.base_ranks.shape[0] == 5  # C' = C
    # one base embedding per rank, each initialised from its name: what CoOp's learner gives those names
    plain = PlainPromptLearner(tower, 5, rank_names=names)
    torch.testing.assert_close(learner.base_ranks.data, plain.ranks.data, rtol=0, atol=0)
    # mixed by the reference's linear interpolation: rank 0 weighs base k by 1 - k/4, normalised (sum 2.5)
    torch.testing.assert_close(learner.interpolation[0], torch.tensor([0.4, 0.3, 0.2, 0.1, 0.0]))


def test_prompt_name_errors_name_the_key_the_file_and_the_counts(tower, tmp_path):
    names = tmp_path / "ages.txt"
    names.write_text("".join(f"{i}\n" for i in range(5)))  # 5 names: neither C' = 3 nor C = 10
    with pytest.raises(ValueError) as err:
        build_prompt_learner(PromptConfig(base_rank_names_file=str(names)), 10, tower)
    assert str(err.value) == (
        f"model.prompts.base_rank_names_file ({names}): 5 names, expected C'=3 base-rank names "
        "(model.prompts.num_base_ranks); C=10 rank names go in model.prompts.rank_names"
    )
    with pytest.raises(ValueError) as err:
        build_prompt_learner(PromptConfig(learner="plain", rank_names=["a", "b", "c"]), 10, tower)
    assert str(err.value) == (
        "model.prompts.rank_names: 3 names, expected C=10 rank names (model.num_ranks); "
        "the rank learner's C'=3 base-rank names go in model.prompts.base_rank_names"
    )
    # names the learner would ignore are a mistake, named by their key
    with pytest.raises(ValueError, match=r"^model\.prompts\.base_rank_names: the plain learner takes "):
        build_prompt_learner(PromptConfig(learner="plain", base_rank_names=BASE), 10, tower)
    # the rank learner takes C rank names (one per rank) or C' base-rank names; 4 is neither
    with pytest.raises(ValueError, match=r"^model\.prompts\.rank_names: 4 names, expected C=10 rank names"):
        build_prompt_learner(PromptConfig(rank_names=[f"r{i}" for i in range(4)]), 10, tower)
    with pytest.raises(ValueError, match=r"^model\.prompts\.rank_names_file: rank names file not found"):
        build_prompt_learner(
            PromptConfig(learner="plain", rank_names_file=str(tmp_path / "no.txt")), 10, tower
        )


def test_plain_learner_fast_path_exact(tower):
    torch.manual_seed(2)
    learner = PlainPromptLearner(tower, 6, num_context_tokens=5)
    naive = _features(tower, learner, "naive")
    torch.testing.assert_close(_features(tower, learner, "shared_prefix"), naive, atol=2e-5, rtol=0)


@pytest.mark.slow
def test_shared_prefix_compiles_under_bf16_autocast(tower):
    """torch.compile + bf16 autocast of the fast path gives finite prompt gradients close to eager float32.

    Regression: the softmax shift (amax of concatenated prefix and suffix scores) made the compiled bf16 CPU
    backward return NaN until the shift was detached (it cancels, so detaching is exact).
    """
    torch.manual_seed(1)
    learner = RankPromptLearner(tower, 12, 3, context_init="a photo of a")
    tower.path = "shared_prefix"

    def grads(fn) -> list[torch.Tensor]:
        learner.zero_grad()
        fn().float().pow(2).sum().backward()
        return [learner.context.grad.clone(), learner.base_ranks.grad.clone()]

    eager = grads(lambda: tower(learner()))
    compiled_tower = torch.compile(tower)

    def bf16() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return compiled_tower(learner())

    for got, want in zip(grads(bf16), eager):
        assert torch.isfinite(got).all()
        # bf16 keeps ~3 significant digits: compare relative to the gradient's scale
        assert float((got - want).abs().max()) <= 0.05 * float(want.abs().max())
