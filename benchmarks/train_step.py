"""One training step of OrdinalCLIP vs the CNN cosine baseline with the same image tower, CPU.

Step = forward + both losses (CE + text->image KL) + backward + RAdam step (lr 1e-4, decoupled weight decay 5e-4)
+ zero_grad, model in train mode (VGG dropout active), text tower frozen, logit scale frozen. The two models share
one image tower instance, so the only difference is the head: C = 100 learned prompts through the frozen text tower
vs a learnable C x E prototype matrix.

Sizes (random weights): ``vgg16`` = torchvision VGG-16 projected to E = 1024 + the CLIP-RN50 text tower (12 layers,
width 512), the paper's MORPH setting; ``vit_b16`` = CLIP ViT-B/16 visual + text towers (E = 512). Inputs are
N(0, 1) images 3x224x224 and labels uniform in 0..99.

Protocol (as in the reference timings): per size, the first step of each model initialises RAdam's state, which is
then forced into its steady-state branch (step counter 100; torch's RAdam skips the adaptive update for the first
steps); per batch size ``--warmup`` untimed steps, then ``--repeats`` timed steps (one count, or one per batch
size), the variants alternating; the overhead is the median of the per-round OrdinalCLIP / CNN ratios. Also timed,
alternating with them: the text path alone (prototypes forward + backward), the work OrdinalCLIP adds.

    python benchmarks/train_step.py [--sizes vgg16,vit_b16] [--batch-sizes 8,32] [--repeats 5[,3]] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import alternate, check_finite, finish, load_note, median, paired_ratio, parse_common  # noqa: E402
from ordinalclip.losses import ordinalclip_loss  # noqa: E402
from ordinalclip.modeling import (  # noqa: E402
    ClipImageTower,
    ClipTextTower,
    CosineClassifier,
    OrdinalCLIP,
    RankPromptLearner,
    TorchvisionTower,
    load_clip,
)
from text_path import CONTEXT, tiny_custom  # noqa: E402

NUM_RANKS = 100
PHASES = ("forward+loss", "backward", "optimizer")


def build_towers(size: str, tiny: bool) -> tuple[nn.Module, ClipTextTower, int]:
    """(random image tower, frozen random text tower, image side) for ``size``; same seed every call."""
    torch.manual_seed(0)
    if tiny:  # smoke test: a tiny CLIP stands in for both sizes
        bundle = load_clip(custom=tiny_custom())
        image, side = ClipImageTower(bundle.model.visual), 32
    elif size == "vgg16":
        bundle = load_clip("RN50")  # only its text tower is used
        image, side = TorchvisionTower("vgg16", output_dim=1024), 224
    elif size == "vit_b16":
        bundle = load_clip("ViT-B-16")
        image, side = ClipImageTower(bundle.model.visual), 224
    else:
        raise ValueError(f"unknown size {size!r}; expected vgg16 or vit_b16")
    return image, ClipTextTower(bundle.model, bundle.tokenizer, path="shared_prefix"), side


def build_models(size: str, tiny: bool) -> tuple[OrdinalCLIP, CosineClassifier, int]:
    """(OrdinalCLIP, CNN cosine baseline on the same image tower instance, image side) for ``size``."""
    image, text, side = build_towers(size, tiny)
    learner = RankPromptLearner(text, num_ranks=NUM_RANKS, num_base_ranks=3, context_init=CONTEXT)
    return OrdinalCLIP(image, learner, text).train(), CosineClassifier(image, NUM_RANKS).train(), side


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.RAdam(params, lr=1e-4, weight_decay=5e-4, decoupled_weight_decay=True)


def force_steady_state(opt: torch.optim.Optimizer, step: int = 100) -> None:
    """Move RAdam past its first steps (no adaptive update there), so timed steps take the usual branch."""
    for state in opt.state.values():
        if "step" in state:
            state["step"].fill_(step)


def make_step(
    model: nn.Module, opt: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor, phases: dict
) -> Callable[[], float]:
    """One training step; appends its phase times (seconds) to ``phases`` and returns the loss."""

    def step() -> float:
        t0 = time.perf_counter()
        loss = ordinalclip_loss(model(images), labels)["loss"]
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        for name, dt in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2)):
            phases.setdefault(name, []).append(dt)
        return float(loss.detach())

    return step


def make_text_only(model: OrdinalCLIP) -> Callable[[], None]:
    """The text path alone, as the step runs it: all C prototypes, forward + backward into the prompts."""

    def text_only() -> None:
        model.prototypes().sum().backward()
        model.prompt_learner.zero_grad(set_to_none=True)

    return text_only


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the comparison, print a table, return (and optionally write) the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="vgg16,vit_b16", help="comma-separated: vgg16, vit_b16")
    ap.add_argument("--batch-sizes", default="8,32")
    ap.add_argument(
        "--repeats",
        default="5",
        help="timed steps per variant: one number, or one per batch size (e.g. 5,3 with --batch-sizes 8,32)",
    )
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per variant and batch size")
    args = parse_common(ap, argv, "tiny CLIP towers at 32x32")
    print(f"{torch.get_num_threads()} threads, {load_note()}")
    sizes = [s for s in args.sizes.split(",") if s]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    repeats = [int(r) for r in str(args.repeats).split(",") if r]
    if len(repeats) == 1:
        repeats *= len(batch_sizes)
    if len(repeats) != len(batch_sizes) or min(repeats) < 1:
        ap.error(
            f"--repeats {args.repeats!r}: give one positive count, or one per batch size ({args.batch_sizes})"
        )
    figures: dict[str, float] = {}
    rows = []
    for size in sizes:
        ordinal, cnn, side = build_models(size, args.tiny)
        opts = {"cnn": make_optimizer(cnn), "ordinalclip": make_optimizer(ordinal)}
        models = {"cnn": cnn, "ordinalclip": ordinal}
        n_train = {k: sum(p.numel() for p in m.parameters() if p.requires_grad) for k, m in models.items()}
        first = True
        for bs, reps in zip(batch_sizes, repeats):
            gen = torch.Generator().manual_seed(0)
            images = torch.randn(bs, 3, side, side, generator=gen)
            labels = torch.randint(0, NUM_RANKS, (bs,), generator=gen)
            phases: dict[str, dict[str, list[float]]] = {k: {} for k in models}
            steps = {k: make_step(models[k], opts[k], images, labels, phases[k]) for k in models}
            if first:  # create RAdam's state, then skip its warm-up branch
                for k in models:
                    steps[k]()
                    force_steady_state(opts[k])
                first = False
            variants = {**steps, "text_path": make_text_only(ordinal)}
            times = alternate(variants, reps, args.warmup)
            t = {k: median(v) for k, v in times.items()}
            ph = {k: {p: median(v[-reps:]) for p, v in phases[k].items()} for k in models}
            key = "" if size == "vgg16" else f"_{size.replace('_b16', '')}"
            figures[f"step_overhead{key}_bs{bs}"] = paired_ratio(times, "ordinalclip", "cnn")
            for k in models:
                figures[f"step_s_{size}_{k}_bs{bs}"] = t[k]
            figures[f"text_path_s_{size}_bs{bs}"] = t["text_path"]
            if size == "vgg16" and bs == max(batch_sizes):  # the headline VGG-16 setting
                figures["step_images_per_s"] = bs / t["ordinalclip"]
                figures["step_images_per_s_cnn"] = bs / t["cnn"]
            for k in models:
                rows.append(
                    [
                        size,
                        str(bs),
                        f"{k} ({n_train[k] / 1e6:.2f} M trainable)",
                        f"{t[k]:.3f} ({min(times[k]):.3f}-{max(times[k]):.3f})",
                        " / ".join(f"{ph[k][p]:.3f}" for p in PHASES),
                        f"{bs / t[k]:.2f}",
                    ]
                )
            rows.append(
                [
                    size,
                    str(bs),
                    "ordinalclip / cnn",
                    f"{figures[f'step_overhead{key}_bs{bs}']:.3f}x (median of {reps} per-round ratios)",
                    f"text path alone {t['text_path']:.3f} s = {t['text_path'] / t['cnn']:.1%} of the CNN step",
                    "",
                ]
            )
        del ordinal, cnn, opts, models, steps, variants
        gc.collect()
    check_finite(figures, "train_step")
    headers = [
        "size",
        "batch",
        "model",
        "step s, median (min-max)",
        "forward+loss / backward / optimizer s",
        "images/s",
    ]
    return finish(headers, rows, figures, args.json)


if __name__ == "__main__":
    main()
