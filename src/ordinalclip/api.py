"""The Python API: everything the ``ordinalclip`` command does, as functions.

Example::

    from ordinalclip.api import fit, evaluate, load_checkpoint

    run = fit("configs/tiny.yaml", overrides=["trainer.max_epochs=2"])
    print(run.run_dir, run.metrics["best"]["test"]["mae_exp"])
    print(evaluate(run.best_checkpoint, split="test")["metrics"])
    model, cfg = load_checkpoint(run.last_checkpoint)   # nn.Module in eval mode + its RunConfig
"""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from ordinalclip import __version__
from ordinalclip.config import RunConfig, load_run_config
from ordinalclip.configtools import ConfigError, apply_overrides, from_dict, load_yaml, save_yaml, to_dict
from ordinalclip.data import DataError, check_files
from ordinalclip.engine.cache import FeatureCache
from ordinalclip.engine.callbacks import EvaluateOnly, NonFiniteLossError, TrainingInterrupted
from ordinalclip.engine.data import OrdinalDataModule, ResolvedData, resolve_data, save_splits
from ordinalclip.engine.module import CHECKPOINT_FORMAT, CHECKPOINT_KEY, OrdinalModule, complete_state
from ordinalclip.engine.optim import apply_freezing, image_tower_frozen
from ordinalclip.engine.run import environment, make_run_dir, write_json
from ordinalclip.engine.trainer import build_eval_trainer, build_trainer
from ordinalclip.metrics import ordinal_metrics
from ordinalclip.modeling import build_model
from ordinalclip.modeling.build import check_rank_name_count, read_rank_names
from ordinalclip.modeling.config import ModelConfig

