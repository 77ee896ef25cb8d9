"""Training losses: OrdinalCLIP's (reference notes §1.6), the ordinal losses of the field, CORAL and CORN.

Every softmax-output model (OrdinalCLIP, CoOp, the cosine and linear baselines) trains with one of
:data:`SOFTMAX_LOSSES`, chosen by name in the config (``loss.name``, see :func:`make_softmax_loss`):

* ``ordinalclip`` (default): CE + text->image KL below (``kl_weight: 0`` = plain cross-entropy);
* ``sord``: cross-entropy to SORD soft labels ``softmax_k(-alpha |k - y|)`` (Diaz & Marathe, 2019);
* ``beta``, ``binomial``, ``poisson``, ``exponential``, ``triangular``: cross-entropy to the unimodal soft
  labels of those families, mixed with the one-hot label by ``eta`` (:func:`soft_label_matrix`);
* ``cdw_ce``: class-distance-weighted cross-entropy (Polat et al., 2022), :func:`cdw_ce_loss`;
* ``emd``: squared earth mover's distance between the CDFs (Hou et al., 2016), :func:`emd_loss`;
* ``wk``: weighted-kappa loss (de la Torre et al., 2018), :func:`weighted_kappa_loss`.

The soft-label matrices of the five families are dlordinal's (the field's maintained library; they are
computed once per run). The loss functions are ours: they take logits at OrdinalCLIP's scale (a logit scale of
100) without overflow, keep no state between calls and validate their inputs; tests check each against
dlordinal's.

The two OrdinalCLIP losses take the rank logits ``z`` of shape (B, C) (B images, C ranks) and integer labels
of shape (B,):

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

from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, TypedDict, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from typing_extensions import Unpack

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
    "SOFTMAX_LOSSES",
    "SOFT_LABEL_FAMILIES",
    "sord_targets",
    "SoftLabelSettings",
    "SOFT_LABEL_DEFAULTS",
    "soft_label_matrix",
    "soft_label_loss",
    "cdw_ce_loss",
    "emd_loss",
    "weighted_kappa_loss",
    "make_softmax_loss",
]

SOFT_LABEL_FAMILIES = ("beta", "binomial", "poisson", "exponential", "triangular")
SOFTMAX_LOSSES = ("ordinalclip", "sord", *SOFT_LABEL_FAMILIES, "cdw_ce", "emd", "wk")


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
    bce, _ = _task_bce(logits, labels, "coral_loss")
    return bce.sum(1).mean()


def corn_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """CORN loss (Shi et al., 2021): task k is trained only on the examples with rank >= k (the conditional
    subset), target "rank > k"; the binary cross-entropy is summed over all (example, task) pairs used and
    divided by their count. Inputs as :func:`coral_loss`: (B, C-1) task logits, (B,) integer ranks in [0, C).

    Example (label 0 is in the subset of task 0 only, rank >= 0, so one BCE of ln 2):
        >>> import torch
        >>> round(corn_loss(torch.zeros(1, 2), torch.tensor([0])).item(), 4)
        0.6931
    """
    bce, subset = _task_bce(logits, labels, "corn_loss")
    used = subset.float()
    return (bce * used).sum() / used.sum()


def _task_bce(logits: Tensor, labels: Tensor, where: str) -> tuple[Tensor, Tensor]:
    """The (B, C-1) float32 binary cross-entropy of each task k, target "rank > k", and the (B, C-1) bool
    mask "rank >= k" (the examples in task k's conditional subset). ``where`` names the caller in errors."""
    _check_task_inputs(logits, labels, where)
    y = labels.long()[:, None]
    tasks = torch.arange(logits.shape[1], device=logits.device)[None, :]
    target = (y > tasks).float()
    bce = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
    return bce, y >= tasks


def _check_task_inputs(logits: Tensor, labels: Tensor, where: str) -> None:
    if logits.ndim != 2 or labels.ndim != 1 or logits.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{where}: expected logits (B, C-1) and labels (B,); got {tuple(logits.shape)} and "
            f"{tuple(labels.shape)}"
        )
    num_ranks = logits.shape[1] + 1
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_ranks):
        raise ValueError(
            f"{where}: labels must be in [0, C) = [0, {num_ranks}); got min {int(labels.min())}, "
            f"max {int(labels.max())}"
        )


