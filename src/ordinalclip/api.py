"""The Python API: everything the ``ordinalclip`` command does, as functions.

Example::

    from ordinalclip.api import fit, evaluate, load_checkpoint

    run = fit("configs/tiny.yaml", overrides=["trainer.max_epochs=2"])
    print(run.run_dir, run.metrics["best"]["test"]["mae_exp"])
    print(evaluate(run.best_checkpoint, split="test")["metrics"])
    model, cfg = load_checkpoint(run.last_checkpoint)   # nn.Module in eval mode + its RunConfig
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from ordinalclip import __version__
from ordinalclip.checkpoint import (
    CHECKPOINT_KEY,
    CheckpointError,
    build_model_or_config_error,
    changed_keys,
    check_state_matches,
    checkpoint_path,
    checkpoint_progress,
    load_checkpoint,
    newest_intact_checkpoint,
    read_checkpoint,
    record_quick_gelu,
    save_prototypes,
)
from ordinalclip.config import RunConfig, apply_recipe, load_run_config
from ordinalclip.config.typed import ConfigError, apply_overrides, from_dict, load_yaml, save_yaml, to_dict
from ordinalclip.data import DataError, check_files
from ordinalclip.engine.cache import FeatureCache, build_feature_cache
from ordinalclip.engine.callbacks import EvaluateOnly
from ordinalclip.engine.datamodule import OrdinalDataModule
from ordinalclip.engine.errors import NonFiniteLossError, TrainingInterrupted
from ordinalclip.engine.module import OrdinalModule
from ordinalclip.engine.optim import apply_freezing, has_trainable
from ordinalclip.engine.run import environment, make_run_dir, remove_stale_temps, run_dir_lock
from ordinalclip.engine.splits import ResolvedData, data_rank_names, resolve_data, save_splits
from ordinalclip.engine.towers import checkpoint_note
from ordinalclip.engine.trainer import apply_step_budget, build_eval_trainer, build_trainer
from ordinalclip.engine.transforms import tower_preprocess
from ordinalclip.fileio import write_json
from ordinalclip.metrics import mean_std, ordinal_metrics
from ordinalclip.modeling.build import prompt_names
from ordinalclip.runtime.predictions import write_eval_predictions

__all__ = [
    "CheckpointError",
    "check_state_matches",
    "FoldsResult",
    "Run",
    "evaluate",
    "fit",
    "fit_folds",
    "is_rank_zero",
    "load_checkpoint",
    "read_checkpoint",
    "resolve_config",
]

log = logging.getLogger(__name__)

ConfigLike = RunConfig | Mapping[str, Any] | str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
FOLD_BENCHMARKS = ("adience", "hci")
NUM_FOLDS = 5
RUN_DIR_ENV = "ORDINALCLIP_RUN_DIR"  # hands the run folder to the processes a DDP launcher starts


@dataclass
class Run:
    """A finished training run."""

    run_dir: Path
    config: RunConfig
    metrics: dict[str, Any]
    best_checkpoint: Path | None
    last_checkpoint: Path


@dataclass
class FoldsResult:
    """Runs of every fold and their summary (mean and std over folds, ``summary.json``)."""

    run_dir: Path
    runs: list[Run]
    summary: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------- configs


def resolve_config(config: ConfigLike, overrides: Iterable[str] = ()) -> RunConfig:
    """A :class:`RunConfig` from a RunConfig, a plain dict, or one or more YAML files, plus overrides."""
    overrides = list(overrides)
    if isinstance(config, RunConfig):
        cfg = from_dict(RunConfig, apply_overrides(to_dict(config), overrides))  # a copy: resolved below
    elif isinstance(config, Mapping):
        cfg = from_dict(RunConfig, apply_overrides(config, overrides))
    else:
        paths = [config] if isinstance(config, (str, os.PathLike)) else list(config)
        cfg = load_run_config(paths, overrides)
    return apply_recipe(cfg)  # the recipe of a new run (config.recipe)


def _abs(path: str | None) -> str | None:
    return None if path is None else os.path.abspath(os.path.expanduser(path))


def _self_contained(cfg: RunConfig) -> RunConfig:
    """The config with absolute paths and name files read in, so it works from any folder (run folder,
    checkpoint) without the files it was written against."""
    cfg = copy.deepcopy(cfg)
    d = cfg.data
    for key in ("root", "train", "val", "test", "splits_dir", "cache_dir", "images_root"):
        setattr(d, key, _abs(getattr(d, key)))
    if d.rank_names_file:
        d.rank_names = data_rank_names(d)
        d.rank_names_file = None
    p = cfg.model.prompts
    for key in ("base_rank_names", "rank_names"):
        if getattr(p, f"{key}_file"):
            try:
                setattr(p, key, prompt_names(p, cfg.model.num_ranks, key))
            except ValueError as err:
                raise ConfigError(str(err)) from None
            setattr(p, f"{key}_file", None)
    m = cfg.model
    if m.clip.pretrained and os.path.exists(os.path.expanduser(m.clip.pretrained)):
        m.clip.pretrained = _abs(m.clip.pretrained)
    m.image.weights = _abs(m.image.weights)
    for key in ("tokenizer", "hf_model"):
        value = getattr(m.clip, key)
        if value and os.path.exists(os.path.expanduser(value)):
            setattr(m.clip, key, _abs(value))
    if m.text.hf_model and os.path.exists(os.path.expanduser(m.text.hf_model)):
        m.text.hf_model = _abs(m.text.hf_model)
    return cfg


def _metric_keys() -> list[str]:
    return list(ordinal_metrics(torch.zeros(2, 2), torch.tensor([0, 1])))


def _check_monitor(cfg: RunConfig) -> None:
    valid = [f"val_{k}" for k in _metric_keys()]
    if cfg.trainer.monitor not in valid:
        import difflib

        close = difflib.get_close_matches(cfg.trainer.monitor, valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; valid: {', '.join(valid)}"
        raise ConfigError(f"trainer.monitor: unknown metric {cfg.trainer.monitor!r}{hint}")


# ------------------------------------------------------------------------------------------------- fitting


def is_rank_zero() -> bool:
    """True in a single-process run and in the first process of a distributed one (the one that writes
    files)."""
    return all(os.environ.get(v, "0") == "0" for v in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def _feature_cache(cfg: RunConfig, model: nn.Module, data: ResolvedData) -> FeatureCache | None:
    return build_feature_cache(cfg, model, bool(data.features))


def _evaluate_checkpoints(
    trainer: L.Trainer,
    module: OrdinalModule,
    dm: OrdinalDataModule,
    checkpoints: dict[str, Path | None],
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """Val and test metrics of each checkpoint; with ``out_dir`` also ``predictions/<split>_<tag>.csv`` and
    the prototypes of prototype models (``prototypes_<tag>.npy``; ``prototypes.npy`` = best, else last)."""
    out: dict[str, Any] = {}
    for tag, path in checkpoints.items():
        if path is None:
            out[tag] = None
            continue
        entry = checkpoint_progress(path)
        if out_dir is not None and is_rank_zero() and hasattr(module.model, "prototypes"):
            save_prototypes(path, module, out_dir, tag)
        for split in ("val", "test"):
            entry[split] = None
            if dm.has(split):
                module.eval_results.pop(split, None)
                run = trainer.validate if split == "val" else trainer.test
                logged = run(module, datamodule=dm, ckpt_path=str(path), weights_only=True, verbose=False)
                res = module.eval_results.get(split)
                if res is None and logged:  # spawned workers keep eval_results: use what Lightning returns
                    res = {
                        "metrics": {
                            k[len(split) + 1 :]: v for k, v in logged[0].items() if k.startswith(f"{split}_")
                        }
                    }
                res = res or {}
                if out_dir is not None and is_rank_zero() and "predictions" in res:
                    where = out_dir / "predictions" / f"{split}_{tag}.csv"
                    write_eval_predictions(where, res["predictions"], dm.eval_samples(split), module.ranks)
                entry[split] = res.get("metrics")
                if "groups" in res:
                    entry[f"{split}_groups"] = res["groups"]
        out[tag] = entry
    return out


@dataclass
class _Prepared:
    """A run ready to train: its resolved config, model, data, folder and (when resuming) checkpoint."""

    cfg: RunConfig
    model: nn.Module
    data: ResolvedData
    out: Path
    resume_from: Path | None
    cache: FeatureCache | None
    budget: dict[str, int] = field(default_factory=dict)  # the step budget (engine.trainer.apply_step_budget)


def fit(
    config: ConfigLike | None = None,
    overrides: Iterable[str] = (),
    run_dir: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
    callbacks: Sequence[L.Callback] = (),
) -> Run:
    """Train a model and evaluate its best and last checkpoints on val and test.

    The run goes through four steps: :func:`_prepare` (config, model, data, run folder), :func:`_train`
    (Lightning), :func:`_evaluate_checkpoints` (metrics, predictions, prototypes) and :func:`_write_metrics`.

    Args:
        config: a :class:`RunConfig`, a dict, or YAML file(s) merged in order (``None`` with ``resume``).
        overrides: ``key.path=value`` strings applied on top.
        run_dir: the run folder (default: a new ``<output_dir>/<name>-<timestamp>``).
        resume: a run folder to continue from its newest intact checkpoint (``checkpoints/last.ckpt``, or
            ``best.ckpt`` when that is newer or ``last.ckpt`` is missing or damaged; its config.yaml and
            splits are reused; ``overrides`` may change e.g. ``trainer.max_epochs``, not the model).
        callbacks: extra Lightning callbacks.

    Returns:
        :class:`Run` (``metrics`` as written to ``metrics.json``).

    Raises:
        ConfigError / DataError: bad config or data (before training starts).
        CheckpointError: ``resume`` without a usable checkpoint.
        RunDirInUse: another run holds the run folder.
        NonFiniteLossError: the loss became NaN/inf (the last good checkpoint is kept).
        NonFiniteOutputError: the model gave NaN/inf outputs (no metrics are written from them).
        TrainingInterrupted: SIGTERM/SIGINT; a checkpoint was written, continue with ``resume``.
    """
    with contextlib.ExitStack() as held:  # the run-folder lock, taken in _prepare, held until the run ends
        prep = _prepare(config, list(overrides), run_dir, resume, held)
        trainer, module, dm, best_path = _train(prep, callbacks)
        last_path = prep.out / "checkpoints" / "last.ckpt"
        training = {
            **prep.budget,
            "steps": int(trainer.global_step),
            "epochs": int(trainer.current_epoch),
            "evaluate_only": _evaluate_only(prep.cfg, prep.model, callbacks),
        }
        log.info(
            "trained %d optimizer steps in %d epochs%s",
            training["steps"],
            training["epochs"],
            " (evaluated as built)" if training["evaluate_only"] else "",
        )
        if last_path.is_file():
            log.info("checkpoint %s", checkpoint_note(last_path))
        results = _evaluate_checkpoints(trainer, module, dm, {"best": best_path, "last": last_path}, prep.out)
        metrics = _write_metrics(prep, dm, results, training)
        return Run(prep.out, prep.cfg, metrics, best_path, last_path)


def _claim(run_dir: Path, held: contextlib.ExitStack) -> None:
    """Lock the run folder for this run until ``held`` closes (the first process of a distributed run) and
    remove the temporaries an interrupted run left there."""
    if is_rank_zero():
        held.enter_context(run_dir_lock(run_dir))
        remove_stale_temps(run_dir)


def _resumed_config(
    resume: str | os.PathLike[str], overrides: list[str], held: contextlib.ExitStack
) -> tuple[RunConfig, Path, Path]:
    """``(config, run folder, checkpoint to continue from)`` of a run to continue (the folder locked in
    ``held``); the model config must be unchanged."""
    out = Path(resume)
    if not (out / "config.yaml").is_file():
        raise CheckpointError(f"--resume: {out} is not a run folder (no config.yaml)")
    _claim(out, held)
    last_ckpt = newest_intact_checkpoint(out)
    cfg = _self_contained(from_dict(RunConfig, apply_overrides(load_yaml(out / "config.yaml"), overrides)))
    stored = read_checkpoint(last_ckpt)[CHECKPOINT_KEY]["config"].get("model")
    changed = changed_keys(stored, to_dict(cfg.model), "model")
    if changed:
        raise CheckpointError(
            f"--resume: the model config differs from the one {last_ckpt} was trained with "
            f"(changed: {', '.join(changed[:5])})"
        )
    return cfg, out, last_ckpt


def _new_run_dir(cfg: RunConfig, run_dir: str | os.PathLike[str] | None, held: contextlib.ExitStack) -> Path:
    """The run folder of a new run, created and locked in ``held``."""
    inherited = os.environ.get(RUN_DIR_ENV) if not is_rank_zero() else None
    if run_dir is None and not inherited:
        out = make_run_dir(cfg.output_dir, cfg.name)
        _claim(out, held)
        return out
    out = Path(run_dir or inherited)  # type: ignore[arg-type]
    out.mkdir(parents=True, exist_ok=True)
    _claim(out, held)  # before the check: a run still writing its first checkpoint holds the folder
    if (out / "checkpoints" / "last.ckpt").is_file() and is_rank_zero():
        raise ConfigError(f"{out} already holds a run; continue it with resume={str(out)!r}")
    return out


def _prepare(
    config: ConfigLike | None,
    overrides: list[str],
    run_dir: str | os.PathLike[str] | None,
    resume: str | os.PathLike[str] | None,
    held: contextlib.ExitStack,
) -> _Prepared:
    """Resolve the config, build the model, read the data, then create (and lock, in ``held``) the run folder
    and write what it holds before training (splits, config.yaml, env.json). A bad config or data set fails
    before the folder exists."""
    out: Path | None = None
    last_ckpt: Path | None = None
    if resume is not None:
        if config is not None or run_dir is not None:
            raise ConfigError("resume continues a run folder with its own config: pass no config or run_dir")
        cfg, out, last_ckpt = _resumed_config(resume, overrides, held)
    elif config is None:
        raise ConfigError("fit needs a config (or resume=RUN_DIR)")
    else:
        cfg = _self_contained(resolve_config(config, overrides))
    _check_monitor(cfg)

    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    model = build_model_or_config_error(cfg.model)
    record_quick_gelu(cfg.model, model)
    apply_freezing(model, cfg.optim)
    data_cfg = cfg
    if out is not None and (out / "splits" / "train.txt").is_file():
        data_cfg = copy.deepcopy(cfg)
        data_cfg.data.splits_dir = str(out / "splits")
    data = resolve_data(data_cfg)
    if cfg.data.format in ("benchmark", "demo"):
        # the adapter's rank names/offset, written down so that rank_space(cfg) works from the config alone
        cfg.data.rank_names = list(data.ranks.names) if data.ranks.names else None
        cfg.data.rank_offset = data.ranks.offset

    if out is None:
        out = _new_run_dir(cfg, run_dir, held)
    cache = _feature_cache(cfg, model, data)
    budget = apply_step_budget(cfg, len(data.splits["train"] or [])) if has_trainable(model) else {}
    if is_rank_zero():
        if resume is None:
            save_splits(data, out / "splits")
        save_yaml(cfg, out / "config.yaml")
        write_json(environment(), out / "env.json")
    for note in data.notes:
        log.info(note)
    return _Prepared(cfg, model, data, out, last_ckpt, cache, budget)


def _train(
    prep: _Prepared, callbacks: Sequence[L.Callback]
) -> tuple[L.Trainer, OrdinalModule, OrdinalDataModule, Path | None]:
    """Run Lightning's fit; returns ``(trainer, module, datamodule, best checkpoint or None)``."""
    cfg, out = prep.cfg, prep.out
    dm = OrdinalDataModule(cfg, prep.data, tower_preprocess(prep.model), prep.cache)
    module = OrdinalModule(prep.model, cfg, prep.data.ranks, features_input=prep.cache is not None)
    has_val = prep.data.splits["val"] is not None
    if not has_val:
        log.warning("no validation split: only last.ckpt is kept and best = last is not reported")
    if prep.data.splits["test"] is None:
        log.warning("no test split: metrics.json reports val only (val is never used as test)")
    last_path = out / "checkpoints" / "last.ckpt"
    if not any(isinstance(c, EvaluateOnly) for c in callbacks) and _evaluate_only(cfg, prep.model, callbacks):
        # zero-shot CLIP, and any model with nothing to train, is evaluated as built: no training step
        log.info(
            "%s: evaluating the model as built, without a training step",
            "model.arch: zeroshot"
            if cfg.model.arch == "zeroshot"
            else "nothing to train (every parameter is frozen)",
        )
        callbacks = [*callbacks, EvaluateOnly(last_path)]
    bundle = build_trainer(cfg, out, has_val=has_val, callbacks=callbacks)
    trainer = bundle.trainer
    # A DDP launcher re-runs this program for the other ranks while trainer.fit runs: they find the folder
    # here.
    previous_env = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(out)
    try:
        trainer.fit(
            module,
            datamodule=dm,
            ckpt_path=str(prep.resume_from) if prep.resume_from else None,
            weights_only=True,
        )
    except NonFiniteLossError as err:
        kept = (
            f"the last good checkpoint is kept: {last_path}"
            if last_path.is_file()
            else "no checkpoint was written before it"
        )
        raise _nan_error(err, kept) from None
    except TrainingInterrupted as err:
        err.run_dir = out  # type: ignore[attr-defined]
        raise
    except (Exception, SystemExit) as err:
        # Lightning's own stop at an epoch end: SIGTERMException is a SystemExit, not an Exception
        if type(err).__name__ == "SIGTERMException":
            interrupted = TrainingInterrupted(
                "SIGTERM", str(last_path) if last_path.is_file() else None, trainer.global_step
            )
            interrupted.run_dir = out  # type: ignore[attr-defined]
            raise interrupted from None
        raise
    finally:
        if bundle.interrupt is not None:
            bundle.interrupt.restore()
        if previous_env is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = previous_env
    best = bundle.checkpoint.best_model_path if bundle.checkpoint is not None else ""
    return trainer, module, dm, (Path(best) if best and has_val else None)


