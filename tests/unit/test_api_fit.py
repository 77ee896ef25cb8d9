"""fit / evaluate / load_checkpoint end to end on tiny generated data with a tiny CLIP."""

from __future__ import annotations

import json
import math
import os
import signal
from importlib import metadata
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml

from ordinalclip import __version__
from ordinalclip.api import CheckpointError, evaluate, fit, fit_folds, load_checkpoint, summarize_folds
from ordinalclip.config import RunConfig
from ordinalclip.config.typed import from_dict
from ordinalclip.data import DataError, load_image
from ordinalclip.engine.cache import FeatureCache
from ordinalclip.engine.errors import NonFiniteLossError, TrainingInterrupted
from ordinalclip.engine.transforms import eval_transform, tower_preprocess
from ordinalclip.metrics import ordinal_metrics
from tests.helpers import NUM_RANKS, list_data, make_images, tiny_config, write_lists


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def list_cfg(data_root: Path) -> dict:
    return tiny_config(data_root, list_data(data_root))


@pytest.fixture(scope="module")
def straight(list_cfg):
    """An uninterrupted 2-epoch run (the reference the resumed runs must reproduce)."""
    return fit(list_cfg)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_fit_writes_a_complete_run_folder(straight):
    run = straight
    d = run.run_dir
    for rel in (
        "config.yaml",
        "env.json",
        "metrics.json",
        "splits/train.txt",
        "splits/val.txt",
        "splits/test.txt",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "logs/csv/version_0/metrics.csv",
    ):
        assert (d / rel).is_file(), rel
    # the resolved config rebuilds the same RunConfig
    assert from_dict(RunConfig, yaml.safe_load((d / "config.yaml").read_text())) == run.config
    env = json.loads((d / "env.json").read_text())
    assert env["ordinalclip"] == __version__
    assert env["packages"]["torch"] == metadata.version("torch")
    assert env["packages"]["lightning"] == metadata.version("lightning")
    metrics = json.loads((d / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(run.metrics))
    assert metrics["last"]["epoch"] == 1 and metrics["last"]["step"] == 8  # 2 epochs x 16 images / batch 4
    for tag in ("best", "last"):
        for split in ("val", "test"):
            assert set(metrics[tag][split]) >= {
                "mae_exp",
                "mae_max",
                "acc_exp",
                "acc_max",
                "off1_max",
                "qwk_max",
            }
    assert metrics["data"] == {"train": 16, "val": 8, "test": 8, "skipped_images": 0}
    # the checkpoint is plain data (weights_only) and carries the config and version
    ckpt = torch.load(d / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["ordinalclip"]["version"] == __version__
    assert from_dict(RunConfig, ckpt["ordinalclip"]["config"]) == run.config


def test_predictions_csv_holds_the_rank_probabilities(straight):
    """predictions/*.csv: each column names its unit (ranks, label values), then p_0 .. p_{C-1} = softmax of
    the model's logits."""
    import csv

    from ordinalclip.data import Sample

    model, cfg = load_checkpoint(straight.best_checkpoint)
    with open(straight.run_dir / "predictions" / "test_best.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "path",
        "label_rank",
        "prediction",  # the headline prediction first: which one, its value and its rank
        "value",
        "rank",
        "exp_value",
        "pred_value",
        "exp_rank",
        "pred_rank",
        *(f"p_{k}" for k in range(NUM_RANKS)),
    ]
    tf = eval_transform(cfg, tower_preprocess(model))
    images = torch.stack([tf(load_image(Sample(r["path"], int(r["label_rank"]), "t"))) for r in rows])
    with torch.no_grad():
        expected = torch.softmax(model(images), dim=1).numpy()
    probs = np.array([[float(r[f"p_{k}"]) for k in range(NUM_RANKS)] for r in rows])
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert [int(r["pred_rank"]) for r in rows] == probs.argmax(1).tolist()
    np.testing.assert_allclose([float(r["exp_rank"]) for r in rows], probs @ np.arange(NUM_RANKS), atol=1e-4)
    assert {r["prediction"] for r in rows} == {"expectation"}  # the default headline
    np.testing.assert_allclose([float(r["value"]) for r in rows], [float(r["exp_value"]) for r in rows])
    assert [int(r["rank"]) for r in rows] == np.rint(probs @ np.arange(NUM_RANKS)).astype(int).tolist()
    values = np.arange(NUM_RANKS) + cfg.data.rank_offset  # label units
    np.testing.assert_allclose([float(r["exp_value"]) for r in rows], probs @ values, atol=1e-4)
    assert [float(r["pred_value"]) for r in rows] == values[probs.argmax(1)].tolist()


def test_load_checkpoint_and_evaluate_reproduce_the_reported_metrics(straight):
    run = straight
    model, cfg = load_checkpoint(run.best_checkpoint)
    assert cfg == run.config and not model.training
    tf = eval_transform(cfg, tower_preprocess(model))
    samples = [
        line.split("\t")
        for line in (run.run_dir / "splits/test.txt").read_text().splitlines()
        if not line.startswith("#")
    ]
    from ordinalclip.data import Sample

    images = torch.stack([tf(load_image(Sample(p, int(y), "t"))) for p, y in samples])
    labels = torch.tensor([int(y) for _, y in samples])
    with torch.no_grad():
        direct = ordinal_metrics(model(images), labels)
    reported = run.metrics["best"]["test"]
    for key, value in direct.items():
        assert reported[key] == pytest.approx(value, abs=1e-5)
    evaluated = evaluate(run.best_checkpoint, split="test")
    assert evaluated["num_samples"] == 8
    assert evaluated["metrics"] == pytest.approx(reported, abs=1e-6)
    assert evaluate(run.run_dir, split="val")["metrics"] == pytest.approx(
        run.metrics["best"]["val"], abs=1e-6
    )


class _SendSignal(L.Callback):
    def __init__(self, epoch: int, batch: int, signum: int = signal.SIGTERM) -> None:
        self.epoch, self.batch, self.signum = epoch, batch, signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_run_killed_mid_epoch_and_resumed_equals_the_uninterrupted_run(list_cfg, straight, signum):
    # the handler before the run (default_int_handler, or SIG_IGN in a background job of a shell)
    sigint_before = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as info:
        fit(list_cfg, callbacks=[_SendSignal(epoch=0, batch=1, signum=signum)])
    err = info.value
    assert err.signame == signal.Signals(signum).name and err.step == 2
    ckpt = torch.load(err.checkpoint, map_location="cpu", weights_only=True)
    assert (
        ckpt["global_step"] == 2 and ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]["completed"] == 0
    )
    assert signal.getsignal(signal.SIGINT) is sigint_before  # handlers put back
    resumed = fit(resume=err.run_dir)  # type: ignore[attr-defined]
    assert resumed.run_dir == err.run_dir  # type: ignore[attr-defined]
    _assert_same_weights(straight.last_checkpoint, resumed.last_checkpoint)
    assert resumed.metrics["last"] == {**straight.metrics["last"], "checkpoint": str(resumed.last_checkpoint)}
    assert resumed.metrics["best"]["val"] == straight.metrics["best"]["val"]
    assert len(list((resumed.run_dir / "logs/csv").iterdir())) == 2  # one log version per start


def test_resume_with_more_epochs_follows_the_longer_schedule(list_cfg, straight):
    short = fit(list_cfg, overrides=["trainer.max_epochs=1"])
    longer = fit(resume=short.run_dir, overrides=["trainer.max_epochs=2"])
    # cosine over 2 epochs from epoch 1 on: the lr of epoch 1 is recomputed, not the 1-epoch schedule's 0
    _assert_same_weights(straight.last_checkpoint, longer.last_checkpoint)
    assert yaml.safe_load((longer.run_dir / "config.yaml").read_text())["trainer"]["max_epochs"] == 2


def test_resume_refuses_a_changed_model(straight):
    with pytest.raises(CheckpointError, match="model.prompts.num_base_ranks"):
        fit(resume=straight.run_dir, overrides=["model.prompts.num_base_ranks=3"])
    with pytest.raises(CheckpointError, match="not a run folder"):
        fit(resume=straight.run_dir / "splits")


def test_feature_cache_gives_the_same_run_as_no_cache(list_cfg, tmp_path, monkeypatch):
    frozen = ["optim.freeze_image=true", "data.augment=false", f"data.cache_dir={tmp_path / 'cache'}"]
    cached = fit(list_cfg, overrides=frozen)
    plain = fit(list_cfg, overrides=[*frozen, "data.feature_cache=false"])
    assert cached.metrics["feature_cache"] and plain.metrics["feature_cache"] is None
    assert (
        len(list((tmp_path / "cache").glob("*/*.safetensors"))) == 3
    )  # one shard per split: train, val, test
    wa, wb = _weights(cached.last_checkpoint), _weights(plain.last_checkpoint)
    assert wa.keys() == wb.keys()  # the checkpoint is the full model, image tower included
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-5, msg=k)
    for tag in ("best", "last"):
        for split in ("val", "test"):
            assert cached.metrics[tag][split] == pytest.approx(plain.metrics[tag][split], abs=1e-5)

    def no_recompute(*args, **kwargs):
        raise AssertionError("features should come from the cache")

    monkeypatch.setattr(FeatureCache, "_compute", no_recompute)
    again = fit(list_cfg, overrides=frozen)
    _assert_same_weights(cached.last_checkpoint, again.last_checkpoint)


