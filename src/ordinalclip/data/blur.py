"""Built-in offline demo data: blur level of real photo crops as an ordinal label.

No real image dataset with human ordinal labels installs offline from the package registries, so the demo
builds one from the real photographs that installed packages ship (scikit-image's ``skimage.data``,
scikit-learn's sample images, matplotlib's ``grace_hopper.jpg``). Each photo gives several random square
crops; every crop is saved at ``levels`` degradation levels: level 0 is the crop itself, level k > 0 is the
crop after a Gaussian blur whose sigma grows geometrically with k.

Why this is a fair ordinal task:

* labels are exact by construction (no annotator noise) and genuinely ordered: a larger sigma removes strictly
  more high-frequency energy, so "level 3" really lies between "level 2" and "level 4";
* every level of every crop is present, so the label is independent of the content of the image;
* the split into train/val/test is by SOURCE PHOTO, so a model cannot score by recognising a photo it saw
  during training; it has to judge sharpness on unseen scenes;
* the blur is applied after resizing to the output size, so a level means the same visible blur (sigma in
  output pixels) whatever the resolution of the source photo.

The build is deterministic given ``seed`` (numpy ``Generator`` streams per photo) and is cached on disk: a
``COMPLETE`` marker holding the build settings is written last, so a half-built or differently configured
cache is rebuilt and a complete one is reused.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm.auto import tqdm

from ordinalclip.fileio import atomic_write_text

__all__ = [
    "DemoDataset",
    "blur_sigmas",
    "build_blur_dataset",
    "default_cache_root",
    "rank_names",
    "source_photos",
]

VERSION = "demo-blur-v1"
_MARKER = "COMPLETE"
_SPLITS = ("train", "val", "test")
# Ordered vocabulary for the rank prompts; `rank_names` picks `levels` of them spread over the whole ladder.
_LADDER = (
    "sharp",
    "almost sharp",
    "very slightly blurred",
    "slightly blurred",
    "mildly blurred",
    "moderately blurred",
    "clearly blurred",
    "heavily blurred",
    "very heavily blurred",
    "extremely blurred",
)
# Crops flatter than this (mean |Laplacian| of the grey crop, 0..255 scale) are blank sky, the black border of
# the retina, etc.: every blur level looks the same there, so such crops are re-drawn.
_MIN_DETAIL = 2.0
_MAX_TRIES = 20


@dataclass(frozen=True)
class DemoDataset:
    """Paths and facts of a built blur dataset (list files hold ``relative/path label`` lines)."""

    root: Path
    train_list: Path
    val_list: Path
    test_list: Path
    ranks_file: Path
    rank_names: tuple[str, ...]
    sigmas: tuple[float, ...]
    photo_split: dict[str, tuple[str, ...]]

    @property
    def num_ranks(self) -> int:
        return len(self.rank_names)

    def list_file(self, split: str) -> Path:
        """The list file of ``split`` ('train', 'val' or 'test')."""
        if split not in _SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {_SPLITS}")
        return {"train": self.train_list, "val": self.val_list, "test": self.test_list}[split]


def default_cache_root() -> Path:
    """``$ORDINALCLIP_CACHE/demo-blur-v1`` if the variable is set, else
    ``~/.cache/ordinalclip/demo-blur-v1``."""
    base = os.environ.get("ORDINALCLIP_CACHE")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "ordinalclip") / VERSION


def blur_sigmas(levels: int, min_sigma: float = 0.5, max_sigma: float = 4.0) -> tuple[float, ...]:
    """Gaussian sigma per level, in output pixels: 0 for level 0, then geometric from min_sigma to
    max_sigma."""
    if not 2 <= levels <= len(_LADDER):
        raise ValueError(f"levels must be in 2..{len(_LADDER)}, got {levels}")
    if levels == 2:
        return (0.0, float(max_sigma))
    return (0.0, *(float(s) for s in np.geomspace(min_sigma, max_sigma, levels - 1)))


def rank_names(levels: int) -> tuple[str, ...]:
    """English names of the ``levels`` blur levels, sharpest first (for the text encoder's rank prompts)."""
    blur_sigmas(levels)  # validates `levels`
    idx = np.linspace(0, len(_LADDER) - 1, levels)
    return tuple(_LADDER[int(round(i))] for i in idx)


def _skimage_loader(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        try:
            import skimage.data
        except ImportError as err:
            raise ImportError(
                "the demo dataset needs scikit-image's bundled photos: pip install scikit-image "
                "(or pip install 'ordinalclip[demo]')"
            ) from err
        return getattr(skimage.data, name)()

    return load


def _sklearn_loader(index: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_images

        return load_sample_images().images[index]

    return load


def _matplotlib_loader(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from matplotlib import cbook

        with Image.open(cbook.get_sample_data(filename, asfileobj=False)) as im:
            return np.asarray(im.convert("RGB"))

    return load


def source_photos() -> dict[str, Callable[[], np.ndarray]]:
    """Name -> loader of every real photo used (all ship inside wheels; none needs a download).

    Left out on purpose: skimage's synthetic images (logo, colorwheel, horse silhouette), ``cat`` (same photo
    as ``chelsea``), ``clock`` (already motion-blurred, so it has no sharp level), the right stereo view
    (same scene as motorcycle_left, which would leak across splits) and the datasets that need a pooch
    download.
    """
    photos: dict[str, Callable[[], np.ndarray]] = {
        name: _skimage_loader(name)
        for name in (
            "astronaut", "brick", "camera", "cell", "chelsea", "coffee", "coins", "grass", "gravel",
            "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket", "text",
        )
    }  # fmt: skip
    photos["motorcycle_left"] = lambda: _skimage_loader("stereo_motorcycle")()[0]
    photos["china"] = _sklearn_loader(0)
    photos["flower"] = _sklearn_loader(1)
    photos["grace_hopper"] = _matplotlib_loader("grace_hopper.jpg")
    return photos


def _as_rgb_uint8(name: str, img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or img.dtype != np.uint8:
        raise ValueError(
            f"photo {name!r}: expected an (H, W[, 3|4]) uint8 array, got {img.shape} {img.dtype}"
        )
    return np.ascontiguousarray(img[:, :, :3])


def _detail(crop: np.ndarray) -> float:
    return float(np.abs(ndimage.laplace(crop.astype(np.float64).mean(axis=2))).mean())


def _random_crops(photo: np.ndarray, n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n`` square crops of ``photo`` resized to (size, size, 3) uint8, skipping nearly flat regions."""
    h, w = photo.shape[:2]
    hi = max(size, int(0.6 * min(h, w)))
    # At least 1.5x downsampling where the photo allows it, so level 0 is as crisp as the photo can give.
    lo = min(int(1.5 * size), hi)
    if min(h, w) < size:
        raise ValueError(f"photo of {h}x{w} px is smaller than the crop size {size}")
    crops = []
    for _ in range(n):
        best, best_detail = None, -1.0
        for _ in range(_MAX_TRIES):
            side = int(rng.integers(lo, hi + 1))
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = Image.fromarray(photo[y : y + side, x : x + side]).resize(
                (size, size), Image.Resampling.LANCZOS
            )
            arr = np.asarray(crop)
            detail = _detail(arr)
            if detail > best_detail:
                best, best_detail = arr, detail
            if detail >= _MIN_DETAIL:
                break
        assert best is not None  # best_detail starts below any detail, so the first try is kept
        crops.append(best)
    return crops


def _blur(crop: np.ndarray, sigma: float) -> np.ndarray:
    if sigma == 0:
        return crop
    out = ndimage.gaussian_filter(crop.astype(np.float64), sigma=(sigma, sigma, 0), mode="reflect")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _split_photos(names: list[str], seed: int) -> dict[str, tuple[str, ...]]:
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    n_val = n_test = max(1, round(0.2 * len(names)))
    return {
        "train": tuple(sorted(order[n_val + n_test :])),
        "val": tuple(sorted(order[:n_val])),
        "test": tuple(sorted(order[n_val : n_val + n_test])),
    }


def _dataset(root: Path, settings: dict) -> DemoDataset:
    return DemoDataset(
        root=root,
        train_list=root / "train.txt",
        val_list=root / "val.txt",
        test_list=root / "test.txt",
        ranks_file=root / "ranks.txt",
        rank_names=tuple(settings["rank_names"]),
        sigmas=tuple(settings["sigmas"]),
        photo_split={k: tuple(v) for k, v in settings["photo_split"].items()},
    )


def _clear(root: Path) -> None:
    # Remove only what a build writes: `root` may be a user-chosen folder holding other files.
    shutil.rmtree(root / "images", ignore_errors=True)
    for name in (_MARKER, "meta.json", "ranks.txt", *(f"{s}.txt" for s in _SPLITS)):
        (root / name).unlink(missing_ok=True)


def build_blur_dataset(
    root: str | os.PathLike | None = None,
    levels: int = 6,
    crops_per_photo: int = 16,
    size: int = 96,
    seed: int = 0,
    progress: bool = True,
) -> DemoDataset:
    """Build (or reuse) the blur-level dataset under ``root`` (default: :func:`default_cache_root`).

    Writes ``images/<photo>/c<crop>_l<level>.png`` (RGB, size x size), ``train.txt``/``val.txt``/``test.txt``
    (``relative/path label`` lines, label = level in 0..levels-1), ``ranks.txt`` (one level name per line),
    ``meta.json`` and, last, ``COMPLETE``. 20 photos x 16 crops x 6 levels = 1,920 images by default.
    """
    if crops_per_photo < 1 or size < 8:
        raise ValueError(f"need crops_per_photo >= 1 and size >= 8, got {crops_per_photo} and {size}")
    root = Path(root).expanduser() if root is not None else default_cache_root()
    sigmas = blur_sigmas(levels)
    photos = source_photos()
    settings: dict[str, Any] = {
        "version": VERSION,
        "seed": seed,
        "levels": levels,
        "crops_per_photo": crops_per_photo,
        "size": size,
        "sigmas": list(sigmas),
        "rank_names": list(rank_names(levels)),
        "photo_split": {k: list(v) for k, v in _split_photos(sorted(photos), seed).items()},
    }
    marker = root / _MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == settings:
                return _dataset(root, settings)
        except json.JSONDecodeError:
            pass  # a corrupt marker means an unknown state: rebuild
    _clear(root)
    root.mkdir(parents=True, exist_ok=True)

    lines: dict[str, list[str]] = {s: [] for s in _SPLITS}
    counts = {s: [0] * levels for s in _SPLITS}
    split_of = {name: s for s, names in settings["photo_split"].items() for name in names}
    bar = tqdm(
        total=len(photos) * crops_per_photo, desc=f"building {VERSION}", unit="crop", disable=not progress
    )
    for name in sorted(photos):
        photo = _as_rgb_uint8(name, photos[name]())
        # One stream per photo (keyed by its name), so a photo's crops do not depend on the other photos.
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        folder = root / "images" / name
        folder.mkdir(parents=True, exist_ok=True)
        split = split_of[name]
        for c, crop in enumerate(_random_crops(photo, crops_per_photo, size, rng)):
            for level, sigma in enumerate(sigmas):
                rel = f"images/{name}/c{c:03d}_l{level}.png"
                Image.fromarray(_blur(crop, sigma)).save(root / rel, optimize=False)
                lines[split].append(f"{rel} {level}")
                counts[split][level] += 1
            bar.update(1)
    bar.close()

    for s in _SPLITS:
        atomic_write_text(root / f"{s}.txt", "".join(line + "\n" for line in lines[s]))
    atomic_write_text(root / "ranks.txt", "".join(n + "\n" for n in settings["rank_names"]))
    meta = {
        **settings,
        "photos_per_split": {s: len(v) for s, v in settings["photo_split"].items()},
        "counts_per_level": counts,
        "num_images": sum(len(v) for v in lines.values()),
    }
    atomic_write_text(root / "meta.json", json.dumps(meta, indent=2) + "\n")
    atomic_write_text(marker, json.dumps(settings))  # last: only a complete folder has it
    return _dataset(root, settings)
