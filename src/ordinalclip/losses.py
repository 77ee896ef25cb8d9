"""Training losses of OrdinalCLIP (reference notes §1.6), as pure functions plus ``nn.Module`` twins.

Both losses take the rank logits ``z`` of shape (B, C) (B images, C ranks) and integer labels of shape (B,):

* :func:`cross_entropy_loss` — image -> text: softmax over the C ranks of each image.
* :func:`text_to_image_kl_loss` — text -> image: for every rank present in the batch, softmax over the B
  images of that rank's logit column, matched (KL) to a near-one-hot target over the images carrying that
  label.

Example (two images, two ranks, no preference; both images carry rank 0):
    >>> import torch
    >>> out = ordinalclip_loss(torch.zeros(2, 2), torch.tensor([0, 0]))
    >>> round(out["ce"].item(), 4)  # ln 2: each image's softmax over the ranks is (1/2, 1/2)
    0.6931
    >>> out["kl"].item()  # rank 0's target over the two images is (1/2, 1/2), and so is its softmax
    0.0
    >>> sorted(out)
    ['ce', 'kl', 'loss']
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "cross_entropy_loss",
    "text_to_image_kl_loss",
    "ordinalclip_loss",
    "CrossEntropyLoss",
    "TextToImageKLLoss",
    "OrdinalCLIPLoss",
    "coral_loss",
    "corn_loss",
    "model_loss",
]


def _check_inputs(logits: Tensor, labels: Tensor, where: str) -> Tensor:
    """Validate (B, C) float logits against (B,) integer labels in [0, C); return logits in >= float32."""
    if not isinstance(logits, Tensor) or not isinstance(labels, Tensor):
        raise TypeError(
            f"{where}: logits and labels must be torch.Tensor; got "
            f"{type(logits).__name__} and {type(labels).__name__}"
        )
    if logits.ndim != 2:
        raise ValueError(f"{where}: logits must have shape (B, C); got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"{where}: logits must be a floating-point tensor; got dtype {logits.dtype}")
    if labels.ndim != 1:
        raise ValueError(f"{where}: labels must have shape (B,); got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(
            f"{where}: labels must be an integer tensor (e.g. torch.long); got dtype {labels.dtype}"
        )
    batch, num_ranks = logits.shape
    if labels.shape[0] != batch:
        raise ValueError(
            f"{where}: logits and labels disagree on the batch size: logits {tuple(logits.shape)}, "
            f"labels {tuple(labels.shape)}"
        )
    if batch == 0 or num_ranks == 0:
        raise ValueError(f"{where}: empty input: logits shape {tuple(logits.shape)}")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_ranks:
        raise ValueError(f"{where}: labels must be in [0, C) = [0, {num_ranks}); got min {lo}, max {hi}")
    # Half precision loses the e^10 target contrast and the batch log-softmax; compute both losses in float32.
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return logits


def cross_entropy_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean image->text cross-entropy over the batch.

    Args:
        logits: (B, C) rank logits.
        labels: (B,) integer ranks in [0, C).

    Returns:
        Scalar tensor: mean_b CE(logits[b], labels[b]).

    Example:
        >>> import torch
        >>> round(cross_entropy_loss(torch.zeros(1, 4), torch.tensor([2])).item(), 4)  # ln 4
        1.3863
    """
    return F.cross_entropy(_check_inputs(logits, labels, "cross_entropy_loss"), labels.long())


def text_to_image_kl_loss(logits: Tensor, labels: Tensor, temperature: float = 10.0) -> Tensor:
    """Text->image KL term: per present rank, KL(target over images || softmax over images), averaged over
    ranks.

    For every label k present in the batch: p_k = softmax_b(temperature * [y_b == k]),
    log q_k = log_softmax_b(logits[:, k]), term_k = sum_b p_k(b) (log p_k(b) - log q_k(b)).
    The result is the mean of term_k over the distinct present labels (reference notes §1.6).

    Args:
        logits: (B, C) rank logits.
        labels: (B,) integer ranks in [0, C).
        temperature: sharpness of the target; 10 in the reference code.

    Returns:
        Scalar tensor.

    Example:
        >>> import math, torch
        >>> logits = torch.tensor([[math.log(3.0), 9.0], [0.0, -4.0]])  # rank 0's column: q = (3/4, 1/4)
        >>> labels = torch.tensor([0, 0])  # target p = (1/2, 1/2); KL = 1/2 ln(4/3)
        >>> round(text_to_image_kl_loss(logits, labels).item(), 4)
        0.1438
    """
    return _kl(_check_inputs(logits, labels, "text_to_image_kl_loss"), labels, temperature)


