"""Text path: the reference's 77-position pass vs ours (shared prefix + real length), CPU.

A random CLIP text tower of ViT-B/16 size (12 layers, width 512, E = 512), C = 100 ranks from C' = 3 base ranks, the
context "age estimation: the age of the person is" (m = 10), rank tokens at the tail. Both variants compute all C
prototypes from the prompt parameters (prompt learner included), forward without grad and forward+backward with
gradients reaching the prompt parameters, timed alternately in this one process. The memory measurement (one call
of each, whose outputs also give the exactness check) runs first and warms both paths up; ``--warmup`` adds untimed
calls.

Peak memory: bytes of CPU tensors alive at the worst moment of one call, above what was alive before it (torch's
profiler allocation events, see ``common.peak_memory_bytes``). The frozen weights are the same for both variants
and excluded; this is the memory the text path itself needs.

    python benchmarks/text_path.py [--repeats 7] [--grad-repeats 5] [--json PATH] [--tiny]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    alternate,
    check_finite,
    load_note,
    markdown_table,
    median,
    paired_ratio,
    parse_common,
    peak_memory_bytes,
    spread,
    write_json,
)
from ordinalclip.modeling import ClipTextTower, RankPromptLearner, load_clip  # noqa: E402

CONTEXT = "age estimation: the age of the person is"
VARIANTS = {"naive": "naive", "ours": "shared_prefix"}
MB = 2**20


def tiny_custom() -> dict:
    """A 2-layer, 64-wide CLIP with the real vocabulary and 77-token context (smoke tests)."""
    return {
        "embed_dim": 32,
        "vision_cfg": {"layers": 1, "width": 64, "patch_size": 16, "image_size": 32, "head_width": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    }


def build(tiny: bool, num_ranks: int = 100) -> tuple[ClipTextTower, RankPromptLearner]:
    """Random frozen text tower (ViT-B/16 size unless ``tiny``) and a rank prompt learner with C = ``num_ranks``."""
    torch.manual_seed(0)
    bundle = load_clip(custom=tiny_custom()) if tiny else load_clip("ViT-B-16")
    tower = ClipTextTower(bundle.model, bundle.tokenizer)
    del bundle  # the visual tower is not needed
    learner = RankPromptLearner(
        tower, num_ranks=num_ranks, num_base_ranks=3, context_init=CONTEXT, position="tail"
    )
    return tower, learner


def make_calls(tower: ClipTextTower, learner: RankPromptLearner, path: str) -> tuple[Callable, Callable]:
    """(forward without grad, forward+backward into the prompt parameters) through text path ``path``."""

    def forward() -> torch.Tensor:
        tower.path = path
        with torch.no_grad():
            return tower(learner())

    def forward_backward() -> torch.Tensor:
        tower.path = path
        learner.zero_grad(set_to_none=True)
        out = tower(learner())
        out.sum().backward()
        return out

    return forward, forward_backward


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the comparison, print a table, return (and optionally write) the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7, help="timed forward passes per variant (default 7)")
    ap.add_argument("--grad-repeats", type=int, default=5, help="timed forward+backward passes per variant")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls per variant before timing")
    args = parse_common(ap, argv, "tiny 2-layer tower")
    tower, learner = build(args.tiny)
    prompts = learner()
    print(
        f"text path: {len(tower.transformer.resblocks)} layers x width {tower.width}, C = {learner.num_ranks}, "
        f"m = {learner.num_context_tokens}, prefix {prompts.prefix.shape[0]} + suffix {prompts.suffix.shape[1]} "
        f"tokens (naive: {tower.context_length} positions), {torch.get_num_threads()} threads, {load_note()}"
    )
    calls = {name: make_calls(tower, learner, path) for name, path in VARIANTS.items()}

    # peak memory of one call of each, whose outputs also give the exactness figures (features and prompt-parameter
    # gradients of both paths); these calls are the warm-up of the timings below
    feats, grads, peak = {}, {}, {}
    for name, (fwd, fwd_bwd) in calls.items():
        peak[name, "forward"], feats[name] = peak_memory_bytes(fwd)
        peak[name, "forward_backward"], _ = peak_memory_bytes(fwd_bwd)
        grads[name] = torch.cat([p.grad.flatten() for p in (learner.context, learner.base_ranks)])
    max_abs_diff = float((feats["naive"] - feats["ours"]).abs().max())
    # gradients of sum(features) reach thousands through the final LayerNorm: compare relative to their scale
    grad_rel_diff = float((grads["naive"] - grads["ours"]).abs().max() / grads["naive"].abs().max())
    fwd_times = alternate({n: c[0] for n, c in calls.items()}, args.repeats, args.warmup)
    bwd_times = alternate({n: c[1] for n, c in calls.items()}, args.grad_repeats, args.warmup)

    figures = {
        "forward_speedup": paired_ratio(fwd_times, "naive", "ours"),
        "forward_backward_speedup": paired_ratio(bwd_times, "naive", "ours"),
        "memory_ratio": peak["naive", "forward_backward"] / peak["ours", "forward_backward"],
        "memory_ratio_forward": peak["naive", "forward"] / peak["ours", "forward"],
        "max_abs_diff": max_abs_diff,
        "grad_rel_diff": grad_rel_diff,
        "max_abs_feature": float(feats["naive"].abs().max()),
    }
    for name in calls:
        figures[f"{name}_forward_s"] = median(fwd_times[name])
        figures[f"{name}_forward_backward_s"] = median(bwd_times[name])
        figures[f"{name}_forward_peak_mb"] = peak[name, "forward"] / MB
        figures[f"{name}_forward_backward_peak_mb"] = peak[name, "forward_backward"] / MB
    check_finite(figures, "text_path")

    rows = [
        [
            f"{name} ({VARIANTS[name]})",
            spread(fwd_times[name]),
            spread(bwd_times[name]),
            f"{peak[name, 'forward'] / MB:.1f}",
            f"{peak[name, 'forward_backward'] / MB:.1f}",
        ]
        for name in calls
    ]
    rows.append(
        [
            "naive / ours",
            f"{figures['forward_speedup']:.1f}x",
            f"{figures['forward_backward_speedup']:.1f}x",
            f"{figures['memory_ratio_forward']:.1f}x",
            f"{figures['memory_ratio']:.1f}x",
        ]
    )
    headers = [
        "path",
        f"forward s, median (min-max) of {args.repeats}",
        f"fwd+bwd s, median of {args.grad_repeats}",
        "fwd peak MiB",
        "fwd+bwd peak MiB",
    ]
    print(markdown_table(headers, rows))
    print(f"after: {load_note()}")
    print(
        f"max |features naive - ours| = {max_abs_diff:.2e} (features up to {figures['max_abs_feature']:.2f}); "
        f"prompt-gradient max |diff| / max |grad| = {grad_rel_diff:.2e}"
    )
    if args.json:
        write_json(args.json, figures)
    return figures


if __name__ == "__main__":
    main()
