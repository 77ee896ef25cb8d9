"""Robustness, round three: hostile input, full disks and a flaky machine through the CLI and serve: one ``error:`` line with exit 1 (the
environment) or 2 (the input) where a traceback or a silent wrong result was.

1. the CLI's error mapping: disk full (an ``OSError(ENOSPC)`` injected at the write, and a full tmpfs), a
   read-only folder (a read-only tmpfs: tests run as root, where chmod does not stop writes), an output that is
   a folder, a parent that is a file, a name over the limit; a training checkpoint write on a full disk
2. fileio: a legal 242-255 byte name, the mode a plain open() gives, no temporary left by Ctrl-C or SIGTERM
3. option range checks before anything runs (serve, predict) and config ranges (seed, rank counts), also in
   ``sweep --dry-run``
4. ``report`` on a folder that is not a run, ``train --resume`` below the epochs trained, rank names the demo
   data would replace
5. serve limits: pixels per request, header / body timeouts on loopback, Host allow-list, HEAD, empty POST,
   the warning for a non-loopback address
6. sweeps: ``--time`` with one job, the limit's clock, two sweeps into one folder
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from ordinalclip.app import cli
from ordinalclip.engine import checkpoint_io
from ordinalclip.engine.run import run_dir_lock
from ordinalclip.exports.write import export_head
from ordinalclip.fileio import atomic_write_text, temp_beside
from ordinalclip.modeling import ImageTowerConfig, ModelConfig, build_model
from tests.helpers import (
    free_port,
    make_features,
    png_bytes,
    run_cli,
    tiny_clip_custom,
    tiny_config,
    user_error,
)

NAME_MAX = 255  # bytes in one file name (ext4, tmpfs, xfs, btrfs)
COSINE = {"arch": "cosine", "num_ranks": 4, "embed_dim": 8, "image": {"kind": "features", "input_dim": 8}}


def _temps(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob(".*.tmp"))


@pytest.fixture(scope="module")
def features_config(tmp_path_factory) -> Path:
    """A 2-epoch cosine head on 8-d generated features (a second per run)."""
    folder = tmp_path_factory.mktemp("feats")
    features = make_features(folder / "features.npz")
    cfg = tiny_config(
        folder, {"format": "features", "train": features, "columns": {"split": "split"}}, COSINE
    )
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


@contextlib.contextmanager
def tmpfs(folder: Path, size: str = "64k", read_only: bool = False):
    """A tmpfs mounted at ``folder`` (yields True), or False where this process may not mount."""
    folder.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)], capture_output=True)
    try:
        yield done.returncode == 0
    finally:
        if done.returncode == 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _fill(folder: Path) -> None:
    """Write until the file system reports ENOSPC."""
    with contextlib.suppress(OSError), open(folder / "filler", "wb", buffering=0) as f:
        while True:
            f.write(b"\0" * 4096)


# -------------------------------------------------------------------------------------- 1. the error mapping


def test_disk_full_at_a_training_checkpoint_is_one_line_naming_it(
    features_config, tmp_path, capsys, monkeypatch
):
    # before: two chained tracebacks (the checkpoint write, then Lightning's logger finalising on the same disk)
    def full(obj, fh):
        fh.write(b"PK\x03\x04")  # a first block made it to disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_io.torch, "save", full)
    code, _, err = run_cli(["train", "-c", str(features_config), "--set", f"output_dir={tmp_path}"], capsys)
    assert code == 1
    line = user_error(err)
    assert line.startswith(f"error: {tmp_path}/") and "/checkpoints/" in line, line
    assert "No space left on device (free some space or choose another output folder)" in line
    assert "non-finite" not in err
    assert _temps(tmp_path) == []


def test_a_full_tmpfs_under_predict_is_one_line(image_export, photos, tmp_path, capsys):
    with tmpfs(tmp_path / "disk", size="16k") as mounted:
        if not mounted:
            pytest.skip("cannot mount a tmpfs here (not root): the injected-ENOSPC tests cover the mapping")
        _fill(tmp_path / "disk")
        out = tmp_path / "disk" / "p.csv"
        code, _, err = run_cli(["predict", str(image_export), str(photos), "-o", str(out)], capsys)
        assert code == 1
        assert user_error(err) == (
            f"error: {out}: No space left on device (free some space or choose another output folder)"
        )
        assert not out.exists() and _temps(tmp_path / "disk") == []


def test_a_read_only_folder_is_one_line(image_export, photos, tmp_path, capsys, monkeypatch):
    # a read-only tmpfs (root ignores chmod); where mounting is not allowed, EROFS injected at the open
    with tmpfs(tmp_path / "ro", read_only=True) as mounted:
        out = tmp_path / "ro" / "p.csv"
        if not mounted:
            from ordinalclip import fileio

            def read_only(path):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(Path(path).parent))

            monkeypatch.setattr(fileio, "temp_beside", read_only)
        code, _, err = run_cli(["predict", str(image_export), str(photos), "-o", str(out)], capsys)
    assert code == 1
    line = user_error(err)
    assert line.startswith(f"error: {tmp_path / 'ro'}") and line.endswith(
        "Read-only file system (the file system is read-only: choose another output folder)"
    ), line


def test_output_that_is_a_folder_parent_that_is_a_file_and_a_long_name(
    image_export, photos, tmp_path, capsys
):
    (tmp_path / "taken").mkdir()
    code, _, err = run_cli(["predict", str(image_export), str(photos), "-o", str(tmp_path / "taken")], capsys)
    assert code == 1
    assert user_error(err).startswith(f"error: {tmp_path / 'taken'}: Is a directory"), err
    assert _temps(tmp_path) == []

    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(
        ["predict", str(image_export), str(photos), "-o", str(tmp_path / "file" / "p.csv")], capsys
    )
    assert code == 1
    assert user_error(err) == (
        f"error: {tmp_path / 'file'}: File exists (a file is in the way of a folder: remove it or choose "
        "another path)"
    )

    long = tmp_path / ("n" * (NAME_MAX + 1))
    code, _, err = run_cli(["predict", str(image_export), str(photos), "-o", str(long)], capsys)
    assert code == 1
    assert user_error(err).endswith("File name too long (use a shorter file name)"), err


def test_debug_adds_the_traceback(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code = cli.main(["--debug", "report", str(tmp_path / "file" / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "error: run folder not found" in err
    assert "Traceback" in err


# ---------------------------------------------------------------------------------------------------- 2. fileio


@pytest.mark.parametrize("length", [242, 250, 255])
def test_a_legal_long_name_is_written(tmp_path, length):
    name = "é" * ((length - 4) // 2) + "x" * ((length - 4) % 2) + ".csv"  # two bytes per é
    assert len(name.encode()) == length
    path = atomic_write_text(tmp_path / name, "ok\n")
    assert path.read_text() == "ok\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    tmp = temp_beside(tmp_path / name)
    assert len(tmp.name.encode()) <= NAME_MAX and tmp.name.startswith(".é") and tmp.name.endswith(".tmp")
    tmp.unlink()


def test_files_get_the_mode_a_plain_open_gives(tmp_path):
    cfg = ModelConfig(
        arch="cosine", num_ranks=4, embed_dim=6, image=ImageTowerConfig(kind="features", input_dim=10)
    )
    old = os.umask(0o027)
    try:
        out = export_head(build_model(cfg).eval(), cfg, tmp_path / "m.safetensors")
        with open(tmp_path / "plain", "w"):
            pass
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    # before: model.safetensors 0o600 (safetensors rewrites the file), its sidecar 0o640
    assert modes == {"m.safetensors": 0o640, "m.json": 0o640, "plain": 0o640}
    out.chmod(0o604)  # replacing a file keeps its mode, as open(path, "w") does
    export_head(build_model(cfg).eval(), cfg, out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o604


@pytest.mark.parametrize(
    ("how", "code", "line"),
    [
        ("ctrl-c", 130, "error: interrupted by SIGINT (Ctrl-C)"),
        ("sigterm", 143, "error: terminated by SIGTERM"),
    ],
)
def test_predict_stopped_by_a_signal_exits_with_one_line_and_no_temporary(
    image_export, photos, tmp_path, capsys, monkeypatch, how, code, line
):
    from ordinalclip.predict import Predictor

    real = Predictor.predict_arrays
    calls = []

    def stopped(self, images):
        calls.append(1)
        if how == "ctrl-c":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)  # the real signal: its default action would end the process
        time.sleep(1)
        return real(self, images)

    monkeypatch.setattr(Predictor, "predict_arrays", stopped)

    def outside(signum, frame):  # stands in for the default action (the end of the process, pytest's too)
        raise AssertionError("SIGTERM reached the handler found before the command")

    before = signal.signal(signal.SIGTERM, outside)
    out = tmp_path / "p.csv"
    try:
        got, _, err = run_cli(["predict", str(image_export), str(photos), "-o", str(out)], capsys)
        assert signal.getsignal(signal.SIGTERM) is outside  # put back for the caller
    except KeyboardInterrupt:  # escaped the command: pytest would take it for the user's own Ctrl-C
        pytest.fail("KeyboardInterrupt escaped the command (a traceback, not one line)")
    finally:
        signal.signal(signal.SIGTERM, before)
    assert calls and got == code
    assert user_error(err) == line
    assert not out.exists() and _temps(tmp_path) == []


# ------------------------------------------------------------------------------------------- 3. range checks


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-batch", "0"], "argument --max-batch: expected an integer >= 1, got 0"),
        (["--port", "70000"], "argument --port: expected an integer in [1, 65535], got 70000"),
        (["--max-image-mb", "-1"], "argument --max-image-mb: expected a finite number > 0, got -1"),
        (["--max-images", "0"], "argument --max-images: expected an integer >= 1, got 0"),
        (["--max-wait-ms", "nan"], "argument --max-wait-ms: expected a finite number >= 0, got nan"),
        (["--header-timeout", "0"], "argument --header-timeout: expected a finite number > 0, got 0"),
    ],
)
def test_serve_options_are_range_checked_before_anything_runs(tmp_path, capsys, args, message):
    code, out, err = run_cli(["serve", str(tmp_path / "absent.safetensors"), *args], capsys)
    assert code == 2
    assert "serving on" not in out
    assert err.strip().splitlines()[-1] == f"ordinalclip serve: error: {message}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")
def test_serve_on_a_missing_gpu_fails_before_loading(tmp_path, capsys):
    # the model does not exist: the device is checked first
    code, out, err = run_cli(["serve", str(tmp_path / "absent.safetensors"), "--device", "cuda:7"], capsys)
    assert code == 2 and "serving on" not in out
    assert user_error(err) == "error: --device cuda:7: no CUDA GPU is available here; use --device cpu"


def test_serve_on_a_gpu_index_beyond_the_machines(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    code, _, err = run_cli(["serve", str(tmp_path / "absent.safetensors"), "--device", "cuda:7"], capsys)
    assert code == 2
    assert user_error(err) == "error: --device cuda:7: only 2 CUDA GPUs here (cuda:0..cuda:1)"


def test_predict_batch_size_zero_is_a_usage_error(tmp_path, capsys):
    code, _, err = run_cli(
        ["predict", "m.safetensors", str(tmp_path), "-o", "p.csv", "--batch-size", "0"], capsys
    )
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        "ordinalclip predict: error: argument --batch-size: expected an integer >= 1, got 0"
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "trainer.seed=4294967296",
            "trainer.seed: expected an integer in [0, 2**32 - 1 = 4294967295], got 4294967296",
        ),
        ("trainer.seed=-1", "trainer.seed: expected an integer in [0, 2**32 - 1 = 4294967295], got -1"),
        ("data.few_shot.seed=99999999999", "data.few_shot.seed: expected an integer in [0, 2**32 - 1"),
        (
            "model.prompts.num_base_ranks=1",
            "model.prompts.num_base_ranks: expected an integer in [2, 4], got 1: one base rank gives every rank "
            "the same prompt",
        ),
        (
            "model.prompts.num_base_ranks=5",
            "model.prompts.num_base_ranks: expected at most model.num_ranks = 4, got 5",
        ),
        (  # by hand: 100000 prompts x 77 tokens x 512 wide x 4 bytes x 12 layers x 4 tensors = 757 GB
            "model.num_ranks=100000",
            "model.num_ranks: 100000 ranks means 100,000 prompts through the text tower at every step, about "
            "757 GB of activations",
        ),
    ],
)
def test_seeds_and_rank_counts_are_checked_before_anything_is_built(tmp_path, capsys, override, message):
    data = {"format": "features", "train": "absent.npz", "columns": {"split": "split"}}
    cfg = tiny_config(tmp_path, data, {"num_ranks": 4, "clip": {"name": None, "custom": tiny_clip_custom()}})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, _, err = run_cli(["train", "-c", str(path), "--set", override], capsys)
    assert code == 2
    assert user_error(err).startswith(f"error: {message}"), err
    assert not (tmp_path / "runs").exists()


def test_sweep_dry_run_checks_base_ranks(tmp_path, capsys):
    data = {"format": "features", "train": "absent.npz", "columns": {"split": "split"}}
    cfg = tiny_config(tmp_path, data, {"num_ranks": 4, "clip": {"name": None, "custom": tiny_clip_custom()}})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    argv = ["sweep", "-c", str(path), "--out", str(tmp_path / "s"), "--dry-run"]
    code, _, err = run_cli([*argv, "--grid", "model.prompts.num_base_ranks=2,5"], capsys)
    assert code == 2
    assert "model.prompts.num_base_ranks: expected at most model.num_ranks = 4, got 5" in user_error(err)
    code, out, _ = run_cli([*argv, "--grid", "model.prompts.num_base_ranks=2,3"], capsys)
    assert code == 0 and out.strip().endswith("2 cells")


# --------------------------------------------------------------------------------------- 4. report, resume, demo


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = run_cli(["report", str(tmp_path)], capsys)
    assert code == 2
    assert user_error(err).startswith(f"error: {tmp_path} is neither a run folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # no page written there


def test_resume_below_the_epochs_trained_is_refused_and_config_kept(features_config, tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "-c", str(features_config), "--run-dir", str(run)], capsys)
    assert code == 0, err
    config = (run / "config.yaml").read_bytes()
    metrics = (run / "metrics.json").read_bytes()
    code, _, err = run_cli(["train", "--resume", str(run), "--set", "trainer.max_epochs=1"], capsys)
    assert code == 2
    assert user_error(err).startswith(
        f"error: --resume: {run} has already trained 2 epochs, more than trainer.max_epochs = 1: nothing would "
        "be trained (config.yaml is left as it is)"
    )
    assert (run / "config.yaml").read_bytes() == config and (run / "metrics.json").read_bytes() == metrics


def test_rank_names_the_demo_data_would_replace_are_refused(tmp_path, capsys, monkeypatch):
    from ordinalclip.data import blur

    def tiny_demo(root, levels, **kwargs):  # the real builder, on a few small crops
        return real(tmp_path / "blur", levels=levels, crops_per_photo=1, size=32, seed=0, progress=False)

    real = blur.build_blur_dataset
    monkeypatch.setattr(blur, "build_blur_dataset", tiny_demo)
    data = {"format": "demo", "rank_names": ["a", "b", "c", "d"]}
    cfg = tiny_config(tmp_path, data, COSINE)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    names = real(tmp_path / "blur", levels=4, crops_per_photo=1, size=32, seed=0, progress=False).rank_names
    code, _, err = run_cli(["train", "-c", str(path)], capsys)
    assert code == 2
    assert user_error(err) == (
        f"error: data.rank_names: the built-in demo data names its own ranks ({', '.join(names)}); remove "
        "data.rank_names (the run's config.yaml records them)"
    )
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------- 5. serve limits

try:
    import requests
except ImportError:  # the test extra; the serve tests skip below, naming it
    requests = None


@pytest.fixture(scope="module")
def limited(image_export):
    """A server with short timeouts and a 4000-pixel request budget (two 48x40 images: 3840 pixels)."""
    pytest.importorskip(
        "uvicorn", reason="the serve extra (pip install 'ordinalclip[serve]') is not installed"
    )
    pytest.importorskip("requests", reason="the test extra (requests) is not installed")
    import ordinalclip as oc
    from ordinalclip.app.serve import ServeOptions, running_server

    opts = ServeOptions(
        port=free_port(),
        max_request_pixels=4000,
        header_timeout=1.0,
        body_timeout=1.0,
        keep_alive=1.0,
        max_images=8,
    )
    with running_server(oc.load(image_export), opts, "m.safetensors") as url:
        yield url, opts.port


def _post(url: str, names: list[str], **kw):
    files = [("files", (n, png_bytes(i), "image/png")) for i, n in enumerate(names)]
    return requests.post(f"{url}/predict", files=files, timeout=30, **kw)


def test_decoded_pixels_are_bounded_per_request(limited):
    url, _ = limited
    assert _post(url, ["a.png", "b.png"]).status_code == 200  # 3840 pixels
    r = _post(url, ["a.png", "b.png", "c.png"])  # 5760 pixels, each image far under the per-image cap
    assert r.status_code == 413
    assert r.json()["error"] == (
        "c.png: the images up to this one decode to 5,760 pixels, more than the 4,000 one request may "
        "(ordinalclip serve --max-request-mpixels)"
    )


def test_head_empty_post_and_host_header(limited):
    url, port = limited
    for path in ("/", "/health"):
        r = requests.head(f"{url}{path}", timeout=10)
        assert r.status_code == 200 and r.content == b"", path
    r = requests.post(f"{url}/predict", timeout=10)  # Content-Length: 0, no content type
    assert r.status_code == 400 and r.json()["error"] == "empty request body: send one or more image files"
    for host in ("localhost", f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert requests.get(f"{url}/health", headers={"Host": host}, timeout=10).status_code == 200, host
    r = requests.get(f"{url}/health", headers={"Host": f"rebound.example:{port}"}, timeout=10)
    assert r.status_code == 421
    assert r.json()["error"].startswith(f"Host 'rebound.example:{port}' is not a name of this server")


@pytest.mark.parametrize(
    ("header", "bound", "allowed", "ok"),
    [
        ("localhost:8000", "127.0.0.1", None, True),
        ("app.localhost", "127.0.0.1", None, True),
        ("10.1.2.3:80", "0.0.0.0", None, True),  # an address never comes from DNS rebinding
        ("[fe80::1]:8000", "::", None, True),
        ("attacker.example", "127.0.0.1", None, False),
        ("attacker.example.", "127.0.0.1", None, False),
        ("models.lab", "models.lab", None, True),  # the bound name
        ("Models.Lab:8000", "0.0.0.0", ("models.lab",), True),
        ("other.lab", "0.0.0.0", ("models.lab",), False),
        ("anything", "0.0.0.0", ("*",), True),
        ("", "127.0.0.1", None, False),
    ],
)
def test_host_allow_list(header, bound, allowed, ok):
    from ordinalclip.app.serve import host_allowed

    assert host_allowed(header, bound, allowed) is ok


def _closed_after(sock: socket.socket, limit: float) -> float | None:
    """Seconds until the server closes ``sock`` (None: still open after ``limit``)."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return None
    except OSError:
        pass
    return time.monotonic() - start


