"""Smoke tests of the deployment benchmarks at toy size: ONNX Runtime vs torch, and load on the server."""

from __future__ import annotations

import json
import math
import sys

import pytest

from tests.helpers import REPO_ROOT

BENCHMARKS = REPO_ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

pytestmark = pytest.mark.slow


def test_onnx_inference_tiny(tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    import onnx_inference

    figures = onnx_inference.main(
        ["--tiny", "--repeats", "2", "--warmup", "1", "--json", str(tmp_path / "o.json")]
    )
    assert json.loads((tmp_path / "o.json").read_text()) == figures
    for batch in (1, 32):
        assert figures[f"tiny_vit_b{batch}_max_abs_diff"] <= 1e-4  # the same logits, any batch size
        assert figures[f"tiny_vit_b{batch}_speedup"] > 0 and math.isfinite(
            figures[f"tiny_vit_b{batch}_speedup"]
        )


def test_serve_tiny(tmp_path):
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    pytest.importorskip("requests", reason="the test extra (requests) is not installed")
    import serve

    figures = serve.main(["--tiny", "--json", str(tmp_path / "s.json")])
    assert figures["failed_total"] == 0
    assert figures["server_c1_requests"] == figures["server_c4_requests"] == 16
    # warm-up, both levels and the two repeats of the last (--tiny): every image through the batcher
    assert figures["server_images"] == 8 + 16 + 16 + 2 * 16
    assert figures["server_rss_mb_repeat"] == figures["server_rss_mb_repeat_2"]
    assert figures["server_rss_growth_last_repeat_mb"] == pytest.approx(
        figures["server_rss_mb_repeat_2"] - figures["server_rss_mb_repeat_1"]
    )
    assert figures["server_largest_batch"] >= 1 and figures["server_batches"] <= figures["server_images"]
    assert abs(figures["server_rss_growth_mb"]) < 200
