"""Reliability: bad input, interrupted runs and untrusted files, checked case by case.

Most cases are met through the ``ordinalclip`` command (``cli.main(argv)``), where a user meets them: a user
error exits with code 2 and a one-line ``error: ...`` naming the file and line. Items already tested elsewhere
are indexed here, so every case can be checked in one place; the tests in this file fill the remaining gaps.

1. corrupt / truncated / non-image file: named with its list line, or skipped and counted
   tests/test_data_images.py::test_corrupt_images_raise_naming_file_and_line,
   tests/test_data_images.py::test_skip_mode_drops_bad_files_and_logs_count,
   tests/test_api_fit.py::test_bad_images_raise_with_their_line_or_are_skipped_and_counted,
   tests/test_predict.py::test_corrupt_image_names_file_and_line_or_is_skipped,
   here: test_bad_images_through_the_cli_name_their_line_or_are_skipped_and_counted (slow)
2. missing files all reported at once, before training
   tests/test_data_samples.py::test_check_files_reports_all_missing_at_once,
   tests/test_engine_data.py::test_missing_files_are_reported_together,
   tests/test_predict.py::test_missing_files_are_all_reported_before_running,
   here: test_missing_files_are_reported_together_before_a_run_folder_exists
3. bad labels name file and line
   tests/test_data_samples.py::test_rank_space_errors_name_the_source,
   tests/test_data_samples.py::test_read_list_file_bad_lines_name_file_and_line,
   tests/test_data_samples.py::test_read_csv_samples_errors,
   tests/test_data_samples.py::test_read_folder_samples_by_names_and_errors,
   here: test_bad_labels_through_the_cli_name_file_and_line, test_a_bad_label_anywhere_is_reported_at_its_line
4. empty split, few-shot larger than what exists (strict error; documented fallback keeps all)
   tests/test_engine_data.py::test_empty_training_split_is_an_error,
   tests/test_data_protocols.py::test_few_shot_strict_names_label_and_count,
   tests/test_data_protocols.py::test_few_shot_counts_and_short_labels (the fallback),
   here: test_empty_split_and_too_large_few_shot
5. unknown / mistyped config key, wrong type
   tests/test_cli_main.py::test_unknown_config_key_suggests_the_closest,
   tests/test_configtools.py::test_unknown_key_suggests_closest_with_full_dotted_path,
   tests/test_configtools.py::test_unknown_key_at_wrong_level_points_to_nested_key,
   tests/test_configtools.py::test_wrong_type_names_key_expected_type_and_value,
   tests/test_configtools.py::test_load_config_override_into_unknown_key_is_caught_with_suggestion,
   tests/test_cli_configs.py::test_value_checks_name_the_key
6. rank-names count that is neither C nor C'
   tests/test_prompts.py::test_rank_names_counts (API level),
   here: test_rank_names_file_with_a_wrong_count_names_the_file_and_both_counts
7. checkpoint / export from another config or version
   tests/test_api_fit.py::test_bad_checkpoints_give_clear_errors,
   tests/test_api_fit.py::test_resume_refuses_a_changed_model,
   tests/test_export.py::test_other_format_version_is_a_clear_error,
   tests/test_export.py::test_rank_count_mismatch_is_a_clear_error,
   tests/test_export.py::test_tower_architecture_mismatch_lists_keys,
   tests/test_export.py::test_unknown_config_key_is_a_clear_error,
   here: test_checkpoint_and_export_from_another_config_or_version_are_clear_cli_errors,
   test_checkpoint_of_another_format_is_refused
8. NaN / infinite loss stops naming the step, last good checkpoint kept
   tests/test_api_fit.py::test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint,
   tests/test_cli_main.py::test_nan_loss_exits_1_naming_the_step
9. SIGTERM / SIGINT mid-epoch, checkpoint, resume equals the uninterrupted run
   tests/test_api_fit.py::test_run_killed_mid_epoch_and_resumed_equals_the_uninterrupted_run (both signals),
   tests/test_engine_module.py::test_interrupt_handler_records_the_signal_and_restores_handlers,
   tests/test_cli_main.py::test_interrupted_training_exits_143_with_the_resume_command,
   here: test_sigterm_through_the_cli_then_resume_equals_the_uninterrupted_run (slow)
10. atomic checkpoint / export writes
   tests/test_engine_module.py::test_atomic_save_keeps_the_old_file_when_a_write_fails,
   tests/test_export.py::test_failed_write_keeps_the_previous_export,
   tests/test_configtools.py::test_save_yaml_is_atomic_when_serialisation_fails_midway,
   here: test_a_crash_while_training_writes_last_ckpt_keeps_the_previous_one (slow), test_run_json_writes_are_atomic
11. untrusted files: weights_only / safetensors, TorchScript only on request
   tests/test_clip_loading.py::test_torchscript_archive_needs_explicit_consent,
   tests/test_clip_loading.py::test_weights_only_refuses_pickled_code,
   tests/test_api_fit.py::test_bad_checkpoints_give_clear_errors (arbitrary classes refused),
   tests/test_export.py::test_tampered_weights_fail_the_checksum,
   here: test_sources_only_unpickle_with_weights_only, test_a_pickled_payload_never_runs_through_any_command,
   test_a_checkpoint_cannot_grant_itself_torchscript_consent
Hypothesis: tests/test_data_samples.py (test_rank_space_*_round_trip, test_rank_space_arbitrary_text_*,
   test_list_file_round_trip, test_list_file_garbage_*, test_csv_round_trip, test_csv_garbage_*),
   tests/test_data_protocols.py::test_split_round_trip_property,
   here: test_a_bad_label_anywhere_is_reported_at_its_line, test_names_and_integer_labels_agree
"""