def test_slow_headers_are_dropped(limited):
    # 20 loopback connections send half a request line and stall (slowloris): the 1 s header deadline closes
    # each; before, they stayed open (uvicorn has no header timeout)
    _, port = limited
    socks = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: local")
        socks.append(s)
    try:
        waits = [_closed_after(s, 6.0) for s in socks]
    finally:
        for s in socks:
            s.close()
    assert all(w is not None and w < 4.0 for w in waits), waits


def test_a_slow_body_gets_408_and_an_idle_connection_closes(limited):
    _, port = limited
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(
            b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=xyz\r\n"
            b"Content-Length: 1000\r\n\r\n--xyz\r\n"
        )
        s.settimeout(6.0)
        start = time.monotonic()
        answer = s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert time.monotonic() - start < 4.0
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:  # keep-alive: 1 s
        s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        waited = _closed_after(s, 6.0)
        assert waited is not None and waited < 4.0


@pytest.mark.parametrize(("host", "warned"), [("0.0.0.0", True), ("127.0.0.1", False), ("localhost", False)])
def test_a_non_loopback_address_prints_a_warning(image_export, monkeypatch, capsys, host, warned):
    uvicorn = pytest.importorskip("uvicorn", reason="the serve extra is not installed")

    from ordinalclip.app.serve import ServeOptions, serve

    monkeypatch.setattr(uvicorn.Server, "run", lambda self: None)
    serve(image_export, ServeOptions(host=host))
    err = capsys.readouterr().err
    assert ("warning: serving on " + host in err) is warned, err
    if warned:
        assert "no authentication, TLS or rate limit" in err


