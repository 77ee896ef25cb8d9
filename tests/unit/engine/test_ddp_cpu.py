"""Distributed data parallel on CPU: two processes (gloo) through the CLI, as a multi-GPU run goes through it."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sklearn.metrics import mean_absolute_error

from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT


def _split_paths(path: Path) -> list[str]:
    return [
        line.split("\t")[0] for line in path.read_text().splitlines() if line and not line.startswith("#")
    ]


@pytest.mark.slow
def test_ddp_two_cpu_processes_split_training_and_gather_every_prediction(tmp_path):
    cli = Path(sys.executable).with_name("ordinalclip")
    assert cli.is_file(), f"console script missing next to the interpreter: {cli} (pip install -e .)"
    run_dir = tmp_path / "run"
    sets = [
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "trainer.max_epochs=2",
        "trainer.progress_bar=false",
    ]
    cmd = [str(cli), "train", "-c", str(ROOT / "configs" / "tiny.yaml"), "--run-dir", str(run_dir)]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run folder:") == 1  # only the first process reports

    metrics = json.loads((run_dir / "metrics.json").read_text())
    n_train = len(_split_paths(run_dir / "splits" / "train.txt"))
    batch = 16  # configs/tiny.yaml
    # each process sees half of the training set per epoch: half the optimizer steps of a one-process run
    assert metrics["last"]["step"] == 2 * math.ceil(n_train / (2 * batch))
    for split in ("val", "test"):
        with open(run_dir / "predictions" / f"{split}_best.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        # predictions gathered from both processes: every sample exactly once, none padded in twice
        assert sorted(r["path"] for r in rows) == sorted(_split_paths(run_dir / "splits" / f"{split}.txt"))
        mae = mean_absolute_error([int(r["label_rank"]) for r in rows], [int(r["pred_rank"]) for r in rows])
        assert metrics["best"][split]["mae_max"] == pytest.approx(mae, abs=1e-6)
