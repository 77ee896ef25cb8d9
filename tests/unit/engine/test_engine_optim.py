"""Parameter groups, freezing, optimizers and per-epoch schedules against torch's own schedulers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ordinalclip.config import OptimConfig, RunConfig
from ordinalclip.config.typed import ConfigError, from_dict
from ordinalclip.engine.optim import (
    apply_freezing,
    build_optimizer,
    build_scheduler,
    group_of,
    has_trainable,
    lr_factor,
)
from ordinalclip.modeling import CosineClassifier, FeatureTower, build_model
from tests.helpers import tiny_model_dict


@pytest.fixture
def tiny_model():
    return build_model(from_dict(RunConfig, {"model": tiny_model_dict()}).model)


def _groups(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    return {g["name"]: g["lr"] for g in optimizer.param_groups}


def test_group_names():
    assert group_of("image_tower.visual.conv1.weight") == "image"
    assert group_of("text_tower.transformer.resblocks.0.attn.in_proj_weight") == "text"
    assert group_of("prompt_learner.context") == "context"
    assert group_of("prompt_learner.base_ranks") == "ranks"
    assert group_of("prompt_learner.ranks") == "ranks"
    assert group_of("logit_scale.value") == "logit_scale"
    assert group_of("weight") == "prototypes"


def test_separate_learning_rates_and_frozen_text_tower(tiny_model):
    cfg = OptimConfig(lr=1e-3, lr_context=2e-3, lr_ranks=3e-3, lr_image=4e-3, lr_text=5e-3)
    counts = apply_freezing(tiny_model, cfg)
    opt = build_optimizer(tiny_model, cfg)
    # the text tower is frozen by model.text.freeze and the logit scale by model.learn_logit_scale: no groups
    assert _groups(opt) == {"context": 2e-3, "ranks": 3e-3, "image": 4e-3}
    assert counts["context"] == tiny_model.prompt_learner.context.numel()
    assert counts["ranks"] == tiny_model.prompt_learner.base_ranks.numel()
    n_image = sum(p.numel() for p in tiny_model.image_tower.parameters())
    assert counts["image"] == n_image
    assert isinstance(opt, torch.optim.RAdam)


def test_freeze_flags_and_zero_lr_switch_off_gradients(tiny_model):
    cfg = OptimConfig(freeze_image=True, lr_ranks=0.0)
    apply_freezing(tiny_model, cfg)
    assert not any(p.requires_grad for p in tiny_model.image_tower.parameters())
    assert not tiny_model.prompt_learner.base_ranks.requires_grad
    assert _groups(build_optimizer(tiny_model, cfg)) == {"context": 1e-4}
    # everything frozen: no groups (the run is evaluated as built), and an optimizer cannot be made
    assert apply_freezing(tiny_model, OptimConfig(freeze_context=True)) == {}
    assert not has_trainable(tiny_model)
    with pytest.raises(ConfigError, match="nothing to train"):
        build_optimizer(tiny_model, cfg)


def test_cosine_baseline_trains_its_prototypes():
    model = CosineClassifier(FeatureTower(6, 4), num_ranks=3)
    opt = build_optimizer(model, OptimConfig(lr=0.1, lr_prototypes=0.5))
    assert _groups(opt) == {"image": 0.1, "prototypes": 0.5}


def test_radam_decay_is_decoupled():
    # A zero gradient isolates the decay: decoupled RAdam gives p * (1 - lr * wd); coupled L2 decay would
    # instead feed wd * p into the adaptive step.
    p = nn.Parameter(torch.tensor([2.0, -1.0]))
    model = nn.Module()
    model.weight = p
    cfg = OptimConfig(name="radam", lr=0.1, weight_decay=0.5)
    opt = build_optimizer(model, cfg)
    p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.allclose(p.detach(), torch.tensor([2.0, -1.0]) * (1 - 0.1 * 0.5))


def _torch_lrs(make, epochs: int) -> list[float]:
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = make(opt)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def _our_lrs(cfg: OptimConfig, max_epochs: int) -> list[float]:
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = build_scheduler(opt, cfg, max_epochs)
    out = []
    for _ in range(max_epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_cosine_matches_cosine_annealing_lr():
    ours = _our_lrs(OptimConfig(scheduler="cosine"), 10)
    ref = _torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10), 10)
    assert ours == pytest.approx(ref, abs=1e-12)
    assert ours[5] == pytest.approx(0.5)


def test_multistep_matches_multistep_lr():
    ours = _our_lrs(OptimConfig(scheduler="multistep", milestones=[3, 6], gamma=0.1), 8)
    ref = _torch_lrs(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[3, 6], gamma=0.1), 8)
    assert ours == pytest.approx(ref, rel=1e-12)


def test_warmup_then_cosine_by_hand():
    f = lr_factor(OptimConfig(scheduler="cosine", warmup_epochs=3), max_epochs=7)
    assert [f(e) for e in range(3)] == pytest.approx([0.25, 0.5, 0.75])
    # after warm-up a cosine over the remaining 4 epochs
    assert [f(e) for e in range(3, 7)] == pytest.approx(
        [1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2]
    )
    assert lr_factor(OptimConfig(scheduler="none"), 5)(4) == 1.0