# ------------------------------------------------------------------------------------------------- 6. sweeps


def _nap(seconds: float) -> str:
    time.sleep(seconds)
    return "rested"


class _DiesWhenUnpickled:
    """A task argument whose unpickling ends the worker process: it dies before its task starts."""

    def __reduce__(self):
        return (os._exit, (3,))


def test_the_time_limit_starts_with_the_task_and_a_dead_workers_log_exists(tmp_path):
    from ordinalclip.app.launchers import Launch, Task, run_tasks

    # a fresh worker takes seconds to start (spawn, torch); before, that counted against the 1.2 s limit
    tasks = [Task(_nap, (0.2,), tmp_path / "logs" / f"{i}.log") for i in range(2)]
    got = dict(run_tasks(tasks, Launch(jobs=2, time_min=0.02)))
    assert [got[i].error for i in range(2)] == [None, None]
    assert [got[i].value for i in range(2)] == ["rested", "rested"]

    dead = Task(_nap, (_DiesWhenUnpickled(),), tmp_path / "logs" / "dead.log")
    ((_, outcome),) = list(run_tasks([dead], Launch(jobs=2)))
    assert outcome.error == "worker process died (exit code 3)"
    assert "worker process died (exit code 3)" in dead.log.read_text()


def _sweep_config(folder: Path, epochs: int) -> Path:
    features = make_features(folder / "features.npz")
    cfg = tiny_config(
        folder, {"format": "features", "train": features, "columns": {"split": "split"}}, COSINE
    )
    cfg["trainer"]["max_epochs"] = epochs
    path = folder / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_sweep_time_limit_applies_with_one_job(tmp_path, capsys):
    # before: --time was ignored with the default --jobs 1 (the cell trained all its epochs)
    config = _sweep_config(tmp_path, epochs=100000)
    out = tmp_path / "s"
    start = time.monotonic()
    code, stdout, err = run_cli(["sweep", "-c", str(config), "--out", str(out), "--time", "0.05"], capsys)
    assert time.monotonic() - start < 120
    assert code == 1
    (cell,) = [p for p in out.iterdir() if (p / "cell.json").is_file()]
    assert (cell / "checkpoints" / "last.ckpt").is_file()  # SIGTERM wrote the checkpoint
    assert not (cell / "metrics.json").exists()
    log = out / "logs" / f"{cell.name}.log"
    assert log.is_file() and "interrupted by SIGTERM" in (out / "summary.md").read_text()


def test_two_sweeps_into_one_folder_leave_each_others_cells_alone(tmp_path):
    from ordinalclip.app.sweep import CELL_FILE, plan_sweep, run_cells
    from ordinalclip.fileio import write_json

    config = _sweep_config(tmp_path, epochs=2)
    out = tmp_path / "s"
    cells = plan_sweep([config], seeds=[1, 2])
    theirs = out / cells[0].name  # the other sweep is training this cell now
    theirs.mkdir(parents=True)
    write_json(cells[0].record(), theirs / CELL_FILE)
    (theirs / "theirs.txt").write_text("the other sweep's file")

    with contextlib.ExitStack() as other:
        other.enter_context(run_dir_lock(theirs))

        def progress(result):
            if result.cell.name == cells[1].name:  # meanwhile the other sweep finishes its cell
                metrics = json.loads((out / cells[1].name / "metrics.json").read_text())
                write_json(metrics, theirs / "metrics.json")
                other.close()

        result = run_cells(cells, out, progress=progress)
    assert (theirs / "theirs.txt").read_text() == "the other sweep's file"  # never removed under it
    assert [r.status for r in result.cells] == ["skipped", "trained"]
    assert result.failed == []
    assert "Failed cells" not in (out / "summary.md").read_text()
