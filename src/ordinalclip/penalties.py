"""Penalties that hold a trained model near its language prior (the model as built, before any step).

Pure functions like :mod:`ordinalclip.losses`, added to the training loss by the engine when a config asks
(``loss.prior_weight``, ``loss.prior_constraint``, ``loss.projection_weight``; the guide "Few-shot with
language priors" says when):

* :func:`prototype_prior_penalty`: the KgCoOp-like distance between the learned prototypes and those of the
  hand-written rank names, and the CLAP-like constraint of a language-initialised head;
* :func:`clap_multipliers` and :func:`augmented_lagrangian_step`: CLAP's class-wise weights of that penalty
  (Silva-Rodriguez et al., CVPR 2024), set from the zero-shot model's confidence, no validation split needed;
* :func:`projection_prior_penalty`: the ProLIP-like pull of a features projection toward the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "prototype_distances",
    "prototype_prior_penalty",
    "projection_prior_penalty",
    "clap_multipliers",
    "augmented_lagrangian_step",
]


def prototype_distances(prototypes: Tensor, prior: Tensor) -> Tensor:
    """(C,) squared distances ``||p_k - p0_k||^2 = 2 - 2 cos(p_k, p0_k)`` between the L2-normalised rows of
    the (C, E) ``prototypes`` and of the (C, E) ``prior``: each rank's share of
    :func:`prototype_prior_penalty`, and the constraint values of :func:`augmented_lagrangian_step`."""
    if prototypes.shape != prior.shape or prototypes.dim() != 2:
        raise ValueError(
            f"prototype prior penalty: prototypes {tuple(prototypes.shape)} and prior {tuple(prior.shape)} "
            "must both be (C, E)"
        )
    return (F.normalize(prototypes, dim=-1) - F.normalize(prior.to(prototypes), dim=-1)).pow(2).sum(-1)


def prototype_prior_penalty(prototypes: Tensor, prior: Tensor, weights: Tensor | None = None) -> Tensor:
    """Mean over the C ranks of ``w_k * ||p_k - p0_k||^2``: how far the (C, E) prototypes moved from the
    (C, E) prototypes of the prior (the model as built: hand-written rank names, interpolated base ranks).

    Both are L2-normalised here (the prototypes compare to features by cosine), so each term is
    ``2 - 2 cos(p_k, p0_k)``, in [0, 4]. ``weights``: (C,) class-wise weights (default 1 each). The
    KgCoOp-like penalty of prompt learning and the CLAP-like constraint of a language-initialised head.

    Example (rank 0 turned by 90 degrees, rank 1 unmoved: (2 + 0) / 2):
        >>> import torch
        >>> prior = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> moved = torch.tensor([[0.0, 3.0], [0.0, 2.0]])
        >>> prototype_prior_penalty(moved, prior).item()
        1.0
        >>> prototype_prior_penalty(moved, prior, torch.tensor([0.5, 4.0])).item()  # (0.5 * 2 + 0) / 2
        0.5
    """
    dist = prototype_distances(prototypes, prior)
    if weights is not None:
        if weights.shape != dist.shape:
            raise ValueError(
                f"prototype prior penalty: weights {tuple(weights.shape)}, expected ({len(dist)},)"
            )
        dist = dist * weights.to(dist)
    return dist.mean()


def projection_prior_penalty(weight: Tensor) -> Tensor:
    """Mean squared entry of ``W - I`` for a square (F, F) projection that starts as the identity: how far a
    features projection moved from "features as they are" (the ProLIP-like penalty; its gradient does not
    grow with the width F).

    Example (one entry of a 2 x 2 identity moved by 2: 4 / 4 entries):
        >>> import torch
        >>> projection_prior_penalty(torch.tensor([[1.0, 2.0], [0.0, 1.0]])).item()
        1.0
    """
    if weight.dim() != 2 or weight.shape[0] != weight.shape[1]:
        raise ValueError(
            f"projection prior penalty: expected a square (F, F) weight, got {tuple(weight.shape)}"
        )
    eye = torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device)
    return (weight - eye).pow(2).mean()


def clap_multipliers(logits: Tensor, labels: Tensor) -> Tensor:
    """CLAP's initial class-wise weights of the prototype penalty (Silva-Rodriguez et al., CVPR 2024): for
    each of the C ranks, the mean softmax probability that the model as built (the zero-shot prior) gives the
    true rank over the (N,) support samples of that rank, from their (N, C) logits. A rank the prior already
    recognises is held near it; one it misses is free to move. A rank without a support sample takes the mean
    of the others (no evidence either way). Returns (C,) weights in [0, 1].

    Example (rank 0: probabilities 0.5 and 1.0 of the true rank; rank 1: 0.5):
        >>> import math, torch
        >>> big = math.log(1e9)
        >>> logits = torch.tensor([[0.0, 0.0], [big, 0.0], [0.0, 0.0]])
        >>> [round(v, 4) for v in clap_multipliers(logits, torch.tensor([0, 0, 1])).tolist()]
        [0.75, 0.5]
    """
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"clap multipliers: expected (N, C) logits and (N,) labels, got {tuple(logits.shape)} and "
            f"{tuple(labels.shape)}"
        )
    num = logits.shape[1]
    true_prob = logits.float().softmax(-1).gather(1, labels.long()[:, None])[:, 0]
    sums = torch.zeros(num, dtype=true_prob.dtype, device=logits.device).index_add_(
        0, labels.long(), true_prob
    )
    counts = torch.bincount(labels.long(), minlength=num).to(true_prob)
    seen = counts > 0
    if not bool(seen.any()):
        raise ValueError("clap multipliers: no support sample")
    out = sums / counts.clamp(min=1)
    return torch.where(seen, out, out[seen].mean())


def augmented_lagrangian_step(
    constraints: Tensor, multipliers: Tensor, penalty: Tensor
) -> tuple[Tensor, Tensor]:
    """One outer step of the augmented Lagrangian (PHR penalty) on the class-wise constraints ``h_k <= 0``,
    here ``h_k`` = how far rank k's prototype moved from its prior (:func:`prototype_prior_penalty`'s terms):
    each multiplier becomes the derivative of the PHR penalty ``P(h, lambda, rho) = ((lambda + rho h)_+^2 -
    lambda^2) / (2 rho)`` at the current constraint, ``lambda_k <- max(0, lambda_k + rho_k h_k)``, and the
    penalty parameter follows the current constraint, ``rho_k <- h_k`` (CLAP's schedule: from rho = 0 the
    first step keeps the initial multipliers; ranks that keep moving get held harder). All tensors (C,);
    returns (multipliers, penalty).

    Example (rank 0 moved 0.5 under rho 2: 0.1 + 2 x 0.5; rank 1 did not move):
        >>> import torch
        >>> lam, rho = augmented_lagrangian_step(
        ...     torch.tensor([0.5, 0.0]), torch.tensor([0.1, 0.3]), torch.tensor([2.0, 2.0])
        ... )
        >>> [round(v, 4) for v in lam.tolist()], rho.tolist()
        ([1.1, 0.3], [0.5, 0.0])
    """
    if not constraints.shape == multipliers.shape == penalty.shape or constraints.dim() != 1:
        raise ValueError(
            f"augmented Lagrangian step: constraints {tuple(constraints.shape)}, multipliers "
            f"{tuple(multipliers.shape)} and penalty {tuple(penalty.shape)} must all be (C,)"
        )
    h = constraints.detach()
    return (multipliers + penalty * h).clamp(min=0), h.clone()
