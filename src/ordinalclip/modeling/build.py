"""One place that turns a :class:`ModelConfig` into modules."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from torch import nn

from ordinalclip.modeling.backbones.image import (
    ClipImageTower,
    FeatureTower,
    TimmTower,
    TorchvisionTower,
    output_dim,
)
from ordinalclip.modeling.backbones.text import open_clip_text_tower
from ordinalclip.modeling.config import ImageTowerConfig, ModelConfig, PromptConfig, read_rank_names
from ordinalclip.modeling.heads import LinearClassifier, OrdinalBinaryHead, zero_shot_prototypes
from ordinalclip.modeling.ordinalclip import CosineClassifier, OrdinalCLIP, prior_head
from ordinalclip.modeling.prompts import LearnerSettings, PlainPromptLearner, RankPromptLearner

if TYPE_CHECKING:
    from ordinalclip.modeling.backbones.clip import ClipBundle

log = logging.getLogger(__name__)


def prompt_names(cfg: PromptConfig, num_ranks: int, key: str) -> list[str] | None:
    """The names of ``model.prompts.<key>`` (``base_rank_names`` or ``rank_names``), read from
    ``<key>_file`` when that is set, checked against their count: C' = ``num_base_ranks`` base-rank names,
    C = ``num_ranks`` rank names. None when neither is set (random initialisation).

    Raises ``ValueError`` naming the key, the file and both counts (so a file meant for the other key is
    recognised).
    """
    if key not in ("base_rank_names", "rank_names"):
        raise ValueError(f"prompt names: unknown key {key!r}")
    names: list[str] | None = getattr(cfg, key)
    file: str | None = getattr(cfg, f"{key}_file")
    source = f"model.prompts.{key}"
    if file:
        source = f"model.prompts.{key}_file ({file})"
        try:
            names = read_rank_names(file)
        except (FileNotFoundError, ValueError) as err:
            raise ValueError(f"model.prompts.{key}_file: {err}") from None
    if names is None:
        return None
    if key == "base_rank_names":
        want, what = (
            cfg.num_base_ranks,
            f"C'={cfg.num_base_ranks} base-rank names (model.prompts.num_base_ranks)",
        )
        other = f"C={num_ranks} rank names go in model.prompts.rank_names"
    else:
        want, what = num_ranks, f"C={num_ranks} rank names (model.num_ranks)"
        other = (
            f"the rank learner's C'={cfg.num_base_ranks} base-rank names go in model.prompts.base_rank_names"
        )
    if len(names) != want:
        raise ValueError(f"{source}: {len(names)} names, expected {what}; {other}")
    return names


def build_prompt_learner(cfg: PromptConfig, num_ranks: int, vocab) -> nn.Module:
    """The prompt learner of ``cfg`` over ``vocab`` (a text tower).

    The rank learner (OrdinalCLIP) takes the C' ``base_rank_names``, or, without them, C ``rank_names``
    (one per rank: the base ranks are then the ranks, C' = C); the plain learner (CoOp) takes the C
    ``rank_names``. Names in the other key are checked too and never used (an error where they can only be a
    mistake: base ranks for the plain learner).
    """
    key, other = (
        ("base_rank_names", "rank_names") if cfg.learner == "rank" else ("rank_names", "base_rank_names")
    )
    names = prompt_names(cfg, num_ranks, key)
    others = prompt_names(cfg, num_ranks, other)  # checked even where they are not used
    num_base_ranks = cfg.num_base_ranks
    if names is None and others is not None and cfg.learner == "rank":  # C names, one per rank: C' = C
        names, key, num_base_ranks = others, other, num_ranks
    elif others is not None and cfg.learner == "plain":
        raise ValueError(
            f"model.prompts.{other}: the {cfg.learner} learner takes model.prompts.{key} "
            + ("(C' base-rank names)" if key == "base_rank_names" else "(C rank names; it has no base ranks)")
        )
    file = getattr(cfg, f"{key}_file")
    source = f"model.prompts.{key}_file ({file})" if file else f"model.prompts.{key}"
    common = LearnerSettings(
        context_init=cfg.context_init,
        num_context_tokens=cfg.num_context_tokens,
        rank_specific_context=cfg.rank_specific_context,
        tokens_per_rank=cfg.tokens_per_rank,
        position=cfg.position,
        init_std=cfg.init_std,
    )
    try:
        if cfg.learner == "rank":
            return RankPromptLearner(
                vocab, num_ranks, num_base_ranks, cfg.interpolation, base_rank_names=names, **common
            )
        return PlainPromptLearner(vocab, num_ranks, rank_names=names, **common)
    except ValueError as err:
        if names is not None and "names" in str(err):
            raise ValueError(f"{source}: {err}") from err
        raise


_PROJECTION_NOTE = {
    "identity": "no projection, features used as they are",
    "linear": "learnable projection, random initialisation",
    "identity_init": "learnable projection, initialised to the identity",
}


def build_image_tower(cfg: ImageTowerConfig, embed_dim: int | None, bundle: ClipBundle | None) -> nn.Module:
    """The image tower of ``cfg`` projecting to ``embed_dim`` (where it has a projection)."""
    if cfg.kind == "clip":
        assert bundle is not None
        if bundle.source.startswith("huggingface:"):
            from ordinalclip.modeling.backbones.hf_clip import HFClipImageTower

            return HFClipImageTower.from_model(bundle.model, preprocess=bundle.preprocess.to_dict())
        return ClipImageTower(bundle.model.visual, preprocess=bundle.preprocess.to_dict())
    if cfg.kind == "features":
        if cfg.input_dim is None:
            raise ValueError(
                "the features tower needs model.image.input_dim (the width of the feature vectors)"
            )
        embed_dim = embed_dim or cfg.input_dim  # no text tower nor model.embed_dim: the features' width
        mode = cfg.projection(embed_dim)
        log.info(
            "features tower: %s (%d-d features, joint width %d; model.image.project: %s)",
            _PROJECTION_NOTE[mode],
            cfg.input_dim,
            embed_dim,
            cfg.project,
        )
        return FeatureTower(cfg.input_dim, embed_dim, mode)
    if embed_dim is None:
        raise ValueError(f"image tower {cfg.kind!r} needs the joint width: set model.embed_dim")
    if cfg.kind in ("vgg16", "resnet50"):
        return TorchvisionTower(cfg.kind, embed_dim, weights=cfg.weights)
    if cfg.kind == "efficientnet_lite0":
        from ordinalclip.modeling.backbones.efficientnet import EfficientNetLite0Tower

        return EfficientNetLite0Tower(
            output_dim=embed_dim, pretrained=cfg.imagenet_weights, weights_path=cfg.weights
        )
    if cfg.kind == "timm":
        if not cfg.timm_model:
            raise ValueError("the timm image tower needs model.image.timm_model (a timm model name)")
        return TimmTower(cfg.timm_model, embed_dim, weights=cfg.weights, model_kwargs=cfg.timm_kwargs)
    raise ValueError(f"unknown image tower {cfg.kind!r}")


def build_text_tower(cfg: ModelConfig, bundle: ClipBundle | None) -> nn.Module:
    """The text tower of ``cfg``."""
    if cfg.text.kind == "clip":
        assert bundle is not None
        if bundle.source.startswith("huggingface:"):
            from ordinalclip.modeling.backbones.hf_clip import hf_text_tower

            return hf_text_tower(bundle.model, bundle.tokenizer, path=cfg.text.route, freeze=cfg.text.freeze)
        return open_clip_text_tower(
            bundle.model, bundle.tokenizer, path=cfg.text.route, freeze=cfg.text.freeze
        )
    if cfg.text.kind == "huggingface":
        from ordinalclip.modeling.backbones.hf_text import HFTextTower

        if not cfg.text.hf_model:
            raise ValueError("model.text.hf_model must name a local Hugging Face model folder or name")
        return HFTextTower(cfg.text.hf_model, freeze=cfg.text.freeze)
    raise ValueError(f"unknown text tower {cfg.text.kind!r}")


def build_model(cfg: ModelConfig) -> nn.Module:
    """Build the model described by ``cfg`` (weights loaded as configured)."""
    uses_text = cfg.uses_text()
    bundle: Any = None
    if cfg.uses_clip():
        c = cfg.clip
        if c.hf_model:
            from ordinalclip.modeling.backbones.hf_clip import load_hf_clip

            bundle = load_hf_clip(c.hf_model)
        else:
            # here, not at the top: a tower of another family (and a safetensors export of one) never needs
            # open_clip, nor the text libraries open_clip itself imports
            from ordinalclip.modeling.backbones.clip import load_clip

            bundle = load_clip(
                c.name,
                c.pretrained,
                quick_gelu=c.quick_gelu,
                allow_torchscript=c.allow_torchscript,
                custom=c.custom,
                tokenizer=c.tokenizer,
            )
    text_tower: Any = build_text_tower(cfg, bundle) if uses_text else None
    embed_dim: int | None = output_dim(text_tower) if text_tower is not None else cfg.embed_dim
    image_tower = build_image_tower(cfg.image, embed_dim, bundle)
    if cfg.arch == "cosine":
        return CosineClassifier(image_tower, cfg.num_ranks, math.log(cfg.logit_scale or 100.0))
    if cfg.arch == "linear":
        return LinearClassifier(image_tower, cfg.num_ranks)
    if cfg.arch in ("coral", "corn"):
        return OrdinalBinaryHead(image_tower, cfg.num_ranks, cfg.arch)
    if cfg.logit_scale is not None:
        log_scale = math.log(cfg.logit_scale)
    elif bundle is not None:
        log_scale = float(bundle.model.logit_scale.detach())
    else:
        log_scale = math.log(1 / 0.07)
    if cfg.arch == "zeroshot":
        names = prompt_names(cfg.prompts, cfg.num_ranks, "rank_names")
        if not names:
            raise ValueError(
                f"zero-shot CLIP needs C={cfg.num_ranks} rank names (model.prompts.rank_names or "
                "rank_names_file); got 0"
            )
        protos = zero_shot_prototypes(text_tower, names, cfg.zero_shot_templates)
        return CosineClassifier(image_tower, cfg.num_ranks, log_scale, prototypes=protos, learnable=False)
    learner = build_prompt_learner(cfg.prompts, cfg.num_ranks, text_tower)
    model = OrdinalCLIP(image_tower, learner, text_tower, log_scale, cfg.learn_logit_scale)
    if cfg.arch == "prior_head":
        return prior_head(model)
    return model
