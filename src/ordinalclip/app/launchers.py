"""Where the cells of a sweep run: this process, a pool of worker processes, SLURM jobs (submitit) or Ray
tasks.

Every launcher takes the same list of :class:`Task` (a picklable top-level function, its arguments and a log
file) and yields ``(index, Outcome)`` as tasks finish, in any order. A task that raises, or whose process dies
(killed, out of memory, over its time limit), gives an :class:`Outcome` with ``error`` set and never stops the
others.

Example::

    from ordinalclip.app.launchers import Launch, Task, run_tasks

    tasks = [Task(train_one, (cfg,), Path(f"logs/{i}.log")) for i, cfg in enumerate(configs)]
    for index, outcome in run_tasks(tasks, Launch(launcher="local", jobs=2)):
        print(index, outcome.value if outcome.error is None else outcome.error)

Launchers:

* ``local``, ``jobs=1``: in this process, one task after another (exceptions propagate, as from a loop);
* ``local``, ``jobs=N``: N spawned worker processes, each with ``cpus`` torch threads (default: this machine's
  cores / N) and, with ``gpus``, its own ``CUDA_VISIBLE_DEVICES``; a dead worker is replaced;
* ``submitit``: one SLURM job per task (a job array, at most ``jobs`` at a time) through the ``submitit``
  library, or with ``slurm={"cluster": "local"}`` submitit's local executor (subprocesses, no SLURM);
* ``ray``: one Ray task per task (``num_cpus=cpus``, ``num_gpus=gpus``), on the cluster at ``ray_address``
  or on a local one started here.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from ordinalclip.config.typed import ConfigError
from ordinalclip.errors import MissingExtraError

__all__ = ["LAUNCHERS", "Launch", "MissingExtraError", "Outcome", "Task", "cell_log", "run_tasks"]

log = logging.getLogger(__name__)

LAUNCHERS = ("local", "submitit", "ray")
# Loggers whose records go to a task's log file (the root logger is left to the caller).
LOGGERS = ("ordinalclip", "lightning.pytorch", "lightning.fabric", "py.warnings")
GRACE_S = 60.0  # after SIGTERM (time limit), how long a worker may take to write its checkpoint
STARTED = "started"  # what a pool worker sends when it begins a task (then the task's Outcome)


@dataclass
class Launch:
    """How and where the tasks run, and what each may use (flags of ``ordinalclip sweep`` or a YAML file)."""

    launcher: str = "local"  # local | submitit | ray
    jobs: int = (
        1  # tasks at the same time (local: worker processes; submitit / ray: at most this many in flight)
    )
    cpus: int | None = None  # CPU threads per task (default: local = cores // jobs, submitit / ray = 1)
    gpus: int = 0  # GPUs per task (local: CUDA_VISIBLE_DEVICES per worker; SLURM gpus_per_node; Ray num_gpus)
    time_min: float | None = (
        None  # wall-clock limit per task; over it the task gets SIGTERM (checkpoint) and fails
    )
    mem_gb: float | None = None  # memory per task (SLURM mem_gb, Ray memory)
    partition: str | None = None  # SLURM partition
    slurm: dict[str, Any] = field(
        default_factory=dict
    )  # more submitit parameters, e.g. {account: x, qos: y};
    # {cluster: local} runs the jobs with submitit's local executor instead of SLURM
    ray_address: str | None = (
        None  # e.g. "auto" or "ray://head:10001"; None: a local Ray with this machine's CPUs
    )
    folder: str | None = None  # submitit's job folder (default: <sweep>/.submitit)

    def check(self) -> Launch:
        """Raise :class:`ConfigError` naming the bad setting; returns self."""
        if self.launcher not in LAUNCHERS:
            raise ConfigError(f"launcher: expected one of {', '.join(LAUNCHERS)}, got {self.launcher!r}")
        for key in ("jobs", "cpus"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"{key}: expected at least 1, got {value}")
        if self.gpus < 0 or (self.time_min is not None and self.time_min <= 0):
            raise ConfigError(
                f"gpus must be >= 0 and time_min > 0, got gpus={self.gpus}, time_min={self.time_min}"
            )
        return self

    @property
    def in_process(self) -> bool:
        """Tasks run in this process: local, one at a time, no time limit (a limit needs a worker process to
        send SIGTERM to)."""
        return self.launcher == "local" and self.jobs == 1 and self.time_min is None


@dataclass(frozen=True)
class Task:
    """One unit of work: ``fn(*args)`` with its output (logging, stdout, stderr) in ``log``."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    log: Path