class _PoisonAt(L.Callback):
    """Makes the context NaN when ``epoch`` starts (the loss of its first step is then NaN)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                pl_module.model.prompt_learner.context.fill_(float("nan"))


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(list_cfg):
    with pytest.raises(NonFiniteLossError) as info:
        fit(list_cfg, callbacks=[_PoisonAt(epoch=1)])
    message = str(info.value)
    assert "at step 4 (epoch 1, batch 0)" in message and "last good checkpoint is kept" in message
    last = Path(message.rsplit("kept: ", 1)[1])
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 0 and ckpt["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_bad_checkpoints_give_clear_errors(straight, tmp_path):
    ckpt = torch.load(straight.last_checkpoint, map_location="cpu", weights_only=True)
    other = dict(ckpt, ordinalclip={**ckpt["ordinalclip"], "version": "9.9.9"})
    other["ordinalclip"]["config"] = {
        **ckpt["ordinalclip"]["config"],
        "model": {**ckpt["ordinalclip"]["config"]["model"], "num_ranks": 7},
    }
    torch.save(other, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match=r"9\.9\.9.*weights do not fit.*with another shape"):
        load_checkpoint(tmp_path / "other.ckpt")
    future = dict(
        ckpt,
        ordinalclip={
            **ckpt["ordinalclip"],
            "version": "9.9.9",
            "config": {**ckpt["ordinalclip"]["config"], "new_section": {}},
        },
    )
    torch.save(future, tmp_path / "future.ckpt")
    with pytest.raises(CheckpointError, match=r"ordinalclip 9\.9\.9.*cannot read.*new_section"):
        load_checkpoint(tmp_path / "future.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "plain.ckpt")
    with pytest.raises(CheckpointError, match="not an ordinalclip training checkpoint"):
        load_checkpoint(tmp_path / "plain.ckpt")
    torch.save({"evil": _Unpicklable()}, tmp_path / "code.ckpt")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "code.ckpt")  # weights_only refuses arbitrary objects
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.ckpt")


class _Unpicklable:
    """An arbitrary class: a weights-only load must refuse to instantiate it."""


def test_no_test_split_is_never_replaced_by_val(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    lists = write_lists(root, make_images(root, counts={"train": 2, "val": 1}))
    run = fit(
        tiny_config(tmp_path, {"format": "list", "root": str(root), **lists}),
        overrides=["trainer.max_epochs=1"],
    )
    assert run.metrics["best"]["test"] is None and run.metrics["best"]["val"] is not None
    with pytest.raises(DataError, match="no test split"):
        evaluate(run.best_checkpoint, split="test")


def test_folds_report_mean_and_std(tmp_path):
    root = tmp_path / "adience"
    for fold in (0, 1):
        items = make_images(root, counts={"train": 2, "val": 1, "test": 1}, seed=fold)
        folder = root / "folds" / f"fold_{fold}"
        folder.mkdir(parents=True)
        for split, rows in items.items():
            (folder / f"{split}.txt").write_text("".join(f"{rel} {label}\n" for rel, label in rows))
    cfg = tiny_config(
        tmp_path,
        {"format": "benchmark", "benchmark": "adience", "root": str(root)},
        model={**tiny_config(tmp_path, {})["model"], "num_ranks": 8},
    )
    result = fit_folds(cfg, overrides=["trainer.max_epochs=1"], folds=[0, 1])
    assert [r.run_dir.name for r in result.runs] == ["fold0", "fold1"]
    maes = [r.metrics["last"]["test"]["mae_exp"] for r in result.runs]
    summary = result.summary["last"]["test"]["mae_exp"]
    assert summary["mean"] == pytest.approx(np.mean(maes)) and summary["std"] == pytest.approx(np.std(maes))
    assert json.loads((result.run_dir / "summary.json").read_text())["last"]["test"]["mae_exp"] == summary
    assert result.runs[1].config.data.fold == 1


def test_summarize_folds_by_hand():
    runs = [
        {"best": {"val": {"mae": 1.0}, "test": None}, "last": None},
        {"best": {"val": {"mae": 3.0}, "test": None}, "last": None},
    ]
    assert summarize_folds(runs) == {"best": {"val": {"mae": {"mean": 2.0, "std": 1.0, "n": 2}}}}
    assert math.isclose(summarize_folds(runs)["best"]["val"]["mae"]["std"], 1.0)
    assert NUM_RANKS == 4


def test_bad_images_raise_with_their_line_or_are_skipped_and_counted(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    items = make_images(root, counts={"train": 2, "val": 1})
    (root / "img/train/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    items["train"].append(("img/train/broken.png", 1))
    lists = write_lists(root, items)
    cfg = tiny_config(tmp_path, {"format": "list", "root": str(root), **lists}, trainer={"max_epochs": 1})
    with pytest.raises(DataError, match=rf"{lists['train']}:9: cannot read image .*broken\.png"):
        fit(cfg)
    run = fit(cfg, overrides=["data.on_bad_image=skip"])
    assert run.metrics["data"]["skipped_images"] == 1
    assert run.metrics["skipped_images"][0]["source"] == f"{lists['train']}:9"


@pytest.mark.slow
def test_worker_processes_do_not_change_the_run(list_cfg, straight):
    # augmentations are seeded per (seed, epoch, sample), the order per (seed, epoch): workers change nothing
    with_workers = fit(list_cfg, overrides=["data.num_workers=2"])
    _assert_same_weights(straight.last_checkpoint, with_workers.last_checkpoint)
