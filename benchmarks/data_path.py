"""Feature cache and input pipeline: an epoch from cached features vs re-encoding images with a frozen tower,
and images per second of the image loader vs what a training step consumes.

1. ``feature_cache_speedup``: one epoch of OrdinalCLIP training (prompt learner + frozen CLIP text tower, batch
   32) over N images with a frozen image tower, (a) re-encoding every image each epoch (decode + transform + tower
   forward, as training without the cache does) vs (b) reading the tower's cached features (what
   ``data.feature_cache`` does after its first epoch). Same head, same steps; measured alternately.
2. ``loader_images_per_s``: the training input pipeline (JPEG decode, Resize 256, RandomCrop 224, flip, normalise)
   through ``ordinalclip.data.ImageDataset`` and a DataLoader with worker processes; compared with
   ``step_images_per_s`` (images per second a training step consumes, from train_step.py) by run_all.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    alternate,
    check_finite,
    finish,
    load_note,
    median,
    setup_threads,
    spread,
)
from ordinalclip.data import ImageDataset, Sample, build_transforms  # noqa: E402
from ordinalclip.losses import ordinalclip_loss  # noqa: E402
from ordinalclip.modeling import ClipImageTower, ClipTextTower, OrdinalCLIP, RankPromptLearner, load_clip  # noqa: E402
from text_path import tiny_custom  # noqa: E402


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
    ap.add_argument("--images", type=int, default=128, help="images in the epoch")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="loader worker processes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tiny", action="store_true", help="tiny CLIP at 32x32 (smoke test)")
    ap.add_argument("--json", help="write the figures to this JSON file")
    args = ap.parse_args(argv)
    setup_threads(args.threads)
    print(f"{torch.get_num_threads()} threads, {load_note()}")
    torch.manual_seed(0)
    if args.tiny:
        bundle, size = load_clip(custom=tiny_custom()), 32
    else:
        bundle, size = load_clip("ViT-B-16"), 224
    text = ClipTextTower(bundle.model, bundle.tokenizer)
    learner = RankPromptLearner(text, 100, 3, context_init="age estimation: the age of the person is")
    model = OrdinalCLIP(ClipImageTower(bundle.model.visual), learner, text)
    model.image_tower.requires_grad_(False).eval()
    opt = torch.optim.RAdam([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    with tempfile.TemporaryDirectory() as tmp:
        samples = _write_jpegs(Path(tmp), args.images, 256 if not args.tiny else 40)
        eval_loader = _loader(samples, False, size, args.batch, 0)
        with torch.no_grad():  # the cache: the frozen tower's features, computed once
            cached = [(model.image_tower(x), y) for x, y in eval_loader]

        def step(features: torch.Tensor, labels: torch.Tensor) -> None:
            opt.zero_grad(set_to_none=True)
            ordinalclip_loss(model.forward_features(features), labels)["loss"].backward()
            opt.step()

        def epoch_reencode() -> None:
            for x, y in eval_loader:
                with torch.no_grad():
                    f = model.image_tower(x)
                step(f, y)

        def epoch_cached() -> None:
            for f, y in cached:
                step(f, y)

        times = alternate({"re-encode": epoch_reencode, "cached": epoch_cached}, args.repeats)

        train_loader = _loader(samples, True, size, args.batch, args.workers)

        def load_epoch() -> None:
            for _ in train_loader:
                pass

        load_epoch()  # start the workers
        load_times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            load_epoch()
            load_times.append(time.perf_counter() - start)

    t_re, t_ca = median(times["re-encode"]), median(times["cached"])
    figures = {
        "feature_cache_speedup": t_re / t_ca,
        "epoch_s_reencode": t_re,
        "epoch_s_cached": t_ca,
        "loader_images_per_s": args.images / median(load_times),
    }
    check_finite(figures, "data_path")
    rows = [
        [
            f"epoch, {args.images} images, re-encoding with the frozen tower",
            spread(times["re-encode"]),
            "1.0x",
        ],
        [f"epoch, {args.images} images, cached features", spread(times["cached"]), f"{t_re / t_ca:.1f}x"],
        [
            f"loader ({args.workers} workers), train transform",
            spread(load_times),
            f"{figures['loader_images_per_s']:.0f} img/s",
        ],
    ]
    return finish(["what", f"s, median (min-max) of {args.repeats}", "figure"], rows, figures, args.json)


if __name__ == "__main__":
    main()
