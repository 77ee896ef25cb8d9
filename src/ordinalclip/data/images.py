"""Image datasets, up-front verification and the reference train/eval transforms.

Decoding itself (orientation, ICC, bit depth, transparency) is :mod:`ordinalclip.runtime.decode`, shared with
prediction and serving.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T

from ordinalclip.runtime.decode import open_image, read_image
from ordinalclip.runtime.preprocess import IMAGENET_MEAN, IMAGENET_STD

from .samples import DataError, Sample

logger = logging.getLogger(__name__)


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
    with open_image(path, source) as img:
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
