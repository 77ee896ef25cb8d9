"""The deploy runtime against onnxruntime alone, on the same ONNX export and the same images, in one run.

The model is the demo's image task: ImageNet EfficientNet-Lite0 (frozen, native 96 px crops as the demo encodes
them) with a cosine head whose 6 blur-level prototypes are fitted on the demo's training split (cross-entropy on
the cached features, the CNN cosine baseline's head), exported as ONNX (float32 and ``--quantize int8``) and as
safetensors. ``--tiny``: a random tiny CLIP ViT at 32 px on a few images (a smoke test; figures mean nothing).

Figures (``--json``):

* ``load_ratio``: wall time of ``import ordinalclip; oc.load(onnx).predict(2 images)`` over onnxruntime alone
  (``InferenceSession`` + decode/resize/normalise in PIL + numpy + ``run``), each in a fresh interpreter,
  alternated ``--repeats`` times (median of per-pair ratios); ``rss_ratio``: their peak RSS (VmHWM, medians;
  not ``ru_maxrss``, which a child inherits from the parent it was forked from);
* ``b1_*`` / ``b32_*``: throughput (images/s) of ``Predictor.predict_arrays`` and of ``session.run`` on the same
  preprocessed batch, alternated in this process; ``b32_throughput_ratio`` = ours / onnxruntime's;
* ``serve_rss_mb``: RSS of ``ordinalclip serve model.onnx`` (its own process, loopback) after ``--requests``
  single-image requests; ``ort_rss_mb``: RSS of onnxruntime alone after as many single-image predictions;
  ``serve_rss_bound_mb`` = 1.5 x that + 60 MB (the web stack);
* ``int8_speed_b1`` / ``int8_speed_b32``: float32 time / int8 time of ``predict_arrays``;
* on every test image of the demo: ``runtime_vs_torch_rank_agreement`` and ``runtime_vs_torch_max_prob_diff``
  (ONNX runtime path vs the torch model with the torchvision transform), ``int8_rank_agreement``,
  ``mae_exp_float`` / ``mae_exp_int8`` / ``mae_change_rel`` (and the same for the argmax);
* ``runtime_install_mb`` / ``full_install_mb``: size on disk of every distribution of ``ordinalclip-runtime
  [serve]`` and of ``ordinalclip[onnx,serve]``, from this environment's metadata.

    python benchmarks/deploy.py [--repeats 5] [--requests 500] [--tiny] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "packaging" / "runtime"))

import installed  # noqa: E402
from build_wheel import MODULES, PYPROJECT  # noqa: E402

from common import alternate, check_finite, finish, load_note, median, paired_ratio, parse_common  # noqa: E402
from onnx_inference import PREP, TINY_CLIP  # noqa: E402
from ordinalclip.data.images import build_transforms, read_image  # noqa: E402
from ordinalclip.exports.load import build_export_tower  # noqa: E402
from ordinalclip.exports.write import export_head  # noqa: E402
from ordinalclip.modeling import ClipConfig, CosineClassifier, ImageTowerConfig, ModelConfig  # noqa: E402
from ordinalclip.runtime.predictor import Predictor  # noqa: E402

# onnxruntime alone: what a user writes without ordinalclip (decode, resize, crop, normalise, run)
ORT_ALONE = """
import time
START = time.perf_counter()
import json, sys
import numpy as np
import onnxruntime as ort
from PIL import Image

model, prep, count, *paths = sys.argv[1:]
prep, count = json.loads(prep), int(count)
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
mean = np.array(prep["mean"], np.float32)[:, None, None]
std = np.array(prep["std"], np.float32)[:, None, None]

def load(path):
    img = Image.open(path).convert("RGB").resize((prep["resize"],) * 2, Image.BILINEAR)
    m = (prep["resize"] - prep["size"]) // 2
    img = img.crop((m, m, m + prep["size"], m + prep["size"]))
    return (np.asarray(img, np.float32).transpose(2, 0, 1) / 255 - mean) / std

logits = session.run(None, {"images": np.stack([load(p) for p in paths]).astype(np.float32)})[0]
first = time.perf_counter() - START
for i in range(count):
    session.run(None, {"images": load(paths[i % len(paths)])[None].astype(np.float32)})
