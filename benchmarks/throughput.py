"""Training and inference images/s of OrdinalCLIP vs the CNN cosine baseline, per precision / layout / compile variant.

Both models share one image tower (ViT-B/16 by default, random weights), as in ``train_step.py``; C = 100 ranks.
A variant is a precision, ``fp32`` or ``bf16`` (``torch.autocast`` around the forward; the losses upcast the logits
to float32), optionally ``+cl`` (image tower weights and input batch in ``torch.channels_last``: it matters for conv
towers; a ViT has a single conv, its patch embedding) and ``+compile`` (``torch.compile`` of each model's forward,
default mode). Per variant:

* training: forward + ``ordinalclip_loss`` + backward + RAdam step + zero_grad, train mode; the first step of each
  model creates RAdam's state (and compiles), which is then forced into its steady-state branch; ``--warmup`` untimed
  steps, then ``--steps`` timed steps, the two models alternating; median images/s;
* inference: ``OrdinalCLIP.to_head()`` (the exported model) vs the CNN baseline, eval mode, no grad, same protocol.

On CUDA the clock is read after ``torch.cuda.synchronize()``, ``cudnn.benchmark`` is on, TF32 matmuls stay at torch's
default (off), and the peak memory of one call (``max_memory_allocated`` above what was allocated before it: the
step's activations, gradients and temporaries; weights and optimizer state excluded) is reported. Compile time is
the first call minus the median call. Results (JSON and a markdown table) are rewritten after every variant, so a
run cut short keeps what it finished; a variant that fails is recorded with its error, the others go on, and the
exit status is 1.

    python benchmarks/throughput.py [--device cuda] [--size vit_b16] [--variants fp32,bf16,bf16+cl,bf16+compile]
                                    [--batch 64] [--steps 20] [--warmup 3] [--out DIR] [--json PATH] [--tiny]
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    RESULTS_DIR,
    alternate,
    check_finite,
    device_sync,
    load_note,
    machine,
    markdown_table,
    median,
    setup_threads,
    time_once,
    write_json,
)
from ordinalclip.modeling import CosineClassifier, OrdinalCLIP  # noqa: E402
from train_step import NUM_RANKS, build_models, force_steady_state, make_optimizer, make_step  # noqa: E402

MODELS = ("ordinalclip", "cnn")
MB = 2**20


@dataclass(frozen=True)
class Variant:
    """One way of running both models: precision, memory layout, compilation."""

    name: str
    bf16: bool
    channels_last: bool
    compile: bool

    @property
    def key(self) -> str:
        """The name as it appears in JSON keys ('+' is not a safe key character everywhere)."""
        return self.name.replace("+", "_")


def parse_variant(name: str) -> Variant:
    """'fp32' | 'bf16', then optional '+cl' and/or '+compile' (any order, each once) -> :class:`Variant`."""
    precision, *options = name.strip().split("+")
    if (
        precision not in ("fp32", "bf16")
        or any(o not in ("cl", "compile") for o in options)
        or len(set(options)) != len(options)
    ):
        raise ValueError(
            f"unknown variant {name!r}: expected fp32 or bf16, optionally followed by +cl (channels_last) and/or "
            "+compile, e.g. 'bf16+cl+compile'"
        )
    return Variant(name.strip(), precision == "bf16", "cl" in options, "compile" in options)


class Autocast(nn.Module):
    """Runs ``model``'s forward under ``torch.autocast`` (bf16) when enabled; the backward stays outside it."""

    def __init__(self, model: nn.Module, device_type: str, enabled: bool):
        super().__init__()
        self.model = model
        self.device_type = device_type
        self.enabled = enabled

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C) logits (bf16 under autocast)."""
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.enabled):
            return self.model(images)


def prepare(model: nn.Module, variant: Variant, device_type: str) -> nn.Module:
    """``model`` as ``variant`` runs it: autocast wrapper, compiled if asked (the weights stay shared)."""
    runner = Autocast(model, device_type, variant.bf16)
    return torch.compile(runner) if variant.compile else runner


def _checked(step: Callable[[], float], what: str) -> Callable[[], float]:
    """A step that fails loudly on a non-finite loss (a broken bf16/compiled step must not report a speed)."""

    def run() -> float:
        loss = step()
        if not math.isfinite(loss):
            raise FloatingPointError(f"{what}: non-finite loss {loss}")
        return loss

    return run


def _peak_mb(fn: Callable[[], object], device: torch.device) -> float:
    """CUDA memory (MiB) that one call of ``fn`` adds at its peak above what was allocated before it."""
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / MB


def _timed_phase(
    calls: dict[str, Callable[[], object]],
    args: argparse.Namespace,
    device: torch.device,
    after_first: Callable[[str], None] | None = None,
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """(first-call seconds, timed seconds per call) of alternating ``calls``; ``after_first(name)`` runs after each
    model's first call (e.g. to push RAdam past its first steps)."""
    sync = device_sync(device)
    first = {}
    for name, call in calls.items():
        first[name] = time_once(call, sync)
        if after_first is not None:
            after_first(name)
    return first, alternate(calls, args.steps, args.warmup, sync=sync)


