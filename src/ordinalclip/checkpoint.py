"""Training checkpoints: read them safely, check them against their config, rebuild their model.

A checkpoint is Lightning's file plus an ``ordinalclip`` entry with the run's config, the package version and
the checkpoint format (:data:`CHECKPOINT_FORMAT`). Everything here reads with
``torch.load(weights_only=True)``, so a file cannot run code, and every failure is a :class:`CheckpointError`
that names the file, not a shape-mismatch traceback. :mod:`ordinalclip.api`, :mod:`ordinalclip.exports` and
:mod:`ordinalclip.predict` all load checkpoints through this module; the engine writes the entry with
:data:`CHECKPOINT_KEY` and :func:`complete_state` from here.

Example::

    from ordinalclip.checkpoint import load_checkpoint

    model, cfg = load_checkpoint("runs/tiny-20261201-120000")   # a run folder means its best checkpoint
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ordinalclip import __version__
from ordinalclip.config import RunConfig
from ordinalclip.config.typed import ConfigError, from_dict
from ordinalclip.modeling import build_model
from ordinalclip.modeling.config import ModelConfig

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_KEY",
    "TORCHSCRIPT_ENV",
    "CheckpointError",
    "architecture_only",
    "build_model_or_config_error",
    "changed_keys",
    "check_state_matches",
    "checkpoint_path",
    "checkpoint_progress",
    "complete_state",
    "config_of",
    "head_from_checkpoint",
    "load_checkpoint",
    "newest_intact_checkpoint",
    "read_checkpoint",
    "record_quick_gelu",
    "save_prototypes",
]

log = logging.getLogger(__name__)

CHECKPOINT_KEY = "ordinalclip"  # the checkpoint entry holding the config, version, format and omitted towers
CHECKPOINT_FORMAT = 1
TORCHSCRIPT_ENV = "ORDINALCLIP_ALLOW_TORCHSCRIPT"  # the user's consent to open OpenAI TorchScript archives


from ordinalclip.errors import CheckpointError  # noqa: E402  (defined with its family)


def checkpoint_path(path: str | os.PathLike[str]) -> Path:
    """The checkpoint file ``path`` means: itself, or for a run folder its best checkpoint, else its last."""
    p = Path(path)
    if p.is_dir():
        for name in ("best.ckpt", "last.ckpt"):
            if (p / "checkpoints" / name).is_file():
                return p / "checkpoints" / name
        raise CheckpointError(f"no checkpoints/best.ckpt or checkpoints/last.ckpt in {p}")
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    return p


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw checkpoint dict (read with ``weights_only=True``: no code runs); a run folder means its best
    checkpoint. Raises :class:`CheckpointError` for anything that is not an ordinalclip training
    checkpoint."""
    p = checkpoint_path(path)
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refusals and damaged archives come in many types
        text = str(err)
        if "Unsupported global" in text:  # torch's advice (weights_only=False) is exactly what we must not do
            line = next(x for x in text.splitlines() if "Unsupported global" in x).strip()
            text = (
                f"{line}; ordinalclip reads checkpoints with weights_only=True so that a file cannot run code"
            )
        raise CheckpointError(f"{p}: not a readable checkpoint ({type(err).__name__}: {text})") from None
    meta = ckpt.get(CHECKPOINT_KEY) if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) or "state_dict" not in ckpt:
        raise CheckpointError(
            f"{p} is not an ordinalclip training checkpoint (no '{CHECKPOINT_KEY}' entry "
            "with a config); exports are read by ordinalclip.predict"
        )
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{p}: checkpoint format {meta.get('format')} (written by ordinalclip "
            f"{meta.get('version')}); this version ({__version__}) reads format {CHECKPOINT_FORMAT}"
        )
    return ckpt


