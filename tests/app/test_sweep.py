"""``ordinalclip sweep``: cells, summary table (checked against the cells' own metrics.json), skip / resume /
restart on rerun, grids and few-shot curves, evaluate-only cells. Runs are linear / cosine heads on tiny
generated feature files (about half a second each)."""

from __future__ import annotations

import csv
import json
import os
import signal
import statistics
from pathlib import Path
from urllib.parse import quote

import lightning as L
import numpy as np
import pytest
import torch
import yaml

from ordinalclip import api
from ordinalclip.app import cli
from ordinalclip.app.sweep import SweepError, parse_grid, plan_sweep, run_sweep
from ordinalclip.config.typed import ConfigError
from ordinalclip.engine.errors import TrainingInterrupted
from ordinalclip.modeling import build_model
from tests.app.conftest import write_feature_config
from tests.helpers import NUM_RANKS, make_features, tiny_clip_custom


@pytest.fixture(scope="module")
def swept(configs, tmp_path_factory) -> Path:
    """Two configs x two seeds through the command line."""
    out = tmp_path_factory.mktemp("sweep") / "s"
    code = cli.main(
        ["sweep", "-c", str(configs[0]), "-c", str(configs[1]), "--seeds", "1", "2", "--out", str(out)]
    )
    assert code == 0
    return out


def _count_fit_calls(monkeypatch) -> list[dict]:
    calls: list[dict] = []
    real = api.fit

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "fit", counting)
    return calls


