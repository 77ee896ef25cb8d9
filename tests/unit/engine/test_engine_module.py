"""LightningModule evaluation over whole epochs, atomic checkpoint writes, the interrupt callback."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from ordinalclip.config import RunConfig
from ordinalclip.config.typed import from_dict
from ordinalclip.data import RankSpace
from ordinalclip.engine.callbacks import InterruptCheckpoint
from ordinalclip.engine.checkpoint_io import AtomicCheckpointIO, atomic_torch_save
from ordinalclip.engine.datamodule import OrdinalDataModule
from ordinalclip.engine.module import OrdinalModule
from ordinalclip.engine.splits import resolve_data
from ordinalclip.engine.trainer import build_eval_trainer
from ordinalclip.engine.transforms import tower_preprocess
from ordinalclip.metrics import ordinal_metrics
from ordinalclip.modeling import CosineClassifier, FeatureTower
from tests.helpers import NUM_RANKS, make_features


class CountingClassifier(CosineClassifier):
    """Cosine head that counts how often its prototypes are computed."""

    calls = 0

    def prototypes(self) -> torch.Tensor:
        type(self).calls += 1
        return super().prototypes()


@pytest.fixture
def feature_setup(tmp_path: Path):
    path = make_features(tmp_path / "f.npz")
    cfg = from_dict(
        RunConfig,
        {
            "model": {
                "arch": "cosine",
                "num_ranks": NUM_RANKS,
                "image": {"kind": "features", "input_dim": 8},
            },
            "data": {
                "format": "features",
                "train": path,
                "columns": {"split": "split"},
                "eval_batch_size": 3,
            },
            "trainer": {"progress_bar": False, "accelerator": "cpu"},
        },
    )
    torch.manual_seed(0)
    model = CountingClassifier(FeatureTower(8, None), NUM_RANKS)
    data = resolve_data(cfg)
    return cfg, model, data


def test_validation_metrics_are_computed_over_the_whole_epoch(feature_setup):
    cfg, model, data = feature_setup
    module = OrdinalModule(model, cfg, data.ranks)
    dm = OrdinalDataModule(cfg, data, tower_preprocess(model))
    CountingClassifier.calls = 0
    logged = build_eval_trainer(cfg).validate(module, datamodule=dm, verbose=False)[0]
    assert CountingClassifier.calls == 1  # prototypes once per evaluation epoch, not once per batch
    feats = dm.dataset("val").features
    labels = dm.dataset("val").labels
    with torch.no_grad():
        expected = ordinal_metrics(model(feats), labels)
    assert len(labels) == 8  # 8 samples in batches of 3, 3, 2
    for key, value in expected.items():
        assert logged[f"val_{key}"] == pytest.approx(value, abs=1e-6)
    assert module.eval_results["val"]["num_samples"] == 8
    assert module.eval_results["val"]["metrics"]["mae_exp"] == pytest.approx(expected["mae_exp"])
    # test is logged under its own names
    tested = build_eval_trainer(cfg).test(module, datamodule=dm, verbose=False)[0]
    assert set(tested) == {f"test_{k}" for k in expected}


def test_per_group_metrics(feature_setup):
    cfg, model, data = feature_setup
    # give the val samples two groups: the first 5 "a", the rest "b"
    data.splits["val"] = [
        s.__class__(s.path, s.label, s.source, "a" if i < 5 else "b")
        for i, s in enumerate(data.splits["val"])
    ]
    module = OrdinalModule(model, cfg, data.ranks)
    dm = OrdinalDataModule(cfg, data, tower_preprocess(model))
    build_eval_trainer(cfg).validate(module, datamodule=dm, verbose=False)
    feats, labels = dm.dataset("val").features, dm.dataset("val").labels
    with torch.no_grad():
        logits = model(feats)
    groups = module.eval_results["val"]["groups"]
    assert set(groups) == {"a", "b"}
    assert groups["a"]["mae_exp"] == pytest.approx(ordinal_metrics(logits[:5], labels[:5])["mae_exp"])
    assert groups["b"]["acc_max"] == pytest.approx(ordinal_metrics(logits[5:], labels[5:])["acc_max"])


def test_checkpoint_hook_stores_config_version_and_ranks(feature_setup):
    cfg, model, _ = feature_setup
    module = OrdinalModule(model, cfg, RankSpace(NUM_RANKS, offset=16))
    ckpt: dict = {}
    module.on_save_checkpoint(ckpt)
    meta = ckpt["ordinalclip"]
    assert meta["version"] == __import__("ordinalclip").__version__
    assert from_dict(RunConfig, meta["config"]) == cfg
    assert meta["ranks"] == {"num_ranks": NUM_RANKS, "names": None, "offset": 16}


def test_atomic_save_keeps_the_old_file_when_a_write_fails(tmp_path: Path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"w": torch.ones(3)}, path)
    real_save = torch.save

    def crash(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(3)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary left behind


def test_interrupt_handler_records_the_signal_and_restores_handlers():
    cb = InterruptCheckpoint("unused.ckpt")
    before = signal.getsignal(signal.SIGTERM)

    class _Trainer:
        world_size = 1

    cb.on_fit_start(_Trainer(), None)  # type: ignore[arg-type]
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert cb.received == signal.SIGTERM
    finally:
        cb.restore()
    assert signal.getsignal(signal.SIGTERM) is before


def test_uneven_shards_are_gathered_without_padding_rows(feature_setup):
    """Two ranks with 3 and 2 rows: the gather pads to 3 for all_gather and cuts the padding off again."""
    cfg, model, _ = feature_setup
    module = OrdinalModule(model, cfg)
    mine, theirs = torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[4.0], [5.0]])

    def all_gather(t: torch.Tensor) -> torch.Tensor:  # what rank 0 sees from a 2-process all_gather
        if t.shape == (1,):
            return torch.stack([t, torch.tensor([2])])
        other = torch.cat([theirs, torch.zeros(len(t) - len(theirs), 1)])
        return torch.stack([t, other])

    module._trainer = SimpleNamespace(world_size=2)  # type: ignore[assignment]
    module.all_gather = all_gather  # type: ignore[method-assign]
    assert module._gather(mine).flatten().tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_tensorboard_logger_only_when_installed(tmp_path: Path, monkeypatch):
    import importlib.util

    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from ordinalclip.engine.trainer import build_loggers

    cfg = from_dict(RunConfig, {"trainer": {"loggers": ["csv", "tensorboard"]}})
    real = importlib.util.find_spec
    if real("tensorboard") is not None:
        assert [type(x) for x in build_loggers(cfg, tmp_path)] == [CSVLogger, TensorBoardLogger]
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if "tensorboard" in name else real(name)
    )
    assert [type(x) for x in build_loggers(cfg, tmp_path)] == [CSVLogger]


@pytest.mark.parametrize("name", ["ordinalclip", "sord", "binomial", "cdw_ce", "emd", "wk"])
def test_training_step_uses_the_configured_loss(feature_setup, name):
    from ordinalclip.losses import make_softmax_loss

    cfg, model, _ = feature_setup
    cfg.loss.name = name
    module = OrdinalModule(model, cfg)
    module.log = module.log_dict = lambda *a, **k: None  # no trainer attached
    x, y = torch.randn(6, 8), torch.tensor([0, 1, 2, 1, 0, 2]) % NUM_RANKS
    loss = module.training_step((x, y), 0)
    want = make_softmax_loss(name, NUM_RANKS)(model(x), y)["loss"]
    assert torch.allclose(loss, want), name


def test_softmax_loss_is_refused_for_binary_task_heads():
    from ordinalclip.config.typed import ConfigError

    with pytest.raises(
        ConfigError, match="loss.name: 'sord' is a loss of softmax outputs; model.arch 'coral'"
    ):
        from_dict(RunConfig, {"model": {"arch": "coral"}, "loss": {"name": "sord"}})
    with pytest.raises(ConfigError, match="loss.name: 'beta' soft labels exist for 3 to 14 ranks"):
        from_dict(RunConfig, {"model": {"num_ranks": 101}, "loss": {"name": "beta"}})
    with pytest.raises(ConfigError, match="loss.eta"):
        from_dict(RunConfig, {"loss": {"eta": 1.5}})
