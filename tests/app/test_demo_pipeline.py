"""The demo end to end at a reduced size: the table's numbers are the ones computed from the saved predictions."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from ordinalclip.app.demo import DemoOptions, run_demo
from ordinalclip.app.demo.methods import display_name


@pytest.mark.slow
def test_demo_pipeline_reports_what_it_computed(tmp_path):
    methods = ["ordinalclip_named", "cnn_cosine", "coral"]  # ids; the table shows their display names
    opts = DemoOptions(
        out=tmp_path / "demo",
        data_root=tmp_path / "data",
        crops_per_photo=2,
        seeds=(0, 1),
        shots=(2,),
        full_epochs=1,
        min_steps=2,
        methods=methods,
        progress=False,
        text_task=False,
    )  # the text task: tests/unit/data/test_lexicon.py
    table, page = run_demo(opts)
    rows = list(csv.DictReader((tmp_path / "demo" / "results.csv").open()))
    assert len(rows) == len(methods) * 2 * 2  # methods x (full, 2-shot) x seeds
    for row in rows:
        run = Path(row["run_dir"])
        preds = list(csv.DictReader((run / "predictions" / "test_best.csv").open()))
        y = np.array([float(p["label_rank"]) for p in preds])
        for key, col in (("mae_exp", "exp_rank"), ("mae_max", "pred_rank")):
            mae = np.abs(np.array([float(p[col]) for p in preds]) - y).mean()
            assert abs(float(row[key]) - mae) < 1e-5, (row["method"], key)
        acc = (np.array([float(p["pred_rank"]) for p in preds]) == y).mean()
        assert abs(float(row["acc_max"]) - acc) < 1e-9
        if row["method"] == "coral":
            assert row["ordinality"] == ""  # no prototypes
        else:
            assert 0.0 <= float(row["ordinality"]) <= 1.0
    # the printed table holds the mean ± std over the two seeds
    for method in methods:
        values = [float(r["mae_exp"]) for r in rows if r["method"] == method and r["setting"] == "2-shot"]
        cell = f"{np.mean(values):.3f} ± {np.std(values):.3f}"
        assert f"| 2-shot | {display_name(method)} | {cell} |" in table
    assert page.is_file() and (page.parent / "few_shot.png").is_file()
    assert (tmp_path / "demo" / "summary.md").read_text().count("report/") >= 2