def _evaluate_only(cfg: RunConfig, model: nn.Module, callbacks: Sequence[L.Callback]) -> bool:
    """True when the run evaluates the model as built: zero-shot, nothing trainable, or an EvaluateOnly
    callback."""
    return (
        cfg.model.arch == "zeroshot"
        or not has_trainable(model)
        or any(isinstance(c, EvaluateOnly) for c in callbacks)
    )


def _write_metrics(
    prep: _Prepared, dm: OrdinalDataModule, results: dict[str, Any], training: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``metrics.json`` of a finished run (written by the first process only); returns its content."""
    cfg, cache = prep.cfg, prep.cache
    has_val = prep.data.splits["val"] is not None
    metrics: dict[str, Any] = {
        "monitor": cfg.trainer.monitor if has_val else None,
        "mode": cfg.trainer.monitor_mode,
        **results,
        "training": training,
        "data": {**prep.data.sizes(), "skipped_images": len(dm.skipped)},
        "skipped_images": [
            {"path": s.path, "source": s.source, "reason": why} for s, why in dm.skipped[:100]
        ],
        "feature_cache": [str(p) for p in dict.fromkeys(cache.paths)] if cache is not None else None,
        "version": __version__,
    }
    if is_rank_zero():
        write_json(metrics, prep.out / "metrics.json")
    return metrics


def _nan_error(err: NonFiniteLossError, kept: str) -> NonFiniteLossError:
    new = NonFiniteLossError(err.value, err.step, err.epoch, err.batch)
    new.args = (f"{err}; {kept}",)
    return new


def summarize_folds(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and (population) standard deviation over folds of every val/test metric of best and last."""
    out: dict[str, Any] = {}
    for tag in ("best", "last"):
        for split in ("val", "test"):
            per_fold = [m[tag][split] for m in metrics if m.get(tag) and m[tag].get(split)]
            if not per_fold:
                continue
            keys = [k for k in per_fold[0] if all(f.get(k) is not None for f in per_fold)]
            out.setdefault(tag, {})[split] = {
                k: dict(zip(("mean", "std"), mean_std([f[k] for f in per_fold])), n=len(per_fold))
                for k in keys
            }
    return out


def fit_folds(
    config: ConfigLike,
    overrides: Iterable[str] = (),
    folds: Sequence[int] | None = None,
    callbacks: Sequence[L.Callback] = (),
) -> FoldsResult:
    """Train every fold of a fold benchmark (adience, hci) and report mean ± std over folds.

    Runs go to ``<output_dir>/<name>-folds-<timestamp>/fold<k>/``; ``summary.json`` there holds the summary.
    """
    cfg = _self_contained(resolve_config(config, overrides))
    if cfg.data.format != "benchmark" or cfg.data.benchmark not in FOLD_BENCHMARKS:
        raise ConfigError(
            f"--folds needs data.format: benchmark with a fold benchmark ({', '.join(FOLD_BENCHMARKS)}"
            f"), got format {cfg.data.format!r}, benchmark {cfg.data.benchmark!r}"
        )
    folds = list(range(NUM_FOLDS)) if folds is None else list(folds)
    parent = make_run_dir(cfg.output_dir, f"{cfg.name}-folds")
    runs = []
    for k in folds:
        fold_cfg = copy.deepcopy(cfg)
        fold_cfg.data.fold = k
        fold_cfg.name = f"{cfg.name}-fold{k}"
        runs.append(fit(fold_cfg, run_dir=parent / f"fold{k}", callbacks=callbacks))
    summary = {
        "folds": folds,
        "runs": [str(r.run_dir) for r in runs],
        **summarize_folds([r.metrics for r in runs]),
    }
    write_json(summary, parent / "summary.json")
    return FoldsResult(parent, runs, summary)


# ---------------------------------------------------------------------------------------------- evaluation


def evaluate(
    checkpoint: str | os.PathLike[str], split: str = "test", overrides: Iterable[str] = ()
) -> dict[str, Any]:
    """Metrics of a checkpoint on one split of the data its config describes.

    When the checkpoint sits in a run folder, the split saved there (``splits/<split>.txt``) is used, unless
    ``overrides`` change ``data.*`` (e.g. ``data.test=other_list.txt``). Returns ``{"split", "checkpoint",
    "num_samples", "metrics"}`` (+ ``"groups"`` with per-group metrics when samples carry groups).
    """
    if split not in ("val", "test", "train"):
        raise ConfigError(f"split must be 'val' or 'test' (or 'train'), got {split!r}")
    path = checkpoint_path(checkpoint)
    model, cfg = load_checkpoint(path)
    overrides = list(overrides)
    if overrides:
        cfg = from_dict(RunConfig, apply_overrides(to_dict(cfg), overrides))
    saved = path.resolve().parent.parent / "splits"
    if not any(o.strip().startswith("data.") for o in overrides) and (saved / f"{split}.txt").is_file():
        cfg.data.splits_dir = str(saved)
    data = resolve_data(cfg, check=False)
    samples = data.splits.get(split)
    if samples is None:
        raise DataError(f"no {split} split in the config of {path}: pass e.g. --set data.{split}=FILE")
    if not data.features:
        check_files(samples)
    stage = "val" if split == "val" else "test"  # training samples go through the test loop
    data.splits = {
        "train": None,
        "val": samples if stage == "val" else None,
        "test": samples if stage == "test" else None,
    }
    dm = OrdinalDataModule(cfg, data, tower_preprocess(model))
    module = OrdinalModule(model, cfg, data.ranks)
    trainer = build_eval_trainer(cfg)
    run = trainer.validate if stage == "val" else trainer.test
    run(module, datamodule=dm, verbose=False)
    result = {k: v for k, v in module.eval_results.get(stage, {}).items() if k != "predictions"}
    return {"split": split, "checkpoint": str(path), **result}
