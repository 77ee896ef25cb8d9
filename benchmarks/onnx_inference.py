"""ONNX Runtime vs PyTorch for the exported head (image tower + frozen prototypes), CPU inference, batch 1 and 32.

Real-size towers with random weights: EfficientNet-Lite0 (224 px, a 1280 -> 512 projection) and CLIP ViT-B/32
(224 px, E = 512), C = 101 ranks. Each is exported with ``export_head(..., "x.onnx")`` (the torch.export-based
exporter, as ``ordinalclip export --format onnx``), loaded with ``load_onnx_export`` and timed against the torch
head it came from, alternately in the same rounds (eval mode, no grad, the same input), with the same thread count
for both runtimes. The ratio is the median over rounds of torch time / onnxruntime time (> 1: onnxruntime is
faster). The max |logit difference| on the timed batch is reported too.

    python benchmarks/onnx_inference.py [--towers efficientnet_lite0 vit_b32] [--repeats 7] [--json PATH]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import alternate, check_finite, finish, load_note, median, paired_ratio, parse_common  # noqa: E402
from ordinalclip.exports.load import build_export_tower  # noqa: E402
from ordinalclip.exports.write import export_head  # noqa: E402
from ordinalclip.modeling import ClipConfig, CosineClassifier, ImageTowerConfig, ModelConfig  # noqa: E402
from ordinalclip.modeling.build import build_image_tower  # noqa: E402
from ordinalclip.runtime.onnx import load_onnx_export  # noqa: E402

NUM_RANKS = 101
EMBED = 512
PREP = {"size": 224, "resize": 224, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"layers": 2, "width": 64, "patch_size": 16, "image_size": 32, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def build(tower: str, tiny: bool) -> tuple[CosineClassifier, ModelConfig, dict]:
    """(random cosine head on ``tower``, its model config, its preprocessing)."""
    torch.manual_seed(0)
    if tiny:
        cfg = ModelConfig(arch="cosine", num_ranks=NUM_RANKS, clip=ClipConfig(name=None, custom=TINY_CLIP))
        prep = {**PREP, "size": 32, "resize": 32}
        image = build_export_tower(cfg, {}, 32, prep)
    elif tower == "efficientnet_lite0":
        cfg = ModelConfig(
            arch="cosine",
            num_ranks=NUM_RANKS,
            embed_dim=EMBED,
            image=ImageTowerConfig(kind="efficientnet_lite0", imagenet_weights=False),
        )
        image, prep = build_image_tower(cfg.image, EMBED, None), PREP
    elif tower == "vit_b32":
        cfg = ModelConfig(arch="cosine", num_ranks=NUM_RANKS, clip=ClipConfig(name="ViT-B-32"))
        image, prep = build_export_tower(cfg, {}, EMBED, PREP), PREP
    else:
        raise ValueError(f"unknown tower {tower!r}; expected efficientnet_lite0 or vit_b32")
    head = CosineClassifier(
        image, NUM_RANKS, prototypes=torch.randn(NUM_RANKS, int(image.output_dim)), learnable=False
    )
    return head.eval(), cfg, prep


def run_tower(tower: str, args: argparse.Namespace, folder: Path) -> tuple[dict[str, float], list[list[str]]]:
    head, cfg, prep = build(tower, args.tiny)
    path = export_head(head, cfg, folder / f"{tower}.onnx", preprocess=prep)
    onnx = load_onnx_export(path, threads=args.threads)
    figures: dict[str, float] = {}
    rows = []
    size = int(prep["size"])
    for batch in args.batches:
        x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            diff = float((onnx(x) - head(x)).abs().max())
            times = alternate(
                {"torch": partial(head, x), "onnxruntime": partial(onnx, x)}, args.repeats, args.warmup
            )
        ratio = paired_ratio(times, "torch", "onnxruntime")
        key = f"{tower}_b{batch}"
        figures |= {
            f"{key}_torch_s": median(times["torch"]),
            f"{key}_onnxruntime_s": median(times["onnxruntime"]),
            f"{key}_speedup": ratio,
            f"{key}_max_abs_diff": diff,
        }
        rows.append(
            [
                tower,
                str(batch),
                f"{1000 * median(times['torch']):.1f}",
                f"{1000 * median(times['onnxruntime']):.1f}",
                f"{ratio:.2f}x",
                f"{diff:.1e}",
            ]
        )
        print(
            f"{tower} batch {batch}: torch {median(times['torch']):.4f} s, onnxruntime "
            f"{median(times['onnxruntime']):.4f} s ({load_note()})",
            flush=True,
        )
    return figures, rows


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--towers", nargs="+", default=["efficientnet_lite0", "vit_b32"])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    args = parse_common(ap, argv, "a tiny CLIP ViT at 32 px instead of the real-size towers")
    towers = ["tiny_vit"] if args.tiny else args.towers
    figures: dict[str, float] = {"threads": args.threads, "repeats": args.repeats}
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for tower in towers:
            f, r = run_tower(tower, args, Path(tmp))
            figures |= f
            rows += r
    check_finite(figures, "onnx_inference")
    headers = ["tower", "batch", "torch ms", "onnxruntime ms", "torch / onnxruntime", "max |logit diff|"]
    return finish(headers, rows, figures, args.json)


if __name__ == "__main__":
    main()
