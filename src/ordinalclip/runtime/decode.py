"""Decoding an image file the way a person sees it: the one decoder of training, prediction and serving.

EXIF orientation, ICC profiles to sRGB, 16-bit and float grayscale scaled (not clipped), transparency over
white, first frame of an animation. PIL and numpy only, so the deploy runtime shares it without torch.
"""

from __future__ import annotations

import functools
import io
import os
import warnings

import numpy as np
from PIL import ExifTags, Image, ImageOps

__all__ = ["open_image", "read_image", "to_display_rgb"]


def open_image(path: str | os.PathLike[str], source: str) -> Image.Image:
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
    with open_image(path, source or str(path)) as img:
        return to_display_rgb(img)
