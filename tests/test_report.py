"""Report: plots are written, the pages embed them, and the numbers shown are computed from the inputs."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from ordinalclip.app import report
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


def test_few_shot_plot(tmp_path, monkeypatch):
    figures = []
    save = report._save
    monkeypatch.setattr(report, "_save", lambda fig, out: (figures.append(fig), save(fig, out)))
    # per method and shot count, the seeds' values: mean and population std by hand below
    plot_few_shot({"OrdinalCLIP": {4: [1.5, 1.4], 1: [2.0, 2.2]}, "CoOp": {1: [2.5, 2.4], 4: [1.8, 1.9]}},
                  tmp_path / "fs.png", metric="MAE")
    with Image.open(tmp_path / "fs.png") as im:
        assert im.size[0] > 200 and im.size[1] > 200
    (ax,) = figures[0].axes
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "shots per rank" and ax.get_ylabel() == "MAE"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["OrdinalCLIP", "CoOp"]
    expected = {"OrdinalCLIP": ([2.1, 1.45], [0.1, 0.05]), "CoOp": ([2.45, 1.85], [0.05, 0.05])}
    for container in ax.containers:  # one errorbar per method: the line, its caps, its bars
        mean, std = expected[container.get_label()]
        line, _, (bars,) = container
        np.testing.assert_allclose(np.asarray(line.get_xdata(), float), [1, 4])  # shots sorted
        np.testing.assert_allclose(np.asarray(line.get_ydata(), float), mean)
        ends = np.array([seg[:, 1] for seg in bars.get_segments()])  # (shots, [low, high])
        np.testing.assert_allclose(ends, np.stack([np.subtract(mean, std), np.add(mean, std)], 1))
    assert len(ax.containers) == 2
