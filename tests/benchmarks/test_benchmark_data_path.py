"""benchmarks/data_path.py: a toy-size run (keeps the script from rotting; figures not judged) and its FLOP counts."""

from __future__ import annotations

import math
import sys

import torch

from tests.helpers import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from data_path import main  # noqa: E402


def test_data_path_benchmark_runs(tmp_path):
    figures = main(
        [
            "--tiny",
            "--images",
            "8",
            "--batch",
            "4",
            "--repeats",
            "1",
            "--workers",
            "0",
            "--json",
            str(tmp_path / "f.json"),
        ]
    )
    assert set(figures) >= {
        "feature_cache_speedup",
        "feature_cache_flop_ratio",
        "feature_cache_speedup_c8",
        "loader_images_per_s",
    }
    assert all(math.isfinite(v) and v > 0 for v in figures.values())
    assert (tmp_path / "f.json").is_file()


def test_flops_counts_matmuls_by_hand():
    from data_path import _flops

    lin = torch.nn.Linear(4, 3)
    assert _flops(lambda: lin(torch.randn(2, 4))) == 2 * 2 * 4 * 3


def test_flops_sees_attention_inference_fast_path():
    """nn.MultiheadAttention in eval/no-grad runs one fused op; the count must still be the full attention."""
    from data_path import _flops

    n, length, e = 2, 5, 8
    mha = torch.nn.MultiheadAttention(e, 2, batch_first=True).eval()
    x = torch.randn(n, length, e)
    by_hand = 2 * n * length * e * (3 * e) + 2 * n * length * e * e + 2 * (2 * n * length * length * e)
    with torch.no_grad():
        assert _flops(lambda: mha(x, x, x, need_weights=False)) == by_hand
    assert torch.backends.mha.get_fastpath_enabled()  # restored afterwards


def test_image_tower_flops_are_linear_in_the_batch():
    """data_path counts a re-encoding epoch as images x (tower FLOPs of one image): check that premise."""
    from data_path import _flops
    from ordinalclip.modeling import ClipImageTower, load_clip
    from text_path import tiny_custom

    tower = ClipImageTower(load_clip(custom=tiny_custom()).model.visual).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert _flops(lambda: tower(x)) == 4 * _flops(lambda: tower(x[:1])) > 0