def _kl(logits: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """Unchecked KL term on validated (B, C) logits."""
    num_ranks = logits.shape[1]
    one_hot = F.one_hot(labels.long(), num_ranks).to(logits.dtype)  # (B, C)
    log_p = torch.log_softmax(temperature * one_hot, dim=0)  # target, per column (rank) over the batch
    log_q = torch.log_softmax(logits, dim=0)
    per_rank = (log_p.exp() * (log_p - log_q)).sum(dim=0)  # (C,)
    present = one_hot.sum(dim=0) > 0
    # Absent ranks (uniform target) are dropped as in the reference code; a masked sum instead of boolean
    # indexing keeps the shape static (no host sync, compile-friendly).
    return torch.where(present, per_rank, 0.0).sum() / present.sum()


def ordinalclip_loss(
    logits: Tensor,
    labels: Tensor,
    ce_weight: float = 1.0,
    kl_weight: float = 1.0,
    temperature: float = 10.0,
) -> dict[str, Tensor]:
    """Total OrdinalCLIP loss ``ce_weight * CE + kl_weight * KL``.

    Args:
        logits: (B, C) rank logits.
        labels: (B,) integer ranks in [0, C).

    Returns:
        Dict of scalar tensors: ``loss`` (weighted total), ``ce`` and ``kl`` (unweighted terms).
    """
    # Validate once: each check of the label range is a host sync on GPU.
    logits = _check_inputs(logits, labels, "ordinalclip_loss")
    ce = F.cross_entropy(logits, labels.long())
    kl = _kl(logits, labels, temperature)
    return {"loss": ce_weight * ce + kl_weight * kl, "ce": ce, "kl": kl}


class CrossEntropyLoss(nn.Module):
    """Module twin of :func:`cross_entropy_loss`: ``forward(logits (B, C), labels (B,)) -> scalar``."""

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return cross_entropy_loss(logits, labels)


class TextToImageKLLoss(nn.Module):
    """Module twin of :func:`text_to_image_kl_loss`: ``forward(logits (B, C), labels (B,)) -> scalar``."""

    def __init__(self, temperature: float = 10.0) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return text_to_image_kl_loss(logits, labels, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class OrdinalCLIPLoss(nn.Module):
    """Module twin of :func:`ordinalclip_loss`: ``forward(logits (B, C), labels (B,)) -> {loss, ce, kl}``."""

    def __init__(self, ce_weight: float = 1.0, kl_weight: float = 1.0, temperature: float = 10.0) -> None:
        super().__init__()
        self.ce_weight = ce_weight
        self.kl_weight = kl_weight
        self.temperature = temperature

    def forward(self, logits: Tensor, labels: Tensor) -> dict[str, Tensor]:
        return ordinalclip_loss(logits, labels, self.ce_weight, self.kl_weight, self.temperature)

    def extra_repr(self) -> str:
        return f"ce_weight={self.ce_weight}, kl_weight={self.kl_weight}, temperature={self.temperature}"


def coral_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """CORAL loss (Cao et al., 2020): binary cross-entropy of the C-1 tasks "rank > k", summed over tasks and
    averaged over the batch.

    Args:
        logits: (B, C-1) task logits.
        labels: (B,) integer ranks in [0, C).

    Example:
        >>> import torch
        >>> # 3 ranks, label 1: targets (1 > 0, 1 > 1) = (1, 0), each BCE at logit 0 is ln 2
        >>> round(coral_loss(torch.zeros(1, 2), torch.tensor([1])).item(), 4)
        1.3863
    """
    _check_task_inputs(logits, labels, "coral_loss")
    tasks = torch.arange(logits.shape[1], device=logits.device)
    levels = (labels.long()[:, None] > tasks[None, :]).to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits.float(), levels.float(), reduction="none").sum(1).mean()


def corn_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """CORN loss (Shi et al., 2021): task k is trained only on the examples with rank >= k (the conditional
    subset), target "rank > k"; the binary cross-entropy is summed over all (example, task) pairs used and
    divided by their count.

    Args:
        logits: (B, C-1) task logits.
        labels: (B,) integer ranks in [0, C).

    Example:
        >>> import torch
        >>> # label 0 is in the subset of task 0 only (rank >= 0), so one BCE of ln 2
        >>> round(corn_loss(torch.zeros(1, 2), torch.tensor([0])).item(), 4)
        0.6931
    """
    _check_task_inputs(logits, labels, "corn_loss")
    y = labels.long()[:, None]
    tasks = torch.arange(logits.shape[1], device=logits.device)[None, :]
    used = (y >= tasks).float()
    target = (y > tasks).float()
    bce = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
    return (bce * used).sum() / used.sum()


def _check_task_inputs(logits: Tensor, labels: Tensor, where: str) -> None:
    if logits.ndim != 2 or labels.ndim != 1 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"{where}: expected logits (B, C-1) and labels (B,); got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    num_ranks = logits.shape[1] + 1
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_ranks):
        raise ValueError(f"{where}: labels must be in [0, C) = [0, {num_ranks}); got min {int(labels.min())}, "
                         f"max {int(labels.max())}")


def model_loss(outputs: Tensor, labels: Tensor, kind: str = "softmax", ce_weight: float = 1.0,
               kl_weight: float = 1.0, temperature: float = 10.0) -> dict[str, Tensor]:
    """The training loss for a model's ``output_kind``: OrdinalCLIP's CE + KL for ``softmax`` outputs (set
    ``kl_weight=0`` for plain cross-entropy; ``temperature`` sharpens the KL target), CORAL or CORN for the
    binary-task heads. Always has key ``loss``."""
    if kind == "softmax":
        if kl_weight == 0:
            ce = cross_entropy_loss(outputs, labels)
            return {"loss": ce_weight * ce, "ce": ce}
        return ordinalclip_loss(outputs, labels, ce_weight=ce_weight, kl_weight=kl_weight, temperature=temperature)
    if kind == "coral":
        loss = coral_loss(outputs, labels)
    elif kind == "corn":
        loss = corn_loss(outputs, labels)
    else:
        raise ValueError(f"unknown output kind {kind!r}; expected softmax, coral or corn")
    return {"loss": loss, kind: loss}
