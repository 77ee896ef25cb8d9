"""Language priors: features already in the joint space kept as they are, zero-shot runs without a training step through
``train`` / ``sweep`` / ``eval`` (metrics checked against logits computed by hand with open_clip), and the
few-shot step budget."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from sklearn.metrics import mean_absolute_error

from ordinalclip import api
from ordinalclip.app import cli
from ordinalclip.config import FEW_SHOT_MIN_STEPS, RunConfig
from ordinalclip.config.typed import from_dict
from ordinalclip.engine.trainer import apply_step_budget
from ordinalclip.modeling import FeatureTower, ImageTowerConfig, build_image_tower, build_model
from ordinalclip.modeling.backbones.clip import load_clip
from tests.helpers import COUNTS, NUM_RANKS, features_data, make_features, tiny_clip_custom, tiny_config

# --------------------------------------------------------------------------------------- projection modes


@pytest.mark.parametrize(
    ("project", "input_dim", "embed_dim", "expected"),
    [
        ("auto", 8, 8, "identity"),
        ("auto", 6, 8, "linear"),
        (True, 8, 8, "linear"),
        (False, 8, 8, "identity"),
        ("identity", 8, 8, "identity"),
        ("linear", 8, 8, "linear"),
        ("identity_init", 8, 8, "identity_init"),
        ("auto", 8, None, "identity"),
    ],
)
def test_features_tower_projection_is_chosen_as_specified(project, input_dim, embed_dim, expected, caplog):
    torch.manual_seed(0)
    cfg = from_dict(ImageTowerConfig, {"kind": "features", "input_dim": input_dim, "project": project})
    with caplog.at_level(logging.INFO, logger="ordinalclip.modeling.build"):
        tower = build_image_tower(cfg, embed_dim, None)
    assert tower.projection == expected
    assert f"model.image.project: {project}" in caplog.text  # the log says what was asked and what was chosen
    x = torch.randn(5, input_dim)
    params = list(tower.parameters())
    if expected == "identity":
        assert params == [] and torch.equal(tower(x), x)
        assert "no projection" in caplog.text
    elif expected == "identity_init":
        assert len(params) == 1 and params[0].requires_grad
        torch.testing.assert_close(tower(x), x)  # starts as the identity, but learns
        assert torch.equal(params[0], torch.eye(input_dim))
    else:
        out_dim = embed_dim or input_dim
        assert params[0].shape == (out_dim, input_dim) and tower(x).shape == (5, out_dim)
        assert not torch.allclose(params[0], torch.eye(input_dim)) if out_dim == input_dim else True
        # kaiming normal, fan_out, linear gain: std = 1 / sqrt(out_dim)
        assert "random initialisation" in caplog.text


@pytest.mark.parametrize("project", ["identity", "identity_init", False])
def test_same_width_projection_on_other_widths_is_a_clear_error(project):
    cfg = ImageTowerConfig(kind="features", input_dim=6, project=project)
    with pytest.raises(ValueError, match=r"model.image.project.*6-d.*joint width is 8.*linear"):
        build_image_tower(cfg, 8, None)


def test_old_boolean_configs_rebuild_the_same_architecture():
    # a checkpoint written before the modes stored project: true (the old default) and a random projection
    old = FeatureTower(8, 8)  # the old constructor call of project: true
    cfg = from_dict(ImageTowerConfig, {"kind": "features", "input_dim": 8, "project": True})
    new = build_image_tower(cfg, 8, None)
    assert new.state_dict().keys() == old.state_dict().keys() == {"proj.weight"}
    assert FeatureTower(8, None).projection == "identity"  # the old project: false call
    with pytest.raises(Exception, match="model.image.project"):
        from_dict(RunConfig, {"model": {"image": {"project": "sideways"}}})


# ------------------------------------------------------------------------------------ zero-shot end to end

TEMPLATES = ["a photo of {}.", "{} level"]
NAMES = ["tiny", "small", "large", "huge"]
SCALE = 20.0


def _zero_shot_config(folder: Path) -> Path:
    features = make_features(folder / "features.npz", dim=8)
    model = {
        "arch": "zeroshot",
        "num_ranks": NUM_RANKS,
        "logit_scale": SCALE,
        "clip": {"name": None, "custom": tiny_clip_custom(embed_dim=8)},
        "image": {"kind": "features", "input_dim": 8},  # project: auto -> identity (8 = CLIP's width)
        "prompts": {"rank_names": NAMES},
        "zero_shot_templates": TEMPLATES,
    }
    cfg = tiny_config(
        folder,
        features_data(features),
        model=model,
        trainer={"progress_bar": False, "seed": 5},
    )
    path = folder / "zs.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _by_hand(features_file: Path, seed: int) -> dict[str, float]:
    """Test MAE of the zero-shot prototypes, computed with open_clip's own encode_text and sklearn."""
    import open_clip

    L.seed_everything(seed, verbose=False)  # fit seeds, then builds the (random, tiny) CLIP first
    bundle = load_clip(None, None, custom=tiny_clip_custom(embed_dim=8))
    clip = bundle.model.eval()
    tokenizer = open_clip.get_tokenizer("ViT-B-32")  # CLIP's BPE, context 77, like the tiny model's
    with torch.no_grad():
        per_template = [
            torch.nn.functional.normalize(clip.encode_text(tokenizer([t.format(n) for n in NAMES])), dim=-1)
            for t in TEMPLATES
        ]
    protos = torch.nn.functional.normalize(sum(per_template), dim=-1).numpy()
    data = np.load(features_file)
    test = data["split"] == "test"
    x, y = data["features"][test], data["labels"][test]
    logits = SCALE * (x / np.linalg.norm(x, axis=1, keepdims=True)) @ protos.T
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return {
        "mae_exp": mean_absolute_error(y, p @ np.arange(NUM_RANKS)),
        "mae_max": mean_absolute_error(y, p.argmax(1)),
        "protos": protos,
    }