__all__ = [
    "CheckpointError",
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


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, not ours, or from an incompatible config or version."""


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
        return from_dict(RunConfig, apply_overrides(to_dict(config), overrides)) if overrides else config
    if isinstance(config, Mapping):
        return from_dict(RunConfig, apply_overrides(config, overrides))
    paths = [config] if isinstance(config, (str, os.PathLike)) else list(config)
    return load_run_config(paths, overrides)


def _abs(path: str | None) -> str | None:
    return None if path is None else os.path.abspath(os.path.expanduser(path))


def _uses_clip(model: ModelConfig) -> bool:
    return model.image.kind == "clip" or (model.arch == "ordinalclip" and model.text.kind == "clip")


def _self_contained(cfg: RunConfig) -> RunConfig:
    """The config with absolute paths and name files read in, so it works from any folder (run folder,
    checkpoint) without the files it was written against."""
    cfg = copy.deepcopy(cfg)
    d = cfg.data
    for key in ("root", "train", "val", "test", "splits_dir", "cache_dir", "images_root"):
        setattr(d, key, _abs(getattr(d, key)))
    if d.rank_names_file:
        d.rank_names = read_rank_names(d.rank_names_file)
        d.rank_names_file = None
    p = cfg.model.prompts
    if p.rank_names_file:
        p.rank_names = read_rank_names(p.rank_names_file)
        if cfg.model.arch == "ordinalclip":
            try:
                check_rank_name_count(p, cfg.model.num_ranks, p.rank_names, p.rank_names_file)
            except ValueError as err:
                raise ConfigError(str(err)) from None
        p.rank_names_file = None
    m = cfg.model
    if m.clip.pretrained and os.path.exists(os.path.expanduser(m.clip.pretrained)):
        m.clip.pretrained = _abs(m.clip.pretrained)
    m.image.weights = _abs(m.image.weights)
    if m.text.hf_model and os.path.exists(os.path.expanduser(m.text.hf_model)):
        m.text.hf_model = _abs(m.text.hf_model)
    return cfg


def architecture_only(model: ModelConfig) -> ModelConfig:
    """The model config without its weight sources (a checkpoint brings the weights).

    An OpenAI CLIP file without an architecture name (``clip.name: null``) is kept: the architecture is read
    from it.
    """
    model = copy.deepcopy(model)
    if model.clip.name is not None or model.clip.custom is not None:
        model.clip.pretrained = None
    model.image.weights = None
    model.image.pretrained = False
    return model


def _record_quick_gelu(cfg: RunConfig, model: nn.Module) -> None:
    # open_clip picks QuickGELU from the pretrained tag; write the choice down so that the architecture can be
    # rebuilt without the tag (architecture_only) and still compute the same function.
    if not _uses_clip(cfg.model) or cfg.model.clip.quick_gelu is not None:
        return
    from open_clip.transformer import QuickGELU

    cfg.model.clip.quick_gelu = any(isinstance(m, QuickGELU) for m in model.modules())


def _metric_keys() -> list[str]:
    return list(ordinal_metrics(torch.zeros(2, 2), torch.tensor([0, 1])))


def _check_monitor(cfg: RunConfig) -> None:
    valid = [f"val_{k}" for k in _metric_keys()]
    if cfg.trainer.monitor not in valid:
        import difflib

        close = difflib.get_close_matches(cfg.trainer.monitor, valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; valid: {', '.join(valid)}"
        raise ConfigError(f"trainer.monitor: unknown metric {cfg.trainer.monitor!r}{hint}")


def _build_model(cfg: ModelConfig) -> nn.Module:
    try:
        return build_model(cfg)
    except (ValueError, FileNotFoundError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"model: {err}") from err


# --------------------------------------------------------------------------------------------- checkpoints


def _checkpoint_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if p.is_dir():  # a run folder: its best checkpoint, else its last
        for name in ("best.ckpt", "last.ckpt"):
            if (p / "checkpoints" / name).is_file():
                return p / "checkpoints" / name
        raise CheckpointError(f"no checkpoints/best.ckpt or checkpoints/last.ckpt in {p}")
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    return p


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw checkpoint dict (read with ``weights_only=True``: no code runs); a run folder means its best
    checkpoint. Raises :class:`CheckpointError` for anything that is not an ordinalclip training checkpoint."""
    p = _checkpoint_path(path)
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refusals and damaged archives come in many types
        text = str(err)
        if "Unsupported global" in text:  # torch's advice (weights_only=False) is exactly what we must not do
            line = next(x for x in text.splitlines() if "Unsupported global" in x).strip()
            text = f"{line}; ordinalclip reads checkpoints with weights_only=True so that a file cannot run code"
        raise CheckpointError(f"{p}: not a readable checkpoint ({type(err).__name__}: {text})") from None
    meta = ckpt.get(CHECKPOINT_KEY) if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{p} is not an ordinalclip training checkpoint (no '{CHECKPOINT_KEY}' entry "
                              "with a config); exports are read by ordinalclip.predict")
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{p}: checkpoint format {meta.get('format')} (written by ordinalclip "
                              f"{meta.get('version')}); this version ({__version__}) reads format {CHECKPOINT_FORMAT}")
    return ckpt


def _config_of(ckpt: dict[str, Any], path: Any) -> RunConfig:
    meta = ckpt[CHECKPOINT_KEY]
    try:
        return from_dict(RunConfig, meta["config"])
    except ConfigError as err:
        raise CheckpointError(f"{path}: written by ordinalclip {meta.get('version')}, whose config this version "
                              f"({__version__}) cannot read: {err}") from None


def _model_state(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}


def check_state_matches(model: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """Raise :class:`CheckpointError` naming missing, unexpected and reshaped tensors (not a load trace)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    reshaped = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or reshaped:
        parts = [f"{len(v)} {what} (e.g. {v[:2]})" for what, v in
                 (("missing", missing), ("unexpected", unexpected), ("with another shape", reshaped)) if v]
        raise CheckpointError(f"{where}: weights do not fit the model its config describes: {'; '.join(parts)}")


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu",
                    allow_torchscript: bool | None = None) -> tuple[nn.Module, RunConfig]:
    """Rebuild the model of a training checkpoint from the config stored in it and load its weights.

    No YAML and no pretrained-weight files are needed (except an OpenAI CLIP file given without an
    architecture name). The file is read with ``weights_only=True``. Returns ``(model in eval mode, config)``;
    the model maps (B, 3, H, W) images (or (B, F) features) to (B, C) logits.

    ``allow_torchscript`` (default: the environment variable ``ORDINALCLIP_ALLOW_TORCHSCRIPT=1``) permits opening
    an OpenAI TorchScript archive the stored config points at; the checkpoint's own config cannot grant it.
    """
    p = _checkpoint_path(path)
    ckpt = read_checkpoint(p)
    cfg = _config_of(ckpt, p)
    version = ckpt[CHECKPOINT_KEY].get("version")
    omitted = ckpt[CHECKPOINT_KEY].get("omitted") or []
    # towers left out of the checkpoint come from their pretrained source again
    model_cfg = copy.deepcopy(cfg.model) if omitted else architecture_only(cfg.model)
    # consent to open TorchScript archives is the caller's to give, never the checkpoint's own config
    if allow_torchscript is None:
        allow_torchscript = os.environ.get("ORDINALCLIP_ALLOW_TORCHSCRIPT", "") == "1"
    model_cfg.clip.allow_torchscript = allow_torchscript
    model = _build_model(model_cfg)
    if omitted:
        current = {f"model.{k}": v for k, v in model.state_dict().items()}
        ckpt = {**ckpt, "state_dict": complete_state(ckpt, current)}
    state = _model_state(ckpt)
    check_state_matches(model, state, f"{p} (written by ordinalclip {version}, this is {__version__})")
    model.load_state_dict(state)
    return model.to(map_location).eval(), cfg


def _changed_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [k for key in sorted(set(a) | set(b))
                for k in _changed_keys(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)]
    return [] if a == b else [prefix]


# ------------------------------------------------------------------------------------------------- fitting


def is_rank_zero() -> bool:
    """True in a single-process run and in the first process of a distributed one (the one that writes files)."""
    return all(os.environ.get(v, "0") == "0" for v in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def _feature_cache(cfg: RunConfig, model: nn.Module, data: ResolvedData) -> FeatureCache | None:
    if not cfg.data.feature_cache or data.features or not image_tower_frozen(model):
        return None
    folder = cfg.data.cache_dir or os.path.join(cfg.output_dir, ".cache", "features")
    tower_cfg = {"image": to_dict(cfg.model.image),
                 "clip": to_dict(cfg.model.clip) if cfg.model.image.kind == "clip" else None}
    return FeatureCache(model.image_tower, tower_cfg, folder, batch_size=cfg.data.eval_batch_size or
                        cfg.data.batch_size, num_workers=cfg.data.num_workers)


def _checkpoint_meta(path: Path) -> dict[str, Any]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return {"checkpoint": str(path), "epoch": int(ckpt.get("epoch", -1)), "step": int(ckpt.get("global_step", -1))}


def _write_predictions(res: dict[str, Any], samples: Sequence[Any], path: Path) -> None:
    """Per-example predictions of one evaluation as CSV (path, label, pred_exp, pred_max; ranks, not label units)."""
    pred = res["predictions"]
    rows = ["path,label,pred_exp,pred_max"]
    for i, y, e, m in zip(pred["index"].tolist(), pred["label"].tolist(), pred["pred_exp"].tolist(),
                          pred["pred_max"].tolist()):
        name = samples[i].path if i < len(samples) else str(i)
        rows.append(f"{_csv_field(name)},{y},{e:.6f},{m}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(rows) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def _evaluate_checkpoints(trainer: L.Trainer, module: OrdinalModule, dm: OrdinalDataModule,
                          checkpoints: dict[str, Path | None], out_dir: Path | None = None) -> dict[str, Any]:
    """Val and test metrics of each checkpoint; with ``out_dir`` also ``predictions/<split>_<tag>.csv`` and the
    prototypes of prototype models (``prototypes_<tag>.npy``; ``prototypes.npy`` = best, else last)."""
    out: dict[str, Any] = {}
    for tag, path in checkpoints.items():
        if path is None:
            out[tag] = None
            continue
        entry = _checkpoint_meta(path)
        if out_dir is not None and is_rank_zero() and hasattr(module.model, "prototypes"):
            import numpy as np

            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            module.load_state_dict(complete_state(ckpt, module.state_dict()))
            with torch.no_grad():
                protos = module.model.prototypes().detach().float().cpu().numpy()
            np.save(out_dir / f"prototypes_{tag}.npy", protos)
            if tag == "best" or not (out_dir / "prototypes.npy").exists():
                np.save(out_dir / "prototypes.npy", protos)
        for split in ("val", "test"):
            entry[split] = None
            if dm.has(split):
                module.eval_results.pop(split, None)
                run = trainer.validate if split == "val" else trainer.test
                logged = run(module, datamodule=dm, ckpt_path=str(path), weights_only=True, verbose=False)
                res = module.eval_results.get(split)
                if res is None and logged:  # spawned workers keep eval_results: use what Lightning returns
                    res = {"metrics": {k[len(split) + 1:]: v for k, v in logged[0].items()
                                       if k.startswith(f"{split}_")}}
                res = res or {}
                if out_dir is not None and is_rank_zero() and "predictions" in res:
                    _write_predictions(res, dm.eval_samples(split), out_dir / "predictions" / f"{split}_{tag}.csv")
                entry[split] = res.get("metrics")
                if "groups" in res:
                    entry[f"{split}_groups"] = res["groups"]
        out[tag] = entry
    return out


def fit(config: ConfigLike | None = None, overrides: Iterable[str] = (), run_dir: str | os.PathLike[str] | None
        = None, resume: str | os.PathLike[str] | None = None, callbacks: Sequence[L.Callback] = ()) -> Run:
    """Train a model and evaluate its best and last checkpoints on val and test.

    Args:
        config: a :class:`RunConfig`, a dict, or YAML file(s) merged in order (``None`` with ``resume``).
        overrides: ``key.path=value`` strings applied on top.
        run_dir: the run folder (default: a new ``<output_dir>/<name>-<timestamp>``).
        resume: a run folder to continue from its ``checkpoints/last.ckpt`` (its config.yaml and splits are
            reused; ``overrides`` may change e.g. ``trainer.max_epochs``, not the model).
        callbacks: extra Lightning callbacks.

    Returns:
        :class:`Run` (``metrics`` as written to ``metrics.json``).

    Raises:
        ConfigError / DataError: bad config or data (before training starts).
        CheckpointError: ``resume`` without a usable checkpoint.
        NonFiniteLossError: the loss became NaN/inf (the last good checkpoint is kept).
        TrainingInterrupted: SIGTERM/SIGINT; a checkpoint was written, continue with ``resume``.
    """
    overrides = list(overrides)
    last_ckpt: Path | None = None
    out: Path | None = None
    if resume is not None:
        if config is not None or run_dir is not None:
            raise ConfigError("resume continues a run folder with its own config: pass no config or run_dir")
        out = Path(resume)
        if not (out / "config.yaml").is_file():
            raise CheckpointError(f"--resume: {out} is not a run folder (no config.yaml)")
        last_ckpt = out / "checkpoints" / "last.ckpt"
        if not last_ckpt.is_file():
            raise CheckpointError(f"--resume: no checkpoints/last.ckpt in {out}: nothing to continue from")
        cfg = _self_contained(from_dict(RunConfig, apply_overrides(load_yaml(out / "config.yaml"), overrides)))
        ckpt = read_checkpoint(last_ckpt)
        changed = _changed_keys(ckpt[CHECKPOINT_KEY]["config"].get("model"), to_dict(cfg.model), "model")
        if changed:
            raise CheckpointError(f"--resume: the model config differs from the one {last_ckpt} was trained with "
                                  f"(changed: {', '.join(changed[:5])})")
        del ckpt
    elif config is None:
        raise ConfigError("fit needs a config (or resume=RUN_DIR)")
    else:
        cfg = _self_contained(resolve_config(config, overrides))
    _check_monitor(cfg)

    # Model and data first: a bad config or data set fails before a run folder is created.
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    model = _build_model(cfg.model)
    _record_quick_gelu(cfg, model)
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
        inherited = os.environ.get(RUN_DIR_ENV) if not is_rank_zero() else None
        if run_dir is not None or inherited:
            out = Path(run_dir or inherited)  # type: ignore[arg-type]
            if (out / "checkpoints" / "last.ckpt").is_file() and is_rank_zero():
                raise ConfigError(f"{out} already holds a run; continue it with resume={str(out)!r}")
            out.mkdir(parents=True, exist_ok=True)
        else:
            out = make_run_dir(cfg.output_dir, cfg.name)
    # A DDP launcher re-runs this program for the other ranks while trainer.fit runs: they find the folder here.
    previous_env = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(out)
    cache = _feature_cache(cfg, model, data)
    if is_rank_zero():
        if resume is None:
            save_splits(data, out / "splits")
        save_yaml(cfg, out / "config.yaml")
        write_json(environment(), out / "env.json")
    for note in data.notes:
        log.info(note)

    dm = OrdinalDataModule(cfg, model, data, cache)
    module = OrdinalModule(model, cfg, data.ranks, features_input=cache is not None)
    has_val = data.splits["val"] is not None
    if not has_val:
        log.warning("no validation split: only last.ckpt is kept and best = last is not reported")
    if data.splits["test"] is None:
        log.warning("no test split: metrics.json reports val only (val is never used as test)")
    if cfg.model.arch == "zeroshot" and not any(isinstance(c, EvaluateOnly) for c in callbacks):
        # zero-shot CLIP is evaluated as built: no training step
        callbacks = [*callbacks, EvaluateOnly(out / "checkpoints" / "last.ckpt")]
    bundle = build_trainer(cfg, out, has_val=has_val, callbacks=callbacks)
    trainer = bundle.trainer
    last_path = out / "checkpoints" / "last.ckpt"
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(last_ckpt) if last_ckpt else None, weights_only=True)
    except NonFiniteLossError as err:
        kept = f"the last good checkpoint is kept: {last_path}" if last_path.is_file() else \
            "no checkpoint was written before it"
        raise _nan_error(err, kept) from None
    except TrainingInterrupted as err:
        err.run_dir = out  # type: ignore[attr-defined]
        raise
    except Exception as err:
        if type(err).__name__ == "SIGTERMException":  # Lightning's own stop at an epoch end
            interrupted = TrainingInterrupted("SIGTERM", str(last_path) if last_path.is_file() else None,
                                              trainer.global_step)
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
    best_path = Path(best) if best and has_val else None
    results = _evaluate_checkpoints(trainer, module, dm, {"best": best_path, "last": last_path}, out)
    metrics: dict[str, Any] = {
        "monitor": cfg.trainer.monitor if has_val else None,
        "mode": cfg.trainer.monitor_mode,
        **results,
        "data": {**data.sizes(), "skipped_images": len(dm.skipped)},
        "skipped_images": [{"path": s.path, "source": s.source, "reason": why} for s, why in dm.skipped[:100]],
        "feature_cache": [str(p) for p in dict.fromkeys(cache.paths)] if cache is not None else None,
        "version": __version__,
    }
    if is_rank_zero():
        write_json(metrics, out / "metrics.json")
    return Run(out, cfg, metrics, best_path, last_path)


def _nan_error(err: NonFiniteLossError, kept: str) -> NonFiniteLossError:
    new = NonFiniteLossError(err.value, err.step, err.epoch, err.batch)
    new.args = (f"{err}; {kept}",)
    return new


def _mean_std(values: list[float]) -> dict[str, float | int]:
    n = len(values)
    mean = sum(values) / n
    return {"mean": mean, "std": math.sqrt(sum((v - mean) ** 2 for v in values) / n), "n": n}


def summarize_folds(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and (population) standard deviation over folds of every val/test metric of best and last."""
    out: dict[str, Any] = {}
    for tag in ("best", "last"):
        for split in ("val", "test"):
            per_fold = [m[tag][split] for m in metrics if m.get(tag) and m[tag].get(split)]
            if not per_fold:
                continue
            keys = [k for k in per_fold[0] if all(f.get(k) is not None for f in per_fold)]
            out.setdefault(tag, {})[split] = {k: _mean_std([f[k] for f in per_fold]) for k in keys}
    return out


def fit_folds(config: ConfigLike, overrides: Iterable[str] = (), folds: Sequence[int] | None = None,
              callbacks: Sequence[L.Callback] = ()) -> FoldsResult:
    """Train every fold of a fold benchmark (adience, hci) and report mean ± std over folds.

    Runs go to ``<output_dir>/<name>-folds-<timestamp>/fold<k>/``; ``summary.json`` there holds the summary.
    """
    cfg = _self_contained(resolve_config(config, overrides))
    if cfg.data.format != "benchmark" or cfg.data.benchmark not in FOLD_BENCHMARKS:
        raise ConfigError(f"--folds needs data.format: benchmark with a fold benchmark ({', '.join(FOLD_BENCHMARKS)}"
                          f"), got format {cfg.data.format!r}, benchmark {cfg.data.benchmark!r}")
    folds = list(range(NUM_FOLDS)) if folds is None else list(folds)
    parent = make_run_dir(cfg.output_dir, f"{cfg.name}-folds")
    runs = []
    for k in folds:
        fold_cfg = copy.deepcopy(cfg)
        fold_cfg.data.fold = k
        fold_cfg.name = f"{cfg.name}-fold{k}"
        runs.append(fit(fold_cfg, run_dir=parent / f"fold{k}", callbacks=callbacks))
    summary = {"folds": folds, "runs": [str(r.run_dir) for r in runs], **summarize_folds([r.metrics for r in runs])}
    write_json(summary, parent / "summary.json")
    return FoldsResult(parent, runs, summary)


# ---------------------------------------------------------------------------------------------- evaluation


def evaluate(checkpoint: str | os.PathLike[str], split: str = "test", overrides: Iterable[str] = ()
             ) -> dict[str, Any]:
    """Metrics of a checkpoint on one split of the data its config describes.

    When the checkpoint sits in a run folder, the split saved there (``splits/<split>.txt``) is used, unless
    ``overrides`` change ``data.*`` (e.g. ``data.test=other_list.txt``). Returns ``{"split", "checkpoint",
    "num_samples", "metrics"}`` (+ ``"groups"`` with per-group metrics when samples carry groups).
    """
    if split not in ("val", "test", "train"):
        raise ConfigError(f"split must be 'val' or 'test' (or 'train'), got {split!r}")
    path = _checkpoint_path(checkpoint)
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
    data.splits = {"train": None, "val": samples if stage == "val" else None,
                   "test": samples if stage == "test" else None}
    dm = OrdinalDataModule(cfg, model, data)
    module = OrdinalModule(model, cfg, data.ranks)
    trainer = build_eval_trainer(cfg)
    run = trainer.validate if stage == "val" else trainer.test
    run(module, datamodule=dm, verbose=False)
    result = {k: v for k, v in module.eval_results.get(stage, {}).items() if k != "predictions"}
    return {"split": split, "checkpoint": str(path), **result}
