"""Evaluation metrics of OrdinalCLIP (reference notes §1.7 and §1.8), as pure functions.

Inputs may be torch tensors, numpy arrays or lists; nothing here tracks gradients. Scalar metrics return
Python floats; per-example ones return 1-D torch tensors.

Predictions from logits z (B, C):
  * expectation ``pred_exp = sum_i i * softmax(z)_i`` (float), and
  * argmax ``pred_max = argmax_i z_i`` (long).

For CORAL / CORN heads ((B, C-1) logits of "rank > k") ``pred_exp`` is the expectation of the derived rank
distribution and ``pred_max`` is the point prediction of their authors: the number of thresholds passed,
``sum_k [P(rank > k) > 0.5]`` (what coral-pytorch's ``proba_to_label`` / ``corn_label_from_logits`` return).
The ``_max`` keys of every model thus hold its authors' point prediction.

A float prediction counts as correct iff ``round(pred) == target`` with torch.round semantics (half to even,
as the reference code). :func:`ordinal_metrics` bundles the metrics the training loop logs.

Example:
    >>> import torch
    >>> m = ordinal_metrics(torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.0, 4.0]]), torch.tensor([0, 1]))
    >>> m["mae_max"], m["acc_max"]
    (0.5, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ordinalclip.errors import NonFiniteOutputError

__all__ = [
    "mean_std",
    "predict_from_logits",
    "expected_rank",
    "absolute_error",
    "mae",
    "accuracy",
    "off_by_one_accuracy",
    "cumulative_score",
    "confusion_matrix",
    "quadratic_weighted_kappa",
    "per_class_mae",
    "amae",
    "mmae",
    "minimum_sensitivity",
    "ranked_probability_score",
    "spearman_rho",
    "kendall_tau_b",
    "ordinal_metrics",
    "rank_probabilities",
    "exceedance_probabilities",
    "point_predictions",
    "prototype_similarity",
    "ordinality_score",
    "NonFiniteOutputError",
]

ArrayLike = Tensor | np.ndarray | Sequence[float] | Sequence[int]


def _tensor(x: Any, name: str, ndim: int | None = None) -> Tensor:
    """Detached tensor view of ``x`` (tensor, numpy array or list), with an optional rank check."""
    t = x.detach() if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    if ndim is not None and t.ndim != ndim:
        shape = "(B,)" if ndim == 1 else "(B, C)" if ndim == 2 else f"{ndim}-D"
        raise ValueError(f"{name} must have shape {shape}; got shape {tuple(t.shape)}")
    return t


def _pair(pred: Any, target: Any, where: str) -> tuple[Tensor, Tensor]:
    """Check that prediction and target are non-empty 1-D arrays of the same length; return float64
    tensors."""
    p = _tensor(pred, f"{where}: pred", ndim=1)
    t = _tensor(target, f"{where}: target", ndim=1)
    if p.shape != t.shape:
        raise ValueError(
            f"{where}: pred and target must have the same shape; got {tuple(p.shape)} and {tuple(t.shape)}"
        )
    if p.numel() == 0:
        raise ValueError(f"{where}: empty input")
    # float64 so that means over large evaluation sets do not drift.
    return p.to(torch.float64), t.to(device=p.device, dtype=torch.float64)


def _rounded(pred: Tensor) -> Tensor:
    # Half-to-even (torch.round), the rounding the reference code applies to expectation predictions.
    return torch.round(pred) if pred.is_floating_point() else pred


def expected_rank(probs: ArrayLike) -> Tensor:
    """Expected rank ``sum_i i * probs[b, i]`` of (B, C) probabilities -> (B,) float tensor.

    Example:
        >>> expected_rank([[0.5, 0.5, 0.0], [0.0, 0.25, 0.75]]).tolist()  # 0*.5 + 1*.5; 1*.25 + 2*.75
        [0.5, 1.75]
    """
    p = _tensor(probs, "expected_rank: probs", ndim=2)
    if not p.is_floating_point():
        p = p.to(torch.float32)
    ranks = torch.arange(p.shape[1], dtype=p.dtype, device=p.device)
    return p @ ranks


def predict_from_logits(logits: ArrayLike) -> tuple[Tensor, Tensor]:
    """Expectation and argmax predictions from (B, C) logits.

    Returns:
        ``(pred_exp, pred_max)``: (B,) float tensor ``sum_i i * softmax(logits)_i`` and (B,) long tensor
        argmax.

    Example:
        >>> pred_exp, pred_max = predict_from_logits([[0.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
        >>> pred_exp[0].item(), pred_max.tolist()  # uniform over 0, 1, 2 -> 1; argmax
        (1.0, [0, 2])
    """
    z = _tensor(logits, "predict_from_logits: logits", ndim=2)
    if not z.is_floating_point():
        raise TypeError(f"predict_from_logits: logits must be floating point; got dtype {z.dtype}")
    if z.shape[1] == 0:
        raise ValueError(f"predict_from_logits: logits has no rank column; got shape {tuple(z.shape)}")
    return expected_rank(F.softmax(z, dim=1)), z.argmax(dim=1)


def absolute_error(pred: ArrayLike, target: ArrayLike) -> Tensor:
    """Per-example absolute error ``|pred - target|``: (B,), (B,) -> (B,) float64 tensor."""
    p, t = _pair(pred, target, "absolute_error")
    return (p - t).abs()


def mae(pred: ArrayLike, target: ArrayLike) -> float:
    """Mean absolute error of (B,) predictions (raw, not rounded) against (B,) targets.

    Example:
        >>> mae([1.0, 2.5], [1, 4])  # (0 + 1.5) / 2
        0.75
    """
    p, t = _pair(pred, target, "mae")
    return float((p - t).abs().mean())


def accuracy(pred: ArrayLike, target: ArrayLike) -> float:
    """Fraction of examples with ``round(pred) == target`` (half to even), for (B,) inputs.

    Example:
        >>> accuracy([0.4, 1.5, 2.5, 3.0], [0, 2, 2, 1])  # 1.5 -> 2 and 2.5 -> 2 (half to even)
        0.75
    """
    p, t = _pair(pred, target, "accuracy")
    return float((_rounded(p) == t).double().mean())


def off_by_one_accuracy(pred: ArrayLike, target: ArrayLike) -> float:
    """Fraction of examples with ``|round(pred) - target| <= 1`` (half to even), for (B,) inputs.

    Example:
        >>> off_by_one_accuracy([0, 3], [1, 1])
        0.5
    """
    p, t = _pair(pred, target, "off_by_one_accuracy")
    return float(((_rounded(p) - t).abs() <= 1).double().mean())


def cumulative_score(pred: ArrayLike, target: ArrayLike, k: float) -> float:
    """Cumulative score CS(k): fraction of examples with ``|pred - target| <= k`` (pred not rounded).

    Example:
        >>> cumulative_score([1.0, 3.5], [1, 1], k=2)  # errors 0 and 2.5
        0.5
    """
    if k < 0:
        raise ValueError(f"cumulative_score: k must be >= 0; got {k}")
    p, t = _pair(pred, target, "cumulative_score")
    return float(((p - t).abs() <= k).double().mean())


def _int_ranks(x: Tensor, num_ranks: int, name: str) -> Tensor:
    r = _rounded(x)
    if r.numel() and (r.min() < 0 or r.max() >= num_ranks):
        raise ValueError(
            f"{name} must be in [0, num_ranks) = [0, {num_ranks}); "
            f"got min {r.min().item():g}, max {r.max().item():g}"
        )
    return r.long()


def confusion_matrix(pred: ArrayLike, target: ArrayLike, num_ranks: int) -> np.ndarray:
    """Confusion matrix of integer ranks: ``cm[i, j]`` = #examples with target i and prediction j.

    Float predictions are rounded (half to even). Same layout as ``sklearn.metrics.confusion_matrix``
    with ``labels=range(num_ranks)``.

    Returns:
        (num_ranks, num_ranks) int64 numpy array.

    Example:
        >>> confusion_matrix([0, 2, 2], [0, 1, 2], num_ranks=3).tolist()  # args (pred, target); row = target
        [[1, 0, 0], [0, 0, 1], [0, 0, 1]]
    """
    if num_ranks < 1:
        raise ValueError(f"confusion_matrix: num_ranks must be >= 1; got {num_ranks}")
    p, t = _pair(pred, target, "confusion_matrix")
    pi = _int_ranks(p, num_ranks, "confusion_matrix: pred")
    ti = _int_ranks(t, num_ranks, "confusion_matrix: target")
    counts = torch.bincount(ti * num_ranks + pi, minlength=num_ranks * num_ranks)
    return counts.reshape(num_ranks, num_ranks).cpu().numpy().astype(np.int64)


def quadratic_weighted_kappa(pred: ArrayLike, target: ArrayLike, num_ranks: int) -> float:
    """Cohen's kappa with quadratic weights ``(i - j)^2`` over the ranks 0..num_ranks-1.

    Equals ``sklearn.metrics.cohen_kappa_score(target, pred, weights="quadratic", labels=range(num_ranks))``,
    except that the degenerate case where every target and every prediction is the same rank (0/0 in the
    formula; sklearn returns NaN) is reported as 1.0: the agreement is perfect.

    Example:
        >>> quadratic_weighted_kappa([0, 1, 2], [0, 1, 2], num_ranks=3)
        1.0
        >>> quadratic_weighted_kappa([1, 0], [0, 1], num_ranks=2)  # disagreement 2, by chance 1: 1 - 2
        -1.0
    """
    cm = confusion_matrix(pred, target, num_ranks).astype(np.float64)
    ranks = np.arange(num_ranks, dtype=np.float64)
    weights = (ranks[:, None] - ranks[None, :]) ** 2
    expected = np.outer(cm.sum(axis=1), cm.sum(axis=0)) / cm.sum()
    denom = float((weights * expected).sum())
    if denom == 0.0:
        return 1.0
    return 1.0 - float((weights * cm).sum()) / denom


def exceedance_probabilities(outputs: ArrayLike, kind: str) -> Tensor:
    """P(rank > k) for k = 0..C-2 from (B, C-1) CORAL / CORN logits -> (B, C-1) float tensor.

    CORAL: ``sigmoid(z_k)``; CORN: the running product of the conditional sigmoids ``prod_{j<=k}
    sigmoid(z_j)``.
    """
    z = _tensor(outputs, "exceedance_probabilities: outputs", ndim=2).float()
    if kind == "coral":
        return torch.sigmoid(z)
    if kind == "corn":
        return torch.cumprod(torch.sigmoid(z), dim=1)
    raise ValueError(f"unknown binary-task output kind {kind!r}; expected coral or corn")


def rank_probabilities(outputs: ArrayLike, kind: str = "softmax") -> Tensor:
    """(B, C) rank probabilities from a model's outputs.

    ``softmax``: (B, C) logits -> softmax. ``coral`` / ``corn``: (B, C-1) logits of "rank > k" (see
    :func:`exceedance_probabilities`); P(rank = k) = P(> k-1) - P(> k), clipped at 0 and renormalised (CORAL's
    biases can cross early in training).
    """
    z = _tensor(outputs, "rank_probabilities: outputs", ndim=2).float()
    if kind == "softmax":
        return F.softmax(z, dim=1)
    if kind not in ("coral", "corn"):
        raise ValueError(f"unknown output kind {kind!r}; expected softmax, coral or corn")
    above = exceedance_probabilities(z, kind)
    ones = torch.ones_like(above[:, :1])
    zeros = torch.zeros_like(above[:, :1])
    probs = (torch.cat([ones, above], 1) - torch.cat([above, zeros], 1)).clamp(min=0)
    return probs / probs.sum(1, keepdim=True)


def point_predictions(outputs: ArrayLike, kind: str = "softmax") -> tuple[Tensor, Tensor, Tensor]:
    """Rank probabilities and both point predictions of a model's outputs.

    Args:
        outputs: (B, C) logits (``softmax``) or (B, C-1) task logits (``coral`` / ``corn``).

    Returns:
        ``(probs, pred_exp, pred_max)``: (B, C) rank probabilities (:func:`rank_probabilities`), (B,) float
        expected rank, (B,) long point prediction: the argmax for ``softmax``, the number of thresholds passed
        ``sum_k [P(rank > k) > 0.5]`` for ``coral`` / ``corn`` (the CORAL and CORN papers' rule; the mode of
        the derived distribution differs from it on about a third of rank-consistent CORAL outputs).
    """
    probs = rank_probabilities(outputs, kind)
    if kind == "softmax":
        pred_max = probs.argmax(dim=1)
    else:
        pred_max = (exceedance_probabilities(outputs, kind) > 0.5).sum(dim=1)
    return probs, expected_rank(probs), pred_max


def per_class_mae(pred: ArrayLike, target: ArrayLike, num_ranks: int) -> np.ndarray:
    """Mean absolute error of the (rounded) predictions of each target rank -> (num_ranks,) float64 array.

    Ranks absent from the targets have no error to average: their entry is NaN.
    """
    cm = confusion_matrix(pred, target, num_ranks).astype(np.float64)
    ranks = np.arange(num_ranks)
    errors = (cm * np.abs(ranks[:, None] - ranks[None, :])).sum(axis=1)
    counts = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, errors / counts, np.nan)


def amae(pred: ArrayLike, target: ArrayLike, num_ranks: int) -> float:
    """Average MAE (Baccianella et al., 2009): the mean over the ranks present in the targets of each rank's
    MAE.

    Unlike the MAE it weighs every rank alike, however few examples it has. Distances are between rank indices
    0..num_ranks-1, so a rank nobody predicts or carries still counts in the distance.
    """
    return float(np.nanmean(per_class_mae(pred, target, num_ranks)))


def mmae(pred: ArrayLike, target: ArrayLike, num_ranks: int) -> float:
    """Maximum MAE (Cruz-Ramirez et al., 2014): the largest per-rank MAE over the ranks present in the
    targets."""
    return float(np.nanmax(per_class_mae(pred, target, num_ranks)))


def minimum_sensitivity(pred: ArrayLike, target: ArrayLike, num_ranks: int) -> float:
    """Minimum sensitivity: the lowest per-rank recall (fraction of a rank's examples predicted exactly), over
    the ranks present in the targets (a rank without examples has no recall)."""
    cm = confusion_matrix(pred, target, num_ranks).astype(np.float64)
    counts = cm.sum(axis=1)
    present = counts > 0
    return float((np.diag(cm)[present] / counts[present]).min())


def ranked_probability_score(probs: ArrayLike, target: ArrayLike) -> float:
    """Ranked probability score (Epstein, 1969; the squared EMD): mean over examples of
    ``sum_k (P(rank <= k) - [y <= k])^2`` for (B, C) rank probabilities and (B,) integer targets. 0 is
    perfect."""
    p = _tensor(probs, "ranked_probability_score: probs", ndim=2).to(torch.float64)
    t = _tensor(target, "ranked_probability_score: target", ndim=1)
    if t.shape[0] != p.shape[0] or p.shape[0] == 0:
        raise ValueError(
            f"ranked_probability_score: probs {tuple(p.shape)} and target {tuple(t.shape)} must be "
            "non-empty and agree on the batch size"
        )
    t = _int_ranks(t.to(torch.float64), p.shape[1], "ranked_probability_score: target").to(p.device)
    ranks = torch.arange(p.shape[1], device=p.device)
    true_cdf = (t[:, None] <= ranks[None, :]).to(p.dtype)
    return float(((p.cumsum(dim=1) - true_cdf) ** 2).sum(dim=1).mean())


def _rank_pair(pred: ArrayLike, target: ArrayLike, where: str) -> tuple[np.ndarray, np.ndarray] | None:
    """float64 numpy pair, or None when either side is constant (a rank correlation is then undefined)."""
    p, t = _pair(pred, target, where)
    a, b = p.cpu().numpy(), t.cpu().numpy()
    if np.all(a == a[0]) or np.all(b == b[0]):
        return None
    return a, b


def spearman_rho(pred: ArrayLike, target: ArrayLike) -> float:
    """Spearman's rank correlation of (B,) predictions and targets (ties get their average rank); NaN when
    either is constant (e.g. a single class), as ``scipy.stats.spearmanr``."""
    pair = _rank_pair(pred, target, "spearman_rho")
    if pair is None:
        return math.nan
    from scipy.stats import spearmanr

    return float(spearmanr(*pair).statistic)


def kendall_tau_b(pred: ArrayLike, target: ArrayLike) -> float:
    """Kendall's tau-b of (B,) predictions and targets (corrected for ties on either side); NaN when either is
    constant, as ``scipy.stats.kendalltau``."""
    pair = _rank_pair(pred, target, "kendall_tau_b")
    if pair is None:
        return math.nan
    from scipy.stats import kendalltau

    return float(kendalltau(*pair, variant="b").statistic)


def ordinal_metrics(logits: ArrayLike, labels: ArrayLike, kind: str = "softmax") -> dict[str, float]:
    """All evaluation metrics for (B, C) logits ((B, C-1) for ``coral`` / ``corn``) and (B,) integer labels.

    Keys (``_exp``: expectation prediction, ``_max``: point prediction: the argmax, or for CORAL / CORN the
    number of thresholds passed, see :func:`point_predictions`):
        mae_exp, mae_max: mean absolute error;
        acc_exp, acc_max: accuracy of the rounded prediction;
        off1_exp, off1_max: off-by-one accuracy ``|round(pred) - y| <= 1``;
        cs1_max, cs5_max: cumulative score CS(1), CS(5);
        qwk_max: quadratic weighted kappa over the C ranks;
        amae_max, mmae_max: average and maximum of the per-rank MAEs (ranks present in the labels);
        ms_max: minimum sensitivity (lowest per-rank recall);
        spearman_max, kendall_max: Spearman's rho and Kendall's tau-b against the labels (NaN if either is
        constant);
        rps: ranked probability score of the rank probabilities (no point prediction; lower is better).
    """
    z = _tensor(logits, "ordinal_metrics: logits", ndim=2)
    y = _tensor(labels, "ordinal_metrics: labels", ndim=1)
    if y.is_floating_point():
        raise TypeError(f"ordinal_metrics: labels must be integers; got dtype {y.dtype}")
    if y.shape[0] != z.shape[0]:
        raise ValueError(
            f"ordinal_metrics: logits {tuple(z.shape)} and labels {tuple(y.shape)} disagree on the batch size"
        )
    num_ranks = z.shape[1] + (0 if kind == "softmax" else 1)
    if y.numel() and (y.min() < 0 or y.max() >= num_ranks):
        raise ValueError(
            "ordinal_metrics: labels must be in [0, C) = [0, "
            f"{num_ranks}); got min {int(y.min())}, max {int(y.max())}"
        )
    if kind == "softmax":
        pred_exp, pred_max = predict_from_logits(z)
        probs = F.softmax(z.float(), dim=1)
    else:
        probs, pred_exp, pred_max = point_predictions(z, kind)
    return {
        "mae_exp": mae(pred_exp, y),
        "acc_exp": accuracy(pred_exp, y),
        "off1_exp": off_by_one_accuracy(pred_exp, y),
        "mae_max": mae(pred_max, y),
        "acc_max": accuracy(pred_max, y),
        "off1_max": off_by_one_accuracy(pred_max, y),
        "cs1_max": cumulative_score(pred_max, y, 1),
        "cs5_max": cumulative_score(pred_max, y, 5),
        "qwk_max": quadratic_weighted_kappa(pred_max, y, num_ranks),
        "amae_max": amae(pred_max, y, num_ranks),
        "mmae_max": mmae(pred_max, y, num_ranks),
        "ms_max": minimum_sensitivity(pred_max, y, num_ranks),
        "spearman_max": spearman_rho(pred_max, y),
        "kendall_max": kendall_tau_b(pred_max, y),
        "rps": ranked_probability_score(probs, y),
    }


def prototype_similarity(prototypes: ArrayLike) -> Tensor:
    """Normalised cosine-similarity matrix of (N, E) prototypes: ``S = T T^T / max(T T^T)`` with unit rows
    -> (N, N)."""
    t = _tensor(prototypes, "prototype_similarity: prototypes", ndim=2)
    if not t.is_floating_point():
        t = t.to(torch.float32)
    t = F.normalize(t, dim=1)
    sim = t @ t.T
    return sim / sim.max()


def ordinality_score(prototypes: ArrayLike, spans: Iterable[int] | None = None) -> dict[int, float]:
    """Ordinality score O(s) of (N, E) prototypes (reference notes §1.8), for each span s.

    With S = :func:`prototype_similarity` and M = N - 1, ``c[i, j] = [S(i, j) > S(i, j + 1)]`` for
    0 <= i <= j <= M - 1 (moving right from anchor i, similarity must drop) and O(s) is the mean of c[i, j]
    over the pairs with ``j - i < s``. Default spans: 1, 2, 4, ..., 2^floor(log2 M), and M (= all pairs). For
    the reference MORPH setting (C = 101) pass ``prototypes[15:76]`` (ages 15-75, N = 61). "Violated
    ordinality" is ``1 - O``.

    Returns:
        ``{span: O(span)}`` as Python floats.
    """
    sim = prototype_similarity(prototypes)
    n = sim.shape[0]
    if n < 2:
        raise ValueError(f"ordinality_score: needs at least 2 prototypes; got shape {tuple(sim.shape)}")
    m = n - 1
    if spans is None:
        spans = [2**e for e in range(m.bit_length())] + [m]
    spans = list(spans)
    for s in spans:
        if int(s) != s or s < 1:
            raise ValueError(f"ordinality_score: spans must be positive integers; got {s!r}")
    drops = sim[:m, :m] > sim[:m, 1:]  # c[i, j] for 0 <= i, j <= M-1
    idx = torch.arange(m, device=sim.device)
    offset = idx[None, :] - idx[:, None]  # j - i
    valid = offset >= 0
    # Totals per offset d = j - i; O(s) is then a ratio of prefix sums over d < s.
    hits = torch.bincount(offset[valid], weights=drops[valid].double(), minlength=m).cumsum(0)
    pairs = torch.bincount(offset[valid], minlength=m).double().cumsum(0)
    return {int(s): float(hits[min(int(s), m) - 1] / pairs[min(int(s), m) - 1]) for s in spans}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (ddof 0) of a non-empty sequence: the summary over seeds and
    folds.

    Example:
        >>> mean_std([1.0, 2.0, 3.0, 4.0])
        (2.5, 1.118033988749895)
    """
    if not values:
        raise ValueError("mean_std needs at least one value")
    mean = sum(values) / len(values)
    return mean, (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