def model_loss(
    outputs: Tensor,
    labels: Tensor,
    kind: str = "softmax",
    ce_weight: float = 1.0,
    kl_weight: float = 1.0,
    temperature: float = 10.0,
) -> dict[str, Tensor]:
    """The training loss for a model's ``output_kind``: OrdinalCLIP's CE + KL for ``softmax`` outputs (set
    ``kl_weight=0`` for plain cross-entropy; ``temperature`` sharpens the KL target; other softmax losses:
    :func:`make_softmax_loss`), CORAL or CORN for the binary-task heads. Always has key ``loss``."""
    if kind == "softmax":
        loss_fn = make_softmax_loss(
            "ordinalclip",
            outputs.shape[-1],
            ce_weight=ce_weight,
            kl_weight=kl_weight,
            temperature=temperature,
        )
        return loss_fn(outputs, labels)
    if kind == "coral":
        loss = coral_loss(outputs, labels)
    elif kind == "corn":
        loss = corn_loss(outputs, labels)
    else:
        raise ValueError(f"unknown output kind {kind!r}; expected softmax, coral or corn")
    return {"loss": loss, kind: loss}


# ------------------------------------------------------------------------------------- ordinal softmax losses


def sord_targets(num_ranks: int, alpha: float = 1.0) -> Tensor:
    """SORD soft labels (Diaz & Marathe, 2019): row y is ``softmax_k(-alpha * |k - y|)`` -> (C, C) float64
    tensor.

    (A squared distance is the ``exponential`` family with ``p = 2``, ``tau = 1 / alpha``.)
    """
    if num_ranks < 1:
        raise ValueError(f"sord_targets: num_ranks must be >= 1; got {num_ranks}")
    if alpha <= 0:
        raise ValueError(f"sord_targets: alpha must be > 0; got {alpha}")
    ranks = torch.arange(num_ranks, dtype=torch.float64)
    return torch.softmax(-alpha * (ranks[None, :] - ranks[:, None]).abs(), dim=1)


class SoftLabelSettings(TypedDict, total=False):
    """The parameters of the soft-label families, as keyword arguments of :func:`soft_label_matrix` and
    :func:`make_softmax_loss` (one declaration for both; the defaults are :data:`SOFT_LABEL_DEFAULTS`)."""

    sord_alpha: float  # SORD's alpha
    exp_p: float  # the exponential family's distance exponent p
    exp_tau: float  # ... and its temperature tau
    triangular_alpha2: float  # the mass of each neighbouring rank of the triangular family
    beta_params: str  # dlordinal's parameter set of the beta family


SOFT_LABEL_DEFAULTS = SoftLabelSettings(
    sord_alpha=1.0, exp_p=1.0, exp_tau=1.0, triangular_alpha2=0.05, beta_params="standard"
)


def _soft_label_settings(settings: Mapping[str, object], where: str) -> SoftLabelSettings:
    """``settings`` over :data:`SOFT_LABEL_DEFAULTS`; a name outside :class:`SoftLabelSettings` is the
    ``TypeError`` an unknown keyword argument gives."""
    unknown = sorted(set(settings) - set(SOFT_LABEL_DEFAULTS))
    if unknown:
        raise TypeError(f"{where}: unknown keyword argument(s) {unknown}")
    return cast(SoftLabelSettings, {**SOFT_LABEL_DEFAULTS, **settings})


def soft_label_matrix(family: str, num_ranks: int, **settings: Unpack[SoftLabelSettings]) -> Tensor:
    """The (C, C) soft-label matrix of a family: row y is the target distribution of an example of rank y.

    ``sord`` is :func:`sord_targets`; ``beta`` (Vargas et al., 2022; dlordinal's ``beta_params`` set, defined
    for 3 <= C <= 14), ``binomial`` and ``poisson`` (Liu et al., 2020), ``exponential`` (``softmax(-|k - y|^p
    / tau)``) and ``triangular`` (Vargas et al., 2023; ``triangular_alpha2`` is the mass of each neighbouring
    rank) come from ``dlordinal.soft_labelling``.

    Args:
        family: ``sord`` or one of :data:`SOFT_LABEL_FAMILIES`.
        num_ranks: C.
        **settings: :class:`SoftLabelSettings` (``sord_alpha``, ``exp_p``, ``exp_tau``, ``triangular_alpha2``,
            ``beta_params``); the others default as in :data:`SOFT_LABEL_DEFAULTS`.

    Returns:
        (C, C) float64 tensor whose rows sum to 1 (within 3e-8).
    """
    s = _soft_label_settings(settings, "soft_label_matrix")
    sord_alpha, beta_params = s["sord_alpha"], s["beta_params"]
    if family == "sord":
        return sord_targets(num_ranks, sord_alpha)
    if family not in SOFT_LABEL_FAMILIES:
        raise ValueError(
            f"unknown soft-label family {family!r}; expected sord or one of {SOFT_LABEL_FAMILIES}"
        )
    if num_ranks < 2:
        raise ValueError(f"soft labels of the {family} family need at least 2 ranks; got {num_ranks}")
    # Imported here: dlordinal.soft_labelling pulls scipy.stats and sympy (about 1 s), needed only by these
    # runs.
    from dlordinal import soft_labelling as sl

    if family == "beta":
        from dlordinal.soft_labelling.beta_distribution import _beta_params_sets

        known = _beta_params_sets.get(beta_params, {})
        if num_ranks not in known:
            raise ValueError(
                f"beta soft labels: dlordinal's {beta_params!r} parameter set covers "
                f"{sorted(known) or 'no'} ranks, not {num_ranks}; use another family"
            )
        matrix = sl.get_beta_soft_labels(num_ranks, beta_params)
    elif family == "binomial":
        matrix = sl.get_binomial_soft_labels(num_ranks)
    elif family == "poisson":
        matrix = sl.get_poisson_soft_labels(num_ranks)
    elif family == "exponential":
        matrix = sl.get_exponential_soft_labels(num_ranks, p=s["exp_p"], tau=s["exp_tau"])
    else:
        matrix = sl.get_triangular_soft_labels(num_ranks, alpha2=s["triangular_alpha2"])
    # As dlordinal gives them: its beta and triangular rows integrate a CDF over [1e-9, 1 - 1e-9], so they sum
    # to 1 within 3e-8, which changes no loss value that matters.
    return torch.as_tensor(matrix, dtype=torch.float64)


