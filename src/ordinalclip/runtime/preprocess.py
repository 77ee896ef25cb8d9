"""The eval transform of an export's sidecar in PIL and numpy: the same pixels as the torch transform.

``Resize((r, r))`` (bilinear, aspect ratio ignored, as the reference does) -> ``CenterCrop(size)`` -> scale
to [0, 1] -> ``(x - mean) / std``, each step computed the way torchvision computes it on a PIL image (the
resize is Pillow's in both, the crop offset rounds the same way, the arithmetic is float32), so the arrays
are equal to :func:`ordinalclip.data.images.build_transforms`'s tensors, not merely close.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "center_crop_box", "normalize", "preprocess_image"]

# The reference normalises with ImageNet statistics for every encoder, CLIP towers included (reference notes
# §3.5).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def center_crop_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of torchvision's ``CenterCrop(size)`` of a ``width x height`` image."""
    if size > width or size > height:
        raise ValueError(f"crop size {size} is larger than the {width}x{height} image")
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return left, top, left + size, top + size


def normalize(pixels: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(H, W, 3) uint8 pixels -> (3, H, W) float32 ``(x / 255 - mean) / std``, as torchvision orders it."""
    x = np.ascontiguousarray(pixels.transpose(2, 0, 1)).astype(np.float32) / np.float32(255)
    m = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
    return (x - m) / s


def preprocess_image(img: Image.Image, preprocess: Mapping[str, Any]) -> np.ndarray:
    """An 8-bit RGB image -> (3, size, size) float32 input of the model.

    Args:
        img: a decoded RGB image (:func:`ordinalclip.runtime.decode.to_display_rgb`).
        preprocess: the sidecar's ``{"size", "resize", "mean", "std"}`` (``resize`` defaults to ``size``).
    """
    size = int(preprocess["size"])
    side = int(preprocess.get("resize") or size)
    if img.mode != "RGB":
        img = img.convert("RGB")
    resized = img.resize((side, side), Image.Resampling.BILINEAR)
    cropped = resized.crop(center_crop_box(side, side, size))
    return normalize(np.asarray(cropped, dtype=np.uint8), preprocess["mean"], preprocess["std"])
