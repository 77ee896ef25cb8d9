"""OrdinalCLIP and the cosine-prototype classifier it turns into after training (reference notes §1.1, §1.5).

logits[b, i] = exp(logit_scale) * <f_b / |f_b|, t_i / |t_i|>, with f the image feature and t_i the language
prototype of rank i. :meth:`OrdinalCLIP.to_head` freezes the C prototypes into a :class:`CosineClassifier`,
which gives the same logits with no text tower in memory: inference then costs what a linear head costs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ordinalclip.modeling.backbones.image import output_dim


class _LogitScale(nn.Module):
    """log of the logit scale s (CLIP's parametrisation); frozen unless ``learnable``."""

    def __init__(self, log_scale: float, learnable: bool):
        super().__init__()
        self.value = nn.Parameter(torch.tensor(float(log_scale)), requires_grad=learnable)

    def forward(self) -> torch.Tensor:
        return self.value.exp()


class _PrototypeModel(nn.Module):
    """What every prototype model shares: logits = s * cos(image feature, prototype), s = exp(log scale).

    Subclasses set ``image_tower`` and ``logit_scale`` and define ``prototypes()`` -> (C, E) normalised.
    """

    output_kind = "softmax"
    image_tower: nn.Module
    logit_scale: _LogitScale

    def prototypes(self) -> torch.Tensor:
        raise NotImplementedError

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, ...) -> (B, E) L2-normalised image features."""
        return F.normalize(self.image_tower(images), dim=-1)

    def forward(self, images: torch.Tensor, prototypes: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C) logits; pass ``prototypes`` (C, E, normalised) to reuse ones computed earlier (e.g. in
        eval)."""
        return self.forward_features(self.image_tower(images), prototypes)

    def forward_features(
        self, features: torch.Tensor, prototypes: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, E) image-tower features -> (B, C) logits (the part after the image tower)."""
        protos = self.prototypes() if prototypes is None else prototypes
        return self.logit_scale() * F.normalize(features, dim=-1) @ protos.t()


class OrdinalCLIP(_PrototypeModel):
    """Image tower + prompt learner + text tower -> (B, C) logits.

    Args:
        image_tower: module mapping inputs to (B, E) features, with ``output_dim`` = E.
        prompt_learner: module whose ``forward()`` returns the C prompts' :class:`PromptEmbeddings`.
        text_tower: module mapping those prompts to (C, E) text features.
        log_logit_scale: log s; use the CLIP checkpoint's value to match the reference (it never trains it).
        learn_logit_scale: train log s as well.
    """

    prompt_learner: Any  # a RankPromptLearner / PlainPromptLearner (duck-typed: num_ranks, forward())

    def __init__(
        self,
        image_tower: nn.Module,
        prompt_learner: nn.Module,
        text_tower: nn.Module,
        log_logit_scale: float = math.log(1 / 0.07),
        learn_logit_scale: bool = False,
    ):
        super().__init__()
        if getattr(image_tower, "output_dim", None) != getattr(text_tower, "output_dim", None):
            raise ValueError(
                f"image tower gives {getattr(image_tower, 'output_dim', '?')}-d features, text tower "
                f"{getattr(text_tower, 'output_dim', '?')}-d: give the image tower a projection"
            )
        self.image_tower = image_tower
        self.prompt_learner = prompt_learner
        self.text_tower = text_tower
        self.logit_scale = _LogitScale(log_logit_scale, learn_logit_scale)

    @property
    def num_ranks(self) -> int:
        return int(self.prompt_learner.num_ranks)

    def text_features(self) -> torch.Tensor:
        """(C, E) unnormalised language prototypes."""
        return self.text_tower(self.prompt_learner())

    def prototypes(self) -> torch.Tensor:
        """(C, E) L2-normalised language prototypes, one per rank."""
        return F.normalize(self.text_features(), dim=-1)

    @torch.no_grad()
    def to_head(self) -> CosineClassifier:
        """The deployable model: this image tower + the current prototypes as a fixed cosine head.

        The raw text features are stored and normalised on use, the same operations as :meth:`forward`, so the
        logits are bit-identical.
        """
        return _cosine_head(self, self.text_features(), learnable=False)


class CosineClassifier(_PrototypeModel):
    """Image tower + C prototype vectors compared by cosine similarity.

    With ``learnable=True`` it is the reference's CNN baseline (random prototypes, fixed scale 100); with
    fixed ``prototypes`` it is an exported OrdinalCLIP.

    Args:
        image_tower: module mapping inputs to (B, E) features.
        num_ranks: C.
        log_logit_scale: log s (the CNN baseline uses log 100).
        prototypes: optional (C, E) initial/fixed prototypes (normalised on use).
        learnable: train the prototypes.
    """

    def __init__(
        self,
        image_tower: nn.Module,
        num_ranks: int,
        log_logit_scale: float = math.log(100.0),
        prototypes: torch.Tensor | None = None,
        learnable: bool = True,
    ):
        super().__init__()
        dim = output_dim(image_tower)
        if prototypes is None:
            prototypes = torch.empty(num_ranks, dim)
            nn.init.kaiming_normal_(prototypes, mode="fan_out", nonlinearity="linear")
        if tuple(prototypes.shape) != (num_ranks, dim):
            raise ValueError(f"prototypes must be ({num_ranks}, {dim}), got {tuple(prototypes.shape)}")
        self.image_tower = image_tower
        self.num_ranks = num_ranks
        if learnable:
            self.weight = nn.Parameter(prototypes.clone())
        else:
            self.register_buffer("weight", prototypes.clone())
        self.logit_scale = _LogitScale(log_logit_scale, learnable=False)

    def prototypes(self) -> torch.Tensor:
        """(C, E) L2-normalised prototypes."""
        return F.normalize(self.weight, dim=-1)

    @torch.no_grad()
    def to_head(self) -> CosineClassifier:
        """The deployable model: this image tower + the current prototypes, fixed (same logits)."""
        return _cosine_head(self, self.weight, learnable=False)


@torch.no_grad()
def prior_head(model: OrdinalCLIP) -> CosineClassifier:
    """A learnable cosine head initialised from ``model``'s prototypes as they are now (``model.arch:
    prior_head``): the language prior as a linear probe (CLAP's ZS-LP, with OrdinalCLIP's interpolated base
    ranks it starts ordered). It keeps ``model``'s image tower and logit scale; the text tower is dropped.

    The weights are the raw text features (normalised on use), so at step 0 its logits equal ``model``'s.
    """
    head = _cosine_head(model, model.text_features(), learnable=True)
    head.logit_scale.value.requires_grad_(model.logit_scale.value.requires_grad)
    return head


def _cosine_head(model: _PrototypeModel, raw: torch.Tensor, learnable: bool) -> CosineClassifier:
    """A cosine head on ``model``'s image tower and logit scale with a copy of the (C, E) ``raw`` prototypes
    (normalised on use, as ``model`` does: the same logits)."""
    return CosineClassifier(
        model.image_tower,
        int(raw.shape[0]),
        log_logit_scale=float(model.logit_scale.value),
        prototypes=raw.detach().clone(),
        learnable=learnable,
    )
