"""Tests of ordinalclip.metrics against the reference vectors, hand-computed cases and sklearn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, cohen_kappa_score, mean_absolute_error
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from ordinalclip.metrics import (
    absolute_error,
    accuracy,
    confusion_matrix,
    cumulative_score,
    expected_rank,
    mae,
    off_by_one_accuracy,
    ordinal_metrics,
    ordinality_score,
    predict_from_logits,
    prototype_similarity,
    quadratic_weighted_kappa,
)
from tests.helpers import load_reference, official_logits

PRED_EXP_ATOL = 1e-4  # tests/data/reference/README.md, "expected rank (pred_exp)"
LOGITS_ATOL = 2e-4


def _ordinality_features() -> dict[str, torch.Tensor]:
    # Formulas from official_vectors.json, "features_A" and "features_B" (float32).
    i = torch.arange(61, dtype=torch.float32)[:, None]
    d = torch.arange(16, dtype=torch.float32)[None, :]
    a = torch.sin(0.37 * (i + 1) * (d + 1)) + 0.05 * i * torch.cos(d)
    j = torch.arange(61, dtype=torch.float32)
    b = torch.stack(
        [torch.cos(j / 40), torch.sin(j / 40), 0.1 * torch.sin(3 * j), 0.1 * torch.sin(6 * j)], dim=1
    )
    return {"A": a, "B": b}


def test_official_predictions_and_means() -> None:
    ref = load_reference("official_vectors.json")["loss_vectors"]
    logits, labels = official_logits(), torch.tensor(ref["labels"])
    pred_exp, pred_max = predict_from_logits(logits)
    assert pred_max.dtype == torch.long
    np.testing.assert_allclose(pred_exp.numpy(), ref["pred_exp"], atol=PRED_EXP_ATOL, rtol=0)
    assert pred_max.tolist() == ref["pred_max"]
    m = ordinal_metrics(logits, labels)
    assert m["mae_exp"] == pytest.approx(ref["mae_exp_mean"], abs=PRED_EXP_ATOL)
    assert m["acc_exp"] == pytest.approx(ref["acc_exp_mean"])
    assert m["mae_max"] == pytest.approx(ref["mae_max_mean"])
    assert m["acc_max"] == pytest.approx(ref["acc_max_mean"])


@pytest.mark.parametrize("case", ["VISIBLE-1", "VISIBLE-2"])
def test_tiny_clip_case_metrics(case: str) -> None:
    data = load_reference("tiny_clip_vectors.json")["cases"][case]
    tensors = data["tensors"]
    logits = np.asarray(tensors["logits"]["values"], dtype=np.float32)  # numpy input on purpose
    labels = np.asarray(data["labels"])
    pred_exp, pred_max = predict_from_logits(logits)
    np.testing.assert_allclose(pred_exp.numpy(), tensors["pred_exp"]["values"], atol=PRED_EXP_ATOL, rtol=0)
    np.testing.assert_allclose(
        absolute_error(pred_exp, labels).numpy(), tensors["mae_exp"]["values"], atol=PRED_EXP_ATOL, rtol=0
    )
    for row, (got, want, robust) in enumerate(
        zip(pred_max.tolist(), data["pred_max"], data["pred_max_robust"])
    ):
        if robust:
            assert got == want
        else:  # README caveat: any rank within the logits atol of the row maximum is acceptable
            assert logits[row, got] >= logits[row].max() - LOGITS_ATOL
    m = ordinal_metrics(logits, labels)
    s = data["scalars"]
    assert m["mae_exp"] == pytest.approx(s["mae_exp_mean"], abs=PRED_EXP_ATOL)
    assert m["acc_exp"] == pytest.approx(s["acc_exp_mean"], abs=1e-6)
    assert m["mae_max"] == pytest.approx(s["mae_max_mean"], abs=1e-6)
    assert m["acc_max"] == pytest.approx(s["acc_max_mean"], abs=1e-6)


def test_predictions_hand_computed() -> None:
    # Row 0: softmax = (1/2, 1/4, 1/4) -> E = 0.75; row 1: uniform over 3 -> E = 1.
    logits = torch.tensor([[math.log(2.0), 0.0, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    pred_exp, pred_max = predict_from_logits(logits)
    torch.testing.assert_close(pred_exp, torch.tensor([0.75, 1.0], dtype=torch.float64))
    assert pred_max.tolist() == [0, 0]
    torch.testing.assert_close(
        expected_rank(np.array([[0.0, 0.0, 1.0], [0.5, 0.0, 0.5]])),
        torch.tensor([2.0, 1.0], dtype=torch.float64),
    )


def test_scalar_metrics_hand_computed() -> None:
    pred = torch.tensor([0.4, 2.6, 5.0, 1.5, 7.0])
    target = torch.tensor([0, 4, 5, 3, 1])
    # errors 0.4, 1.4, 0, 1.5, 6; rounded preds 0, 3, 5, 2, 7
    assert mae(pred, target) == pytest.approx((0.4 + 1.4 + 0 + 1.5 + 6) / 5, abs=1e-6)
    assert accuracy(pred, target) == pytest.approx(2 / 5)
    assert off_by_one_accuracy(pred, target) == pytest.approx(4 / 5)
    assert cumulative_score(pred, target, 0) == pytest.approx(1 / 5)
    assert cumulative_score(pred, target, 1) == pytest.approx(2 / 5)  # raw |pred - y|, 1.4 and 1.5 exceed 1
    assert cumulative_score(pred, target, 1.5) == pytest.approx(4 / 5)
    assert cumulative_score(pred, target, 6) == pytest.approx(1.0)


def test_rounding_is_half_to_even() -> None:
    # torch.round semantics, as in the reference code: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 3.5 -> 4.
    assert accuracy([0.5, 1.5, 2.5, 3.5], [0, 2, 2, 4]) == 1.0
    assert accuracy([0.5, 2.5], [1, 3]) == 0.0


def test_against_sklearn() -> None:
    rng = np.random.default_rng(0)
    target = rng.integers(0, 8, size=200)
    pred_float = np.clip(target + rng.normal(0, 1.5, size=200), 0, 7)
    pred_int = np.rint(pred_float).astype(np.int64)
    assert mae(pred_float, target) == pytest.approx(mean_absolute_error(target, pred_float), rel=1e-12)
    assert accuracy(pred_int, target) == pytest.approx(accuracy_score(target, pred_int))
    assert accuracy(torch.from_numpy(pred_float), torch.from_numpy(target)) == pytest.approx(
        accuracy_score(target, pred_int)
    )
    cm = confusion_matrix(pred_int, target, 8)
    assert cm.shape == (8, 8) and cm.dtype == np.int64
    np.testing.assert_array_equal(cm, sk_confusion_matrix(target, pred_int, labels=range(8)))
    qwk = cohen_kappa_score(target, pred_int, weights="quadratic", labels=range(8))
    assert quadratic_weighted_kappa(pred_int, target, 8) == pytest.approx(qwk, abs=1e-12)


def test_qwk_with_unused_ranks_and_edge_cases() -> None:
    # Ranks 3..9 never occur: the weights still use rank distances over 0..9, as sklearn with labels=range(10).
    target, pred = [0, 1, 2, 2, 1], [0, 2, 2, 1, 0]
    want = cohen_kappa_score(target, pred, weights="quadratic", labels=range(10))
    assert quadratic_weighted_kappa(pred, target, 10) == pytest.approx(want, abs=1e-12)
    assert quadratic_weighted_kappa([0, 1, 4], [0, 1, 4], 5) == 1.0
    assert quadratic_weighted_kappa([4, 3, 0, 1], [0, 1, 4, 3], 5) < 0
    assert quadratic_weighted_kappa([2, 2], [2, 2], 5) == 1.0  # 0/0 in the formula: perfect agreement
    with pytest.raises(ValueError, match=r"pred must be in \[0, num_ranks\) = \[0, 5\); got min 0, max 5"):
        quadratic_weighted_kappa([0, 5], [0, 1], 5)


def test_ordinal_metrics_keys_and_values() -> None:
    # Argmax preds (2, 0, 1, 3) against labels (2, 2, 1, 0): errors 0, 2, 0, 3.
    logits = torch.full((4, 4), -20.0)
    logits[torch.arange(4), torch.tensor([2, 0, 1, 3])] = 20.0
    m = ordinal_metrics(logits, torch.tensor([2, 2, 1, 0]))
    assert set(m) == {
        "mae_exp",
        "acc_exp",
        "off1_exp",
        "mae_max",
        "acc_max",
        "off1_max",
        "cs1_max",
        "cs5_max",
        "qwk_max",
        "amae_max",
        "mmae_max",
        "ms_max",
        "spearman_max",
        "kendall_max",
        "rps",
    }
    assert all(isinstance(v, float) for v in m.values())
    assert m["mae_max"] == pytest.approx(5 / 4)
    assert m["acc_max"] == pytest.approx(0.5)
    assert m["off1_max"] == pytest.approx(0.5)
    assert m["cs1_max"] == pytest.approx(0.5)
    assert m["cs5_max"] == pytest.approx(1.0)
    assert m["mae_exp"] == pytest.approx(5 / 4, abs=1e-6)  # near-one-hot softmax: expectation = argmax
    want_qwk = cohen_kappa_score([2, 2, 1, 0], [2, 0, 1, 3], weights="quadratic", labels=range(4))
    assert m["qwk_max"] == pytest.approx(want_qwk, abs=1e-12)
    # per-label MAE: label 0 -> 3, label 1 -> 0, label 2 -> (0 + 2) / 2; recalls 0, 1, 1/2
    assert m["amae_max"] == pytest.approx(4 / 3)
    assert m["mmae_max"] == pytest.approx(3.0)
    assert m["ms_max"] == 0.0
    assert m["rps"] == pytest.approx(5 / 4, abs=1e-6)  # one-hot probabilities: RPS = |pred - y|
    # Spearman: labels (2, 2, 1, 0) rank as (3.5, 3.5, 2, 1), preds (2, 0, 1, 3) as (3, 1, 2, 4)
    r_y, r_p = np.array([3.5, 3.5, 2, 1]), np.array([3.0, 1, 2, 4])
    assert m["spearman_max"] == pytest.approx(float(np.corrcoef(r_y, r_p)[0, 1]), abs=1e-12)
    # Kendall tau-b from the 6 pairs: sum of sign products / sqrt((pairs - ties in y) * (pairs - ties in pred))
    y, p = [2, 2, 1, 0], [2, 0, 1, 3]
    s_sum = sum(np.sign(y[i] - y[j]) * np.sign(p[i] - p[j]) for i in range(4) for j in range(i + 1, 4))
    ties_y = sum(y[i] == y[j] for i in range(4) for j in range(i + 1, 4))  # 1; the predictions have no tie
    assert m["kendall_max"] == pytest.approx(s_sum / math.sqrt((6 - ties_y) * 6), abs=1e-12)


def test_metric_input_validation() -> None:
    with pytest.raises(ValueError, match=r"labels must be in \[0, C\) = \[0, 3\); got min 0, max 3"):
        ordinal_metrics(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="same shape"):
        mae([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match=r"must have shape \(B, C\)"):
        predict_from_logits(torch.zeros(3))
    with pytest.raises(ValueError, match="k must be >= 0"):
        cumulative_score([1.0], [1], -1)
    with pytest.raises(ValueError, match="empty input"):
        accuracy([], [])


@pytest.mark.parametrize("name", ["A", "B"])
def test_ordinality_reference_vectors(name: str) -> None:
    ref = load_reference("official_vectors.json")["ordinality_vectors"][f"ordinality_{name}"]
    got = ordinality_score(_ordinality_features()[name])
    assert sorted(got) == sorted(int(s) for s in ref) == [1, 2, 4, 8, 16, 32, 60]
    for span, value in ref.items():
        assert got[int(span)] == pytest.approx(value, abs=1e-6)
    # numpy input, explicit spans
    assert ordinality_score(_ordinality_features()[name].numpy(), spans=[2]) == {
        2: pytest.approx(ref["2"], abs=1e-6)
    }


def test_ordinality_hand_computed() -> None:
    # N = 3, M = 2; pairs (i, j): (0,0), (1,1) at span 1 and also (0,1) at span 2.
    # c[0,0] = S01 < 1, c[1,1] = S12 < 1 always hold; c[0,1] = [S(0,1) > S(0,2)] = [0 > 0.995] fails.
    protos = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    assert ordinality_score(protos) == {1: pytest.approx(1.0), 2: pytest.approx(2 / 3)}
    # Unit vectors at increasing angles (< 180 degrees in total): similarity always drops -> perfectly ordinal.
    angles = torch.linspace(0, 2.5, 17)
    arc = torch.stack([angles.cos(), angles.sin()], dim=1) * torch.linspace(1, 3, 17)[:, None]
    got = ordinality_score(arc)
    assert list(got) == [1, 2, 4, 8, 16] and all(v == 1.0 for v in got.values())
    # Reversing the order of the ranks leaves the score of a symmetric arc unchanged.
    assert ordinality_score(arc.flip(0)) == got
    with pytest.raises(ValueError, match="at least 2 prototypes"):
        ordinality_score(torch.ones(1, 4))
    with pytest.raises(ValueError, match="positive integers"):
        ordinality_score(arc, spans=[0])


def test_prototype_similarity() -> None:
    protos = torch.tensor([[3.0, 0.0], [1.0, 1.0], [0.0, -2.0]])
    sim = prototype_similarity(protos)
    r = 1 / math.sqrt(2)
    expected = torch.tensor([[1.0, r, 0.0], [r, 1.0, -r], [0.0, -r, 1.0]])
    torch.testing.assert_close(sim, expected)
