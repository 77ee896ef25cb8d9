"""Tests of ordinalclip.losses against the reference vectors, closed forms, a naive loop and sklearn."""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.metrics import log_loss

from ordinalclip.losses import (
    CrossEntropyLoss,
    OrdinalCLIPLoss,
    TextToImageKLLoss,
    cross_entropy_loss,
    ordinalclip_loss,
    text_to_image_kl_loss,
)
from tests.helpers import load_reference, official_logits

LOSS_ATOL = 2e-5  # tests/data/reference/README.md, "CE, KL losses"


def _naive_kl(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Reference notes §1.6 written literally: a loop over present labels, closed-form target."""
    batch = logits.shape[0]
    terms = []
    for k in sorted(set(labels.tolist())):
        is_k = labels == k
        n_k = int(is_k.sum())
        denom = n_k * math.exp(temperature) + batch - n_k
        p = torch.full((batch,), 1.0 / denom, dtype=logits.dtype)
        p[is_k] = math.exp(temperature) / denom
        log_q = logits[:, k] - torch.logsumexp(logits[:, k], dim=0)
        terms.append((p * (p.log() - log_q)).sum())
    return torch.stack(terms).mean()


def test_official_loss_vectors() -> None:
    ref = load_reference("official_vectors.json")["loss_vectors"]
    logits, labels = official_logits(), torch.tensor(ref["labels"])
    out = ordinalclip_loss(logits, labels)
    assert out["ce"].item() == pytest.approx(ref["ce_loss"], abs=LOSS_ATOL)
    assert out["kl"].item() == pytest.approx(ref["kl_loss"], abs=LOSS_ATOL)
    assert out["loss"].item() == pytest.approx(ref["ce_loss"] + ref["kl_loss"], abs=2 * LOSS_ATOL)


@pytest.mark.parametrize("case", ["VISIBLE-1", "VISIBLE-2"])
def test_tiny_clip_case_losses(case: str) -> None:
    data = load_reference("tiny_clip_vectors.json")["cases"][case]
    logits = torch.tensor(data["tensors"]["logits"]["values"], dtype=torch.float32)
    labels = torch.tensor(data["labels"])
    out = OrdinalCLIPLoss()(logits, labels)
    scalars = data["scalars"]
    assert out["ce"].item() == pytest.approx(scalars["ce_loss"], abs=LOSS_ATOL)
    assert out["kl"].item() == pytest.approx(scalars["kl_loss"], abs=LOSS_ATOL)
    assert out["loss"].item() == pytest.approx(scalars["loss_total"], abs=2 * LOSS_ATOL)


def test_cross_entropy_matches_sklearn_log_loss() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 7, generator=gen, dtype=torch.float64) * 3
    labels = torch.randint(0, 7, (16,), generator=gen)
    expected = log_loss(labels.numpy(), logits.softmax(1).numpy(), labels=list(range(7)))
    assert cross_entropy_loss(logits, labels).item() == pytest.approx(expected, rel=1e-10)
    assert CrossEntropyLoss()(logits, labels).item() == pytest.approx(expected, rel=1e-10)


def test_kl_batch_of_two_closed_form() -> None:
    # Labels [0, 1]: per rank the target is (e^10, 1)/(e^10 + 1) over the two images, placed on the labelled one.
    a, b, c, d = 1.0, -0.5, 0.25, 2.0
    logits = torch.tensor([[a, b], [c, d]], dtype=torch.float64)
    hi, lo = math.exp(10) / (math.exp(10) + 1), 1 / (math.exp(10) + 1)

    def kl(p: tuple[float, float], col: tuple[float, float]) -> float:
        lse = math.log(math.exp(col[0]) + math.exp(col[1]))
        return sum(pi * (math.log(pi) - (ci - lse)) for pi, ci in zip(p, col))

    expected = (kl((hi, lo), (a, c)) + kl((lo, hi), (b, d))) / 2
    assert text_to_image_kl_loss(logits, torch.tensor([0, 1])).item() == pytest.approx(expected, rel=1e-12)


def test_kl_single_label_uniform_target() -> None:
    # Labels [0, 0]: the target over the batch is (1/2, 1/2); column 0 = (log 3, 0) gives q = (3/4, 1/4),
    # so KL = 1/2 log(2/3) + 1/2 log 2 = 1/2 log(4/3). Column 1 is absent and must not count.
    logits = torch.tensor([[math.log(3.0), 9.0], [0.0, -4.0]], dtype=torch.float64)
    got = text_to_image_kl_loss(logits, torch.tensor([0, 0]))
    assert got.item() == pytest.approx(0.5 * math.log(4 / 3), rel=1e-12)
    # Equal logits down the column give q = p exactly.
    assert text_to_image_kl_loss(torch.ones(2, 2), torch.tensor([1, 1])).item() == pytest.approx(
        0.0, abs=1e-7
    )


@pytest.mark.parametrize("temperature", [10.0, 1.0, 0.5])
def test_kl_matches_naive_loop(temperature: float) -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(12, 9, generator=gen, dtype=torch.float64) * 4
    labels = torch.tensor([0, 3, 3, 8, 8, 8, 2, 0, 5, 3, 8, 1])
    got = TextToImageKLLoss(temperature)(logits, labels)
    assert got.item() == pytest.approx(_naive_kl(logits, labels, temperature).item(), rel=1e-12)


def test_kl_ignores_absent_rank_columns() -> None:
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(6, 5, generator=gen)
    labels = torch.tensor([0, 0, 2, 2, 4, 4])
    changed = logits.clone()
    changed[:, [1, 3]] = torch.randn(6, 2, generator=gen) * 10
    torch.testing.assert_close(text_to_image_kl_loss(changed, labels), text_to_image_kl_loss(logits, labels))


def test_kl_gradcheck_float64() -> None:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 2, 2, 3, 0])
    assert torch.autograd.gradcheck(lambda z: text_to_image_kl_loss(z, labels), (logits,))
    assert torch.autograd.gradcheck(lambda z: ordinalclip_loss(z, labels, 0.7, 1.3)["loss"], (logits,))


def test_weights_and_module_twin() -> None:
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(8, 6, generator=gen)
    labels = torch.randint(0, 6, (8,), generator=gen)
    out = ordinalclip_loss(logits, labels, ce_weight=0.5, kl_weight=2.0, temperature=3.0)
    ce, kl = cross_entropy_loss(logits, labels), text_to_image_kl_loss(logits, labels, 3.0)
    torch.testing.assert_close(out["ce"], ce)
    torch.testing.assert_close(out["kl"], kl)
    torch.testing.assert_close(out["loss"], 0.5 * ce + 2.0 * kl)
    twin = OrdinalCLIPLoss(ce_weight=0.5, kl_weight=2.0, temperature=3.0)(logits, labels)
    torch.testing.assert_close(twin["loss"], out["loss"])


def test_half_logits_are_computed_in_float32() -> None:
    ref = load_reference("official_vectors.json")["loss_vectors"]
    logits = official_logits()
    out = ordinalclip_loss(logits.half(), torch.tensor(ref["labels"]))
    assert out["kl"].dtype == torch.float32
    # Only the float16 rounding of the logits (about 4e-3 at |z| ~ 8) separates these from float32.
    assert out["kl"].item() == pytest.approx(ref["kl_loss"], abs=1e-2)
    assert out["ce"].item() == pytest.approx(ref["ce_loss"], abs=1e-2)


@pytest.mark.parametrize(
    ("logits", "labels", "error", "message"),
    [
        (
            torch.zeros(4, 10),
            torch.tensor([0, 1, 12, 3]),
            ValueError,
            r"labels must be in \[0, C\) = \[0, 10\); got min 0, max 12",
        ),
        (torch.zeros(2, 3), torch.tensor([-1, 0]), ValueError, r"got min -1"),
        (torch.zeros(3, 3), torch.tensor([0, 1]), ValueError, r"batch size"),
        (
            torch.zeros(3),
            torch.tensor([0, 1, 2]),
            ValueError,
            r"logits must have shape \(B, C\); got shape \(3,\)",
        ),
        (torch.zeros(2, 3), torch.tensor([[0, 1]]), ValueError, r"labels must have shape \(B,\)"),
        (torch.zeros(2, 3), torch.tensor([0.0, 1.0]), TypeError, r"labels must be an integer tensor"),
        (
            torch.zeros(2, 3, dtype=torch.long),
            torch.tensor([0, 1]),
            TypeError,
            r"logits must be a floating-point",
        ),
        (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), ValueError, r"empty input"),
    ],
)
def test_input_validation(logits: torch.Tensor, labels: torch.Tensor, error: type, message: str) -> None:
    for fn in (cross_entropy_loss, text_to_image_kl_loss, ordinalclip_loss):
        with pytest.raises(error, match=message):
            fn(logits, labels)


def test_soft_label_settings_pass_through_and_unknown_names_fail() -> None:
    from ordinalclip.losses import make_softmax_loss, soft_label_matrix, sord_targets

    # SORD with alpha 2, hand-computed row 0 over 3 ranks: softmax(-2 * [0, 1, 2])
    want = torch.softmax(torch.tensor([0.0, -2.0, -4.0], dtype=torch.float64), dim=0)
    torch.testing.assert_close(soft_label_matrix("sord", 3, sord_alpha=2.0)[0], want)
    torch.testing.assert_close(soft_label_matrix("sord", 3), sord_targets(3, 1.0))
    logits, labels = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0])
    got = make_softmax_loss("sord", 3, sord_alpha=2.0)(logits, labels)["loss"]
    torch.testing.assert_close(got, -(want.float() * torch.log_softmax(logits[0], 0)).sum())
    with pytest.raises(TypeError, match="sord_alfa"):
        soft_label_matrix("sord", 3, sord_alfa=2.0)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="exp_q"):
        make_softmax_loss("ordinalclip", 3, exp_q=1.0)  # type: ignore[call-arg]
