"""Image loading, up-front verification and the reference train/eval transforms."""

from __future__ import annotations

import functools
import io
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps
from torch.utils.data import Dataset
from torchvision import transforms as T

from .samples import DataError, Sample

logger = logging.getLogger(__name__)

# The reference normalises with ImageNet statistics for every encoder, CLIP towers included (reference notes
# §3.5).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def build_transforms(
    train: bool,
    size: int = 224,
    resize: int = 256,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> T.Compose:
    """The reference transforms: PIL image -> float tensor ``(3, size, size)``.

    train: Resize((resize, resize)) -> RandomCrop(size) -> RandomHorizontalFlip -> ToTensor -> Normalize;
    eval:  Resize((resize, resize)) -> CenterCrop(size) -> ToTensor -> Normalize.
    The resize ignores the aspect ratio, and this is deliberately not RandomResizedCrop (reference notes
    §3.5).
    """
    if size > resize:
        raise ValueError(f"crop size {size} is larger than the resize {resize}")
    steps: list[Callable] = [T.Resize((resize, resize))]
    steps += [T.RandomCrop(size), T.RandomHorizontalFlip()] if train else [T.CenterCrop(size)]
    steps += [T.ToTensor(), T.Normalize(list(mean), list(std))]
    return T.Compose(steps)


# ------------------------------------------------------------------------------------------ decoding


