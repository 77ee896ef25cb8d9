"""Smoke test of benchmarks/data_path.py at a toy size (keeps the script from rotting; figures not judged)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from data_path import main  # noqa: E402


def test_data_path_benchmark_runs(tmp_path):
    figures = main(["--tiny", "--images", "8", "--batch", "4", "--repeats", "1", "--workers", "0",
                    "--json", str(tmp_path / "f.json")])
    assert set(figures) >= {"feature_cache_speedup", "loader_images_per_s"}
    assert all(math.isfinite(v) and v > 0 for v in figures.values())
    assert (tmp_path / "f.json").is_file()