def soft_label_loss(logits: Tensor, labels: Tensor, targets: Tensor, eta: float = 1.0) -> Tensor:
    """Mean cross-entropy to soft labels: ``-sum_k t_k log softmax(z)_k`` with
    ``t = (1 - eta) * onehot(y) + eta * targets[y]``.

    Args:
        logits: (B, C) rank logits.
        labels: (B,) integer ranks in [0, C).
        targets: (C, C) soft-label matrix (:func:`soft_label_matrix`), row y for rank y.
        eta: 1 = the soft labels alone, 0 = plain cross-entropy.
    """
    logits = _check_inputs(logits, labels, "soft_label_loss")
    num_ranks = logits.shape[1]
    if targets.shape != (num_ranks, num_ranks):
        raise ValueError(
            f"soft_label_loss: targets must be (C, C) = ({num_ranks}, {num_ranks}); "
            f"got {tuple(targets.shape)}"
        )
    y = labels.long()
    t = targets.to(device=logits.device, dtype=logits.dtype)[y]
    if eta != 1.0:
        t = (1.0 - eta) * F.one_hot(y, num_ranks).to(logits.dtype) + eta * t
    return -(t * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()


def cdw_ce_loss(logits: Tensor, labels: Tensor, alpha: float = 1.0) -> Tensor:
    """Class-distance-weighted cross-entropy (Polat et al., 2022):
    ``mean_b -sum_k |k - y_b|^alpha * log(1 - softmax(z_b)_k)``.

    ``log(1 - p_k)`` is computed as ``logsumexp_{j != k} z_j - logsumexp_j z_j``, which stays finite for
    logits at OrdinalCLIP's scale (exp(100) overflows float32).

    Args:
        logits: (B, C) rank logits.
        labels: (B,) integer ranks in [0, C).
        alpha: the distance exponent (larger: far mistakes cost more).
    """
    logits = _check_inputs(logits, labels, "cdw_ce_loss")
    num_ranks = logits.shape[1]
    if num_ranks < 2:
        raise ValueError(f"cdw_ce_loss: needs at least 2 ranks; got logits {tuple(logits.shape)}")
    eye = torch.eye(num_ranks, dtype=torch.bool, device=logits.device)
    others = logits[:, None, :].masked_fill(eye[None], float("-inf"))  # (B, k, j): z_j for j != k
    log_not_k = torch.logsumexp(others, dim=2) - torch.logsumexp(logits, dim=1, keepdim=True)  # (B, C)
    ranks = torch.arange(num_ranks, device=logits.device, dtype=logits.dtype)
    weights = (ranks[None, :] - labels.long()[:, None].to(logits.dtype)).abs() ** alpha
    return -(weights * log_not_k).sum(dim=1).mean()


def emd_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Squared earth mover's distance (Hou et al., 2016; the ranked probability score as a loss):
    ``mean_b sum_k (CDF(softmax(z_b))_k - [y_b <= k])^2``.

    Args:
        logits: (B, C) rank logits.
        labels: (B,) integer ranks in [0, C).
    """
    logits = _check_inputs(logits, labels, "emd_loss")
    ranks = torch.arange(logits.shape[1], device=logits.device)
    true_cdf = (labels.long()[:, None] <= ranks[None, :]).to(logits.dtype)
    return ((torch.softmax(logits, dim=1).cumsum(dim=1) - true_cdf) ** 2).sum(dim=1).mean()


def weighted_kappa_loss(
    logits: Tensor, labels: Tensor, penalty: str = "quadratic", log: bool = False, eps: float = 1e-10
) -> Tensor:
    """Weighted-kappa loss (de la Torre et al., 2018, in the [0, 2] form of Vargas et al., 2020): the weighted
    disagreement of the soft confusion matrix over the one it would have by chance, ``1 - kappa``.

    With q = softmax(z) (B, C), one-hot labels P (B, C) and weights ``w_ij = |i - j|^n / (C - 1)^n`` (n = 1
    ``linear``, 2 ``quadratic``): ``sum w * (q^T P) / (sum w * (q.sum(0) outer P.sum(0)) / B + eps)``;
    ``log=True`` takes its logarithm (the original form). A batch-level loss: it is not a mean of per-example
    terms.

    Args:
        logits: (B, C) rank logits.
        labels: (B,) integer ranks in [0, C).
    """
    logits = _check_inputs(logits, labels, "weighted_kappa_loss")
    num_ranks = logits.shape[1]
    if num_ranks < 2:
        raise ValueError(f"weighted_kappa_loss: needs at least 2 ranks; got logits {tuple(logits.shape)}")
    powers = {"linear": 1, "quadratic": 2}
    if penalty not in powers:
        raise ValueError(f"weighted_kappa_loss: penalty must be 'linear' or 'quadratic'; got {penalty!r}")
    ranks = torch.arange(num_ranks, device=logits.device, dtype=logits.dtype)
    weights = ((ranks[:, None] - ranks[None, :]).abs() / (num_ranks - 1)) ** powers[penalty]
    q = torch.softmax(logits, dim=1)
    onehot = F.one_hot(labels.long(), num_ranks).to(logits.dtype)
    observed = (weights * (q.T @ onehot)).sum()
    expected = (weights * torch.outer(q.sum(0), onehot.sum(0))).sum() / logits.shape[0]
    ratio = observed / (expected + eps)
    return torch.log(ratio + eps) if log else ratio


def make_softmax_loss(
    name: str,
    num_ranks: int,
    *,
    ce_weight: float = 1.0,
    kl_weight: float = 1.0,
    temperature: float = 10.0,
    eta: float = 1.0,
    cdw_alpha: float = 1.0,
    wk_penalty: str = "quadratic",
    wk_log: bool = False,
    **soft_labels: Unpack[SoftLabelSettings],
) -> Callable[[Tensor, Tensor], dict[str, Tensor]]:
    """The training loss ``name`` (one of :data:`SOFTMAX_LOSSES`) for (B, C) logits of ``num_ranks`` ranks.

    ``soft_labels``: the :class:`SoftLabelSettings` of the soft-label families, passed to
    :func:`soft_label_matrix` (checked there, whatever the loss).

    Soft-label matrices are built here, once. Returns ``fn(logits (B, C), labels (B,)) -> dict`` with key
    ``loss`` (what is minimised) and the loss's own terms (``ce`` / ``kl`` for ``ordinalclip``, else
    ``name``).
    """
    _soft_label_settings(soft_labels, "make_softmax_loss")
    if name == "ordinalclip":

        def fn(logits: Tensor, labels: Tensor) -> dict[str, Tensor]:
            if kl_weight == 0:
                ce = cross_entropy_loss(logits, labels)
                return {"loss": ce_weight * ce, "ce": ce}
            return ordinalclip_loss(logits, labels, ce_weight, kl_weight, temperature)

        return fn
    if name == "sord" or name in SOFT_LABEL_FAMILIES:
        targets = soft_label_matrix(name, num_ranks, **soft_labels)
        mix = 1.0 if name == "sord" else eta  # SORD's labels are already a smoothing of the one-hot label
        single: Callable[[Tensor, Tensor], Tensor] = partial(soft_label_loss, targets=targets, eta=mix)
    elif name == "cdw_ce":
        single = partial(cdw_ce_loss, alpha=cdw_alpha)
    elif name == "emd":
        single = emd_loss
    elif name == "wk":
        if wk_penalty not in ("linear", "quadratic"):
            raise ValueError(f"weighted-kappa penalty must be 'linear' or 'quadratic'; got {wk_penalty!r}")
        single = partial(weighted_kappa_loss, penalty=wk_penalty, log=wk_log)
    else:
        raise ValueError(f"unknown softmax loss {name!r}; expected one of {SOFTMAX_LOSSES}")

    def named(logits: Tensor, labels: Tensor) -> dict[str, Tensor]:
        loss = single(logits, labels)
        return {"loss": loss, name: loss}

    return named