def newest_intact_checkpoint(run_dir: str | os.PathLike[str]) -> Path:
    """The checkpoint that ``--resume`` continues from: the newer (by step, then epoch; ``last`` on a tie) of
    ``checkpoints/last.ckpt`` and ``checkpoints/best.ckpt`` that reads whole (:func:`read_checkpoint`).

    A kill during the first write of ``last.ckpt`` leaves no ``last.ckpt`` but a good ``best.ckpt``; the
    choice and the reason are logged. Raises :class:`CheckpointError` naming what was found when neither is
    usable.
    """
    folder = Path(run_dir) / "checkpoints"
    found: list[tuple[int, int, int, Path]] = []
    problems: list[str] = []
    for order, name in enumerate(("best.ckpt", "last.ckpt")):
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
            continue
        try:
            ckpt = read_checkpoint(path)
        except CheckpointError as err:
            problems.append(f"{name} is damaged ({err})")
            continue
        found.append((int(ckpt.get("global_step", -1)), int(ckpt.get("epoch", -1)), order, path))
        del ckpt  # one checkpoint in memory at a time
    if not found:
        raise CheckpointError(
            f"--resume: no intact checkpoint in {folder}: nothing to continue from ({'; '.join(problems)})"
        )
    step, epoch, _, path = max(found)
    why = f": {'; '.join(problems)}" if problems else ""
    (log.warning if problems else log.info)("resuming from %s (epoch %d, step %d)%s", path, epoch, step, why)
    return path


def config_of(ckpt: Mapping[str, Any], path: Any) -> RunConfig:
    """The :class:`RunConfig` stored in a checkpoint read by :func:`read_checkpoint` (``path`` names it in
    errors)."""
    meta = ckpt[CHECKPOINT_KEY]
    try:
        return from_dict(RunConfig, meta["config"])
    except ConfigError as err:
        raise CheckpointError(
            f"{path}: written by ordinalclip {meta.get('version')}, whose config this version "
            f"({__version__}) cannot read: {err}"
        ) from None


def checkpoint_progress(path: Path) -> dict[str, Any]:
    """``{"checkpoint", "epoch", "step"}`` of a checkpoint file (memory-mapped: the tensors are not read)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return {
        "checkpoint": str(path),
        "epoch": int(ckpt.get("epoch", -1)),
        "step": int(ckpt.get("global_step", -1)),
    }


def _model_state(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    return {k[len("model.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}


def state_mismatch(model: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """What keeps ``state`` from loading into ``model`` strictly, one phrase per kind of misfit, e.g.
    ``"2 missing (e.g. ['a', 'b'])"`` or ``"1 with another shape (e.g. ['w: checkpoint (3,) vs model
    (4,)'])"``; empty when it fits."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    reshaped = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in state
        if k in own and state[k].shape != own[k].shape
    ]
    return [
        f"{len(v)} {what} (e.g. {v[:2]})"
        for what, v in (("missing", missing), ("unexpected", unexpected), ("with another shape", reshaped))
        if v
    ]


