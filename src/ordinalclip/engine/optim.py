"""Parameter groups with their own learning rates, freezing, optimizers and per-epoch schedules."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
from torch import nn

from ordinalclip.config import OptimConfig
from ordinalclip.config.typed import ConfigError

log = logging.getLogger(__name__)

# Parameter-name prefixes (of OrdinalCLIP / CosineClassifier) -> group name, first match wins.
GROUP_PREFIXES: tuple[tuple[str, str], ...] = (
    ("image_tower.", "image"),
    ("text_tower.", "text"),
    ("prompt_learner.context", "context"),
    ("prompt_learner.base_ranks", "ranks"),
    ("prompt_learner.ranks", "ranks"),
    ("logit_scale.", "logit_scale"),
    ("weight", "prototypes"),
)
# "projection": the randomly initialised layer a pretrained image trunk ends in (EfficientNet, timm,
# torchvision towers); it is not part of "image", so optim.freeze_image freezes the pretrained trunk only.
GROUPS: tuple[str, ...] = (
    "context",
    "ranks",
    "image",
    "projection",
    "text",
    "logit_scale",
    "prototypes",
    "other",
)


def group_of(name: str) -> str:
    """The group a parameter belongs to, from its name in the model (the projection is told apart by
    :func:`parameter_groups`, which sees the model)."""
    for prefix, group in GROUP_PREFIXES:
        if name == prefix or name.startswith(prefix):
            return group
    return "other"


def projection_names(model: nn.Module) -> set[str]:
    """Names (in ``model``) of the image tower's projection parameters: those its ``head_parameters()``
    yields; empty for towers without a trunk/projection split (CLIP, features)."""
    tower = getattr(model, "image_tower", None)
    head = getattr(tower, "head_parameters", None)
    if not isinstance(tower, nn.Module) or not callable(head):
        return set()
    ids = {id(p) for p in head()}
    return {f"image_tower.{n}" for n, p in tower.named_parameters() if id(p) in ids}


def parameter_groups(model: nn.Module) -> dict[str, str]:
    """Every parameter name of ``model`` -> its group (:data:`GROUPS`)."""
    proj = projection_names(model)
    return {n: ("projection" if n in proj else group_of(n)) for n, _ in model.named_parameters()}


def group_lr(cfg: OptimConfig, group: str) -> float:
    """Learning rate of ``group``: its own ``lr_<group>`` or the default ``lr``."""
    own = getattr(cfg, f"lr_{group}", None)
    return cfg.lr if own is None else own


def apply_freezing(model: nn.Module, cfg: OptimConfig) -> dict[str, int]:
    """Switch off gradients of frozen groups (freeze flags, or an lr of 0); returns trainable counts per
    group (empty when nothing trains: such a model, e.g. zero-shot on an identity features tower, is evaluated
    as built).

    ``freeze_image`` freezes the image tower's pretrained trunk; a projection after it (group ``projection``,
    randomly initialised) keeps training. Warns when a randomly initialised projection ends frozen (its random
    map would then be all the model sees); :func:`parameter_counts` says what trains.
    """
    frozen = {
        g
        for g, flag in (
            ("image", cfg.freeze_image),
            ("context", cfg.freeze_context),
            ("ranks", cfg.freeze_ranks),
        )
        if flag
    }
    counts: dict[str, int] = {}
    frozen_counts: dict[str, int] = {}
    groups = parameter_groups(model)
    for name, p in model.named_parameters():
        group = groups[name]
        if group in frozen or group_lr(cfg, group) == 0:
            p.requires_grad_(False)
        if p.requires_grad:
            counts[group] = counts.get(group, 0) + p.numel()
        else:
            frozen_counts[group] = frozen_counts.get(group, 0) + p.numel()
    random_frozen = frozen_counts.get("projection", 0) or (
        frozen_counts.get("image", 0)
        and getattr(getattr(model, "image_tower", None), "projection", None) == "linear"
    )
    if random_frozen:
        log.warning(
            "the image tower's projection is randomly initialised and frozen (optim.freeze_image or an lr "
            "of 0): it stays a random map; give it a learning rate, or use model.image.project: identity"
        )
    return counts


def parameter_counts(model: nn.Module) -> str:
    """What trains and what is frozen, by group (:func:`describe_counts`), as ``apply_freezing`` left it."""
    groups = parameter_groups(model)
    trainable: dict[str, int] = {}
    frozen: dict[str, int] = {}
    for name, p in model.named_parameters():
        side = trainable if p.requires_grad else frozen
        side[groups[name]] = side.get(groups[name], 0) + p.numel()
    return describe_counts(trainable, frozen)


def describe_counts(trainable: dict[str, int], frozen: dict[str, int]) -> str:
    """``"trainable context 4,096 + projection 491,520 (495,616); frozen image 3,371,264"``: what trains."""

    def part(counts: dict[str, int]) -> str:
        items = [f"{g} {counts[g]:,}" for g in GROUPS if counts.get(g)]
        return (
            " + ".join(items) + (f" ({sum(counts.values()):,})" if len(items) > 1 else "")
            if items
            else "none"
        )

    return f"trainable {part(trainable)}; frozen {part(frozen)}"


def has_trainable(model: nn.Module) -> bool:
    """True when at least one parameter of ``model`` trains."""
    return any(p.requires_grad for p in model.parameters())


def image_tower_frozen(model: nn.Module) -> bool:
    """True when no parameter of the image tower trains."""
    tower = getattr(model, "image_tower", None)
    return tower is not None and not any(p.requires_grad for p in tower.parameters())


def image_trunk_frozen(model: nn.Module) -> bool:
    """True when no parameter of the image tower's trunk trains (its projection may)."""
    tower = getattr(model, "image_tower", None)
    if not isinstance(tower, nn.Module):
        return False
    proj = projection_names(model)
    return not any(p.requires_grad for n, p in tower.named_parameters() if f"image_tower.{n}" not in proj)


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """One optimizer group per non-empty trainable group: ``{"name", "params", "lr"}``."""
    by_group: dict[str, list[nn.Parameter]] = {}
    groups = parameter_groups(model)
    for name, p in model.named_parameters():
        if p.requires_grad:
            by_group.setdefault(groups[name], []).append(p)
    return [{"name": g, "params": by_group[g], "lr": group_lr(cfg, g)} for g in GROUPS if g in by_group]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """The optimizer of ``cfg`` over the trainable parameters of ``model``.

    radam / adamw: decoupled weight decay (p <- p - lr * wd * p); adam / sgd: L2 decay added to the gradient.
    """
    groups = param_groups(model, cfg)
    if not groups:
        raise ConfigError("nothing to train: every parameter is frozen")
    if cfg.name == "radam":
        return torch.optim.RAdam(
            groups,
            lr=cfg.lr,
            betas=cfg.betas,
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
            decoupled_weight_decay=True,
        )
    if cfg.name == "adam":
        return torch.optim.Adam(
            groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay
        )
    if cfg.name == "adamw":
        return torch.optim.AdamW(
            groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay
        )
    if cfg.name == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    raise ConfigError(f"optim.name: unknown optimizer {cfg.name!r}")


def lr_factor(cfg: OptimConfig, max_epochs: int) -> Callable[[int], float]:
    """Multiplier of the base lr in epoch ``e`` (0-based).

    warm-up (``e < w``): ``(e + 1) / (w + 1)``; then, with ``t = e - w`` and ``T = max_epochs - w``:
    cosine ``(1 + cos(pi * t / T)) / 2`` (CosineAnnealingLR with eta_min 0, T_max = T); multistep
    ``gamma ** #{m in milestones : m <= e}``; none ``1``.
    """
    warm = cfg.warmup_epochs
    span = max(max_epochs - warm, 1)
    milestones = sorted(cfg.milestones)

    def factor(epoch: int) -> float:
        if epoch < warm:
            return (epoch + 1) / (warm + 1)
        if cfg.scheduler == "cosine":
            t = min(epoch - warm, span)
            return 0.5 * (1.0 + math.cos(math.pi * t / span))
        if cfg.scheduler == "multistep":
            return cfg.gamma ** sum(1 for m in milestones if m <= epoch)
        return 1.0

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, max_epochs: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-epoch LambdaLR of :func:`lr_factor` (stepped once at the end of every epoch)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, max_epochs))
