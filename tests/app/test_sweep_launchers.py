"""Sweeps on every launcher: a local pool of worker processes, submitit (its local executor, no SLURM here) and a
local 2-CPU Ray. Each runs a tiny 4-cell sweep in which one cell's process is SIGKILLed mid-training: that cell is
reported failed with its log, the others finish, and a rerun resumes it from last.ckpt to the very results of an
uninterrupted in-process sweep. Plus --summarize-only, the launch flags and the missing-extra errors."""

from __future__ import annotations

import csv
import json
import os
import signal
import sys
from pathlib import Path

import cloudpickle
import lightning as L
import pytest
import torch

from ordinalclip.app import cli
from ordinalclip.app.launchers import Launch, MissingExtraError, Task, run_tasks
from ordinalclip.app.sweep import run_sweep, summarize_only
from ordinalclip.config.typed import ConfigError

SEEDS = [1, 2]
VICTIM = "cosine__seed1"
# Ray and submitit pickle with cloudpickle: ship this module's callback by value, whatever the workers' sys.path.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


class KillOnce(L.Callback):
    """SIGKILL the process training ``cell`` in its second epoch (last.ckpt of epoch 0 exists), once: the marker
    file says it happened."""

    def __init__(self, cell: str, marker: Path) -> None:
        self.cell, self.marker = cell, marker

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        run_dir = Path(trainer.checkpoint_callback.dirpath).parent
        if (
            run_dir.name == self.cell
            and trainer.current_epoch == 1
            and batch_idx == 1
            and not self.marker.exists()
        ):
            self.marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.fixture(scope="module")
def reference(configs, tmp_path_factory) -> Path:  # noqa: F811
    """The same sweep straight through, in this process."""
    out = tmp_path_factory.mktemp("reference") / "s"
    result = run_sweep(configs, seeds=SEEDS, out_dir=out)
    assert not result.failed
    return out


def _metrics(out: Path) -> dict[str, dict]:
    """Every cell's metrics.json, less the checkpoint paths (they name the sweep folder)."""
    runs = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/metrics.json")}
    for metrics in runs.values():
        for tag in ("best", "last"):
            assert metrics[tag]["checkpoint"].startswith(str(out))
            del metrics[tag]["checkpoint"]
    return runs