from __future__ import annotations

import ast
import csv
import functools
import io
import json
import os
import signal
import string
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import ordinalclip
from ordinalclip import api
from ordinalclip.app import cli
from ordinalclip.config import RunConfig
from ordinalclip.configtools import from_dict, to_dict
from ordinalclip.data import DataError, RankSpace, read_csv_samples, read_list_file
from ordinalclip.engine.checkpoint_io import AtomicCheckpointIO
from ordinalclip.engine.splits import resolve_data
from ordinalclip.engine.trainer import build_trainer
from ordinalclip.export import export_head
from ordinalclip.fileio import write_json
from ordinalclip.modeling import build_model
from tests.helpers import NUM_RANKS, make_images, tiny_config, tiny_model_dict, write_lists

NAMES = ["young", "adult", "middle", "old"]
PREP = {"size": 32, "resize": 36, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """2 train, 1 val, 1 test image per rank (8 / 4 / 4) and their list files."""
    path = tmp_path_factory.mktemp("rel")
    write_lists(path, make_images(path, counts={"train": 2, "val": 1, "test": 1}))
    return path


def _config(tmp_path: Path, data: dict, model: dict | None = None, **sections) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tmp_path, {"format": "list", **data}, model, **sections)))
    return str(path)


def _lists(root: Path, *splits: str) -> dict:
    return {"root": str(root), **{s: str(root / f"{s}.txt") for s in splits}}


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _error(err: str) -> str:
    """The ``error: ...`` text of a user error (no traceback)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return err[err.index("error: ") :].strip()


# ------------------------------------------------------------------------------------------ 1. bad images


def _truncated_png(path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


@pytest.mark.slow
def test_bad_images_through_the_cli_name_their_line_or_are_skipped_and_counted(tmp_path, capsys, caplog):
    data = tmp_path / "d"
    data.mkdir()
    items = make_images(data, counts={"train": 2})
    _truncated_png(data / "cut.png")
    (data / "notes.jpg").write_text("a text file with an image name")
    items["train"] += [("cut.png", 1), ("notes.jpg", 2)]  # lines 9 and 10
    train = write_lists(data, items)["train"]
    config = _config(tmp_path, {"root": str(data), "train": train}, trainer={"max_epochs": 1})

    code, _, err = _run(["train", "-c", config], capsys)
    assert code == 2
    message = _error(err)
    assert (
        f"{train}:9: cannot read image {data / 'cut.png'}" in message
        or f"{train}:10: cannot read image {data / 'notes.jpg'}" in message
    ), message

    run_dir = tmp_path / "skipping"
    code, _, err = _run(
        ["train", "-c", config, "--set", "data.on_bad_image=skip", "--run-dir", str(run_dir)], capsys
    )
    assert code == 0, err
    assert "skipping 2 of 10 unreadable images" in caplog.text  # the log
    metrics = json.loads((run_dir / "metrics.json").read_text())  # the run summary
    assert metrics["data"]["skipped_images"] == 2
    assert {(s["source"], Path(s["path"]).name) for s in metrics["skipped_images"]} == {
        (f"{train}:9", "cut.png"),
        (f"{train}:10", "notes.jpg"),
    }
    assert metrics["last"]["step"] == 2  # 8 good images in batches of 4


# ---------------------------------------------------------------------------------------- 2. missing files


def test_missing_files_are_reported_together_before_a_run_folder_exists(root, tmp_path, capsys):
    train = tmp_path / "train.txt"
    train.write_text((root / "train.txt").read_text() + "gone/a.png 0\ngone/b.png 3\n")
    test = tmp_path / "test.txt"
    test.write_text("gone/c.png 1\n" + (root / "test.txt").read_text())
    config = _config(tmp_path, {"root": str(root), "train": str(train), "test": str(test)})
    code, _, err = _run(["train", "-c", config], capsys)
    assert code == 2
    message = _error(err)
    assert message.startswith("error: 3 of 15 image files are missing:")
    for name, source in (
        ("gone/a.png", f"{train}:9"),
        ("gone/b.png", f"{train}:10"),
        ("gone/c.png", f"{test}:1"),
    ):
        assert f"{root / name}  (from {source})" in message
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------------------------- 3. labels


@pytest.mark.parametrize(
    ("label", "names", "expected"),
    [
        ("9", None, "label 9 is out of range: expected an integer in [0, 3]"),
        ("two", None, "label 'two' is not an integer"),
        ("olld", NAMES, "unknown class 'olld'"),
    ],
)
def test_bad_labels_through_the_cli_name_file_and_line(root, tmp_path, capsys, label, names, expected):
    train = tmp_path / "train.txt"
    train.write_text(f"# header\nimg/train/0_0.png 0\n\nimg/train/1_0.png {label}\n")
    config = _config(tmp_path, {"root": str(root), "train": str(train), "rank_names": names})
    code, _, err = _run(["train", "-c", config], capsys)
    assert code == 2
    message = _error(err)
    assert message.startswith(f"error: {train}:4: {expected}"), message
    if names:
        assert "did you mean 'old'?" in message
    assert not (tmp_path / "runs").exists()


def test_bad_csv_label_through_the_cli_names_file_and_line(root, tmp_path, capsys):
    table = tmp_path / "ages.csv"
    table.write_text("file,age\nimg/train/0_0.png,16\nimg/train/1_0.png,15\n")
    config = _config(
        tmp_path,
        {
            "format": "csv",
            "root": str(root),
            "train": str(table),
            "rank_offset": 16,
            "columns": {"path": "file", "label": "age"},
        },
    )
    code, _, err = _run(["train", "-c", config], capsys)
    assert code == 2
    assert _error(err).startswith(
        f"error: {table}:3: label 15 is out of range: expected an integer in [16, 19]"
    )


# ---------------------------------------------------------------------------------------- 4. empty, few-shot


def test_empty_split_and_too_large_few_shot(root, tmp_path, capsys):
    empty = tmp_path / "val.txt"
    empty.write_text("# no images yet\n\n")
    config = _config(tmp_path, {**_lists(root, "train"), "val": str(empty)})
    code, _, err = _run(["train", "-c", config], capsys)
    assert code == 2
    assert _error(err) == f"error: the val split is empty: no samples in {empty} (data.val)"

    config = _config(tmp_path, {**_lists(root, "train", "val"), "few_shot": {"shots": 3, "strict": True}})
    code, _, err = _run(["train", "-c", config], capsys)
    assert code == 2
    assert _error(err) == "error: few-shot: label 0 has only 2 samples, 3 requested"
    assert not (tmp_path / "runs").exists()

    # the documented fallback (strict: false, the reference behaviour): short ranks keep all their samples
    cfg = from_dict(
        RunConfig,
        tiny_config(tmp_path, {"format": "list", **_lists(root, "train"), "few_shot": {"shots": 3}}),
    )
    data = resolve_data(cfg)
    assert np.bincount([s.label for s in data.splits["train"]]).tolist() == [2, 2, 2, 2]
    assert "few-shot: 3 per rank (seed 3) -> 8 training samples" in data.notes


# -------------------------------------------------------------------------------------------- 6. rank names


@pytest.mark.parametrize("learner", ["rank", "plain"])
def test_rank_names_file_with_a_wrong_count_names_the_file_and_both_counts(root, tmp_path, capsys, learner):
    names = tmp_path / "names.txt"
    names.write_text("a\nb\nc\nd\ne\n")  # 5: neither C=4 nor C'=2
    model = tiny_model_dict(prompts={"learner": learner, "num_base_ranks": 2, "rank_names_file": str(names)})
    config = _config(tmp_path, _lists(root, "train"), model)
    code, _, err = _run(["train", "-c", config], capsys)
    assert code == 2
    message = _error(err)
    assert str(names) in message and "5" in message and "C=4" in message and "C'=2" in message, message


# -------------------------------------------------------------------------------------------- 7. versions


@pytest.fixture(scope="module")
def trained_like(root, tmp_path_factory):
    """A tiny model and its run config (untrained: only shapes and formats matter here)."""
    folder = tmp_path_factory.mktemp("ckpt")
    cfg = from_dict(RunConfig, tiny_config(folder, {"format": "list", **_lists(root, "train", "test")}))
    torch.manual_seed(0)
    return build_model(cfg.model).eval(), cfg


def _write_checkpoint(model: torch.nn.Module, config: dict, path: Path, **meta) -> Path:
    """A checkpoint laid out as the engine writes it (``model.*`` weights + the ``ordinalclip`` entry)."""
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "epoch": 0,
            "global_step": 1,
            "ordinalclip": {
                "format": 1,
                "version": ordinalclip.__version__,
                "config": config,
                "ranks": None,
                **meta,
            },
        },
        path,
    )
    return path


def test_checkpoint_and_export_from_another_config_or_version_are_clear_cli_errors(
    trained_like, root, tmp_path, capsys
):
    model, cfg = trained_like
    good = _write_checkpoint(model, to_dict(cfg), tmp_path / "good.ckpt")
    code, _, err = _run(["export", str(good), "-o", str(tmp_path / "good.safetensors")], capsys)
    assert code == 0, err  # the layout is right: only the changes below break it

    edited = to_dict(cfg)
    edited["model"]["prompts"]["num_base_ranks"] = 3  # the config no longer describes these weights
    other = _write_checkpoint(model, edited, tmp_path / "other.ckpt", version="0.0.1")
    for argv in (
        ["eval", str(other)],
        ["export", str(other), "-o", str(tmp_path / "x.safetensors")],
        ["predict", str(other), str(root / "test.txt"), "-o", str(tmp_path / "p.csv")],
    ):
        code, _, err = _run(argv, capsys)
        assert code == 2, argv
        message = _error(err)
        assert f"{other} (written by ordinalclip 0.0.1, this is {ordinalclip.__version__})" in message
        assert (
            "weights do not fit the model its config describes" in message and "with another shape" in message
        )
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "p.csv").exists()

    future = _write_checkpoint(
        model, {**to_dict(cfg), "sharding": {"shards": 8}}, tmp_path / "future.ckpt", version="9.0"
    )
    code, _, err = _run(["eval", str(future)], capsys)
    assert code == 2
    assert "written by ordinalclip 9.0, whose config this version" in _error(err) and "sharding" in err

    exported = export_head(model, cfg.model, tmp_path / "m.safetensors", preprocess=PREP)
    sidecar = exported.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "format_version": 2}))
    code, _, err = _run(
        ["predict", str(exported), str(root / "test.txt"), "-o", str(tmp_path / "p.csv")], capsys
    )
    assert code == 2
    assert "format version 2" in _error(err) and not (tmp_path / "p.csv").exists()


def test_checkpoint_of_another_format_is_refused(trained_like, tmp_path):
    model, cfg = trained_like
    path = _write_checkpoint(model, to_dict(cfg), tmp_path / "f2.ckpt", format=2)
    with pytest.raises(api.CheckpointError, match="format 2"):
        api.load_checkpoint(path)


# ------------------------------------------------------------------------------------------- 9. interrupts


class _SendSignal(L.Callback):
    def __init__(self, epoch: int, batch: int, signum: int) -> None:
        self.epoch, self.batch, self.signum = epoch, batch, signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), self.signum)


@pytest.mark.slow
def test_sigterm_through_the_cli_then_resume_equals_the_uninterrupted_run(
    root, tmp_path, capsys, monkeypatch
):
    config = _config(tmp_path, _lists(root, "train", "val", "test"))
    handler = signal.getsignal(signal.SIGTERM)
    straight = tmp_path / "straight"
    assert _run(["train", "-c", config, "--run-dir", str(straight)], capsys)[0] == 0

    # a signal after batch 0 of epoch 1 (of 2 batches): the middle of the second epoch
    monkeypatch.setattr(api, "fit", functools.partial(api.fit, callbacks=[_SendSignal(1, 0, signal.SIGTERM)]))
    cut = tmp_path / "cut"
    code, _, err = _run(["train", "-c", config, "--run-dir", str(cut)], capsys)
    monkeypatch.undo()
    assert code == 143
    assert (
        f"interrupted by SIGTERM at step 3; checkpoint written to {cut / 'checkpoints' / 'last.ckpt'}; "
        f"continue with: ordinalclip train --resume {cut}"
    ) in err
    assert signal.getsignal(signal.SIGTERM) is handler  # handlers put back

    code, _, err = _run(["train", "--resume", str(cut)], capsys)
    assert code == 0, err
    done, resumed = (json.loads((d / "metrics.json").read_text()) for d in (straight, cut))
    for tag in ("best", "last"):
        for key in ("epoch", "step", "val", "test"):
            assert resumed[tag][key] == done[tag][key], (tag, key)
    a, b = (torch.load(d / "checkpoints/last.ckpt", weights_only=True)["state_dict"] for d in (straight, cut))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------- 10. atomic


@pytest.mark.slow
def test_a_crash_while_training_writes_last_ckpt_keeps_the_previous_one(root, tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path, {"format": "list", **_lists(root, "train")})
    bundle = build_trainer(from_dict(RunConfig, cfg), tmp_path / "probe", has_val=False)
    assert isinstance(bundle.trainer.strategy.checkpoint_io, AtomicCheckpointIO)  # every Lightning write

    real_save, saves = torch.save, []

    def crash_on_second(obj, f, *args, **kwargs):
        saves.append(obj["epoch"])
        if len(saves) == 2:
            f.write(b"half a checkpoint")
            raise OSError("disk full")
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", crash_on_second)
    run_dir = tmp_path / "run"
    with pytest.raises(OSError, match="disk full"):
        api.fit(cfg, run_dir=run_dir)
    monkeypatch.undo()
    assert saves == [0, 1]
    folder = run_dir / "checkpoints"
    assert [p.name for p in folder.iterdir()] == ["last.ckpt"]  # no temporary left behind
    kept = api.read_checkpoint(folder / "last.ckpt")
    assert kept["epoch"] == 0 and kept["global_step"] == 2
    api.load_checkpoint(folder / "last.ckpt")  # whole and usable


def test_run_json_writes_are_atomic(tmp_path):
    path = tmp_path / "metrics.json"
    write_json({"mae": 1.5}, path)
    with pytest.raises(TypeError):
        write_json({"mae": object()}, path)  # fails half-way through serialisation
    assert json.loads(path.read_text()) == {"mae": 1.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


# --------------------------------------------------------------------------------------------- 11. untrusted


SRC = Path(ordinalclip.__file__).parent


def _calls(name: str) -> list[tuple[Path, ast.Call]]:
    """Every call ``<something>.<name>(...)`` in the package sources."""
    out = []
    for file in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == name:
                out.append((file, node))
    return out


def _keyword(call: ast.Call, name: str) -> object:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else kw.value
    return None


def _where(file: Path, call: ast.Call) -> str:
    return f"{file.relative_to(SRC)}:{call.lineno}"


def test_sources_only_unpickle_with_weights_only():
    torch_loads = [(f, c) for f, c in _calls("load") if ast.unparse(c.func) == "torch.load"]
    assert torch_loads, "the scan should see the checkpoint readers"
    assert [_where(f, c) for f, c in torch_loads if _keyword(c, "weights_only") is not True] == []
    assert [
        _where(f, c)
        for f, c in _calls("load")
        if ast.unparse(c.func) in ("np.load", "numpy.load")
        and _keyword(c, "allow_pickle") not in (None, False)
    ] == []
    # Lightning restores checkpoints itself in fit/validate/test: weights_only there too
    lightning = [
        (f, c) for m in ("fit", "validate", "test") for f, c in _calls(m) if _keyword(c, "ckpt_path")
    ]
    assert lightning and [_where(f, c) for f, c in lightning if _keyword(c, "weights_only") is not True] == []
    # TorchScript (code) only in read_state_dict, behind allow_torchscript
    jit = [_where(f, c) for f, c in _calls("load") if ast.unparse(c.func) == "torch.jit.load"]
    assert len(jit) == 1 and jit[0].startswith("modeling/backbones/clip.py")
    assert not [
        f for f in SRC.rglob("*.py") if "import pickle" in f.read_text() or "pickle.load" in f.read_text()
    ]


class _Payload:
    """Unpickling this would create ``marker``: a stand-in for code hidden in a checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickled_payload_never_runs_through_any_command(trained_like, root, tmp_path, capsys):
    model, cfg = trained_like
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.ckpt"
    torch.save(
        {"state_dict": {}, "payload": _Payload(marker), "ordinalclip": {"format": 1, "config": to_dict(cfg)}},
        evil,
    )
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg)))
    (run / "checkpoints" / "last.ckpt").write_bytes(evil.read_bytes())
    for argv in (
        ["eval", str(evil)],
        ["export", str(evil), "-o", str(tmp_path / "x.safetensors")],
        ["predict", str(evil), str(root / "test.txt"), "-o", str(tmp_path / "p.csv")],
        ["train", "--resume", str(run)],
    ):
        code, _, err = _run(argv, capsys)
        assert code == 2, argv
        assert (
            f"{evil if argv[0] != 'train' else run / 'checkpoints' / 'last.ckpt'}: not a readable checkpoint"
            in _error(err)
        )
        assert not marker.exists(), argv


