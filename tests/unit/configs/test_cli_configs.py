"""The shipped configs: all load and validate, the MORPH one is the reference setting of reference notes §2.1, and the
tiny one runs end to end through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ordinalclip.app import cli
from ordinalclip.config import load_run_config
from ordinalclip.data import ADIENCE_GROUPS, HCI_DECADES
from tests.helpers import REPO_ROOT

CONFIGS = REPO_ROOT / "configs"


def test_every_config_loads():
    names = sorted(p.name for p in CONFIGS.glob("*.yaml"))
    assert {
        "morph.yaml",
        "morph_coop.yaml",
        "morph_cosine.yaml",
        "adience.yaml",
        "aesthetics.yaml",
        "hci.yaml",
        "tiny.yaml",
    } <= set(names)
    for name in names:
        load_run_config([CONFIGS / name])  # unknown keys or wrong types would raise


def test_morph_is_the_reference_setting():
    cfg = load_run_config([CONFIGS / "morph.yaml"])
    m, d, o, t = cfg.model, cfg.data, cfg.optim, cfg.trainer
    assert (m.arch, m.num_ranks, m.prompts.learner, m.prompts.num_base_ranks) == (
        "prompts",
        101,
        "rank",
        3,
    )
    assert m.prompts.interpolation == "linear" and m.prompts.rank_names is None
    assert m.prompts.context_init == "age estimation: the age of the person is"
    assert (m.clip.name, m.image.kind, m.text.freeze) == ("RN50", "vgg16", True)
    assert (d.benchmark, d.image_size, d.resize, d.normalize, d.batch_size) == (
        "morph2",
        224,
        256,
        "imagenet",
        32,
    )
    assert (o.name, o.lr, o.lr_text, o.lr_logit_scale, o.weight_decay) == ("radam", 1e-4, 0.0, 0.0, 5e-4)
    assert (o.scheduler, o.warmup_epochs, o.betas, o.eps) == ("cosine", 0, (0.9, 0.999), 1e-8)
    assert (t.max_epochs, t.precision, t.deterministic, t.monitor, t.monitor_mode) == (
        100,
        "16-mixed",
        True,
        "val_mae_max",
        "min",
    )


def test_baselines_differ_from_morph_only_where_the_reference_does():
    morph = load_run_config([CONFIGS / "morph.yaml"])
    coop = load_run_config([CONFIGS / "morph_coop.yaml"])
    cnn = load_run_config([CONFIGS / "morph_cosine.yaml"])
    assert coop.model.prompts.learner == "plain" and coop.optim == morph.optim and coop.data == morph.data
    assert (cnn.model.arch, cnn.model.embed_dim, cnn.model.logit_scale) == ("cosine", 1024, 100.0)
    assert cnn.trainer == morph.trainer


@pytest.mark.parametrize(
    "name, benchmark, num_ranks",
    [
        ("adience.yaml", "adience", len(ADIENCE_GROUPS)),
        ("hci.yaml", "hci", len(HCI_DECADES)),
        ("aesthetics.yaml", "aesthetics", 5),
        ("morph.yaml", "morph2", 101),
    ],
)
def test_benchmark_configs_match_their_adapters(name, benchmark, num_ranks):
    cfg = load_run_config([CONFIGS / name])
    assert cfg.data.format == "benchmark" and cfg.data.benchmark == benchmark
    assert cfg.model.num_ranks == num_ranks


@pytest.mark.slow
def test_tiny_config_trains_on_the_demo_data(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("ORDINALCLIP_CACHE", str(tmp_path / "cache"))
    code = cli.main(
        [
            "train",
            "-c",
            str(CONFIGS / "tiny.yaml"),
            "--set",
            f"output_dir={tmp_path / 'runs'}",
            "--set",
            "trainer.progress_bar=false",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    metrics = json.loads(next((tmp_path / "runs").glob("tiny-*/metrics.json")).read_text())
    assert metrics["last"]["epoch"] == 1 and metrics["best"]["test"]["mae_exp"] is not None


@pytest.mark.parametrize(
    "data, message",
    [
        ({"data": {"batch_size": 0}}, "data.batch_size: expected an integer >= 1, got 0"),
        ({"data": {"mean": [0.5, 0.5, 0.5]}}, "data.mean and data.std go together"),
        ({"data": {"mean": [0.5], "std": [0.5]}}, "data.mean: expected 3 values"),
        ({"data": {"format": "benchmark"}}, "data.benchmark is not set"),
        ({"data": {"image_size": 64, "resize": 32}}, "larger than data.resize"),
        ({"data": {"label_shift": {"scale": 2}}}, r"data.label_shift.scale: expected a value in \(0, 1\]"),
        ({"optim": {"lr_image": -1}}, "optim.lr_image: a learning rate must be >= 0"),
        (
            {"trainer": {"precision": 16}},
            "trainer.precision: expected one of 32, '32', '16-mixed', 'bf16-mixed'",
        ),
    ],
)
def test_value_checks_name_the_key(data, message):
    from ordinalclip.config import RunConfig
    from ordinalclip.config.typed import ConfigError, from_dict

    with pytest.raises(ConfigError, match=message):
        from_dict(RunConfig, data)
