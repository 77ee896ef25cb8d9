"""The ``ordinalclip`` command through ``cli.main(argv)``: train -> resume -> eval -> export -> predict in every
input format, help texts, and one-line errors with exit code 2."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from ordinalclip.app import cli
from tests.helpers import (
    COUNTS,
    NUM_RANKS,
    make_features,
    make_folders,
    make_images,
    tiny_config,
    tiny_model_dict,
    write_csv,
    write_lists,
)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli")
    items = make_images(path)
    write_lists(path, items)
    write_csv(path, items, offset=16)
    make_folders(path, items)
    make_features(path / "features.npz")
    return path


def _data(root: Path, fmt: str) -> tuple[dict, dict | None]:
    if fmt == "list":
        return {"format": "list", "root": str(root), **{s: str(root / f"{s}.txt") for s in COUNTS}}, None
    if fmt == "csv":
        return {
            "format": "csv",
            "root": str(root),
            "train": str(root / "all.csv"),
            "rank_offset": 16,
            "columns": {"path": "file", "label": "age", "split": "part"},
        }, None
    if fmt == "folder":
        return {"format": "folder", **{s: str(root / "folders" / s) for s in COUNTS}}, None
    model = tiny_model_dict(image={"kind": "features", "input_dim": 8})
    return {"format": "features", "train": str(root / "features.npz"), "columns": {"split": "split"}}, model


def _write_config(tmp_path: Path, cfg: dict) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "fmt",
    [
        "list",
        "features",
        pytest.param("csv", marks=pytest.mark.slow),
        pytest.param("folder", marks=pytest.mark.slow),
    ],
)
def test_train_resume_eval_export_predict(root: Path, tmp_path: Path, capsys, fmt: str):
    data, model = _data(root, fmt)
    config = _write_config(tmp_path, tiny_config(tmp_path, data, model))
    run_dir = tmp_path / "run"
    code, out, err = _run(
        ["train", "-c", config, "--set", "trainer.max_epochs=1", "--run-dir", str(run_dir)], capsys
    )
    assert code == 0, err
    assert f"run folder: {run_dir}" in out and "best test" in out
    assert json.loads((run_dir / "metrics.json").read_text())["last"]["epoch"] == 0

    code, out, err = _run(["train", "--resume", str(run_dir), "--set", "trainer.max_epochs=2"], capsys)
    assert code == 0, err
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["last"]["epoch"] == 1 and metrics["last"]["step"] == 8

    best = run_dir / "checkpoints" / "best.ckpt"
    code, out, err = _run(["eval", str(best), "--split", "test"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["split"] == "test" and result["num_samples"] == COUNTS["test"] * NUM_RANKS
    assert result["metrics"] == pytest.approx(metrics["best"]["test"], abs=1e-6)

    if fmt == "features":
        return  # export/predict take images; a features model is served by its own feature pipeline
    code, out, err = _run(["export", str(best), "--out", str(tmp_path / "model.safetensors")], capsys)
    assert code == 0, err
    exported = Path(out.strip().rsplit(" ", 1)[1])
    assert exported.is_file()
    code, out, err = _run(
        [
            "predict",
            str(exported),
            str(root / "test.txt"),
            "--out",
            str(tmp_path / "p.csv"),
            "--probabilities",
        ],
        capsys,
    )
    assert code == 0, err
    with open(tmp_path / "p.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == COUNTS["test"] * NUM_RANKS
    assert {"exp_value", "pred_value", "exp_rank", "pred_rank", f"p_{NUM_RANKS - 1}"} <= set(rows[0])


def test_every_command_has_help_with_an_example(capsys):
    for command in ("train", "eval", "predict", "export"):
        code, out, _ = _run([command, "--help"], capsys)
        assert code == 0
        assert "examples:" in out and f"ordinalclip {command} " in out
    code, out, _ = _run([], capsys)
    assert code == 2 and "train" in out


def _one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_unknown_config_key_suggests_the_closest(root: Path, tmp_path: Path, capsys):
    config = _write_config(tmp_path, tiny_config(tmp_path, _data(root, "list")[0]))
    code, _, err = _run(["train", "-c", config, "--set", "optim.lrr=1e-3"], capsys)
    assert code == 2
    assert "unknown key 'optim.lrr' (did you mean 'optim.lr'?)" in _one_line_error(err)
    code, _, err = _run(["train", "-c", config, "--set", "trainer.max_epochs=two"], capsys)
    assert code == 2 and "trainer.max_epochs: expected int" in _one_line_error(err)
    code, _, err = _run(["train", "-c", config, "--set", "trainer.monitor=val_mae_maxx"], capsys)
    assert code == 2 and "did you mean 'val_mae_max'" in _one_line_error(err)
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_bad_data_and_paths_exit_2_with_the_file_named(root: Path, tmp_path: Path, capsys):
    data = _data(root, "list")[0]
    config = _write_config(tmp_path, tiny_config(tmp_path, {**data, "val": str(tmp_path / "nope.txt")}))
    code, _, err = _run(["train", "-c", config], capsys)
    assert code == 2 and f"list file not found: {tmp_path / 'nope.txt'}" in _one_line_error(err)
    code, _, err = _run(["eval", str(tmp_path / "missing.ckpt")], capsys)
    assert code == 2 and "checkpoint not found" in _one_line_error(err)
    assert not (tmp_path / "runs").exists()  # the bad data stopped it before a run folder was made
    (tmp_path / "empty").mkdir()
    code, _, err = _run(["train", "--resume", str(tmp_path / "empty")], capsys)
    assert code == 2 and "not a run folder" in _one_line_error(err)
    code, _, err = _run(["train", "-c", str(tmp_path / "none.yaml")], capsys)
    assert code == 2 and "none.yaml" in _one_line_error(err)
    code, _, err = _run(["train", "--resume", str(tmp_path), "-c", config], capsys)
    assert code == 2


def test_nan_loss_exits_1_naming_the_step(root: Path, tmp_path: Path, capsys):
    config = _write_config(tmp_path, tiny_config(tmp_path, _data(root, "list")[0]))
    # finite, so the config accepts it (.inf is refused up front), but the logits overflow float32
    # (no val split: its sanity check would stop first, on the NaN logits themselves)
    code, _, err = _run(
        ["train", "-c", config, "--set", "model.logit_scale=3.4028235e38", "--set", "data.val=null"], capsys
    )
    assert code == 1
    assert "non-finite training loss (nan) at step 0 (epoch 0, batch 0)" in err
    assert "no checkpoint was written before it" in err and "Traceback" not in err


def test_interrupted_training_exits_143_with_the_resume_command(monkeypatch, capsys, tmp_path):
    from ordinalclip import api
    from ordinalclip.engine.errors import TrainingInterrupted

    def interrupted(*args, **kwargs):
        err = TrainingInterrupted("SIGTERM", str(tmp_path / "last.ckpt"), 7)
        err.run_dir = tmp_path  # type: ignore[attr-defined]
        raise err

    monkeypatch.setattr(api, "fit", interrupted)
    code, _, err = _run(["train", "-c", "whatever.yaml"], capsys)
    assert code == 143
    assert "interrupted by SIGTERM at step 7" in err and f"ordinalclip train --resume {tmp_path}" in err


@pytest.mark.slow
def test_folds_print_mean_and_std(tmp_path: Path, capsys):
    bench = tmp_path / "hci"
    for fold in range(5):
        items = make_images(bench / "data" / "imgs" / "decades", counts={"train": 1, "test": 1}, seed=fold)
        folder = bench / "data" / "labels" / f"fold_{fold}"
        folder.mkdir(parents=True)
        for split, rows in items.items():
            (folder / f"{split}.txt").write_text("".join(f"{rel} {label}\n" for rel, label in rows))
    cfg = tiny_config(
        tmp_path,
        {"format": "benchmark", "benchmark": "hci", "root": str(bench)},
        tiny_model_dict(num_ranks=5),
    )
    config = _write_config(tmp_path, cfg)
    with pytest.warns(UserWarning, match="val is None"):
        code, out, err = _run(["train", "-c", config, "--folds", "--set", "trainer.max_epochs=1"], capsys)
    assert code == 0, err
    assert "folds [0, 1, 2, 3, 4]" in out and "last test" in out and " ± " in out
    summary = json.loads(next((tmp_path / "runs").glob("*-folds-*/summary.json")).read_text())
    assert summary["last"]["test"]["mae_exp"]["n"] == 5
    # the resolved config of each fold names the decades, so predictions can use them
    fold_cfg = yaml.safe_load(Path(summary["runs"][0], "config.yaml").read_text())
    assert fold_cfg["data"]["rank_names"] == ["1930s", "1940s", "1950s", "1960s", "1970s"]
