"""A 12-cell sweep on the local launcher: ``--jobs 2`` (two worker processes, one thread each) against ``--jobs 1``
(this process, one cell after another, ``--threads`` threads), on a 2-core machine.

Cells: linear and cosine heads on a generated feature file (600 training samples, 16-dim features, 5 ranks) x 6
seeds, a few seconds each: small enough that most of a cell's time is Python and Lightning, which one process
cannot spread over two cores. The jobs=2 time includes starting its workers (importing torch and Lightning).

Figures: ``speedup`` = time(jobs 1) / time(jobs 2); ``identical`` = the two summary.csv files are the same text;
the 1-minute load average before and after (other work on the machine lowers the speedup).

    python benchmarks/sweep_scale.py [--epochs 6] [--rounds 1] [--json PATH] [--tiny]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import finish, load_note, median, parse_common  # noqa: E402
from ordinalclip.app.launchers import Launch  # noqa: E402
from ordinalclip.app.sweep import run_sweep  # noqa: E402
from ordinalclip.engine.trainer import quiet_lightning  # noqa: E402

RANKS = 5
SEEDS = [0, 1, 2, 3, 4, 5]


def make_configs(folder: Path, train_per_rank: int, epochs: int) -> list[Path]:
    """A feature file (rank direction + noise) and two configs on it: a linear and a cosine head."""
    rng = np.random.default_rng(0)
    feats, labels, splits = [], [], []
    for split, n in (("train", train_per_rank), ("val", 20), ("test", 20)):
        for label in range(RANKS):
            v = rng.normal(0, 0.5, (n, 16))
            v[:, label] += 1.0
            feats.append(v)
            labels += [label] * n
            splits += [split] * n
    np.savez(
        folder / "features.npz",
        features=np.concatenate(feats).astype(np.float32),
        labels=np.array(labels),
        split=np.array(splits),
    )
    paths = []
    for arch in ("linear", "cosine"):
        cfg = {
            "name": arch,
            "output_dir": str(folder / "runs"),
            "model": {
                "arch": arch,
                "num_ranks": RANKS,
                "embed_dim": 16,
                "image": {"kind": "features", "input_dim": 16},
            },
            "data": {
                "format": "features",
                "train": str(folder / "features.npz"),
                "columns": {"split": "split"},
                "batch_size": 16,
                "num_workers": 0,
            },
            "loss": {"kl_weight": 0.0} if arch == "linear" else {},
            "optim": {"lr": 1e-3},
            "trainer": {
                "max_epochs": epochs,
                "loggers": ["csv"],
                "progress_bar": False,
                "accelerator": "cpu",
                "deterministic": True,
            },
        }
        paths.append(folder / f"{arch}.yaml")
        paths[-1].write_text(yaml.safe_dump(cfg))
    return paths


def timed_sweep(configs: list[Path], out: Path, jobs: int) -> float:
    start = time.perf_counter()
    result = run_sweep(configs, seeds=SEEDS, out_dir=out, launch=Launch(jobs=jobs))
    seconds = time.perf_counter() - start
    if result.failed:
        raise RuntimeError(f"cells failed: {[(r.cell.name, r.error, str(r.log)) for r in result.failed]}")
    return seconds


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--train-per-rank", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=1, help="timed sweeps per variant (alternating)")
    args = parse_common(ap, argv, "2 epochs of 8 samples per rank")
    if args.tiny:
        args.epochs, args.train_per_rank = 2, 8
    quiet_lightning()
    logging.getLogger("lightning.pytorch").setLevel(
        logging.WARNING
    )  # no "Restoring states ..." per checkpoint
    load_before = os.getloadavg()[0]
    print(f"before: {load_note()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        configs = make_configs(folder, args.train_per_rank, args.epochs)
        run_sweep(
            configs[:1], seeds=[99], out_dir=folder / "warmup"
        )  # imports and first-touch costs, untimed
        times: dict[int, list[float]] = {1: [], 2: []}
        summaries: dict[int, str] = {}
        for r in range(args.rounds):
            for jobs in (1, 2) if r % 2 == 0 else (2, 1):
                out = folder / f"jobs{jobs}-round{r}"
                times[jobs].append(timed_sweep(configs, out, jobs))
                summaries.setdefault(jobs, (out / "summary.csv").read_text())
                assert (out / "summary.csv").read_text() == summaries[jobs]
    one, two = median(times[1]), median(times[2])
    cells = 2 * len(SEEDS)
    figures = {
        "speedup": one / two,
        "identical": summaries[1] == summaries[2],
        "seconds_jobs1": one,
        "seconds_jobs2": two,
        "cells": cells,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }
    rows = [
        ["1 (this process)", f"{one:.1f}", f"{one / cells:.2f}", "1.00"],
        ["2 (worker processes)", f"{two:.1f}", f"{two / cells:.2f}", f"{one / two:.2f}"],
    ]
    return finish(["jobs", "sweep s", "s per cell", "speedup"], rows, figures, args.json)


if __name__ == "__main__":
    main()
