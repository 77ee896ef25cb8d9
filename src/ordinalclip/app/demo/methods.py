"""The demo's methods and run configs: what every method changes (model, loss) on the shared config, and the
full-data and few-shot settings."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ordinalclip.app.demo.common import TEXT_MODEL, cpu_schedule
from ordinalclip.config.typed import merge

CONTEXT = "the sharpness of this photo is"
BASE_NAMES = ["sharp", "blurred", "extremely blurred"]


# Each method's id (what options, configs, run folders and results.csv use) and its display name (what tables
# and pages show).
METHOD_NAMES: dict[str, str] = {
    "ordinalclip_random": "OrdinalCLIP (random base ranks)",
    "ordinalclip_named": "OrdinalCLIP (named base ranks)",
    "coop": "CoOp (rank names)",
    "cnn_cosine": "CNN cosine baseline",
    "linear_ce": "Linear (CE)",
    "coral": "CORAL",
}
DEFAULT_METHODS = ("ordinalclip_random", "ordinalclip_named", "coop", "cnn_cosine", "linear_ce")


def display_name(method: str) -> str:
    """What a table shows for ``method``: its display name, or the string itself when it is not a method id
    (the text task's rows are named already)."""
    return METHOD_NAMES.get(method, method)


def method_overrides(levels: int) -> dict[str, dict[str, Any]]:
    """Model settings of every method (by id, see :data:`METHOD_NAMES`), as config overrides (the rest is
    shared)."""
    prompt = {"context_init": CONTEXT}
    return {
        "ordinalclip_random": {"arch": "prompts", "prompts": {**prompt, "learner": "rank"}},
        "ordinalclip_named": {
            "arch": "prompts",
            "prompts": {**prompt, "learner": "rank", "base_rank_names": BASE_NAMES},
        },
        "coop": {
            "arch": "prompts",
            "prompts": {**prompt, "learner": "plain", "rank_names": None},
        },
        "cnn_cosine": {"arch": "cosine"},
        "linear_ce": {"arch": "linear", "_loss": {"kl_weight": 0.0}},
        "coral": {"arch": "coral"},
    }


def base_config(features: Path, out: Path, levels: int, rank_names: Sequence[str], batch_size: int) -> dict:
    """The shared part of every demo run's config."""
    return {
        "name": "demo",
        "output_dir": str(out),
        "model": {
            "num_ranks": levels,
            "embed_dim": 384,
            "image": {"kind": "features", "input_dim": 1280, "project": True},
            "text": {"kind": "huggingface", "hf_model": TEXT_MODEL},
            "prompts": {"num_base_ranks": 3},
        },
        "data": {
            "format": "features",
            "train": str(features),
            "columns": {"split": "split"},
            "rank_names": list(rank_names),
            "batch_size": batch_size,
            "num_workers": 0,
        },
        **cpu_schedule(10),
    }


def run_settings(
    shots: Sequence[int], levels: int, full_epochs: int, min_steps: int, batch_size: int
) -> list[tuple[str, int | None, int]]:
    """(name, shots per level or None, epochs) of the full-data setting and each few-shot one; a few-shot run
    trains for at least ``min_steps`` optimizer steps."""
    settings: list[tuple[str, int | None, int]] = [("full", None, full_epochs)]
    for k in shots:
        epochs = max(full_epochs, math.ceil(min_steps / math.ceil(k * levels / batch_size)))
        settings.append((f"{k}-shot", k, epochs))
    return settings


def run_overrides(epochs: int, seed: int, shots: int | None) -> dict[str, Any]:
    """The per-run part of a demo config: epochs, seed, few-shot size, and about 8 validations per run however
    many (tiny) epochs a few-shot run has."""
    return {
        "trainer": {"max_epochs": epochs, "seed": seed, "check_val_every_n_epoch": max(1, epochs // 8)},
        "data": {"few_shot": {"shots": shots, "seed": seed}},
    }


def run_config(base: dict, model: dict, loss: dict, epochs: int, seed: int, shots: int | None) -> dict:
    """One demo run's config: ``base`` (:func:`base_config`) with a method's model and loss settings."""
    return merge(base, {"model": model, "loss": loss, **run_overrides(epochs, seed, shots)})