@pytest.mark.slow
def test_zero_shot_on_identity_features_runs_through_train_sweep_and_eval(tmp_path: Path, capsys):
    path = _zero_shot_config(tmp_path)
    expected = _by_hand(tmp_path / "features.npz", seed=5)
    assert not any(p.requires_grad for p in build_model(api.resolve_config(path).model).parameters())

    assert cli.main(["train", "-c", str(path), "--run-dir", str(tmp_path / "train")]) == 0
    assert cli.main(["sweep", "-c", str(path), "--out", str(tmp_path / "sweep")]) == 0
    capsys.readouterr()
    assert cli.main(["eval", str(tmp_path / "train"), "--split", "test"]) == 0
    evaluated = json.loads(capsys.readouterr().out)["metrics"]

    for run_dir in (tmp_path / "train", tmp_path / "sweep" / "zs__seed5"):
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["training"]["steps"] == 0 and metrics["training"]["evaluate_only"]
        test = metrics["last"]["test"]
        assert test["mae_exp"] == pytest.approx(expected["mae_exp"], abs=1e-5)
        assert test["mae_max"] == pytest.approx(expected["mae_max"], abs=1e-6)
        np.testing.assert_allclose(np.load(run_dir / "prototypes.npy"), expected["protos"], atol=1e-5)
        preds = (run_dir / "predictions" / "test_last.csv").read_text().splitlines()
        assert len(preds) == 1 + COUNTS["test"] * NUM_RANKS
    assert evaluated["mae_exp"] == pytest.approx(expected["mae_exp"], abs=1e-5)
    assert evaluated["mae_max"] == pytest.approx(expected["mae_max"], abs=1e-6)


# ------------------------------------------------------------------------------------------- step budget


def _budget_config(
    shots: int | None, min_steps: int | None, max_epochs: int = 3, batch: int = 32
) -> RunConfig:
    return from_dict(
        RunConfig,
        {
            "data": {"batch_size": batch, "few_shot": {"shots": shots}},
            "trainer": {"max_epochs": max_epochs, "min_steps": min_steps, "check_val_every_n_epoch": 2},
        },
    )


def test_step_budget_raises_epochs_only_when_too_few_steps():
    cfg = _budget_config(shots=1, min_steps=None)  # few-shot: the default budget
    budget = apply_step_budget(cfg, num_train=11)  # 1 batch per epoch
    assert budget["min_steps"] == FEW_SHOT_MIN_STEPS and cfg.trainer.max_epochs == FEW_SHOT_MIN_STEPS
    assert cfg.trainer.check_val_every_n_epoch == 2 * FEW_SHOT_MIN_STEPS // 3  # as many validations as asked
    cfg = _budget_config(shots=4, min_steps=50)
    apply_step_budget(cfg, num_train=44)  # 2 batches per epoch
    assert cfg.trainer.max_epochs == 25 and apply_step_budget(cfg, 44)["planned_steps"] == 50
    cfg = _budget_config(shots=None, min_steps=None)  # full data: no default budget
    assert apply_step_budget(cfg, num_train=11)["min_steps"] == 0 and cfg.trainer.max_epochs == 3
    cfg = _budget_config(shots=None, min_steps=10)  # enough steps already: unchanged
    apply_step_budget(cfg, num_train=320)
    assert cfg.trainer.max_epochs == 3


def test_few_shot_run_trains_its_step_budget(tmp_path: Path):
    features = make_features(tmp_path / "f.npz")
    cfg = tiny_config(
        tmp_path,
        features_data(features, few_shot={"shots": 1}),
        model={"arch": "linear", "num_ranks": NUM_RANKS, "image": {"kind": "features", "input_dim": 8}},
        trainer={"max_epochs": 2, "min_steps": 7, "progress_bar": False},
    )
    run = api.fit(cfg, run_dir=tmp_path / "run")
    training = run.metrics["training"]
    # 1 shot x 4 ranks at batch 4: one step per epoch, so 7 epochs for 7 steps
    assert training == {
        "min_steps": 7,
        "steps_per_epoch": 1,
        "max_epochs": 7,
        "max_epochs_configured": 2,
        "planned_steps": 7,
        "steps": 7,
        "epochs": 7,
        "evaluate_only": False,
    }
    assert yaml.safe_load((run.run_dir / "config.yaml").read_text())["trainer"]["max_epochs"] == 7
    assert math.isfinite(run.metrics["last"]["test"]["mae_exp"])