def _open(path: str | os.PathLike[str], source: str) -> Image.Image:
    """``Image.open`` whose decompression-bomb warning names the file (Pillow's own names only a pixel count).

    Pillow warns for more than ``Image.MAX_IMAGE_PIXELS`` pixels and refuses twice that with an error.
    """
    # catch_warnings changes process-wide filters; loaders run one per process (DataLoader workers).
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(path)
        except Image.DecompressionBombWarning as warning:
            message = f"{source}: {path}: {warning}"
    warnings.warn(message, Image.DecompressionBombWarning, stacklevel=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(path)


@functools.lru_cache(maxsize=16)
def _to_srgb(icc: bytes, mode: str, out_mode: str):  # -> ImageCms.ImageCmsTransform | None
    """A cached colour transform from an embedded ICC profile to sRGB (None where littleCMS cannot build
    it)."""
    from PIL import ImageCms

    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if source.profile.xcolor_space.strip() not in {
            "RGB": ("RGB",),
            "RGBA": ("RGB",),
            "CMYK": ("CMYK",),
            "L": ("GRAY",),
        }.get(mode, ()):
            return None  # a profile that does not describe this mode's colours
        return ImageCms.buildTransform(
            source, ImageCms.createProfile("sRGB"), mode, out_mode, renderingIntent=ImageCms.Intent.PERCEPTUAL
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None


def _scale_to_8bit(img: Image.Image) -> Image.Image:
    """A 16/32-bit integer or float grayscale image as 8-bit ``L``, scaled the way a viewer shows it.

    Integer modes (``I;16*``, ``I``) span 0..65535 (16-bit is what cameras, scanners and PNG/TIFF store);
    float images (``F``) span 0..1 when all their values lie there (the usual convention), else 0..255.
    Pillow's own ``convert`` clips both at 255, which turns a 16-bit image almost white.
    """
    values = np.asarray(img.convert("F") if img.mode != "F" else img, dtype=np.float64)
    if img.mode == "F":
        finite = values[np.isfinite(values)]
        if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
            values = values * 255.0
    else:
        values = values / 257.0  # 65535 -> 255
    values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")


def to_display_rgb(img: Image.Image) -> Image.Image:
    """An opened image as 8-bit RGB, the way an image viewer shows it.

    * EXIF / XMP orientation applied (phones store a portrait photo as a landscape one plus a rotation tag);
    * an embedded ICC profile (Display P3, Adobe RGB, a printer's CMYK, ...) converted to sRGB;
    * 16-bit and float grayscale scaled into 0..255 (see :func:`_scale_to_8bit`), not clipped;
    * transparency (RGBA, LA, a palette's transparent entry) composited over white, as a page shows it;
      the hidden colour under transparent pixels is not what anyone sees;
    * CMYK, YCbCr, CIE L*a*b*, palettes and 1-bit images through Pillow's conversion. Animated files give the
      first frame.
    """
    if (
        img.getexif().get(ExifTags.Base.Orientation, 1) != 1
        or "xmp" in img.info
        or "XML:com.adobe.xmp" in img.info
    ):
        img = ImageOps.exif_transpose(img) or img
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        return _scale_to_8bit(img).convert("RGB")
    if img.mode == "P" or img.mode == "PA":
        img = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    elif img.mode in ("LA", "La", "RGBa") or (img.mode in ("L", "RGB") and "transparency" in img.info):
        img = img.convert("RGBA")
    icc = img.info.get("icc_profile")
    if icc and img.mode in ("RGB", "RGBA", "CMYK", "L"):
        out_mode = "RGBA" if img.mode == "RGBA" else "RGB"
        transform = _to_srgb(bytes(icc), img.mode, out_mode)
        if transform is not None:
            img = transform.apply(img)
    if img.mode == "RGBA":
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    return img.convert("RGB")


def read_image(path: str | os.PathLike[str], source: str | None = None) -> Image.Image:
    """Open and fully decode an image file as 8-bit RGB as a person sees it (:func:`to_display_rgb`).

    Raises PIL's errors; ``source`` (e.g. ``"list.txt:12"``) names the file in a decompression-bomb warning.
    """
    with _open(path, source or str(path)) as img:
        return to_display_rgb(img)


def load_image(sample: Sample) -> Image.Image:
    """Open and fully decode ``sample.path`` as RGB (:func:`read_image`); any decoding failure is a DataError
    naming the source."""
    try:
        return read_image(sample.path, sample.source)
    except FileNotFoundError:
        raise DataError(f"{sample.source}: image file not found: {sample.path}") from None
    # PIL's decoders raise a zoo of types (OSError, SyntaxError, ValueError, struct.error, EOFError,
    # DecompressionBombError, ...) for bad files; all of them mean "this file is not a usable image".
    except Exception as err:
        raise DataError(
            f"{sample.source}: cannot read image {sample.path}: {type(err).__name__}: {err}"
        ) from err


def _check_image(path: str, source: str) -> None:
    # verify() catches structural damage cheaply but not truncated pixel data, so decode fully as well (the
    # same way training does); verify() leaves the image unusable, hence the second open.
    with _open(path, source) as img:
        img.verify()
    read_image(path, source)


def verify_images(samples: Sequence[Sample]) -> tuple[list[Sample], list[tuple[Sample, str]]]:
    """Check every image up front (PIL verify + full decode): ``(good, [(bad_sample, reason), ...])``."""
    good: list[Sample] = []
    bad: list[tuple[Sample, str]] = []
    for sample in samples:
        try:
            _check_image(sample.path, sample.source)
        except Exception as err:  # same zoo of PIL errors as in load_image
            bad.append((sample, f"{type(err).__name__}: {err}"))
        else:
            good.append(sample)
    return good, bad


class ImageDataset(Dataset):
    """Map-style dataset over samples: ``dataset[i] -> (image_tensor, label)``.

    ``on_error="raise"`` (default) decodes lazily and raises a DataError naming the file and its list line
    for an unreadable image. ``on_error="skip"`` runs :func:`verify_images` once in the constructor and
    drops the bad files (logged with their count; kept in ``self.skipped``), so indices never silently
    map to a substitute image. ``transform`` defaults to ``ToTensor`` (float ``(3, H, W)`` in [0, 1]).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        transform: Callable[[Image.Image], torch.Tensor] | None = None,
        on_error: Literal["raise", "skip"] = "raise",
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.transform = transform if transform is not None else T.ToTensor()
        self.skipped: list[tuple[Sample, str]] = []
        samples = list(samples)
        if on_error == "skip":
            samples, self.skipped = verify_images(samples)
            if self.skipped:
                shown = "\n".join(f"  {s.path} ({s.source}): {why}" for s, why in self.skipped[:20])
                more = f"\n  ... and {len(self.skipped) - 20} more" if len(self.skipped) > 20 else ""
                logger.warning(
                    "skipping %d of %d unreadable images:\n%s%s",
                    len(self.skipped),
                    len(samples) + len(self.skipped),
                    shown,
                    more,
                )
        self.samples: list[Sample] = samples

    @property
    def labels(self) -> list[int]:
        """Rank index of every sample, in dataset order."""
        return [s.label for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        sample = self.samples[index]
        return self.transform(load_image(sample)), sample.label
