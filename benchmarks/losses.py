"""OrdinalCLIP trained with each ordinal loss against its CE + KL default: which loss helps, where, by how much.

    python benchmarks/losses.py [--tasks demo] [--seeds 0 1 2] [--shots 1 4] [--full] [--json PATH] [--tiny]

Every loss of ``ordinalclip.losses.SOFTMAX_LOSSES`` (dlordinal's default parameters; ``--losses CE ...`` adds plain
cross-entropy) trains the same OrdinalCLIP model on each task's few-shot settings (``--full``: and on all the
training data), for each seed; the table gives the test metrics of the best-on-val checkpoint (mean ± std over
seeds) and the difference to CE + KL paired by seed (same few-shot subset and initialisation). A loss "helps" in a
setting when it lowers the expectation MAE for every seed, "hurts" when it raises it for every seed.

The schedule is short by default (20 optimizer steps per few-shot run, 2 epochs of full data; the demo trains 60
steps and 8 epochs) so that the 60 default runs take minutes on 2 idle cores. Finished runs in ``--out`` are reused
by the next call with the same schedule.

Tasks plug in through :data:`TASKS`: a function from the parsed options to a :class:`Task` (a base run config for
``ordinalclip.api.fit``, the OrdinalCLIP model overrides and the settings). ``demo`` is the blur-level task of
``ordinalclip demo`` with its cached EfficientNet-Lite0 features and its configs (OrdinalCLIP with random base
ranks, the paper's MORPH setting).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    base: dict  # the run config shared by every run (data, towers, optimizer, trainer)
    model: dict  # the OrdinalCLIP model overrides
    settings: list[tuple[str, int | None, int]]  # (name, shots per rank or None, epochs)
    about: str
    run_config: Callable[
        [dict, dict, dict, int, int, int | None], dict
    ]  # (base, model, loss, epochs, seed, shots)


def demo_task(args: argparse.Namespace, out: Path) -> Task:
    """The blur-level task of ``ordinalclip demo`` (6 levels), on its cached features and with its configs."""
    from ordinalclip.app import demo
    from ordinalclip.data.blur import build_blur_dataset

    crops = 2 if args.tiny else 16
    # the tiny set is built apart: the default cache holds the full-size set of `ordinalclip demo`
    root = args.data_root if args.data_root is not None or not args.tiny else out / "data"
    ds = build_blur_dataset(root, levels=6, crops_per_photo=crops, progress=False)
    features = demo.extract_features(ds, Path(ds.root) / "features_efficientnet_lite0.npz", progress=False)
    full_epochs = 1 if args.tiny else args.epochs
    min_steps = 2 if args.tiny else args.min_steps
    settings = demo.run_settings(args.shots, 6, full_epochs, min_steps, 64)
    if not args.full:
        settings = [s for s in settings if s[0] != "full"]
    model = demo.method_overrides(6)["OrdinalCLIP (random base ranks)"]
    base = demo.base_config(features, out / "runs", 6, ds.rank_names, 64)
    about = (
        f"demo blur levels (6 ranks, {crops} crops per photo), EfficientNet-Lite0 features + all-MiniLM-L6-v2, "
        "OrdinalCLIP with random base ranks"
    )
    return Task("demo", base, model, settings, about, demo.run_config)


# A second task (e.g. the language-prior benchmark) is one more entry: name -> function(args, out) -> Task.
TASKS: dict[str, Callable[[argparse.Namespace, Path], Task]] = {"demo": demo_task}


def _finished(run_dir: Path) -> dict[str, Any] | None:
    """The test metrics of a run an earlier call finished (best checkpoint, as ``train_one``), else None."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    return (metrics.get("best") or metrics["last"])["test"]


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
    ap.add_argument("--epochs", type=int, default=2, help="epochs of the full-data setting (the demo: 8)")
    ap.add_argument(
        "--min-steps", type=int, default=20, help="optimizer steps of a few-shot run (the demo: 60)"
    )
    ap.add_argument("--jobs", type=int, default=2, help="runs trained side by side (one thread each)")
    ap.add_argument("--data-root", type=Path, default=None, help="demo data folder (default: the user cache)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-losses"), help="run folders")
    args = parse_common(ap, argv, "one seed, 2 losses, one 1-shot setting of 1 epoch on a 2-crop demo set")
    if args.tiny:
        args.losses, args.seeds, args.shots, args.full = [DEFAULT, "SORD"], [0], [1], False
    if DEFAULT not in args.losses:
        args.losses = [DEFAULT, *args.losses]  # the reference every difference is taken against

    from ordinalclip.app.demo import train_one
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
                    cfg = task.run_config(task.base, task.model, LOSSES[loss], epochs, seed, shots)
                    slug = "".join(c if c.isalnum() else "-" for c in loss.lower())
                    # the schedule is in the name: a run of another schedule is never taken for this one
                    run_dir = args.out / task_name / "runs" / f"{setting}-e{epochs}-{slug}-s{seed}"
                    jobs.append(
                        ({"task": task_name, "setting": setting, "loss": loss, "seed": seed}, cfg, run_dir)
                    )
    done = {i: _finished(run_dir) for i, (_, _, run_dir) in enumerate(jobs)}
    todo = [i for i, m in done.items() if m is None]
    print(f"{len(jobs)} runs ({len(jobs) - len(todo)} finished earlier); before: {load_note()}", flush=True)
    for i in todo:
        shutil.rmtree(jobs[i][2], ignore_errors=True)  # an interrupted run starts again
    if args.jobs <= 1:
        outcomes = [train_one(jobs[i][1], jobs[i][2], 0) for i in todo]
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            outcomes = list(
                pool.map(train_one, [jobs[i][1] for i in todo], [jobs[i][2] for i in todo], [1] * len(todo))
            )
    done.update(zip(todo, outcomes))
    runs = [
        {**key, "metrics": {k: v for k, v in done[i].items() if isinstance(v, float) and math.isfinite(v)}}
        for i, (key, _, _) in enumerate(jobs)
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
