"""Feature cache and input pipeline: an epoch from cached features vs re-encoding images with a frozen tower,
and images per second of the image loader vs what a training step consumes.

1. ``feature_cache_speedup``: one epoch of OrdinalCLIP training (prompt learner + frozen CLIP text tower, batch
   32) over N images with a frozen ViT-B/16 image tower, (a) re-encoding every image each epoch (decode + transform +
   tower forward, as training without the cache does) vs (b) reading the features that
   ``ordinalclip.engine.FeatureCache`` stored after its one pass (what ``data.feature_cache`` does). Same head, same
   steps; measured alternately, for C = 100 ranks (MORPH, the key figure) and C = 8 (Adience; ``_c8`` keys).
   ``feature_cache_flop_ratio``: the same ratio in matmul/conv FLOPs (``torch.utils.flop_counter``), i.e. the
   speedup the cache could give if both epochs ran at the same FLOP rate. The cached epoch still runs the text path
   forward + backward once per step (the prompts change every step), so the ratio is bounded by
   (B x image-tower FLOPs + text-path FLOPs) / text-path FLOPs, whatever the implementation.
2. ``loader_images_per_s``: the training input pipeline (JPEG decode, Resize 256, RandomCrop 224, flip, normalise)
   through ``ordinalclip.data.ImageDataset`` and a DataLoader with worker processes; compared with
   ``step_images_per_s`` (images per second a training step consumes, from train_step.py) by run_all.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    alternate,
    check_finite,
    finish,
    load_note,
    median,
    paired_ratio,
    parse_common,
    spread,
)
from ordinalclip.data import ImageDataset, Sample, build_transforms  # noqa: E402
from ordinalclip.engine import FeatureCache  # noqa: E402
from ordinalclip.losses import ordinalclip_loss  # noqa: E402
from ordinalclip.modeling import ClipImageTower, ClipTextTower, OrdinalCLIP, RankPromptLearner, load_clip  # noqa: E402
from text_path import CONTEXT, tiny_custom  # noqa: E402


def _write_jpegs(folder: Path, n: int, size: int) -> list[Sample]:
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        arr = (rng.random((size, size, 3)) * 255).astype(np.uint8)
        path = folder / f"{i}.jpg"
        Image.fromarray(arr).save(path, quality=90)
        samples.append(Sample(str(path), i % 10, f"bench:{i}"))
    return samples


def _loader(
    samples: list[Sample], train: bool, size: int, batch: int, workers: int
) -> torch.utils.data.DataLoader:
    resize = round(size * 256 / 224)
    ds = ImageDataset(samples, build_transforms(train, size=size, resize=resize))
    return torch.utils.data.DataLoader(
        ds, batch_size=batch, shuffle=train, num_workers=workers, persistent_workers=workers > 0
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run both measurements, print a table, return (and optionally write) the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=64, help="images in the epoch")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument(
        "--ranks", default="100,8", help="comma-separated rank counts; the first gives the key figure"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="loader worker processes")
    ap.add_argument(
        "--loader-images", type=int, default=256, help="images per epoch of the loader measurement"
    )
    args = parse_common(ap, argv, "tiny CLIP at 32x32")
    ranks = [int(c) for c in args.ranks.split(",") if c]
    if not ranks:
        ap.error("--ranks needs at least one rank count")
    print(f"{torch.get_num_threads()} threads, {load_note()}")
    torch.manual_seed(0)
    if args.tiny:
        bundle, size = load_clip(custom=tiny_custom()), 32
    else:
        bundle, size = load_clip("ViT-B-16"), 224
    text = ClipTextTower(bundle.model, bundle.tokenizer)
    tower = ClipImageTower(bundle.model.visual).requires_grad_(False).eval()
    heads = {}
    for c in ranks:
        model = OrdinalCLIP(tower, RankPromptLearner(text, c, 3, context_init=CONTEXT), text)
        opt = torch.optim.RAdam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        heads[c] = (model, opt)

    with tempfile.TemporaryDirectory() as tmp:
        samples = _write_jpegs(Path(tmp), args.images, 256 if not args.tiny else 40)
        eval_loader = _loader(samples, False, size, args.batch, 0)
        dataset = eval_loader.dataset
        cache = FeatureCache(tower, {"bench": "data_path"}, Path(tmp) / "cache", batch_size=args.batch)
        cached_loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(cache.features(dataset), torch.tensor(dataset.labels)),
            batch_size=args.batch,
        )  # the one pass over the images (untimed): later epochs read what it stored

        def epochs(c: int) -> dict[str, Callable[[], None]]:
            model, opt = heads[c]

            def step(features: torch.Tensor, y: torch.Tensor) -> None:
                opt.zero_grad(set_to_none=True)
                ordinalclip_loss(model.forward_features(features), y % c)["loss"].backward()
                opt.step()

            def reencode() -> None:
                for x, y in eval_loader:
                    with torch.no_grad():
                        f = tower(x)
                    step(f, y)

            def cached() -> None:
                # one read of the stored features per epoch, as the engine's cached loader does
                cached_batches = list(cached_loader)
                for f, y in cached_batches:
                    step(f, y)

            return {f"re-encode C={c}": reencode, f"cached C={c}": cached}

        variants = {name: fn for c in ranks for name, fn in epochs(c).items()}
        # a re-encoding epoch = the cached epoch's steps + the tower over every image (linear in the batch), so the
        # tower is counted on one image instead of running a whole epoch under the counter
        with torch.no_grad():
            tower_flops = _flops(lambda: tower(dataset[0][0][None]))
        flops = {}
        for c in ranks:  # counting a cached epoch also warms it up; the tower was warmed by the cache's pass
            flops[f"cached C={c}"] = _flops(variants[f"cached C={c}"])
            flops[f"re-encode C={c}"] = flops[f"cached C={c}"] + len(dataset) * tower_flops
        times = alternate(variants, args.repeats, warmup=0)

        # the loader's own epoch: enough batches to keep every worker busy (the same files, decoded again)
        loader_samples = (samples * -(-args.loader_images // len(samples)))[: args.loader_images]
        train_loader = _loader(loader_samples, True, size, args.batch, args.workers)

        def load_epoch() -> None:
            for _ in train_loader:
                pass

        load_epoch()  # start the workers
        load_times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            load_epoch()
            load_times.append(time.perf_counter() - start)

    figures: dict[str, float] = {}
    rows = []
    for i, c in enumerate(ranks):
        suffix = "" if i == 0 else f"_c{c}"
        re, ca = f"re-encode C={c}", f"cached C={c}"
        t_re, t_ca = median(times[re]), median(times[ca])
        figures[f"feature_cache_speedup{suffix}"] = paired_ratio(times, re, ca)
        figures[f"feature_cache_flop_ratio{suffix}"] = flops[re] / flops[ca]
        figures[f"epoch_s_reencode_c{c}"] = t_re
        figures[f"epoch_s_cached_c{c}"] = t_ca
        rows.append(
            [
                f"epoch, {args.images} images, C = {c}, re-encoding with the frozen tower",
                spread(times[re]),
                f"{flops[re] / 1e9:.1f}",
                "1.0x",
            ]
        )
        rows.append(
            [
                f"epoch, {args.images} images, C = {c}, cached features",
                spread(times[ca]),
                f"{flops[ca] / 1e9:.1f}",
                f"{figures[f'feature_cache_speedup{suffix}']:.1f}x (FLOP ratio {flops[re] / flops[ca]:.1f}x)",
            ]
        )
    figures["loader_images_per_s"] = len(loader_samples) / median(load_times)
    check_finite(figures, "data_path")
    rows.append(
        [
            f"loader ({args.workers} workers), train transform",
            spread(load_times),
            "-",
            f"{figures['loader_images_per_s']:.0f} img/s",
        ]
    )
    headers = ["what", f"s, median (min-max) of {args.repeats}", "GFLOP (matmul/conv)", "figure"]
    return finish(headers, rows, figures, args.json)


def _cpu_sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query, key, value)


def _cpu_sdpa_backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)


# torch's counter knows the CUDA attention kernels but not the CPU one that F.scaled_dot_product_attention runs here
_CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flops,
}


def _flops(fn: Callable[[], object]) -> int:
    """Matmul/convolution FLOPs of one call, as counted by ``torch.utils.flop_counter``.

    nn.MultiheadAttention's inference fast path is one fused op the counter does not see (a ViT-B/16 image would
    count 22.5 instead of 35 GFLOP), so it is switched off while counting, and the CPU attention kernel is added.
    """
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION_FLOPS) as counter:
            fn()
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return counter.get_total_flops()


if __name__ == "__main__":
    main()