def _summary_csv(out: Path) -> list[dict[str, str]]:
    with (out / "summary.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_sweep_runs_every_cell_and_summarises_them(swept: Path):
    names = sorted(p.name for p in swept.iterdir() if p.is_dir() and p.name != "logs")
    assert names == ["cosine__seed1", "cosine__seed2", "linear__seed1", "linear__seed2"]
    assert sorted(p.name for p in (swept / "logs").iterdir()) == [f"{n}.log" for n in names]
    assert json.loads((swept / "sweep.json").read_text())["cells"] == [
        "linear__seed1",
        "linear__seed2",
        "cosine__seed1",
        "cosine__seed2",
    ]
    for name in names:
        cfg = yaml.safe_load((swept / name / "config.yaml").read_text())
        assert cfg["trainer"]["seed"] == int(name[-1]) and cfg["model"]["arch"] == name.split("__")[0]
        assert json.loads((swept / name / "cell.json").read_text())["seed"] == int(name[-1])
    rows = _summary_csv(swept)
    md = (swept / "summary.md").read_text()
    checked = 0
    for row in rows:
        assert row["group"] == "all" and row["n"] == "2"
        runs = [
            json.loads((swept / f"{row['config']}__seed{s}" / "metrics.json").read_text()) for s in (1, 2)
        ]
        for metric in ("mae_exp", "mae_max", "acc_exp", "acc_max"):
            values = [r[row["checkpoint"]][row["split"]][metric] for r in runs]
            assert float(row[f"{metric}_mean"]) == pytest.approx(statistics.mean(values), rel=1e-5, abs=1e-6)
            assert float(row[f"{metric}_std"]) == pytest.approx(statistics.pstdev(values), rel=1e-5, abs=1e-6)
            checked += 1
        values = [r[row["checkpoint"]][row["split"]]["mae_max"] for r in runs]
        line = f"{statistics.mean(values):.3f} ± {statistics.pstdev(values):.3f}"
        assert line in md
    assert {(r["config"], r["checkpoint"], r["split"]) for r in rows} == {
        (c, t, s) for c in ("linear", "cosine") for t in ("best", "last") for s in ("val", "test")
    }
    assert checked == 8 * 4  # 2 configs x best/last x val/test, 4 metrics each
    assert "## best checkpoint, test" in md and "4 trained now" in md


def test_rerun_redoes_nothing_finished(swept: Path, configs, monkeypatch):
    before = {p: p.stat().st_mtime_ns for p in swept.glob("*/metrics.json")}
    calls = _count_fit_calls(monkeypatch)
    result = run_sweep(configs, seeds=[1, 2], out_dir=swept)
    assert calls == [] and [r.status for r in result.cells] == ["skipped"] * 4
    assert {p: p.stat().st_mtime_ns for p in swept.glob("*/metrics.json")} == before
    assert len(result.rows) == 8 and "0 trained now, 4 finished earlier" in result.summary_md.read_text()


def test_changed_settings_in_the_same_folder_are_refused(swept: Path, configs):
    with pytest.raises(
        SweepError, match=r"linear__seed1 was run with other settings \(differs in: overrides\)"
    ):
        run_sweep(configs, seeds=[1, 2], overrides=["optim.lr=0.5"], out_dir=swept)


def test_unfinished_cells_are_resumed_or_restarted(configs, tmp_path: Path, monkeypatch):
    out = tmp_path / "s"
    first = run_sweep(configs, seeds=[1], out_dir=out)
    linear, cosine = out / "linear__seed1", out / "cosine__seed1"
    previous = first.cells[0].metrics
    (linear / "metrics.json").unlink()  # killed during the final evaluation: last.ckpt is kept
    (cosine / "metrics.json").unlink()  # killed before any checkpoint
    for ckpt in (cosine / "checkpoints").iterdir():
        ckpt.unlink()
    calls = _count_fit_calls(monkeypatch)
    result = run_sweep(configs, seeds=[1], out_dir=out)
    assert [r.status for r in result.cells] == ["resumed", "restarted"]
    assert calls[0] == {"resume": linear, "callbacks": ()} and calls[1]["run_dir"] == cosine
    again = json.loads((linear / "metrics.json").read_text())
    assert again["last"]["step"] == previous["last"]["step"] == 8  # 2 epochs x 16 samples / batch 4
    assert again["last"]["test"] == pytest.approx(previous["last"]["test"])
    assert (cosine / "metrics.json").is_file() and (cosine / "cell.json").is_file()


class _SendSignal(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == 0 and batch_idx == 1:
            os.kill(os.getpid(), signal.SIGTERM)


def test_cell_interrupted_mid_training_continues_to_the_same_weights(configs, swept: Path, tmp_path: Path):
    out = tmp_path / "s"
    with pytest.raises(TrainingInterrupted):
        run_sweep(configs[:1], seeds=[1], out_dir=out, callbacks=[_SendSignal()])
    cell = out / "linear__seed1"
    assert not (cell / "metrics.json").exists()
    assert torch.load(cell / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 2
    result = run_sweep(configs[:1], seeds=[1], out_dir=out)
    assert result.cells[0].status == "resumed"
    resumed = torch.load(cell / "checkpoints/last.ckpt", weights_only=True)["state_dict"]
    straight = torch.load(swept / "linear__seed1/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert resumed.keys() == straight.keys()
    for key in resumed:
        assert torch.equal(resumed[key], straight[key]), key


def test_grid_cells_and_few_shot_curve(configs, tmp_path: Path):
    result = run_sweep(configs[1:], grid=parse_grid(["data.few_shot.shots=1,2"]), out_dir=tmp_path / "s")
    assert [r.cell.name for r in result.cells] == ["cosine__shots=1__seed3", "cosine__shots=2__seed3"]
    # the grid value reached the data: shots x ranks training samples
    assert [r.metrics["data"]["train"] for r in result.cells] == [NUM_RANKS, 2 * NUM_RANKS]
    assert result.few_shot_plot == tmp_path / "s" / "few_shot.png" and result.few_shot_plot.stat().st_size > 0
    rows = _summary_csv(tmp_path / "s")
    assert {r["data.few_shot.shots"] for r in rows} == {"1", "2"} and all(r["n"] == "1" for r in rows)
    # the sweep's page: the curves and a link to each cell's own report, which exists
    page = (tmp_path / "s" / "index.html").read_text(encoding="utf-8")
    assert 'src="few_shot.png"' in page and page.count("<table") >= 3
    for r in result.cells:
        assert f'href="{quote(r.cell.name)}/report/index.html"' in page
        assert (r.run_dir / "report" / "index.html").is_file()


def test_untrained_cells_evaluate_the_initial_model(configs, tmp_path: Path):
    result = run_sweep(configs[1:], untrained=True, out_dir=tmp_path / "s")
    run = result.cells[0]
    assert run.status == "trained" and run.cell.untrained
    assert run.metrics["best"] is None and run.metrics["last"]["step"] == 0
    cfg = api.resolve_config(configs[1])
    L.seed_everything(cfg.trainer.seed)  # what fit does before it builds the model
    initial = build_model(cfg.model).state_dict()
    saved = torch.load(run.run_dir / "checkpoints/last.ckpt", weights_only=True)["state_dict"]
    assert saved.keys() == {f"model.{k}" for k in initial}
    for key, value in initial.items():
        assert torch.equal(saved[f"model.{key}"], value), key
    assert set(run.metrics["last"]["test"]) >= {"mae_exp", "mae_max"}


def test_zero_shot_cells_are_evaluated_without_training(tmp_path: Path):
    features = make_features(tmp_path / "features.npz")
    model = {
        "arch": "zeroshot",
        "num_ranks": NUM_RANKS,
        "clip": {"name": None, "custom": tiny_clip_custom()},
        "image": {"kind": "features", "input_dim": 8},
        "prompts": {"rank_names": ["a", "b", "c", "d"]},
        "zero_shot_templates": ["a photo of {}.", "{} level"],
    }
    path = write_feature_config(tmp_path, "zs", "zeroshot", features)
    cfg = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**cfg, "model": model}))
    result = run_sweep([path], seeds=[5], out_dir=tmp_path / "s")  # no untrained=True: the arch says so
    run = result.cells[0]
    assert run.cell.untrained and run.status == "trained"
    assert run.metrics["best"] is None and run.metrics["last"]["step"] == 0
    assert api.evaluate(run.run_dir, split="test")["metrics"] == pytest.approx(run.metrics["last"]["test"])
    L.seed_everything(5)  # the tiny CLIP is random: the same seed rebuilds the same text tower
    expected = build_model(api.resolve_config(path).model).prototypes().detach()
    torch.testing.assert_close(torch.from_numpy(np.load(run.run_dir / "prototypes.npy")), expected)


def test_parse_grid_reads_yaml_values():
    grid = parse_grid(
        [
            "model.prompts.num_base_ranks=2,3",
            'model.prompts.context_init=null,"age: the age is"',
            "model.prompts.interpolation=linear,inv_prop",
            "optim.lr=1e-4",
        ]
    )
    assert grid == {
        "model.prompts.num_base_ranks": [2, 3],
        "model.prompts.context_init": [None, "age: the age is"],
        "model.prompts.interpolation": ["linear", "inv_prop"],
        "optim.lr": [1e-4],
    }
    for bad, message in (
        ("optim.lr", "expected KEY=V1,V2"),
        ("optim.lr=", "expected KEY=V1,V2"),
        ("a=[1", "values are YAML"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_grid([bad])
    with pytest.raises(ConfigError, match="given twice"):
        parse_grid(["optim.lr=1", "optim.lr=2"])


def test_plan_names_cells_and_checks_every_config(configs, tmp_path: Path):
    sentence = "age estimation: the age of the face is"
    cells = plan_sweep(configs[:1], grid={"model.prompts.context_init": [sentence, None]})
    assert cells[1].name == "linear__context_init=null__seed3"
    first = cells[0].name
    assert first.startswith("linear__context_init=age_estimation_the_age_o-") and first.endswith("__seed3")
    assert plan_sweep(configs[:1], grid={"model.prompts.context_init": [sentence]})[0].name == first  # stable
    assert (f'model.prompts.context_init="{sentence}"') in cells[0].overrides
    with pytest.raises(
        ConfigError, match=r"linear.yaml: unknown key 'optim.lrr' \(did you mean 'optim.lr'\?\)"
    ):
        plan_sweep(configs[:1], grid={"optim.lrr": [1]})
    with pytest.raises(ConfigError, match="folds need data.format: benchmark with a fold benchmark"):
        plan_sweep(configs[:1], folds=[0, 1])
    adience = tmp_path / "sub" / "linear.yaml"  # same stem as configs[0]: labels take the parent folder
    adience.parent.mkdir()
    adience.write_text(
        f"base: {configs[0]}\ndata: {{format: benchmark, benchmark: adience, root: /nowhere}}\n"
    )
    cells = plan_sweep([adience], folds=[0, 4])
    assert [(c.name, c.fold) for c in cells] == [("linear__seed3__fold0", 0), ("linear__seed3__fold4", 4)]
    labels = {c.label for c in plan_sweep([configs[0], adience])}
    assert labels == {f"{configs[0].parent.name}-linear", "sub-linear"}
    zero = tmp_path / "zero.yaml"
    zero.write_text(f"base: {configs[0]}\nmodel: {{arch: zeroshot}}\n")
    assert plan_sweep([zero])[0].untrained and not plan_sweep(configs[:1])[0].untrained


def test_failed_cell_is_reported_and_the_sweep_goes_on(configs, tmp_path: Path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text(f"base: {configs[1]}\ndata: {{train: {tmp_path / 'missing.npz'}}}\n")
    code = cli.main(["sweep", "-c", str(broken), "-c", str(configs[1]), "--out", str(tmp_path / "s")])
    out = capsys.readouterr().out
    assert code == 1
    assert "## Failed cells" in out and "broken__seed3" in out and "missing.npz" in out
    assert (tmp_path / "s/cosine__seed3/metrics.json").is_file()