def _summary_rows(out: Path) -> list[dict[str, str]]:
    with (out / "summary.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _kill_and_resume(configs, reference: Path, out: Path, launch: Launch) -> None:  # noqa: F811
    marker = out.parent / "killed"
    first = run_sweep(configs, seeds=SEEDS, out_dir=out, launch=launch, callbacks=[KillOnce(VICTIM, marker)])
    assert marker.is_file() and int(marker.read_text()) != os.getpid()  # it ran in another process
    assert [r.cell.name for r in first.failed] == [VICTIM]
    failed = first.failed[0]
    assert failed.log == out / "logs" / f"{VICTIM}.log" and failed.log.is_file()
    md = (out / "summary.md").read_text()
    assert "## Failed cells" in md and f"`{VICTIM}`" in md and str(failed.log) in md
    # the others finished; the victim kept its epoch-0 checkpoint and has no metrics
    assert sorted(_metrics(out)) == sorted(n for n in _metrics(reference) if n != VICTIM)
    assert not (out / VICTIM / "metrics.json").exists() and (out / VICTIM / "checkpoints/last.ckpt").is_file()
    cosine = [r for r in _summary_rows(out) if r["config"] == "cosine"]
    assert cosine and all(r["n"] == "1" for r in cosine)

    again = run_sweep(configs, seeds=SEEDS, out_dir=out, launch=launch)
    assert {r.cell.name: r.status for r in again.cells} == {
        n: ("resumed" if n == VICTIM else "skipped") for n in _metrics(reference)
    }
    assert _metrics(out) == _metrics(reference)  # every number, every cell
    assert _summary_rows(out) == _summary_rows(reference)
    resumed = torch.load(out / VICTIM / "checkpoints/last.ckpt", weights_only=True)
    straight = torch.load(reference / VICTIM / "checkpoints/last.ckpt", weights_only=True)
    assert resumed["global_step"] == straight["global_step"] == 8
    for key, value in straight["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
    log_text = (out / "logs" / f"{VICTIM}.log").read_text()
    assert log_text.count("=== ") == 2  # one header per attempt, both in the same file


@pytest.mark.slow
def test_local_pool_survives_a_killed_cell_and_resumes_it(configs, reference, tmp_path):  # noqa: F811
    _kill_and_resume(configs, reference, tmp_path / "s", Launch(launcher="local", jobs=2))


@pytest.mark.slow
def test_submitit_local_executor_survives_a_killed_cell_and_resumes_it(configs, reference, tmp_path):  # noqa: F811
    pytest.importorskip("submitit", reason="the [slurm] extra (submitit) is not installed")
    out = tmp_path / "s"
    _kill_and_resume(configs, reference, out, Launch(launcher="submitit", jobs=2, slurm={"cluster": "local"}))
    assert list((out / ".submitit").glob("*_log.err"))  # submitit's own job output sits beside the cells


@pytest.fixture(scope="session")
def ray_cluster():
    """One local 2-CPU Ray for the session (starting one takes seconds); the launcher joins it."""
    ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_local_cluster_survives_a_killed_cell_and_resumes_it(configs, reference, tmp_path, ray_cluster):  # noqa: F811
    _kill_and_resume(configs, reference, tmp_path / "s", Launch(launcher="ray", jobs=2))
    assert ray_cluster.is_initialized()  # a cluster the sweep did not start is left running


def test_summarize_only_rebuilds_the_summary_from_finished_cells(configs, reference, tmp_path):  # noqa: F811
    out = tmp_path / "s"
    run_sweep(configs[:1], seeds=SEEDS, out_dir=out)
    (out / "linear__seed2" / "metrics.json").unlink()  # as if still running
    (out / "summary.csv").unlink()
    code = cli.main(["sweep", "--summarize-only", str(out)])
    assert code == 0
    rows = _summary_rows(out)
    assert rows and all(r["config"] == "linear" and r["n"] == "1" for r in rows)
    finished = json.loads((out / "linear__seed1" / "metrics.json").read_text())
    for r in rows:
        assert float(r["mae_max_mean"]) == pytest.approx(
            finished[r["checkpoint"]][r["split"]]["mae_max"], rel=1e-5
        )
        assert float(r["mae_max_std"]) == 0.0
    md = (out / "summary.md").read_text()
    assert "1 unfinished" in md and "## Unfinished cells" in md and "`linear__seed2`" in md
    # a whole finished sweep: the same table as the run wrote
    before = (reference / "summary.csv").read_text()
    assert summarize_only(reference).rows
    assert (reference / "summary.csv").read_text() == before
    assert cli.main(["sweep", "--summarize-only", str(tmp_path / "nowhere")]) == 2


def _square(x: int) -> int:
    if x == 3:
        raise ValueError("three is not allowed")
    print(f"squaring {x}")
    return x * x


@pytest.mark.slow
def test_pool_gives_each_task_its_log_and_reports_errors(tmp_path):
    tasks = [Task(_square, (x,), tmp_path / f"{x}.log") for x in range(4)]
    outcomes = dict(run_tasks(tasks, Launch(jobs=2, cpus=1)))
    assert {i: o.value for i, o in outcomes.items() if o.error is None} == {0: 0, 1: 1, 2: 4}
    assert outcomes[3].error == "ValueError: three is not allowed"
    assert "squaring 2" in (tmp_path / "2.log").read_text()  # the worker's stdout went to the task's log
    assert "Traceback" in (tmp_path / "3.log").read_text()


def test_launch_flags_and_file(tmp_path, monkeypatch, capsys):
    seen: dict = {}

    def fake_run_sweep(*args, **kwargs):
        seen.update(kwargs)
        raise ConfigError("stop here")

    monkeypatch.setattr("ordinalclip.app.sweep.run_sweep", fake_run_sweep)
    path = tmp_path / "launch.yaml"
    path.write_text(
        "launcher: submitit\njobs: 8\ngpus: 1\ntime_min: 90\npartition: gpu\nslurm: {account: a}\n"
    )
    assert (
        cli.main(
            [
                "sweep",
                "-c",
                "x.yaml",
                "--out",
                str(tmp_path),
                "--launch-config",
                str(path),
                "--jobs",
                "4",
                "--slurm",
                "qos=high",
            ]
        )
        == 2
    )
    assert seen["launch"] == Launch(
        launcher="submitit",
        jobs=4,
        gpus=1,
        time_min=90,
        partition="gpu",
        slurm={"account": "a", "qos": "high"},
    )
    path.write_text("launcher: submitit\njbos: 8\n")
    assert cli.main(["sweep", "-c", "x.yaml", "--out", str(tmp_path), "--launch-config", str(path)]) == 2
    assert "launch.yaml: unknown key 'jbos' (did you mean 'jobs'?)" in capsys.readouterr().err
    assert cli.main(["sweep", "-c", "x.yaml", "--out", str(tmp_path), "--jobs", "0"]) == 2
    assert "jobs: expected at least 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("launcher", "module", "extra"), [("ray", "ray", "ray"), ("submitit", "submitit", "slurm")]
)
def test_missing_extra_names_it(launcher, module, extra, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, module, None)  # what an uninstalled package looks like to import
    with pytest.raises(
        MissingExtraError, match=rf"--launcher {launcher} needs .* pip install 'ordinalclip\[{extra}\]'"
    ):
        list(run_tasks([Task(_square, (1,), tmp_path / "1.log")], Launch(launcher=launcher)))