def _train(
    variant: Variant,
    models: dict[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    args: argparse.Namespace,
) -> tuple[dict[str, float], dict[str, list[float]], dict[str, float]]:
    """(first-step s, timed step s, peak MiB or {}) per model: full training steps, fresh RAdam each."""
    device = images.device
    for m in models.values():
        m.train().zero_grad(set_to_none=True)
    opts = {k: make_optimizer(m) for k, m in models.items()}
    steps = {
        k: _checked(
            make_step(prepare(m, variant, device.type), opts[k], images, labels, {}), f"{variant.name} {k}"
        )
        for k, m in models.items()
    }
    first, times = _timed_phase(steps, args, device, lambda k: force_steady_state(opts[k]))
    peaks = {k: _peak_mb(s, device) for k, s in steps.items()} if device.type == "cuda" else {}
    return first, times, peaks


def _infer(
    variant: Variant, models: dict[str, nn.Module], images: torch.Tensor, args: argparse.Namespace
) -> tuple[dict[str, float], dict[str, list[float]], dict[str, float]]:
    """(first-call s, timed call s, peak MiB or {}) per model: eval mode, no grad."""
    device = images.device
    runners = {k: prepare(m.eval(), variant, device.type) for k, m in models.items()}

    def infer(runner: nn.Module) -> Callable[[], torch.Tensor]:
        def call() -> torch.Tensor:
            with torch.no_grad():
                return runner(images)

        return call

    calls = {k: infer(r) for k, r in runners.items()}
    first, times = _timed_phase(calls, args, device)
    logits = calls["ordinalclip"]().float()
    if not torch.isfinite(logits).all():
        raise FloatingPointError(f"{variant.name}: non-finite logits from the exported OrdinalCLIP head")
    peaks = {k: _peak_mb(c, device) for k, c in calls.items()} if device.type == "cuda" else {}
    return first, times, peaks


def run_variant(
    variant: Variant, ordinal: OrdinalCLIP, cnn: CosineClassifier, side: int, args: argparse.Namespace
) -> tuple[dict[str, float], list[list[str]]]:
    """Figures (keys suffixed ``_<variant.key>``) and table rows of one variant on the shared models."""
    device = torch.device(args.device)
    v, bs = variant.key, args.batch
    fmt = torch.channels_last if variant.channels_last else torch.contiguous_format
    ordinal.image_tower.to(memory_format=fmt)  # the CNN shares this tower instance
    gen = torch.Generator(device).manual_seed(0)
    images = torch.randn(bs, 3, side, side, device=device, generator=gen).contiguous(memory_format=fmt)
    labels = torch.randint(0, NUM_RANKS, (bs,), device=device, generator=gen)
    if variant.compile:
        torch._dynamo.reset()  # fresh caches: earlier variants' graphs must not count against the recompile limit
    first_train, train, train_mem = _train(
        variant, {"ordinalclip": ordinal, "cnn": cnn}, images, labels, args
    )
    # the exported OrdinalCLIP (fixed prototypes, no text tower) vs the baseline, same tower
    first_infer, inference, infer_mem = _infer(
        variant, {"ordinalclip": ordinal.to_head(), "cnn": cnn}, images, args
    )

    figures: dict[str, float] = {}
    rows = []
    for k in MODELS:
        figures[f"train_images_per_s_{k}_{v}"] = bs / median(train[k])
        figures[f"infer_images_per_s_{k}_{v}"] = bs / median(inference[k])
        if variant.compile:
            figures[f"compile_s_train_{k}_{v}"] = first_train[k] - median(train[k])
            figures[f"compile_s_infer_{k}_{v}"] = first_infer[k] - median(inference[k])
        if train_mem:
            figures[f"peak_memory_mb_train_{k}_{v}"] = train_mem[k]
            figures[f"peak_memory_mb_infer_{k}_{v}"] = infer_mem[k]
        rows.append(
            [
                variant.name,
                k,
                _rate(bs, train[k]),
                _rate(bs, inference[k]),
                f"{figures[f'compile_s_train_{k}_{v}']:.1f} / {figures[f'compile_s_infer_{k}_{v}']:.1f}"
                if variant.compile
                else "-",
                f"{train_mem[k]:.0f} / {infer_mem[k]:.0f}" if train_mem else "-",
            ]
        )
    figures[f"train_ratio_{v}"] = (
        figures[f"train_images_per_s_ordinalclip_{v}"] / figures[f"train_images_per_s_cnn_{v}"]
    )
    figures[f"infer_ratio_{v}"] = (
        figures[f"infer_images_per_s_ordinalclip_{v}"] / figures[f"infer_images_per_s_cnn_{v}"]
    )
    rows.append(
        [
            variant.name,
            "ordinalclip / cnn",
            f"{figures[f'train_ratio_{v}']:.3f}x",
            f"{figures[f'infer_ratio_{v}']:.3f}x",
            "",
            "",
        ]
    )
    check_finite(figures, f"throughput {variant.name}")
    return figures, rows


def _rate(batch: int, seconds: list[float]) -> str:
    """'median (min-max)' images/s."""
    return f"{batch / median(seconds):.1f} ({batch / max(seconds):.1f}-{batch / min(seconds):.1f})"


def _one_line(text: str, limit: int = 300) -> str:
    """An error message fit for one markdown table cell."""
    text = " ".join(text.split()).replace("|", "/")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _conv_note(tower: nn.Module) -> str:
    convs = sum(isinstance(m, nn.Conv2d) for m in tower.modules())
    if convs <= 1:
        return f"+cl: the image tower has {convs} conv layer (a ViT's patch embedding), so channels_last is nearly a no-op"
    return f"+cl: the image tower has {convs} conv layers"


def _write(
    out: Path,
    json_path: str | None,
    header: list[str],
    figures: dict,
    rows: list[list[str]],
    args: argparse.Namespace,
) -> None:
    """(Re)write throughput.json / throughput.md under ``out`` (and ``json_path``): called after every variant."""
    write_json(out / "throughput.json", figures)
    if json_path:
        write_json(json_path, figures)
    headers = [
        "variant",
        "model",
        f"train images/s, median (min-max) of {args.steps}",
        "infer images/s",
        "compile s train / infer",
        "peak MiB train / infer",
    ]
    (out / "throughput.md").write_text("\n".join(header) + "\n\n" + markdown_table(headers, rows) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Measure every variant, print and write the table; return the exit status (1 if a variant failed)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", default="vit_b16", choices=("vit_b16", "vgg16"))
    ap.add_argument("--tiny", action="store_true", help="tiny CLIP towers at 32x32 (smoke test)")
    ap.add_argument("--batch", type=int, help="images per step (default 64 on cuda, 8 on cpu)")
    ap.add_argument(
        "--steps", type=int, help="timed steps per model and variant (default 20 on cuda, 3 on cpu)"
    )
    ap.add_argument("--warmup", type=int, help="untimed steps after the first (default 3 on cuda, 1 on cpu)")
    ap.add_argument(
        "--variants", help="comma-separated (default on cuda fp32,bf16,bf16+cl,bf16+compile; cpu fp32,bf16)"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS_DIR), help="folder for throughput.json and throughput.md")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: this torch build ({torch.__version__}) sees no CUDA device")
    cuda = device.type == "cuda"
    args.batch = (64 if cuda else 8) if args.batch is None else args.batch
    args.steps = (20 if cuda else 3) if args.steps is None else args.steps
    args.warmup = (3 if cuda else 1) if args.warmup is None else args.warmup
    names = [
        n
        for n in (args.variants or ("fp32,bf16,bf16+cl,bf16+compile" if cuda else "fp32,bf16")).split(",")
        if n
    ]
    try:  # every name is checked before anything is built
        variants = [parse_variant(n) for n in names]
    except ValueError as exc:
        ap.error(str(exc))
    if len({v.key for v in variants}) != len(variants):
        ap.error(f"--variants {args.variants!r} names a variant twice")

    setup_threads(args.threads)
    if cuda:
        torch.backends.cudnn.benchmark = (
            True  # fixed input shapes: let cuDNN pick its fastest conv algorithms
        )
    device_name = torch.cuda.get_device_name(device) if cuda else machine()
    size = "tiny" if args.tiny else args.size
    print(f"{device_name}; {torch.get_num_threads()} threads, {load_note()}", flush=True)
    t0 = time.perf_counter()
    ordinal, cnn, side = build_models(args.size, args.tiny)
    ordinal.to(device)  # the CNN's tower is the same instance; its prototypes follow below
    cnn.to(device)
    print(f"built {size} towers in {time.perf_counter() - t0:.1f} s", flush=True)

    tf32 = "on" if torch.backends.cuda.matmul.allow_tf32 else "off"
    settings = f"cudnn.benchmark on, TF32 matmul {tf32}" if cuda else load_note()
    figures: dict = {
        "device": str(device),
        "device_name": device_name,
        "size": size,
        "batch": args.batch,
        "steps": args.steps,
        "torch": torch.__version__,
    }
    header = [
        f"# Throughput, {size} image tower, OrdinalCLIP (C = {NUM_RANKS}) vs CNN cosine baseline",
        "",
        f"{device_name}; batch {args.batch}, {args.warmup} warm-up + {args.steps} timed steps per model and variant; "
        f"torch {torch.__version__}; {settings}",
        "",
        "train: forward + loss + backward + RAdam step; infer: exported OrdinalCLIP head vs CNN, eval, no grad. "
        + _conv_note(ordinal.image_tower)
        + ".",
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[list[str]] = []
    failed = []
    for variant in variants:
        t = time.perf_counter()
        print(f"[{variant.name}] running ...", flush=True)
        try:
            figs, variant_rows = run_variant(variant, ordinal, cnn, side, args)
        except Exception as exc:  # noqa: BLE001 -- one broken variant (compile, OOM) must not lose the others
            traceback.print_exc()
            message = _one_line(f"{type(exc).__name__}: {exc}")
            figures[f"error_{variant.key}"] = message
            rows.append([variant.name, "FAILED", message, "", "", ""])
            failed.append(variant.name)
            print(f"[{variant.name}] FAILED after {time.perf_counter() - t:.1f} s: {message}", flush=True)
            if variant.compile:
                torch._dynamo.reset()  # drop the failed variant's graphs (and the memory they hold)
            if cuda:
                torch.cuda.empty_cache()
        else:
            figures.update(figs)
            rows += variant_rows
            print(
                f"[{variant.name}] {time.perf_counter() - t:.1f} s: train {figs[f'train_images_per_s_ordinalclip_{variant.key}']:.1f}"
                f" / {figs[f'train_images_per_s_cnn_{variant.key}']:.1f} images/s (OrdinalCLIP / CNN), "
                f"infer {figs[f'infer_images_per_s_ordinalclip_{variant.key}']:.1f} / "
                f"{figs[f'infer_images_per_s_cnn_{variant.key}']:.1f}",
                flush=True,
            )
        gc.collect()
        _write(out, args.json, header, figures, rows, args)
    print((out / "throughput.md").read_text(), flush=True)
    print(f"total {time.perf_counter() - t0:.1f} s; after: {load_note()}", flush=True)
    if failed:
        print(f"FAILED variants: {', '.join(failed)}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
