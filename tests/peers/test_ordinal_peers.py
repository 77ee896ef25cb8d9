"""The ordinal losses, metrics and CORAL/CORN point predictions against the field's peer libraries.

Peers: dlordinal 2.7 (losses, soft labels, AMAE / MMAE / RPS / minimum sensitivity, CORN predictions), coral-pytorch
1.4 (CORAL / CORN predictions), scipy (rank correlations) and scikit-learn (recall), on random and edge-case inputs.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from coral_pytorch.dataset import corn_label_from_logits, proba_to_label
from dlordinal import losses as dl_losses
from dlordinal import metrics as dl_metrics
from dlordinal.wrappers import CORNClassifierWrapper
from scipy.stats import binom, kendalltau, spearmanr
from sklearn.metrics import recall_score

from ordinalclip.losses import (
    SOFT_LABEL_FAMILIES,
    SOFTMAX_LOSSES,
    cdw_ce_loss,
    emd_loss,
    make_softmax_loss,
    ordinalclip_loss,
    soft_label_loss,
    soft_label_matrix,
    sord_targets,
    weighted_kappa_loss,
)
from ordinalclip.metrics import (
    amae,
    kendall_tau_b,
    minimum_sensitivity,
    mmae,
    ordinal_metrics,
    point_predictions,
    ranked_probability_score,
    spearman_rho,
)


def _inputs(
    seed: int, batch: int = 24, ranks: int = 6, scale: float = 2.0
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(batch, ranks, generator=gen, dtype=torch.float64) * scale).requires_grad_()
    return logits, torch.randint(0, ranks, (batch,), generator=gen)


def _value_and_grad(fn, logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, torch.Tensor]:
    x = logits.detach().clone().requires_grad_()
    out = fn(x, labels)
    out.backward()
    return float(out.detach()), x.grad


def _assert_same_loss(ours, theirs, seeds=range(4), **kw) -> None:
    for seed in seeds:
        logits, labels = _inputs(seed, **kw)
        v1, g1 = _value_and_grad(ours, logits, labels)
        v2, g2 = _value_and_grad(theirs, logits, labels)
        assert v1 == pytest.approx(v2, rel=1e-6, abs=1e-9), seed
        torch.testing.assert_close(g1, g2.to(g1.dtype), rtol=1e-5, atol=1e-9)


# ------------------------------------------------------------------------------------------------- losses


@pytest.mark.parametrize("alpha", [0.5, 1.0, 3.0])
def test_sord_matches_dlordinal(alpha: float) -> None:
    peer = dl_losses.SORDLoss(alpha=alpha, num_classes=6, train_targets=torch.arange(6))
    targets = sord_targets(6, alpha)
    _assert_same_loss(lambda z, y: soft_label_loss(z, y, targets), peer)


def test_sord_targets_by_hand() -> None:
    e = math.exp(-1.0)
    want = torch.tensor([[1, e, e * e], [e, 1, e], [e * e, e, 1]], dtype=torch.float64)
    torch.testing.assert_close(sord_targets(3), want / want.sum(1, keepdim=True))


@pytest.mark.parametrize("family", SOFT_LABEL_FAMILIES)
@pytest.mark.parametrize("eta", [1.0, 0.85])
def test_soft_label_families_match_dlordinal(family: str, eta: float) -> None:
    ce = torch.nn.CrossEntropyLoss()
    peer = {
        "beta": lambda: dl_losses.BetaLoss(ce, 6, eta=eta),
        "binomial": lambda: dl_losses.BinomialLoss(ce, 6, eta=eta),
        "poisson": lambda: dl_losses.PoissonLoss(ce, 6, eta=eta),
        "exponential": lambda: dl_losses.ExponentialLoss(ce, 6, eta=eta),
        "triangular": lambda: dl_losses.TriangularLoss(ce, 6, eta=eta),
    }[family]()
    fn = make_softmax_loss(family, 6, eta=eta)
    # dlordinal's soft targets are float32: agreement to float32 precision
    for seed in range(3):
        logits, labels = _inputs(seed)
        v1, g1 = _value_and_grad(lambda z, y: fn(z, y)["loss"], logits, labels)
        v2, g2 = _value_and_grad(peer, logits, labels)
        assert v1 == pytest.approx(v2, rel=1e-6)
        torch.testing.assert_close(g1, g2.to(g1.dtype), rtol=1e-5, atol=1e-7)


def test_soft_label_matrices_independently() -> None:
    # binomial row y: Binomial(C - 1, p_y) pmf with p_y evenly spaced in [0.1, 0.9] (Liu et al., 2020)
    p = np.linspace(0.1, 0.9, 5)
    want = np.stack([binom.pmf(np.arange(5), 4, p[y]) for y in range(5)])
    np.testing.assert_allclose(soft_label_matrix("binomial", 5).numpy(), want, atol=1e-15)
    # exponential with p = 2 is SORD with a squared distance
    r = np.arange(5)
    e = np.exp(-((r[None] - r[:, None]) ** 2) / 0.5)
    np.testing.assert_allclose(
        soft_label_matrix("exponential", 5, exp_p=2.0, exp_tau=0.5).numpy(),
        e / e.sum(1, keepdims=True),
        atol=1e-15,
    )
    for family in SOFT_LABEL_FAMILIES:
        m = soft_label_matrix(family, 7).numpy()
        np.testing.assert_allclose(m.sum(1), 1.0, atol=3e-8)
        assert (m.argmax(1) == np.arange(7)).all() or family == "poisson", family  # unimodal at the label
    # triangular: alpha2 is the mass of each neighbour of an inner rank
    assert soft_label_matrix("triangular", 5, triangular_alpha2=0.05)[2, 1].item() == pytest.approx(
        0.05, abs=1e-6
    )


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
def test_cdw_ce_matches_dlordinal(alpha: float) -> None:
    peer = dl_losses.CDWCELoss(num_classes=6, alpha=alpha)
    _assert_same_loss(lambda z, y: cdw_ce_loss(z, y, alpha), peer)


def test_cdw_ce_stays_finite_at_clip_logit_scale() -> None:
    # cosines in [-1, 1] times OrdinalCLIP's logit scale 100: exp(100) overflows float32
    gen = torch.Generator().manual_seed(0)
    logits = (torch.rand(8, 5, generator=gen) * 2 - 1) * 100
    labels = torch.randint(0, 5, (8,), generator=gen)
    x = logits.clone().requires_grad_()
    loss = cdw_ce_loss(x, labels, 2.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    assert float(loss.detach()) == pytest.approx(float(cdw_ce_loss(logits.double(), labels, 2.0)), rel=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert not torch.isfinite(
            dl_losses.CDWCELoss(5, alpha=2.0)(logits, labels)
        )  # why it is not dlordinal's


def test_emd_matches_dlordinal() -> None:
    _assert_same_loss(emd_loss, dl_losses.EMDLoss(num_classes=6))


@pytest.mark.parametrize("penalty", ["linear", "quadratic"])
@pytest.mark.parametrize("use_log", [False, True])
def test_weighted_kappa_matches_dlordinal(penalty: str, use_log: bool) -> None:
    for seed in range(4):
        peer = dl_losses.WKLoss(6, penalization_type=penalty, use_logits=True, use_logarithm=use_log)
        logits, labels = _inputs(seed)
        logits = logits.detach().float()  # dlordinal builds its one-hot labels in float32
        v1, g1 = _value_and_grad(lambda z, y: weighted_kappa_loss(z, y, penalty, use_log), logits, labels)
        v2, g2 = _value_and_grad(peer, logits, labels)
        assert v1 == pytest.approx(v2, rel=1e-5), seed
        torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-6)


def test_weighted_kappa_is_one_minus_kappa_on_hard_predictions() -> None:
    from sklearn.metrics import cohen_kappa_score

    pred, y = torch.tensor([0, 1, 2, 2, 3, 1]), torch.tensor([0, 2, 2, 1, 3, 1])
    logits = F.one_hot(pred, 4).double() * 60.0  # softmax = one-hot to double precision
    kappa = cohen_kappa_score(y, pred, weights="quadratic")
    assert float(weighted_kappa_loss(logits, y)) == pytest.approx(1 - kappa, abs=1e-9)


def test_make_softmax_loss_names_and_default() -> None:
    logits, labels = _inputs(0)
    default = make_softmax_loss("ordinalclip", 6)(logits, labels)
    ref = ordinalclip_loss(logits, labels)
    assert set(default) == {"loss", "ce", "kl"} and torch.equal(default["loss"], ref["loss"])
    assert set(make_softmax_loss("ordinalclip", 6, kl_weight=0)(logits, labels)) == {"loss", "ce"}
    for name in SOFTMAX_LOSSES[1:]:
        out = make_softmax_loss(name, 6)(logits, labels)
        assert set(out) == {"loss", name} and torch.isfinite(out["loss"]), name
    with pytest.raises(ValueError, match="unknown softmax loss 'hinge'"):
        make_softmax_loss("hinge", 6)
    with pytest.raises(ValueError, match="covers .* not 20"):
        make_softmax_loss("beta", 20)


# ------------------------------------------------------------------------------------------------ metrics


def _metric_cases() -> list[tuple[str, np.ndarray, np.ndarray, int]]:
    rng = np.random.default_rng(0)
    cases = [(f"random{i}", rng.integers(0, 7, 60), rng.integers(0, 7, 60), 7) for i in range(3)]
    y = rng.integers(0, 7, 60)
    y[y == 3] = 4
    p = rng.integers(0, 7, 60)
    cases.append(("rank 3 missing from the targets, predicted", p, y, 7))
    return cases


@pytest.mark.parametrize("name, pred, y, c", _metric_cases())
def test_class_metrics_match_dlordinal(name: str, pred: np.ndarray, y: np.ndarray, c: int) -> None:
    assert amae(pred, y, c) == pytest.approx(dl_metrics.amae(y, pred), abs=1e-12)
    assert mmae(pred, y, c) == pytest.approx(dl_metrics.mmae(y, pred), abs=1e-12)
    present = np.unique(y)
    want_ms = recall_score(y, pred, labels=present, average=None, zero_division=0).min()
    assert minimum_sensitivity(pred, y, c) == pytest.approx(want_ms, abs=1e-12)
    if set(np.unique(pred)) <= set(present):
        assert minimum_sensitivity(pred, y, c) == pytest.approx(dl_metrics.minimum_sensitivity(y, pred))


def test_amae_when_a_rank_is_neither_carried_nor_predicted() -> None:
    # rank 1 appears nowhere. dlordinal's amae compresses the confusion matrix to the ranks seen and so measures
    # the 0 -> 2 mistake as 1; on the rank scale it is 2.
    y, pred = np.array([0, 0, 2, 2]), np.array([0, 2, 2, 2])
    assert amae(pred, y, 3) == pytest.approx((1.0 + 0.0) / 2)  # label 0: errors (0, 2) -> 1; label 2: 0
    assert mmae(pred, y, 3) == pytest.approx(1.0)
    assert dl_metrics.amae(y, pred) == pytest.approx(0.25)


def test_single_class_edge_case() -> None:
    y = np.full(5, 2)
    pred = np.array([2, 2, 1, 4, 2])
    assert amae(pred, y, 5) == pytest.approx(3 / 5)  # errors 0, 0, 1, 2, 0 (dlordinal: 0.4, see above)
    assert mmae(pred, y, 5) == pytest.approx(3 / 5)
    assert minimum_sensitivity(pred, y, 5) == pytest.approx(3 / 5)
    assert math.isnan(spearman_rho(pred, y)) and math.isnan(kendall_tau_b(pred, y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(spearmanr(pred, y).statistic) and math.isnan(kendalltau(pred, y).statistic)
    m = ordinal_metrics(torch.tensor([[0.0, 0.0, 5.0, 0.0, 0.0]] * 5), torch.from_numpy(y))
    assert m["amae_max"] == 0.0 and m["ms_max"] == 1.0 and math.isnan(m["spearman_max"])


@pytest.mark.parametrize("seed", range(3))
def test_rank_correlations_match_scipy_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, 80)  # many ties on both sides
    pred = np.clip(y + rng.integers(-2, 3, 80), 0, 4)
    assert spearman_rho(pred, y) == pytest.approx(spearmanr(pred, y).statistic, abs=1e-12)
    assert kendall_tau_b(pred, y) == pytest.approx(kendalltau(pred, y, variant="b").statistic, abs=1e-12)
    cont = rng.normal(size=80)  # continuous predictions (no ties)
    assert spearman_rho(cont, y) == pytest.approx(spearmanr(cont, y).statistic, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_rps_matches_dlordinal(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(40, 6, generator=gen, dtype=torch.float64), 1)
    y = torch.randint(0, 6, (40,), generator=gen)
    assert ranked_probability_score(probs, y) == pytest.approx(dl_metrics.ranked_probability_score(y, probs))
    # and the EMD loss is the same quantity on logits
    assert ranked_probability_score(probs, y) == pytest.approx(float(emd_loss(probs.log(), y)), abs=1e-12)


def test_rps_by_hand() -> None:
    # CDF (0.2, 0.7, 1) vs label 1 (0, 1, 1): 0.04 + 0.09 + 0
    assert ranked_probability_score([[0.2, 0.5, 0.3]], [1]) == pytest.approx(0.13)


# ------------------------------------------------------------------------------- CORAL / CORN point predictions


def test_coral_and_corn_point_predictions_match_coral_pytorch() -> None:
    gen = torch.Generator().manual_seed(0)
    # rank-consistent CORAL logits: one score minus increasing biases
    score = torch.randn(500, 1, generator=gen) * 3
    coral = score - torch.linspace(-2, 2, 7)[None, :]
    _, _, pred = point_predictions(coral, "coral")
    assert torch.equal(pred, proba_to_label(torch.sigmoid(coral)))
    probs = point_predictions(coral, "coral")[0]
    assert (probs.argmax(1) != pred).float().mean() > 0.1  # the mode is not the CORAL prediction
    corn = torch.randn(500, 7, generator=gen) * 2 + 1
    _, _, pred = point_predictions(corn, "corn")
    assert torch.equal(pred, corn_label_from_logits(corn))

    class _Logits:  # dlordinal's CORN wrapper reads logits from predict_proba
        def predict(self, x):
            return x

        def predict_proba(self, x):
            return x

    assert np.array_equal(pred.numpy(), CORNClassifierWrapper(_Logits()).predict(corn))


def test_ordinal_metrics_use_the_threshold_count_for_coral() -> None:
    # P(>k) = 0.881, 0.475, 0.047: one threshold passed; P(rank) = 0.119, 0.406, 0.428, 0.047: the mode is 2
    coral = torch.tensor([[2.0, -0.1, -3.0]])
    probs, pred_exp, pred_max = point_predictions(coral, "coral")
    assert int(pred_max) == 1 and int(probs.argmax()) == 2
    m = ordinal_metrics(coral, torch.tensor([1]), "coral")
    assert m["mae_max"] == 0.0 and m["mae_exp"] == pytest.approx(abs(float(pred_exp) - 1))