def test_a_checkpoint_cannot_grant_itself_torchscript_consent(tiny_clip_file, tmp_path, monkeypatch):
    from ordinalclip.modeling import load_clip
    from tests.helpers import StateHolder

    archive = tmp_path / "openai_like.pt"
    torch.jit.script(StateHolder(load_clip(pretrained=str(tiny_clip_file)).model.state_dict())).save(
        str(archive)
    )
    cfg = from_dict(
        RunConfig,
        {
            "model": {
                "num_ranks": NUM_RANKS,
                "prompts": {"num_base_ranks": 2},
                "clip": {"name": None, "pretrained": str(archive), "allow_torchscript": True},
            }
        },
    )
    path = _write_checkpoint(build_model(cfg.model), to_dict(cfg), tmp_path / "c.ckpt")

    opened: list[str] = []
    real = torch.jit.load
    monkeypatch.setattr(torch.jit, "load", lambda f, *a, **k: opened.append(str(f)) or real(f, *a, **k))
    with pytest.raises(Exception, match="allow_torchscript"):
        api.load_checkpoint(path)  # the person loading it did not ask for TorchScript
    assert opened == []


# ---------------------------------------------------------------------------------------------- hypothesis


label_st = st.integers(0, NUM_RANKS - 1).map(str) | st.sampled_from(NAMES)
bad_label_st = st.one_of(
    st.integers().filter(lambda v: not 0 <= v < NUM_RANKS).map(str),
    st.text(string.ascii_letters + "-_.", min_size=1, max_size=8).filter(lambda t: t not in NAMES),
    st.sampled_from(["1.5", "nan", "inf", "3e9", "OLD", "young!"]),
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60, deadline=None)
@given(
    labels=st.lists(label_st, max_size=12),
    noise=st.lists(st.sampled_from(["", "# note 9", "  "]), max_size=12),
    bad=bad_label_st,
    data=st.data(),
)
def test_a_bad_label_anywhere_is_reported_at_its_line(tmp_path, labels, noise, bad, data):
    ranks = RankSpace(NUM_RANKS, names=NAMES)
    position = data.draw(st.integers(0, len(labels)))
    rows = labels[:position] + [bad] + labels[position:]

    lines, bad_line = [], 0
    for i, label in enumerate(rows):
        if i < len(noise):
            lines.append(noise[i])
        lines.append(f"img/{i}.png {label}")
        if i == position:
            bad_line = len(lines)
    listing = tmp_path / "l.txt"
    listing.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        read_list_file(listing, "", ranks)
    assert str(err.value).startswith(f"{listing}:{bad_line}: "), str(err.value)

    table = tmp_path / "t.csv"
    with open(table, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(
            [["path", "label"], *([f"img/{i}.png", r] for i, r in enumerate(rows))]
        )
    with pytest.raises(DataError) as err:
        read_csv_samples(table, "", ranks)
    assert str(err.value).startswith(f"{table}:{position + 2}: "), str(err.value)


names_st = st.lists(
    st.text(string.ascii_lowercase + " _", min_size=1, max_size=6).map(str.strip).filter(bool),
    min_size=2,
    max_size=12,
    unique=True,
)


@given(names=names_st, offset=st.integers(-100, 100), data=st.data())
def test_names_and_integer_labels_agree(names, offset, data):
    space = RankSpace(len(names), names=names, offset=offset)
    rank = data.draw(st.integers(0, len(names) - 1))
    assert space.to_rank(names[rank], "f:1") == space.to_rank(str(rank + offset), "f:1") == rank
    assert space.name(rank) == names[rank] and space.values()[rank].item() == rank + offset
    with pytest.raises(DataError, match=r"^f:2: label .* is out of range"):
        space.to_rank(str(offset + len(names) + data.draw(st.integers(0, 1000))), "f:2")
