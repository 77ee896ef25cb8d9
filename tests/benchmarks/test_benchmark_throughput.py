"""benchmarks/throughput.py: variant parsing, the synchronised timer, and end-to-end runs at toy size on CPU."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch
from torch import nn

from tests.helpers import REPO_ROOT

BENCHMARKS = REPO_ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import common  # noqa: E402
import throughput  # noqa: E402

TINY = ["--tiny", "--device", "cpu", "--threads", "2"]


def _figure_keys(variant_key: str) -> list[str]:
    return [
        f"{phase}_images_per_s_{model}_{variant_key}"
        for phase in ("train", "infer")
        for model in ("ordinalclip", "cnn")
    ] + [f"train_ratio_{variant_key}", f"infer_ratio_{variant_key}"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("fp32", (False, False, False, "fp32")),
        ("bf16", (True, False, False, "bf16")),
        ("bf16+cl", (True, True, False, "bf16_cl")),
        ("bf16+compile", (True, False, True, "bf16_compile")),
        ("fp32+compile+cl", (False, True, True, "fp32_compile_cl")),
    ],
)
def test_parse_variant(name, expected):
    v = throughput.parse_variant(name)
    assert (v.bf16, v.channels_last, v.compile, v.key) == expected
    assert v.name == name


@pytest.mark.parametrize("name", ["fp16", "cl", "bf16+cl+cl", "fp32+fast", "", "fp32+"])
def test_parse_variant_rejects(name):
    with pytest.raises(ValueError, match="unknown variant"):
        throughput.parse_variant(name)


def test_autocast_wrapper_switches_precision():
    lin = nn.Linear(4, 3)
    x = torch.randn(2, 4)
    assert throughput.Autocast(lin, "cpu", enabled=True)(x).dtype == torch.bfloat16
    out = throughput.Autocast(lin, "cpu", enabled=False)(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, lin(x), rtol=0, atol=0)


def test_alternate_synchronises_around_every_timed_call():
    events: list[str] = []
    variants = {"a": lambda: events.append("a"), "b": lambda: events.append("b")}
    times = common.alternate(variants, repeats=3, warmup=1, sync=lambda: events.append("sync"))
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    # warm-up unsynchronised, then every timed call fenced by a sync before and after, order flipping each round
    s = "sync"
    assert events == ["a", "b"] + [s, "a", s, s, "b", s] + [s, "b", s, s, "a", s] + [s, "a", s, s, "b", s]
    assert common.device_sync("cpu") is None


def test_tiny_cpu_run_writes_finite_figures(tmp_path):
    extra = tmp_path / "copy.json"
    status = throughput.main(
        TINY
        + [
            "--variants",
            "fp32,bf16",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--out",
            str(tmp_path),
            "--json",
            str(extra),
        ]
    )
    assert status == 0
    figures = json.loads((tmp_path / "throughput.json").read_text())
    assert json.loads(extra.read_text()) == figures
    assert figures["device"] == "cpu" and figures["size"] == "tiny" and figures["batch"] == 8
    for v in ("fp32", "bf16"):
        for key in _figure_keys(v):
            assert math.isfinite(figures[key]) and figures[key] > 0, key
        for phase in ("train", "infer"):
            ratio = (
                figures[f"{phase}_images_per_s_ordinalclip_{v}"] / figures[f"{phase}_images_per_s_cnn_{v}"]
            )
            assert figures[f"{phase}_ratio_{v}"] == pytest.approx(ratio, rel=1e-12)
    # no compile variant, no CUDA: neither compile times nor peak memory, and no errors
    assert not [k for k in figures if k.startswith(("compile_s_", "peak_memory_mb_", "error_"))]
    table = (tmp_path / "throughput.md").read_text()
    assert "| fp32 | ordinalclip |" in table and "| bf16 | cnn |" in table
    assert "nearly a no-op" in table  # the tiny tower is a ViT: one conv


def test_unknown_variant_fails_before_building_anything(tmp_path, monkeypatch, capsys):
    def must_not_build(*_args, **_kwargs):
        raise AssertionError("models were built although a variant name is invalid")

    monkeypatch.setattr(throughput, "build_models", must_not_build)
    with pytest.raises(SystemExit) as exc:
        throughput.main(TINY + ["--variants", "fp32,fp16", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "unknown variant 'fp16'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


class _Broken(nn.Module):
    """Stands in for a variant's model: raises, or returns NaN logits of the right shape."""

    def __init__(self, how: str):
        super().__init__()
        self.how = how

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.how == "raise":
            raise RuntimeError("injected failure")
        return torch.full((images.shape[0], throughput.NUM_RANKS), float("nan"), requires_grad=True)


@pytest.mark.parametrize(
    ("how", "message"), [("raise", "RuntimeError: injected failure"), ("nan", "non-finite loss")]
)
def test_failing_variant_is_recorded_and_the_others_still_run(tmp_path, monkeypatch, how, message):
    real_prepare, real_run = throughput.prepare, throughput.run_variant
    seen_on_disk: dict = {}

    def prepare(model, variant, device_type):
        return _Broken(how) if variant.bf16 else real_prepare(model, variant, device_type)

    def run_variant(variant, *args):
        if variant.name == "fp32":  # the JSON must already hold the earlier variant's outcome
            seen_on_disk.update(json.loads((tmp_path / "throughput.json").read_text()))
        return real_run(variant, *args)

    monkeypatch.setattr(throughput, "prepare", prepare)
    monkeypatch.setattr(throughput, "run_variant", run_variant)
    status = throughput.main(
        TINY + ["--variants", "bf16,fp32", "--steps", "1", "--warmup", "0", "--out", str(tmp_path)]
    )
    assert status == 1
    figures = json.loads((tmp_path / "throughput.json").read_text())
    assert message in figures["error_bf16"]
    assert seen_on_disk["error_bf16"] == figures["error_bf16"]
    assert not [k for k in figures if k.endswith("_bf16") and not k.startswith("error_")]
    for key in _figure_keys("fp32"):
        assert math.isfinite(figures[key]) and figures[key] > 0, key
    table = (tmp_path / "throughput.md").read_text()
    assert "| bf16 | FAILED |" in table and "| fp32 | ordinalclip |" in table


@pytest.mark.slow
def test_tiny_cpu_compile_variant(tmp_path):
    # about 50 s with a cold inductor cache on 2 cores, 5 s with a warm one
    status = throughput.main(
        TINY + ["--variants", "fp32+compile", "--steps", "2", "--warmup", "1", "--out", str(tmp_path)]
    )
    assert status == 0
    figures = json.loads((tmp_path / "throughput.json").read_text())
    for key in _figure_keys("fp32_compile"):
        assert math.isfinite(figures[key]) and figures[key] > 0, key
    for phase in ("train", "infer"):
        for model in ("ordinalclip", "cnn"):
            assert math.isfinite(figures[f"compile_s_{phase}_{model}_fp32_compile"])