@dataclass
class Outcome:
    """``value`` returned by the task, or ``error`` (one line) when it raised or its process died."""

    value: Any = None
    error: str | None = None


def _require(module: str, launcher: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"--launcher {launcher} needs the {module!r} package, which is not installed: "
            f"pip install 'ordinalclip[{extra}]' ({err})"
        ) from None


def run_tasks(tasks: Sequence[Task], launch: Launch) -> Iterator[tuple[int, Outcome]]:
    """Run ``tasks`` as ``launch`` says; yields ``(index into tasks, Outcome)`` as each finishes."""
    launch.check()
    if launch.launcher == "submitit":
        return _run_submitit(tasks, launch)
    if launch.launcher == "ray":
        return _run_ray(tasks, launch)
    if launch.in_process:
        return _run_here(tasks)
    return _run_pool(tasks, launch)


# ------------------------------------------------------------------------------------ in the task's process


@contextlib.contextmanager
def cell_log(path: Path, whole_process: bool) -> Iterator[None]:
    """Send the task's logging (and, with ``whole_process``, everything written to fds 1 and 2: prints,
    warnings, C-level output) to ``path``, appended: a resumed task's log keeps the first attempt's lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:  # one header per attempt
        f.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()} on {os.uname().nodename}\n")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger(n) for n in LOGGERS]
    if whole_process:  # a logger that already writes to stderr reaches the file through fd 2: not twice
        loggers = [
            lg
            for lg in loggers
            if not any(type(h) is logging.StreamHandler and h.stream is sys.stderr for h in lg.handlers)
        ]
        if (
            logging.getLogger("ordinalclip").level == logging.NOTSET
        ):  # a fresh worker: the sweep's own INFO lines
            logging.getLogger("ordinalclip").setLevel(logging.INFO)
    for lg in loggers:
        lg.addHandler(handler)
    saved: list[int] = []
    if whole_process:
        sys.stdout.flush()
        sys.stderr.flush()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        saved = [os.dup(1), os.dup(2)]
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        logging.captureWarnings(True)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
        handler.close()
        if saved:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _call(fn: Callable[..., Any], args: tuple[Any, ...], log_path: Path, threads: int | None) -> Outcome:
    """Run one task in a worker (pool process, SLURM job, Ray worker): output to its log, errors to an
    Outcome."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    with cell_log(Path(log_path), whole_process=True):
        try:
            return Outcome(fn(*args))
        except Exception as err:  # reported by the launcher; the traceback stays in the log
            traceback.print_exc()
            return Outcome(error=f"{type(err).__name__}: {err}")


def _run_here(tasks: Sequence[Task]) -> Iterator[tuple[int, Outcome]]:
    for i, task in enumerate(tasks):
        with cell_log(task.log, whole_process=False):
            yield i, Outcome(task.fn(*task.args))


# ------------------------------------------------------------------------------------------------- local pool


def _worker_main(conn: Any, threads: int, env: dict[str, str]) -> None:
    """A pool worker: set up once (threads, devices), then run tasks sent over ``conn`` until told to stop."""
    os.environ.update(env)
    # Ctrl-C reaches the whole process group: a task in training checkpoints on it (InterruptCheckpoint
    # installs its own handler), an idle worker must not die of it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        fn, args, log_path = message
        # the task's clock starts now, not when it was sent: a fresh worker's start-up (spawn, imports,
        # unpickling the task) is not the task's time
        conn.send(STARTED)
        conn.send(_call(fn, args, log_path, threads))


@dataclass
class _Worker:
    process: Any
    conn: Any
    task: int | None = None
    started: float | None = None  # when the worker began its task (None: still starting up, or idle)
    terminated: float | None = None  # when it was sent SIGTERM for running over its time