rss = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS:")][0] / 1024
peak = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0] / 1024
print(json.dumps({"seconds": first, "peak_rss_mb": peak, "rss_mb": rss, "rank0": int(logits[0].argmax())}))
"""

OURS = """
import time
START = time.perf_counter()
import json, sys
import ordinalclip as oc

model, prep, count, *paths = sys.argv[1:]
rows = oc.load(model).predict(paths)
first = time.perf_counter() - START
peak = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0] / 1024
heavy = sorted(m for m in ("torch", "lightning", "open_clip", "timm", "transformers") if m in sys.modules)
print(json.dumps({"seconds": first, "peak_rss_mb": peak, "rank0": rows[0]["rank"], "heavy": heavy}))
"""


def _fresh(script: str, *args: str) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", ""),
    }
    env = {k: v for k, v in env.items() if v != ""}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _list(path: Path, root: Path) -> list[tuple[Path, int]]:
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return [(root / p, int(label)) for p, label, *_ in rows]


def demo_model(
    folder: Path, tiny: bool
) -> tuple[CosineClassifier, ModelConfig, dict, list[tuple[Path, int]]]:
    """The head, its config, its preprocessing and the labelled test images."""
    torch.manual_seed(0)
    if tiny:
        from PIL import Image

        cfg = ModelConfig(arch="cosine", num_ranks=6, clip=ClipConfig(name=None, custom=TINY_CLIP))
        prep = {**PREP, "size": 32, "resize": 36}
        image = build_export_tower(cfg, {}, 32, prep)
        head = CosineClassifier(image, 6, prototypes=torch.randn(6, int(image.output_dim)), learnable=False)
        rng = np.random.default_rng(0)
        test = []
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)).save(folder / f"{i}.png")
            test.append((folder / f"{i}.png", i % 6))
        return head.eval(), cfg, prep, test
    from ordinalclip.data.blur import build_blur_dataset
    from ordinalclip.modeling.backbones.efficientnet import EfficientNetLite0Tower

    ds = build_blur_dataset(progress=False)  # the demo's data (cached), 6 levels of 96 px crops
    tower = EfficientNetLite0Tower(output_dim=None).eval()
    # the demo encodes the crops at their native 96 px, normalised as the tower was trained
    prep = {
        "size": 96,
        "resize": 96,
        "mean": list(tower.preprocess["mean"]),
        "std": list(tower.preprocess["std"]),
    }
    tf = build_transforms(False, **prep)
    train = _list(ds.train_list, ds.root)
    with torch.no_grad():
        feats = torch.cat(
            [
                tower(torch.stack([tf(read_image(p)) for p, _ in train[i : i + 64]]))
                for i in range(0, len(train), 64)
            ]
        )
    labels = torch.tensor([y for _, y in train])
    protos = torch.nn.Parameter(torch.randn(ds.num_ranks, feats.shape[1]) * 0.01)
    opt = torch.optim.Adam([protos], lr=1e-2)
    unit = torch.nn.functional.normalize(feats, dim=1)
    for _ in range(300):  # the cosine baseline's head (fixed scale 100), full batch on the cached features
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            100 * unit @ torch.nn.functional.normalize(protos, dim=1).T, labels
        )
        loss.backward()
        opt.step()
    cfg = ModelConfig(
        arch="cosine",
        num_ranks=ds.num_ranks,
        image=ImageTowerConfig(kind="efficientnet_lite0", imagenet_weights=False),
    )
    head = CosineClassifier(tower, ds.num_ranks, prototypes=protos.detach(), learnable=False)
    return head.eval(), cfg, prep, _list(ds.test_list, ds.root)


def accuracy(
    head, prep: dict, paths: list[Path], labels: np.ndarray, onnx: Path, int8: Path
) -> dict[str, float]:
    tf = build_transforms(False, **prep)
    with torch.no_grad():
        ref = torch.cat(
            [
                torch.softmax(head(torch.stack([tf(read_image(p)) for p in paths[i : i + 64]])), 1)
                for i in range(0, len(paths), 64)
            ]
        ).numpy()
    runtime, quant = Predictor(onnx), Predictor(int8)
    ours = runtime.predict_images([read_image(p) for p in paths])
    small = quant.predict_images([read_image(p) for p in paths])
    ranks = np.arange(ref.shape[1])
    fig = {
        "test_images": float(len(paths)),
        "runtime_vs_torch_rank_agreement": float((ours["pred_rank"] == ref.argmax(1)).mean()),
        "runtime_vs_torch_max_prob_diff": float(np.abs(ours["probs"] - ref).max()),
        "int8_rank_agreement": float((small["pred_rank"] == ours["pred_rank"]).mean()),
        "mae_exp_float": float(np.abs(ours["probs"] @ ranks - labels).mean()),
        "mae_exp_int8": float(np.abs(small["probs"] @ ranks - labels).mean()),
        "mae_max_float": float(np.abs(ours["pred_rank"] - labels).mean()),
        "mae_max_int8": float(np.abs(small["pred_rank"] - labels).mean()),
    }
    fig["mae_change_rel"] = abs(fig["mae_exp_int8"] - fig["mae_exp_float"]) / fig["mae_exp_float"]
    fig["mae_max_change_rel"] = abs(fig["mae_max_int8"] - fig["mae_max_float"]) / max(
        fig["mae_max_float"], 1e-12
    )
    return fig


def serve_rss(onnx: Path, images: list[Path], requests: int) -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = "import sys; from ordinalclip.app.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    server = subprocess.Popen(
        [sys.executable, "-c", code, "serve", str(onnx), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/health", timeout=1).read()
                break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError(server.stderr.read().decode()[-2000:]) from None
                time.sleep(0.1)
        bodies = []
        for path in images[:32]:
            data = path.read_bytes()
            bodies.append(
                b'--b\r\nContent-Disposition: form-data; name="files"; filename="x.png"\r\n'
                b"Content-Type: image/png\r\n\r\n" + data + b"\r\n--b--\r\n"
            )
        for i in range(requests):
            req = urllib.request.Request(
                url + "/predict", bodies[i % len(bodies)], {"Content-Type": "multipart/form-data; boundary=b"}
            )
            json.load(urllib.request.urlopen(req, timeout=60))
        status = Path(f"/proc/{server.pid}/status").read_text().splitlines()
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
    finally:
        server.terminate()
        server.wait(timeout=30)


def install_sizes() -> dict[str, float]:
    import re

    deps = re.findall(r'"([a-z][a-z0-9_.-]*>=[^"]+)"', PYPROJECT)
    runtime = installed.size_mb(installed.closure(deps))
    runtime += sum((ROOT / "src" / m).stat().st_size for m in MODULES) / 1e6
    return {
        "runtime_install_mb": runtime,
        "full_install_mb": installed.size_mb(installed.closure(["ordinalclip[onnx,serve]"])),
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5, help="fresh-interpreter runs of each side (load, RSS)")
    ap.add_argument("--requests", type=int, default=500, help="requests before the server's RSS is read")
    ap.add_argument("--rounds", type=int, default=20, help="alternated timing rounds per batch size")
    args = parse_common(ap, argv, "a random tiny CLIP on a few images")
    if args.tiny:
        args.repeats, args.requests, args.rounds = 2, 20, 3
    print(f"before: {load_note()}")
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        head, cfg, prep, test = demo_model(folder, args.tiny)
        onnx = export_head(head, cfg, folder / "model.onnx", preprocess=prep)
        int8 = export_head(head, cfg, folder / "int8.onnx", preprocess=prep, quantize="int8")
        paths, labels = [p for p, _ in test], np.array([y for _, y in test], dtype=np.float64)
        figures |= accuracy(head, prep, paths, labels, onnx, int8)

        two = [str(p) for p in paths[:2]]
        runs: dict[str, list[dict]] = {"ours": [], "ort": []}
        for r in range(args.repeats):  # alternate which side starts, as common.alternate does
            for side in ("ours", "ort") if r % 2 == 0 else ("ort", "ours"):
                script = OURS if side == "ours" else ORT_ALONE
                runs[side].append(_fresh(script, str(onnx), json.dumps(prep), "0", *two))
        if any(run["heavy"] for run in runs["ours"]):
            raise RuntimeError(f"oc.load(onnx) imported the training stack: {runs['ours'][0]['heavy']}")
        times = {k: [run["seconds"] for run in v] for k, v in runs.items()}
        figures["load_s"] = median(times["ours"])
        figures["ort_load_s"] = median(times["ort"])
        figures["load_ratio"] = paired_ratio(times, "ours", "ort")
        figures["peak_rss_mb"] = median([run["peak_rss_mb"] for run in runs["ours"]])
        figures["ort_peak_rss_mb"] = median([run["peak_rss_mb"] for run in runs["ort"]])
        figures["rss_ratio"] = figures["peak_rss_mb"] / figures["ort_peak_rss_mb"]

        import onnxruntime as ort

        session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
        ours, small = Predictor(onnx), Predictor(int8)
        pool = ours.prepare([read_image(p) for p in paths[:32]] * (32 // min(len(paths), 32) + 1))
        for batch in (1, 32):
            x = np.ascontiguousarray(pool[:batch])
            t = alternate(
                {
                    "ours": lambda x=x: ours.predict_arrays(x),
                    "ort": lambda x=x: session.run(None, {"images": x}),
                    "int8": lambda x=x: small.predict_arrays(x),
                },
                args.rounds,
                warmup=2,
            )
            figures[f"b{batch}_throughput"] = batch / median(t["ours"])
            figures[f"b{batch}_ort_throughput"] = batch / median(t["ort"])
            figures[f"b{batch}_throughput_ratio"] = 1 / paired_ratio(t, "ours", "ort")
            figures[f"int8_speed_b{batch}"] = paired_ratio(t, "ours", "int8")

        figures["serve_rss_mb"] = serve_rss(onnx, paths, args.requests)
        alone = _fresh(
            ORT_ALONE, str(onnx), json.dumps(prep), str(args.requests), *[str(p) for p in paths[:32]]
        )
        figures["ort_rss_mb"] = alone["rss_mb"]
        figures["serve_rss_bound_mb"] = 1.5 * alone["rss_mb"] + 60
        figures["onnx_mb"] = onnx.stat().st_size / 1e6
        figures["int8_onnx_mb"] = int8.stat().st_size / 1e6
    figures |= install_sizes()
    check_finite(figures, "deploy")
    rows = [
        [
            "load + first prediction (s)",
            f"{figures['load_s']:.2f}",
            f"{figures['ort_load_s']:.2f}",
            f"{figures['load_ratio']:.2f} (<= 2)",
        ],
        [
            "peak RSS (MB)",
            f"{figures['peak_rss_mb']:.0f}",
            f"{figures['ort_peak_rss_mb']:.0f}",
            f"{figures['rss_ratio']:.2f} (<= 1.5)",
        ],
        [
            "images/s, batch 1",
            f"{figures['b1_throughput']:.0f}",
            f"{figures['b1_ort_throughput']:.0f}",
            f"{figures['b1_throughput_ratio']:.2f}",
        ],
        [
            "images/s, batch 32",
            f"{figures['b32_throughput']:.0f}",
            f"{figures['b32_ort_throughput']:.0f}",
            f"{figures['b32_throughput_ratio']:.2f} (>= 0.8)",
        ],
        [
            f"serve RSS after {args.requests} requests (MB)",
            f"{figures['serve_rss_mb']:.0f}",
            f"{figures['ort_rss_mb']:.0f}",
            f"bound {figures['serve_rss_bound_mb']:.0f}",
        ],
        [
            "int8 speed-up, batch 1 / 32",
            f"{figures['int8_speed_b1']:.2f} / {figures['int8_speed_b32']:.2f}",
            "-",
            "-",
        ],
    ]
    print(
        f"{int(figures['test_images'])} test images: runtime vs torch ranks agree on "
        f"{figures['runtime_vs_torch_rank_agreement']:.1%}, max |dp| {figures['runtime_vs_torch_max_prob_diff']:.1e}; "
        f"int8 ranks agree on {figures['int8_rank_agreement']:.1%}, MAE(exp) {figures['mae_exp_float']:.4f} -> "
        f"{figures['mae_exp_int8']:.4f} ({figures['mae_change_rel']:.2%}); install {figures['runtime_install_mb']:.0f} MB "
        f"(runtime) vs {figures['full_install_mb']:.0f} MB (full)"
    )
    return finish(["", "ordinalclip runtime", "onnxruntime alone", "ratio"], rows, figures, args.json)


if __name__ == "__main__":
    main()
