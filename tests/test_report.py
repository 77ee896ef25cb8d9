"""Report: plots are written, the pages embed them, and the numbers shown are computed from the inputs."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from ordinalclip.app.report import make_report, plot_few_shot


def _run_dir(tmp_path):
    run = tmp_path / "run"
    (run / "predictions").mkdir(parents=True)
    (run / "logs" / "csv").mkdir(parents=True)
    angles = np.linspace(0, 1.2, 6)
    np.save(run / "prototypes.npy", np.stack([np.cos(angles), np.sin(angles), 0 * angles], 1))
    labels = [0, 1, 2, 3, 4, 5, 5, 2]
    pred_max = [0, 1, 3, 3, 4, 4, 5, 2]
    pred_exp = [0.2, 1.1, 2.6, 3.0, 4.2, 4.4, 4.9, 2.0]
    lines = ["path,label,pred_exp,pred_max"] + [f"img{i}.png,{a},{b},{c}"
                                                for i, (a, b, c) in enumerate(zip(labels, pred_exp, pred_max))]
    (run / "predictions" / "test_best.csv").write_text("\n".join(lines) + "\n")
    (run / "logs" / "csv" / "metrics.csv").write_text(
        "epoch,step,train_loss,val_mae_max\n0,3,2.0,\n0,3,,1.5\n1,7,1.5,\n1,7,,1.0\n")
    (run / "metrics.json").write_text(json.dumps({"num_ranks": 6, "rank_names": list("abcdef"),
                                                  "metrics": {"test": {"best": {"mae_max": 0.25}}}}))
    return run, labels, pred_max, pred_exp


def test_make_report(tmp_path):
    run, labels, pred_max, pred_exp = _run_dir(tmp_path)
    page = make_report(run)
    out = page.parent
    for name in ("prototypes.png", "confusion_test_best.png", "error_test_best.png", "curves_0.png"):
        with Image.open(out / name) as im:
            assert im.size[0] > 200 and im.size[1] > 200
        assert f'src="{name}"' in page.read_text()
    summary = (out / "summary.md").read_text()
    mae = np.abs(np.array(pred_max) - np.array(labels)).mean()
    assert f"MAE argmax {mae:.3f}" in summary
    # prototypes on an arc are perfectly ordinal: every span is 100%
    assert "span 4: 100.0%" in summary
    assert "| test/best/mae_max | 0.2500 |" in summary


def test_few_shot_plot(tmp_path):
    plot_few_shot({"OrdinalCLIP": {1: [2.0, 2.2], 4: [1.5, 1.4]}, "CoOp": {1: [2.5, 2.4], 4: [1.8, 1.9]}},
                  tmp_path / "fs.png")
    with Image.open(tmp_path / "fs.png") as im:
        assert im.size[0] > 200
