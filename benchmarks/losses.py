"""OrdinalCLIP trained with each ordinal loss against its CE + KL default: which loss helps, where, by how much.

    python benchmarks/losses.py [--tasks demo afinn] [--seeds 0 1 2] [--shots 1 4] [--full] [--json PATH] [--tiny]

Every loss of ``ordinalclip.losses.SOFTMAX_LOSSES`` (dlordinal's default parameters; ``--losses CE ...`` adds plain
cross-entropy) trains the same OrdinalCLIP model on each task's few-shot settings (``--full``: and on all the
training data), for each seed; the table gives the test metrics of the best-on-val checkpoint (mean ± std over
seeds) and the difference to CE + KL paired by seed (same few-shot subset and initialisation). A loss "helps" in a
setting when it lowers the expectation MAE for every seed, "hurts" when it raises it for every seed.

Tasks plug in through :data:`TASKS`: a function from the parsed options to a :class:`Task` (its settings and a
function from (loss, epochs, seed, shots) to the run config of ``ordinalclip.api.fit``).

- ``demo``: the blur-level task of ``ordinalclip demo`` on its cached EfficientNet-Lite0 features with its configs
  (OrdinalCLIP with random base ranks, the paper's MORPH setting). 100 optimizer steps per few-shot run (the
  engine's few-shot budget) and a short 2 epochs of full data (the demo trains 8).
- ``afinn``: the language-prior benchmark's word-valence task (``ordinalclip.app.demo_text``, 11 ranks) with its
  recipe for OrdinalCLIP with named base ranks: 100 optimizer steps per few-shot run; on the whole training split
  8 epochs at batch 128 (152 steps; the language-prior benchmark trains 592).

The runs go through the sweep launchers, ``--jobs`` at a time; finished runs in ``--out`` (same config) are reused
by the next call.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ordinalclip.config import FEW_SHOT_MIN_STEPS
from ordinalclip.metrics import mean_std

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import finish, load_note, machine, parse_common  # noqa: E402

DEFAULT = "CE+KL (default)"
# label -> loss config; every other parameter at its default (dlordinal's where it has one)
LOSSES: dict[str, dict[str, Any]] = {
    DEFAULT: {},
    "CE": {"kl_weight": 0.0},
    "SORD": {"name": "sord"},
    "beta": {"name": "beta"},
    "binomial": {"name": "binomial"},
    "Poisson": {"name": "poisson"},
    "exponential": {"name": "exponential"},
    "triangular": {"name": "triangular"},
    "CDW-CE": {"name": "cdw_ce"},
    "EMD": {"name": "emd"},
    "WK": {"name": "wk"},
}
METRICS = ("mae_exp", "mae_max", "acc_max", "qwk_max", "amae_max", "rps")


@dataclass
class Task:
    """One data set to compare the losses on."""

    name: str
    settings: list[tuple[str, int | None, int]]  # (name, shots per rank or None, epochs)
    about: str
    run_config: Callable[[dict, int, int, int | None], dict]  # (loss, epochs, seed, shots) -> run config


def few_shot_steps(args: argparse.Namespace) -> int:
    """The optimizer steps of every few-shot run, written into each config (not left to the engine's default)."""
    return 2 if args.tiny else (args.min_steps or FEW_SHOT_MIN_STEPS)


def demo_task(args: argparse.Namespace, out: Path) -> Task:
    """The blur-level task of ``ordinalclip demo`` (6 levels), on its cached features and with its configs."""
    from ordinalclip.app import demo
    from ordinalclip.config.typed import merge
    from ordinalclip.data.blur import build_blur_dataset

    crops = 2 if args.tiny else 16
    # the tiny set is built apart: the default cache holds the full-size set of `ordinalclip demo`
    root = args.data_root if args.data_root is not None or not args.tiny else out / "data"
    ds = build_blur_dataset(root, levels=6, crops_per_photo=crops, progress=False)
    features = demo.extract_features(ds, Path(ds.root) / "features_efficientnet_lite0.npz", progress=False)
    full_epochs = 1 if args.tiny else (args.epochs or 2)
    min_steps = few_shot_steps(args)
    settings = demo.run_settings(args.shots, 6, full_epochs, min_steps, 64)
    if not args.full:
        settings = [s for s in settings if s[0] != "full"]
    model = demo.method_overrides(6)["ordinalclip_random"]
    base = demo.base_config(features, out / "runs", 6, ds.rank_names, 64)
    about = (
        f"demo blur levels (6 ranks, {crops} crops per photo), EfficientNet-Lite0 features + all-MiniLM-L6-v2, "
        f"OrdinalCLIP with random base ranks, {min_steps} steps per few-shot run, {full_epochs} epochs of full data"
    )

    def run_config(loss: dict, epochs: int, seed: int, shots: int | None) -> dict:
        cfg = demo.run_config(base, model, loss, epochs, seed, shots)
        # the stated budget in the config itself, not left to the engine's default
        return merge(cfg, {"trainer": {"min_steps": min_steps if shots is not None else None}})

    return Task("demo", settings, about, run_config)


def afinn_task(args: argparse.Namespace, out: Path) -> Task:
    """Word valence on the AFINN lexicon (11 ranks), the language-prior benchmark's task: OrdinalCLIP with named
    base ranks on all-MiniLM-L6-v2 word embeddings next to the same all-MiniLM-L6-v2 text tower, with its
    recipe (few-shot: learning rate 1e-4, identity features tower; full data: 2e-3, identity-initialised
    projection)."""
    from ordinalclip.app import demo_text as dt
    from ordinalclip.config.typed import merge
    from ordinalclip.data.lexicon import build_lexicon_dataset
    from ordinalclip.modeling.text_features import embed_sentences

    # the tiny set is built apart, so that the user cache keeps the full lexicon set
    root = out / "data" if args.tiny else None
    ds = build_lexicon_dataset(
        root, text_model=dt.TEXT_MODEL, limit=120 if args.tiny else None, embed=embed_sentences
    )
    full_epochs = 1 if args.tiny else (args.epochs or 8)
    min_steps = few_shot_steps(args)
    settings: list[tuple[str, int | None, int]] = [(f"{k}-shot", k, 8) for k in args.shots]
    if args.full:
        settings.insert(0, ("full", None, full_epochs))
    base = dt.text_base_config(ds, out / "runs")
    about = (
        f"AFINN word valence (11 ranks, {sum(ds.counts.values())} words), all-MiniLM-L6-v2 features and text "
        f"tower, OrdinalCLIP with named base ranks, {min_steps} steps per few-shot "
        f"run, {full_epochs} epochs of full data at batch 128"
    )

    def run_config(loss: dict, epochs: int, seed: int, shots: int | None) -> dict:
        cfg = dt.text_run_config(base, dt.NAMED, shots, seed, min_steps if shots is not None else None)
        batch = 128 if shots is None else 32
        return merge(cfg, {"loss": loss, "trainer": {"max_epochs": epochs}, "data": {"batch_size": batch}})

    return Task("afinn", settings, about, run_config)


TASKS: dict[str, Callable[[argparse.Namespace, Path], Task]] = {"demo": demo_task, "afinn": afinn_task}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean/std per (task, setting, loss) of each metric, and the seed-paired MAE differences to the default."""
    out: dict[str, Any] = {}
    keys = dict.fromkeys((r["task"], r["setting"], r["loss"]) for r in runs)
    for task, setting, loss in keys:
        rs = sorted(
            (r for r in runs if (r["task"], r["setting"], r["loss"]) == (task, setting, loss)),
            key=lambda r: r["seed"],
        )
        base = {
            r["seed"]: r for r in runs if (r["task"], r["setting"], r["loss"]) == (task, setting, DEFAULT)
        }
        entry: dict[str, Any] = {"seeds": [r["seed"] for r in rs]}
        for m in METRICS:
            vals = [r["metrics"][m] for r in rs if r["metrics"].get(m) is not None]
            if vals:
                entry[m] = dict(zip(("mean", "std"), mean_std(vals)))
            paired = [
                r["metrics"][m] - base[r["seed"]]["metrics"][m]
                for r in rs
                if r["seed"] in base
                and r["metrics"].get(m) is not None
                and base[r["seed"]]["metrics"].get(m) is not None
            ]
            if paired and loss != DEFAULT:
                entry[f"delta_{m}"] = dict(zip(("mean", "std"), mean_std(paired)))
                entry[f"delta_{m}"]["per_seed"] = paired
        out.setdefault(task, {}).setdefault(setting, {})[loss] = entry
    return out


def _verdict(entry: dict[str, Any]) -> str:
    d = entry.get("delta_mae_exp")
    if d is None:
        return ""
    if all(x < 0 for x in d["per_seed"]):
        return "helps"
    if all(x > 0 for x in d["per_seed"]):
        return "hurts"
    return "mixed"


def tables(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One table: a row per (task, setting, loss)."""
    headers = [
        "task",
        "setting",
        "loss",
        "MAE exp",
        "Δ MAE exp (paired)",
        "MAE max",
        "acc max",
        "QWK",
        "AMAE max",
        "RPS",
        "verdict",
    ]
    rows = []
    for task, settings in summary.items():
        for setting, losses in settings.items():
            for loss, e in losses.items():

                def pm(key: str, e: dict[str, Any] = e) -> str:
                    return f"{e[key]['mean']:.3f} ± {e[key]['std']:.3f}" if key in e else "–"

                delta = e.get("delta_mae_exp")
                rows.append(
                    [
                        task,
                        setting,
                        loss,
                        pm("mae_exp"),
                        f"{delta['mean']:+.3f} ± {delta['std']:.3f}" if delta else "–",
                        pm("mae_max"),
                        pm("acc_max"),
                        pm("qwk_max"),
                        pm("amae_max"),
                        pm("rps"),
                        _verdict(e),
                    ]
                )
    return headers, rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", nargs="+", default=["demo"], choices=sorted(TASKS))
    ap.add_argument(
        "--losses",
        nargs="+",
        default=[k for k in LOSSES if k != "CE"],
        choices=list(LOSSES),
        metavar="LOSS",
        help=f"any of {list(LOSSES)} (default: all but CE)",
    )
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument(
        "--shots", nargs="*", type=int, default=[1, 4], help="few-shot settings (images per rank)"
    )
    ap.add_argument("--full", action="store_true", help="add the full-data setting")
    ap.add_argument(
        "--epochs", type=int, default=None, help="epochs of the full-data setting (default: demo 2, afinn 8)"
    )
    ap.add_argument(
        "--min-steps",
        type=int,
        default=None,
        help="optimizer steps of a few-shot run (default: 100, the engine's few-shot budget)",
    )
    ap.add_argument("--jobs", type=int, default=2, help="runs trained side by side (worker processes)")
    ap.add_argument(
        "--data-root", type=Path, default=None, help="the demo task's data folder (default: the user cache)"
    )
    ap.add_argument("--out", type=Path, default=Path("runs/bench-losses"), help="run folders")
    args = parse_common(
        ap, argv, "one seed, 2 losses, one 1-shot setting of 2 steps (demo: a 2-crop set; afinn: 120 words)"
    )
    if args.tiny:
        args.losses, args.seeds, args.shots, args.full = [DEFAULT, "SORD"], [0], [1], False
    if DEFAULT not in args.losses:
        args.losses = [DEFAULT, *args.losses]  # the reference every difference is taken against

    from ordinalclip.app.demo_text import fit_runs
    from ordinalclip.engine.trainer import quiet_lightning

    quiet_lightning()
    t0 = time.time()
    jobs = []
    abouts = {}
    for task_name in args.tasks:
        task = TASKS[task_name](args, args.out / task_name)
        abouts[task_name] = task.about
        # seed-major: an interrupted run leaves whole seeds behind, and the next call reuses every finished run
        for seed in args.seeds:
            for setting, shots, epochs in task.settings:
                for loss in args.losses:
                    cfg = task.run_config(LOSSES[loss], epochs, seed, shots)
                    slug = "".join(c if c.isalnum() else "-" for c in loss.lower())
                    run_dir = args.out / task_name / "runs" / f"{setting}-e{epochs}-{slug}-s{seed}"
                    jobs.append(
                        ({"task": task_name, "setting": setting, "loss": loss, "seed": seed}, cfg, run_dir)
                    )
    print(f"{len(jobs)} runs; before: {load_note()}", flush=True)
    fitted = fit_runs([(cfg, run_dir) for _, cfg, run_dir in jobs], args.jobs)
    runs = [
        {**key, "metrics": {k: v for k, v in m.items() if isinstance(v, float) and math.isfinite(v)}}
        for (key, _, _), (m, _steps, _last) in zip(jobs, fitted)
    ]
    summary = summarize(runs)
    headers, rows = tables(summary)
    figures = {
        "machine": machine(),
        "seconds": round(time.time() - t0, 1),
        "tasks": abouts,
        "seeds": args.seeds,
        "summary": summary,
        "runs": runs,
        "tiny": bool(args.tiny),
    }
    print(
        f"{len(jobs)} runs in {figures['seconds']:.0f} s; test metrics of the best-on-val checkpoint, "
        f"mean ± std over seeds {args.seeds}"
    )
    return finish(headers, rows, figures, args.json)


if __name__ == "__main__":
    main()
