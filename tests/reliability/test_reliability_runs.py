"""Runs that lose nothing: checkpoints and exports from another config or version, interrupted runs that resume
to the same result, and writes that a crash cannot truncate.
"""

from __future__ import annotations

import functools
import json
import os
import signal

import lightning as L
import pytest
import torch

import ordinalclip
from ordinalclip import api
from ordinalclip.config import RunConfig
from ordinalclip.config.typed import from_dict, to_dict
from ordinalclip.engine.checkpoint_io import AtomicCheckpointIO
from ordinalclip.engine.trainer import build_trainer
from ordinalclip.exports.write import export_head
from ordinalclip.fileio import write_json
from tests.helpers import (
    list_config,
    list_files,
    run_cli,
    tiny_config,
    user_error,
    write_raw_checkpoint,
)

NAMES = ["young", "adult", "middle", "old"]
PREP = {"size": 32, "resize": 36, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


# ------------------------------------------------------------------------------------------------ 7. versions


def test_checkpoint_and_export_from_another_config_or_version_are_clear_cli_errors(
    trained_like, root, tmp_path, capsys
):
    model, cfg = trained_like
    good = write_raw_checkpoint(model, to_dict(cfg), tmp_path / "good.ckpt")
    code, _, err = run_cli(["export", str(good), "-o", str(tmp_path / "good.safetensors")], capsys)
    assert code == 0, err  # the layout is right: only the changes below break it

    edited = to_dict(cfg)
    edited["model"]["prompts"]["num_base_ranks"] = 3  # the config no longer describes these weights
    other = write_raw_checkpoint(model, edited, tmp_path / "other.ckpt", version="0.0.1")
    for argv in (
        ["eval", str(other)],
        ["export", str(other), "-o", str(tmp_path / "x.safetensors")],
        ["predict", str(other), str(root / "test.txt"), "-o", str(tmp_path / "p.csv")],
    ):
        code, _, err = run_cli(argv, capsys)
        assert code == 2, argv
        message = user_error(err)
        assert f"{other} (written by ordinalclip 0.0.1, this is {ordinalclip.__version__})" in message
        assert (
            "weights do not fit the model its config describes" in message and "with another shape" in message
        )
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "p.csv").exists()

    future = write_raw_checkpoint(
        model, {**to_dict(cfg), "sharding": {"shards": 8}}, tmp_path / "future.ckpt", version="9.0"
    )
    code, _, err = run_cli(["eval", str(future)], capsys)
    assert code == 2
    assert "written by ordinalclip 9.0, whose config this version" in user_error(err) and "sharding" in err

    exported = export_head(model, cfg.model, tmp_path / "m.safetensors", preprocess=PREP)
    sidecar = exported.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "format_version": 2}))
    code, _, err = run_cli(
        ["predict", str(exported), str(root / "test.txt"), "-o", str(tmp_path / "p.csv")], capsys
    )
    assert code == 2
    assert "format version 2" in user_error(err) and not (tmp_path / "p.csv").exists()


def test_checkpoint_of_another_format_is_refused(trained_like, tmp_path):
    model, cfg = trained_like
    path = write_raw_checkpoint(model, to_dict(cfg), tmp_path / "f2.ckpt", format=2)
    with pytest.raises(api.CheckpointError, match="format 2"):
        api.load_checkpoint(path)


# ---------------------------------------------------------------------------------------------- 9. interrupts


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
    config = list_config(tmp_path, list_files(root, "train", "val", "test"))
    handler = signal.getsignal(signal.SIGTERM)
    straight = tmp_path / "straight"
    assert run_cli(["train", "-c", config, "--run-dir", str(straight)], capsys)[0] == 0

    # a signal after batch 0 of epoch 1 (of 2 batches): the middle of the second epoch
    monkeypatch.setattr(api, "fit", functools.partial(api.fit, callbacks=[_SendSignal(1, 0, signal.SIGTERM)]))
    cut = tmp_path / "cut"
    code, _, err = run_cli(["train", "-c", config, "--run-dir", str(cut)], capsys)
    monkeypatch.undo()
    assert code == 143
    assert (
        f"interrupted by SIGTERM at step 3; checkpoint written to {cut / 'checkpoints' / 'last.ckpt'}; "
        f"continue with: ordinalclip train --resume {cut}"
    ) in err
    assert signal.getsignal(signal.SIGTERM) is handler  # handlers put back

    code, _, err = run_cli(["train", "--resume", str(cut)], capsys)
    assert code == 0, err
    done, resumed = (json.loads((d / "metrics.json").read_text()) for d in (straight, cut))
    for tag in ("best", "last"):
        for key in ("epoch", "step", "val", "test"):
            assert resumed[tag][key] == done[tag][key], (tag, key)
    a, b = (torch.load(d / "checkpoints/last.ckpt", weights_only=True)["state_dict"] for d in (straight, cut))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------------- 10. atomic


@pytest.mark.slow
def test_a_crash_while_training_writes_last_ckpt_keeps_the_previous_one(root, tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path, {"format": "list", **list_files(root, "train")})
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
