"""The linear probe: scikit-learn's logistic regression on the same frozen features a run trains on.

It is the baseline a language prior has to beat: a run page and a sweep page show it beside the model
(``probe.json`` in the run folder, written by :func:`write_probe`). One implementation:
:func:`logistic_probe` (arrays in, metrics out); :func:`run_features` reads a run's frozen features (its
features file, or its frozen image trunk's features through the run's feature cache) on the run's own
splits.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

__all__ = ["C_GRID", "PROBE_FILE", "logistic_probe", "read_probe", "run_features", "write_probe"]

C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
PROBE_FILE = "probe.json"
Arrays = Mapping[str, tuple[np.ndarray, np.ndarray]]


def logistic_probe(
    splits: Arrays, num_ranks: int, c_grid: Sequence[float] | None = None, max_iter: int = 2000
) -> dict[str, Any]:
    """Fit L2 logistic regression on ``splits["train"]`` (``x (N, F)``, ``y (N,)`` rank indices) for each C
    of ``c_grid`` (default ``[1.0]``), keep the C with the lowest ``val`` MAE of the expectation (when there
    is a val split and more than one C), and score it like every model: its class probabilities go through
    :func:`~ordinalclip.metrics.ordinal_metrics` (expectation and argmax).

    Returns ``{"C": float, "val": metrics or None, "test": metrics or None}``.
    """
    from sklearn.linear_model import LogisticRegression

    from ordinalclip.metrics import ordinal_metrics

    def metrics(clf: Any, split: str) -> dict[str, float] | None:
        if split not in splits:
            return None
        x, y = splits[split]
        proba = np.full((len(x), num_ranks), 1e-12)
        proba[:, clf.classes_] += clf.predict_proba(x)  # ranks absent from a few-shot subset get ~0
        scores = ordinal_metrics(torch.from_numpy(np.log(proba)), torch.from_numpy(np.asarray(y)))
        return {k: float(v) for k, v in scores.items()}

    x_train, y_train = splits["train"]
    grid = list(c_grid or [1.0])
    fits = {c: LogisticRegression(C=c, max_iter=max_iter).fit(x_train, y_train) for c in grid}
    best = grid[0]
    if len(fits) > 1 and "val" in splits:
        best = min(fits, key=lambda c: metrics(fits[c], "val")["mae_exp"])  # type: ignore[index]
    return {"C": float(best), "val": metrics(fits[best], "val"), "test": metrics(fits[best], "test")}


def run_features(run_dir: str | os.PathLike[str]) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str]:
    """``({split: (x, y)}, description)`` of the frozen features a run trained on, on its saved splits.

    A features run: its feature file. An image run whose image trunk was frozen (``optim.freeze_image``,
    a tower with a trunk/projection split): the trunk's features, read through the run's feature cache
    (computed there if missing). Raises ``ValueError`` saying why for any other run.
    """
    from ordinalclip.config import RunConfig
    from ordinalclip.config.typed import from_dict, load_yaml
    from ordinalclip.engine.cache import FeatureCache, cache_folder, has_trunk, tower_cache_config
    from ordinalclip.engine.datamodule import OrdinalDataModule
    from ordinalclip.engine.splits import resolve_data

    run = Path(run_dir)
    cfg = from_dict(RunConfig, load_yaml(run / "config.yaml"))
    if (run / "splits" / "train.txt").is_file():
        cfg.data.splits_dir = str(run / "splits")
    if cfg.model.image.kind == "features":
        data = resolve_data(cfg)
        dm = OrdinalDataModule(cfg, data, {})
        what = f"the run's {cfg.model.image.input_dim}-d feature vectors"
    else:
        if not cfg.optim.freeze_image or cfg.model.image.kind in ("clip",):
            raise ValueError("the run trains its image tower (or uses CLIP's): no fixed features to probe")
        from ordinalclip.modeling.build import build_image_tower

        tower = build_image_tower(cfg.model.image, cfg.model.embed_dim or 512, None)
        if not has_trunk(tower):
            raise ValueError(f"the {cfg.model.image.kind} tower has no trunk/projection split to probe")
        data = resolve_data(cfg)
        cache = FeatureCache(tower, tower_cache_config(cfg.model), cache_folder(cfg), batch_size=64)
        dm = OrdinalDataModule(cfg, data, dict(getattr(tower, "preprocess", {}) or {}), cache)
        what = f"the frozen {cfg.model.image.kind} trunk's features"
    out = {}
    for split in ("train", "val", "test"):
        if not dm.has(split):
            continue
        ds: Any = dm.dataset(split)
        x = torch.stack([ds[i][0] for i in range(len(ds))]).numpy()
        y = torch.stack([torch.as_tensor(ds[i][1]) for i in range(len(ds))]).numpy()
        out[split] = (x, y)
    return out, what


def write_probe(run_dir: str | os.PathLike[str], c_grid: Sequence[float] = C_GRID) -> dict[str, Any] | None:
    """Fit the probe on a run's frozen features (:func:`run_features`, C tuned on val over ``c_grid``) and
    write ``probe.json`` in the run folder; None (logged) when the run has no fixed features or scikit-learn
    is missing."""
    from ordinalclip.config import RunConfig
    from ordinalclip.config.typed import from_dict, load_yaml
    from ordinalclip.fileio import write_json

    run = Path(run_dir)
    try:
        import sklearn  # noqa: F401
    except ImportError:
        log.info("probe: scikit-learn is not installed (pip install scikit-learn): no probe row")
        return None
    try:
        splits, what = run_features(run)
    except ValueError as err:
        log.info("probe: %s", err)
        return None
    num_ranks = from_dict(RunConfig, load_yaml(run / "config.yaml")).model.num_ranks
    result = logistic_probe(splits, num_ranks, c_grid)
    result.update(
        {
            "method": "logistic regression (scikit-learn, L2, C tuned on val)",
            "features": what,
            "train": int(len(splits["train"][1])),
        }
    )
    write_json(result, run / PROBE_FILE)
    test = result.get("test") or {}
    if test:
        log.info("probe (logistic regression, C=%g): test MAE exp %.4f", result["C"], test["mae_exp"])
    return result


def read_probe(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A run's ``probe.json``, or None."""
    import json

    path = Path(run_dir) / PROBE_FILE
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None
