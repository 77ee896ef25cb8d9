"""Inference of the exported OrdinalCLIP head vs a plain linear head on the same image tower, CPU.

Eval mode, no grad, batch 32 of N(0, 1) images, three variants sharing one image tower instance, timed alternately:

* ``linear``: image tower + ``nn.Linear(E, C)`` (what any CNN regressor/classifier costs);
* ``exported``: ``OrdinalCLIP.to_head()``, image tower + C fixed prototypes compared by cosine similarity;
* ``full``: the OrdinalCLIP model itself, recomputing the C prototypes through the text tower on every call.

The heads alone (on precomputed features) are timed too: end-to-end ratios carry the run-to-run noise of the tower,
the head-only times show what the exported head itself costs.

    python benchmarks/export_inference.py [--sizes vgg16] [--batch 32] [--repeats 5] [--skip-full] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import sys
from functools import partial
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import alternate, check_finite, finish, load_note, median, paired_ratio, parse_common  # noqa: E402
from ordinalclip.modeling import CosineClassifier, FeatureTower, OrdinalCLIP, RankPromptLearner  # noqa: E402
from text_path import CONTEXT  # noqa: E402
from train_step import NUM_RANKS, build_towers  # noqa: E402


class LinearHead(nn.Module):
    """Image tower + a plain linear layer E -> C (the baseline cost of inference)."""

    def __init__(self, image_tower: nn.Module, num_classes: int):
        super().__init__()
        self.image_tower = image_tower
        self.fc = nn.Linear(int(image_tower.output_dim), num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C)."""
        return self.fc(self.image_tower(images))


def run_size(size: str, args: argparse.Namespace, key: str) -> tuple[dict[str, float], list[list[str]]]:
    """Figures (keys suffixed with ``key``) and table rows of one tower size."""
    image, text, side = build_towers(size, args.tiny)
    learner = RankPromptLearner(text, num_ranks=NUM_RANKS, num_base_ranks=3, context_init=CONTEXT)
    full = OrdinalCLIP(image, learner, text).eval()
    exported = full.to_head().eval()
    linear = LinearHead(image, NUM_RANKS).eval()
    models = {"linear": linear, "exported": exported, **({} if args.skip_full else {"full": full})}
    images = torch.randn(args.batch, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        max_diff = float((full(images) - exported(images)).abs().max())
        times = alternate({k: partial(m, images) for k, m in models.items()}, args.repeats, args.warmup)
        features = image(images)
        # the exported head's own class around an identity tower: the head on precomputed features
        head_only = CosineClassifier(
            FeatureTower(features.shape[1]),
            NUM_RANKS,
            log_logit_scale=float(exported.logit_scale.value),
            prototypes=exported.weight,
            learnable=False,
        )
        torch.testing.assert_close(head_only(features), exported(images), rtol=0, atol=1e-5)
        heads = {"linear": partial(linear.fc, features), "exported": partial(head_only, features)}
        head_times = alternate(heads, args.head_repeats, warmup=5)
    t = {k: median(v) for k, v in times.items()}
    th = {k: median(v) for k, v in head_times.items()}
    figures = {
        f"export_vs_linear{key}": paired_ratio(times, "exported", "linear"),
        f"export_max_abs_logit_diff{key}": max_diff,
        # what the exported head costs beyond the linear one, as a fraction of the linear model's time
        f"export_head_overhead{key}": (th["exported"] - th["linear"]) / t["linear"],
    }
    if "full" in times:
        figures[f"full_vs_exported{key}"] = paired_ratio(times, "full", "exported")
    rows = []
    for k in models:
        figures[f"infer_s_{size}_{k}"] = t[k]
        head = f"{th[k] * 1e6:.0f}" if k in th else "-"
        spread = f"{t[k]:.3f} ({min(times[k]):.3f}-{max(times[k]):.3f})"
        rows.append([size, k, spread, f"{paired_ratio(times, k, 'linear'):.3f}x", head])
    print(f"{size}: max |logits full - exported| = {max_diff:.2e}")
    return figures, rows


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the comparison, print a table, return (and optionally write) the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--sizes", default="vgg16", help="comma-separated: vgg16, vit_b16 (the first gives the keys)"
    )
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--head-repeats", type=int, default=200, help="timed calls of each head alone")
    ap.add_argument(
        "--skip-full",
        action="store_true",
        help="time only linear vs exported (more rounds for the same time; the full model still runs the check)",
    )
    args = parse_common(ap, argv, "tiny CLIP towers at 32x32")
    print(f"{torch.get_num_threads()} threads, {load_note()}")
    figures: dict[str, float] = {}
    rows: list[list[str]] = []
    for i, size in enumerate(s for s in args.sizes.split(",") if s):
        figs, size_rows = run_size(size, args, key="" if i == 0 else f"_{size}")
        figures.update(figs)
        rows += size_rows
        gc.collect()
    check_finite(figures, "export_inference")
    headers = [
        "size",
        f"model (batch {args.batch}, eval, no grad)",
        f"s, median (min-max) of {args.repeats}",
        "/ linear",
        f"head alone, us (median of {args.head_repeats})",
    ]
    return finish(headers, rows, figures, args.json)


if __name__ == "__main__":
    main()