def check_state_matches(model: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """Raise :class:`CheckpointError` naming missing, unexpected and reshaped tensors (not a load trace)."""
    parts = state_mismatch(model, state)
    if parts:
        raise CheckpointError(
            f"{where}: weights do not fit the model its config describes: {'; '.join(parts)}"
        )


def architecture_only(model: ModelConfig) -> ModelConfig:
    """The model config without its weight sources (a checkpoint brings the weights).

    An OpenAI CLIP file without an architecture name (``clip.name: null``) is kept: the architecture is read
    from it.
    """
    model = copy.deepcopy(model)
    if model.clip.name is not None or model.clip.custom is not None:
        model.clip.pretrained = None
    model.image.weights = None
    model.image.imagenet_weights = False
    return model


def record_quick_gelu(model_cfg: ModelConfig, model: nn.Module) -> None:
    """Write down in ``model_cfg.clip.quick_gelu`` which activation open_clip chose for ``model``.

    open_clip picks QuickGELU from the pretrained tag; recording the choice lets :func:`architecture_only`
    rebuild the same function without the tag.
    """
    if not model_cfg.uses_clip() or model_cfg.clip.quick_gelu is not None:
        return
    from open_clip.transformer import QuickGELU

    model_cfg.clip.quick_gelu = any(isinstance(m, QuickGELU) for m in model.modules())


def build_model_or_config_error(cfg: ModelConfig) -> nn.Module:
    """:func:`~ordinalclip.modeling.build_model`, with the modeling layer's ValueError / FileNotFoundError
    turned into a :class:`ConfigError` (a user error of the ``model`` section)."""
    try:
        return build_model(cfg)
    except (ValueError, FileNotFoundError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"model: {err}") from err


def complete_state(checkpoint: dict[str, Any], current: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The checkpoint's state dict with the towers it left out taken from ``current`` (the rebuilt model)."""
    omitted = tuple((checkpoint.get(CHECKPOINT_KEY) or {}).get("omitted") or ())
    state = dict(checkpoint["state_dict"])
    if omitted:
        state.update({k: v for k, v in current.items() if k.startswith(omitted) and k not in state})
    return state


def load_checkpoint(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    allow_torchscript: bool | None = None,
    *,
    map_location: str | torch.device | None = None,
) -> tuple[nn.Module, RunConfig]:
    """Rebuild the model of a training checkpoint from the config stored in it and load its weights.

    No YAML and no pretrained-weight files are needed (except an OpenAI CLIP file given without an
    architecture name, and towers that a slim checkpoint left out: those come from their pretrained source
    again). The file is read with ``weights_only=True``. Returns ``(model in eval mode, config)``; the model
    maps (B, 3, H, W) images (or (B, F) features) to (B, C) logits.

    ``allow_torchscript`` (default: the environment variable ``ORDINALCLIP_ALLOW_TORCHSCRIPT=1``) permits
    opening an OpenAI TorchScript archive the stored config points at; the checkpoint's own config cannot
    grant it. ``map_location`` is the deprecated spelling of ``device``.
    """
    if map_location is not None:
        warnings.warn(
            "load_checkpoint(map_location=...) is deprecated; use device=...",
            DeprecationWarning,
            stacklevel=2,
        )
        device = map_location
    p = checkpoint_path(path)
    ckpt = read_checkpoint(p)
    cfg = config_of(ckpt, p)
    version = ckpt[CHECKPOINT_KEY].get("version")
    omitted = ckpt[CHECKPOINT_KEY].get("omitted") or []
    model_cfg = copy.deepcopy(cfg.model) if omitted else architecture_only(cfg.model)
    if allow_torchscript is None:
        allow_torchscript = os.environ.get(TORCHSCRIPT_ENV, "") == "1"
    model_cfg.clip.allow_torchscript = allow_torchscript
    model = build_model_or_config_error(model_cfg)
    if omitted:
        current = {f"model.{k}": v for k, v in model.state_dict().items()}
        ckpt = {**ckpt, "state_dict": complete_state(ckpt, current)}
    state = _model_state(ckpt)
    check_state_matches(model, state, f"{p} (written by ordinalclip {version}, this is {__version__})")
    model.load_state_dict(state)
    return model.to(device).eval(), cfg


def head_from_checkpoint(
    checkpoint: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[nn.Module, RunConfig, list[float], list[str] | None, dict[str, Any]]:
    """Load a training checkpoint for inference: ``(head, run_config, rank_values, rank_names, preprocess)``.

    An OrdinalCLIP is frozen into its cosine head (the text tower is dropped); other models come back as they
    are. ``preprocess`` is the run's eval transform (``{}`` for a features tower).
    """
    from ordinalclip.data.samples import DataError
    from ordinalclip.modeling.ordinalclip import OrdinalCLIP
    from ordinalclip.run_settings import rank_space, tower_preprocess, transform_settings

    model, cfg = load_checkpoint(checkpoint, device)
    head = model.to_head() if isinstance(model, OrdinalCLIP) else model
    head.eval()
    try:
        space = rank_space(cfg)
        values, names = [float(v) for v in space.values()], (list(space.names) if space.names else None)
    except DataError as err:  # a rank-names file that has moved since training: the names are only labels
        log.warning("%s; predictions keep the rank values but have no rank names", err)
        values = [float(i + cfg.data.rank_offset) for i in range(cfg.model.num_ranks)]
        names = None
    prep = {} if cfg.model.image.kind == "features" else transform_settings(cfg, tower_preprocess(model))
    return head, cfg, values, names, prep


def changed_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts (e.g. a checkpoint's config and a new one)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            k
            for key in sorted(set(a) | set(b))
            for k in changed_keys(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
        ]
    return [] if a == b else [prefix]


def save_prototypes(checkpoint: str | os.PathLike[str], module: nn.Module, out_dir: Path, tag: str) -> None:
    """The (C, E) prototypes of ``checkpoint`` loaded into ``module`` (a training module whose ``model`` has
    ``prototypes()``), saved as ``prototypes_<tag>.npy`` in ``out_dir`` (and as ``prototypes.npy`` for the
    best checkpoint, else the first one saved)."""
    import numpy as np

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    module.load_state_dict(complete_state(ckpt, module.state_dict()))
    with torch.no_grad():
        protos = module.model.prototypes().detach().float().cpu().numpy()  # type: ignore[union-attr,operator]
    np.save(out_dir / f"prototypes_{tag}.npy", protos)
    if tag == "best" or not (out_dir / "prototypes.npy").exists():
        np.save(out_dir / "prototypes.npy", protos)
