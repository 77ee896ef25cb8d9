"""Load on ``ordinalclip serve`` (loopback) vs calling the predictor in-process: throughput and p50 / p99 latency at
1, 8 and 32 concurrent clients, failed requests, and the server's resident memory over the run.

The model is a small export: EfficientNet-Lite0 with random weights (224 px, 101 ranks) as safetensors (``--tower
tiny``: a tiny CLIP ViT at 32 px). The server runs as ``ordinalclip serve`` in its own process on 127.0.0.1 (a free
port) with its default batching (up to 32 images, 5 ms wait); each client is a thread that posts one 224 x 224 JPEG
per request, one request after another. In-process, each client thread calls ``Predictor.predict`` on the decoded
image (the same JPEG bytes, decoded per call) — what a Python program gets without a server. Both sides run torch
with ``--threads`` intra-op threads. Counts and time are bounded: ``--requests`` per level (at least 2 per client),
and a level stops early after ``--max-seconds``. Resident memory (VmRSS of the server process) is read after a
warm-up, after every level and after each of ``--repeats`` runs of the last level (growth over the repeats is
``server_rss_growth_mb``, over the last one ``server_rss_growth_last_repeat_mb``: pools grow with the largest
batch seen and then stay, a leak would keep growing).

    python benchmarks/serve.py [--clients 1 8 32] [--requests 96] [--max-seconds 60] [--json PATH]
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import check_finite, finish, load_note, parse_common  # noqa: E402
from onnx_inference import PREP, TINY_CLIP  # noqa: E402
from ordinalclip.exports.load import build_export_tower  # noqa: E402
from ordinalclip.exports.write import export_head  # noqa: E402
from ordinalclip.modeling import ClipConfig, CosineClassifier, ImageTowerConfig, ModelConfig  # noqa: E402
from ordinalclip.modeling.build import build_image_tower  # noqa: E402
from ordinalclip.predict import Predictor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NUM_RANKS = 101


def export_small(tower: str, folder: Path) -> Path:
    torch.manual_seed(0)
    if tower == "tiny":
        cfg = ModelConfig(arch="cosine", num_ranks=NUM_RANKS, clip=ClipConfig(name=None, custom=TINY_CLIP))
        prep = {**PREP, "size": 32, "resize": 32}
        image = build_export_tower(cfg, {}, 32, prep)
    else:
        cfg = ModelConfig(
            arch="cosine",
            num_ranks=NUM_RANKS,
            embed_dim=512,
            image=ImageTowerConfig(kind="efficientnet_lite0", imagenet_weights=False),
        )
        image, prep = build_image_tower(cfg.image, 512, None), PREP
    head = CosineClassifier(
        image, NUM_RANKS, prototypes=torch.randn(NUM_RANKS, int(image.output_dim)), learnable=False
    )
    return export_head(head.eval(), cfg, folder / "model.safetensors", preprocess=prep)


def jpegs(n: int = 8) -> list[bytes]:
    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        arr = np.clip(rng.normal(128, 40, (224, 224, 3)), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drive(call, clients: int, total: int, max_seconds: float) -> dict[str, float]:
    """``total`` calls of ``call(i) -> ok`` from ``clients`` threads; latency percentiles, throughput, failures."""
    lock = threading.Lock()
    latencies: list[float] = []
    failed = [0]
    next_i = [0]
    stop_at = time.perf_counter() + max_seconds

    def client() -> None:
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= total or time.perf_counter() > stop_at:
                return
            t = time.perf_counter()
            try:
                ok = call(i)
            except Exception:  # noqa: BLE001 - a failed request is counted, not fatal
                ok = False
            dt = time.perf_counter() - t
            with lock:
                latencies.append(dt)
                failed[0] += 0 if ok else 1

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = np.array(latencies)
    return {
        "requests": float(len(lat)),
        "failed": float(failed[0]),
        "throughput": len(lat) / wall,
        "p50_ms": float(np.percentile(lat, 50) * 1000),
        "p99_ms": float(np.percentile(lat, 99) * 1000),
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    import requests

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests", type=int, default=96, help="requests per level (at least 2 per client)")
    ap.add_argument("--max-seconds", type=float, default=60.0, help="a level stops after this long")
    ap.add_argument("--tower", choices=("efficientnet_lite0", "tiny"), default="efficientnet_lite0")
    ap.add_argument(
        "--repeats", type=int, default=3, help="runs of the top level after the first, RSS read after each"
    )
    args = parse_common(ap, argv, "the tiny tower, 1 and 4 clients, 16 requests")
    if args.tiny:
        args.tower, args.clients, args.requests, args.repeats = "tiny", [1, 4], 16, 2
    args.repeats = max(1, args.repeats)
    images = jpegs()
    figures: dict[str, float] = {"threads": args.threads}
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        model = export_small(args.tower, Path(tmp))
        port = free_port()
        env = {
            **os.environ,
            "OMP_NUM_THREADS": str(args.threads),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "ordinalclip.app.cli", "serve", str(model), "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                if server.poll() is not None:
                    raise RuntimeError(f"ordinalclip serve exited: {server.stderr.read()}")
                try:
                    if requests.get(f"{url}/health", timeout=2).ok:
                        break
                except requests.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("ordinalclip serve did not start within 120 s")
                time.sleep(0.2)
            local = threading.local()

            def post(i: int) -> bool:
                session = getattr(local, "session", None) or requests.Session()
                local.session = session
                r = session.post(
                    f"{url}/predict",
                    files={"files": (f"{i}.jpg", images[i % len(images)], "image/jpeg")},
                    timeout=120,
                )
                return r.status_code == 200 and len(r.json()["predictions"]) == 1

            predictor = Predictor(model)

            def call(i: int) -> bool:
                with Image.open(io.BytesIO(images[i % len(images)])) as img:
                    return len(predictor.predict(img.convert("RGB"))) == 1

            for name, fn in (("server", post), ("in_process", call)):
                drive(fn, 4, 8, args.max_seconds)  # warm-up: first-call allocations, connection setup
                if name == "server":
                    figures["server_rss_mb_start"] = rss_mb(server.pid)
                for clients in args.clients:
                    total = max(args.requests, 2 * clients)
                    res = drive(fn, clients, total, args.max_seconds)
                    key = f"{name}_c{clients}"
                    figures |= {f"{key}_{k}": v for k, v in res.items()}
                    if name == "server":
                        figures[f"{key}_rss_mb"] = rss_mb(server.pid)
                    rows.append(
                        [
                            name,
                            str(clients),
                            str(int(res["requests"])),
                            f"{res['throughput']:.1f}",
                            f"{res['p50_ms']:.0f}",
                            f"{res['p99_ms']:.0f}",
                            str(int(res["failed"])),
                            f"{figures[f'{key}_rss_mb']:.0f}" if name == "server" else "-",
                        ]
                    )
                    print(
                        f"{name} {clients} clients: {res['throughput']:.1f} req/s, p50 {res['p50_ms']:.0f} ms, "
                        f"p99 {res['p99_ms']:.0f} ms, {int(res['failed'])} failed ({load_note()})",
                        flush=True,
                    )
                if name == "server":  # the top level again: memory must be flat once the batch sizes are seen
                    clients = args.clients[-1]
                    failed = 0.0
                    for r in range(1, args.repeats + 1):
                        res = drive(fn, clients, max(args.requests, 2 * clients), args.max_seconds)
                        failed += res["failed"]
                        figures[f"server_rss_mb_repeat_{r}"] = rss_mb(server.pid)
                    figures["server_repeat_failed"] = failed
                    figures["server_rss_mb_repeat"] = figures[f"server_rss_mb_repeat_{args.repeats}"]
            health = requests.get(f"{url}/health", timeout=10).json()
            figures |= {
                "server_batches": health["batches"],
                "server_images": health["images"],
                "server_largest_batch": health["largest_batch"],
            }
        finally:
            server.terminate()
            server.wait(timeout=30)
    top = figures[f"server_c{args.clients[-1]}_rss_mb"]
    figures["server_rss_mb_end"] = figures["server_rss_mb_repeat"]
    # growth over the repeats of the top level: allocator pools grow with the largest batch seen and then stay, a
    # leak keeps growing (the last repeat's growth says which)
    figures["server_rss_growth_mb"] = figures["server_rss_mb_repeat"] - top
    before_last = figures.get(f"server_rss_mb_repeat_{args.repeats - 1}", top)
    figures["server_rss_growth_last_repeat_mb"] = figures["server_rss_mb_repeat"] - before_last
    figures["failed_total"] = sum(v for k, v in figures.items() if k.endswith("_failed"))
    check_finite(figures, "serve")
    print(
        f"server: {figures['server_images']} images in {figures['server_batches']} forwards (largest batch "
        f"{figures['server_largest_batch']}); RSS {figures['server_rss_mb_start']:.0f} MB after warm-up, "
        f"{top:.0f} MB after the {args.clients[-1]}-client level, then "
        + ", ".join(f"{figures[f'server_rss_mb_repeat_{r}']:.0f}" for r in range(1, args.repeats + 1))
        + f" MB after each of {args.repeats} repeats of it"
    )
    headers = ["mode", "clients", "requests", "req/s", "p50 ms", "p99 ms", "failed", "server RSS MB"]
    return finish(headers, rows, figures, args.json)


if __name__ == "__main__":
    main()