def _visible_gpus(launch: Launch, slot: int) -> dict[str, str]:
    """``CUDA_VISIBLE_DEVICES`` of worker ``slot``: ``gpus`` devices of this machine's, round robin."""
    if not launch.gpus:
        return {}
    import torch

    count = torch.cuda.device_count()
    if count < launch.gpus:
        raise ConfigError(f"gpus: {launch.gpus} per task asked, this machine has {count} CUDA device(s)")
    first = (slot * launch.gpus) % count
    return {"CUDA_VISIBLE_DEVICES": ",".join(str((first + k) % count) for k in range(launch.gpus))}


def _note_in_log(path: Path, line: str) -> None:
    """Append ``line`` to a task's log, creating it: a worker killed before its task opened the log would
    otherwise leave the failure pointing at a file that does not exist."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} launcher: {line}\n")  # not an attempt's "===" header


def _run_pool(tasks: Sequence[Task], launch: Launch) -> Iterator[tuple[int, Outcome]]:
    ctx = mp.get_context("spawn")  # fork after torch has started threads is unsafe
    jobs = min(launch.jobs, len(tasks))
    threads = launch.cpus or max(1, (os.cpu_count() or 1) // max(jobs, 1))
    limit = launch.time_min * 60 if launch.time_min else None

    def start(slot: int) -> _Worker:
        parent, child = ctx.Pipe()
        process = ctx.Process(
            target=_worker_main,
            args=(child, threads, _visible_gpus(launch, slot)),
            daemon=True,
            name=f"ordinalclip-worker-{slot}",
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    pending = deque(range(len(tasks)))
    workers = [start(slot) for slot in range(jobs)]
    try:
        while pending or any(w.task is not None for w in workers):
            for slot, w in enumerate(workers):
                if w.task is None and pending:
                    task = tasks[pending[0]]
                    try:
                        w.conn.send((task.fn, task.args, task.log))
                    except (BrokenPipeError, OSError):  # it died while idle: a new one takes the task
                        w.process.join()
                        workers[slot] = w = start(slot)
                        w.conn.send((task.fn, task.args, task.log))
                    w.task, w.started, w.terminated = pending.popleft(), None, None
            busy = [w for w in workers if w.task is not None]
            ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=5.0))
            for slot, w in enumerate(workers):
                if w.task is None:
                    continue
                index = w.task
                if w.conn in ready:
                    try:
                        outcome = w.conn.recv()
                    except (EOFError, OSError):
                        outcome = None
                    if outcome == STARTED:
                        w.started = time.monotonic()
                        continue
                    if outcome is not None:
                        w.task = None
                        if w.terminated is not None and outcome.error is not None:
                            outcome.error = f"over its time limit ({launch.time_min} min): {outcome.error}"
                        yield index, outcome
                        continue
                if w.process.sentinel in ready or not w.process.is_alive():
                    w.process.join()
                    code = w.process.exitcode
                    why = (
                        f"killed by {signal.Signals(-code).name}"
                        if code and code < 0
                        else f"exit code {code}"
                    )
                    if w.terminated is not None:
                        why += f" after running over its time limit ({launch.time_min} min)"
                    workers[slot] = start(slot)
                    _note_in_log(tasks[index].log, f"worker process died ({why})")
                    yield index, Outcome(error=f"worker process died ({why})")
                    continue
                if limit is not None and w.started is not None and time.monotonic() - w.started > limit:
                    if w.terminated is None:
                        w.terminated = time.monotonic()
                        w.process.terminate()  # SIGTERM: a training task writes last.ckpt and stops
                    elif time.monotonic() - w.terminated > GRACE_S:
                        w.process.kill()
    except BaseException:
        # Interrupted (Ctrl-C), or the caller stopped listening: a worker in training writes last.ckpt on
        # SIGTERM and finishes its task; then it reads the stop message below and exits.
        for w in workers:
            if w.task is not None and w.process.is_alive():
                w.process.terminate()
        raise
    finally:
        for w in workers:
            with contextlib.suppress(OSError, BrokenPipeError):
                w.conn.send(None)
        for w in workers:
            w.process.join(timeout=GRACE_S if w.task is not None else 10.0)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            w.conn.close()


# ------------------------------------------------------------------------------------------------- submitit


def _submitit_executor(launch: Launch, folder: Path) -> Any:
    submitit = _require("submitit", "submitit", "slurm")
    options = dict(launch.slurm)
    cluster = options.pop("cluster", None)
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params: dict[str, Any] = {
        "name": "ordinalclip-sweep",
        "cpus_per_task": launch.cpus or 1,
        "timeout_min": int(launch.time_min or 24 * 60),
        "nodes": 1,
        "tasks_per_node": 1,
    }
    if launch.gpus:
        params["gpus_per_node"] = launch.gpus
    if launch.mem_gb:
        params["mem_gb"] = launch.mem_gb
    if executor.cluster == "slurm":
        params["slurm_array_parallelism"] = launch.jobs
        if launch.partition:
            params["slurm_partition"] = launch.partition
        params.update({f"slurm_{k}": v for k, v in options.items()})
    elif options:
        raise ConfigError(
            f"slurm: {sorted(options)} are SLURM settings; submitit found no SLURM here "
            f"(cluster {executor.cluster!r})"
        )
    executor.update_parameters(**params)
    return executor


def _run_submitit(tasks: Sequence[Task], launch: Launch) -> Iterator[tuple[int, Outcome]]:
    if not tasks:
        return
    folder = Path(launch.folder or tasks[0].log.parent.parent / ".submitit")
    executor = _submitit_executor(launch, folder)
    threads = launch.cpus or 1

    def submit(index: int) -> Any:
        t = tasks[index]
        return executor.submit(_call, t.fn, t.args, t.log, threads)

    if executor.cluster == "slurm":  # one job array; SLURM keeps at most `jobs` of it running
        with executor.batch():
            submitted = [submit(i) for i in range(len(tasks))]
        in_flight = dict(enumerate(submitted))
        pending: deque[int] = deque()
    else:  # the local executor starts whatever it is given at once
        pending = deque(range(len(tasks)))
        in_flight = {}
    while pending or in_flight:
        while pending and len(in_flight) < launch.jobs:
            i = pending.popleft()
            in_flight[i] = submit(i)
        done = [i for i, job in in_flight.items() if job.done()]
        if not done:
            time.sleep(1.0)
            continue
        for i in done:
            job = in_flight.pop(i)
            try:
                outcome = job.result()
            except Exception as err:  # the job died: killed, over its time, node failure
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                outcome = Outcome(
                    error=f"SLURM/submitit job {job.job_id} failed ({type(err).__name__}: {first}); "
                    f"its output: {job.paths.stderr}"
                )
            yield i, outcome


# ------------------------------------------------------------------------------------------------------ ray


def _run_ray(tasks: Sequence[Task], launch: Launch) -> Iterator[tuple[int, Outcome]]:
    if not tasks:
        return
    ray = _require("ray", "ray", "ray")
    started = not ray.is_initialized()
    if started:
        if launch.ray_address:
            ray.init(address=launch.ray_address, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    cpus = launch.cpus or 1
    options: dict[str, Any] = {"num_cpus": cpus, "num_gpus": launch.gpus, "max_retries": 0}
    if launch.mem_gb:
        options["memory"] = int(launch.mem_gb * 1024**3)
    remote = ray.remote(_call).options(**options)
    limit = launch.time_min * 60 if launch.time_min else None
    pending = deque(range(len(tasks)))
    in_flight: dict[Any, tuple[int, float]] = {}
    try:
        while pending or in_flight:
            while pending and len(in_flight) < launch.jobs:
                i = pending.popleft()
                t = tasks[i]
                in_flight[remote.remote(t.fn, t.args, t.log, cpus)] = (i, time.monotonic())
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=5.0)
            for ref in ready:
                i, _ = in_flight.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as err:  # the worker died, or the task was cancelled
                    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                    outcome = Outcome(error=f"Ray task failed ({type(err).__name__}: {first})")
                yield i, outcome
            if limit is not None:
                for ref, (i, since) in list(in_flight.items()):
                    if time.monotonic() - since > limit:
                        ray.cancel(ref, force=True)
                        in_flight.pop(ref)
                        yield i, Outcome(error=f"over its time limit ({launch.time_min} min): cancelled")
    finally:
        for ref in in_flight:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
