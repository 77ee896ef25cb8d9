"""Data layer: sample lists (list file, CSV, rank folders), label -> rank mapping, image and feature
datasets, the reference transforms, few-shot / label-shift protocols and benchmark adapters.

Nothing here imports the model or the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ordinalclip.lazy import lazy_attributes

if TYPE_CHECKING:  # for type checkers; never run
    from .benchmarks import (
        ADIENCE_GROUPS,
        AESTHETICS_CATEGORIES,
        BENCHMARKS,
        HCI_DECADES,
        Benchmark,
        adience,
        aesthetics,
        hci,
        load_benchmark,
        morph2,
    )
    from .features import SPLIT_CODES, FeatureDataset, load_features
    from .images import IMAGENET_MEAN, IMAGENET_STD, ImageDataset, build_transforms, load_image, verify_images
    from .protocols import few_shot, label_shift, load_split, save_split
    from .samples import (
        IMAGE_EXTENSIONS,
        DataError,
        RankSpace,
        Sample,
        check_files,
        read_csv_samples,
        read_folder_samples,
        read_list_file,
    )

__all__ = [
    "ADIENCE_GROUPS",
    "AESTHETICS_CATEGORIES",
    "BENCHMARKS",
    "HCI_DECADES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "SPLIT_CODES",
    "Benchmark",
    "DataError",
    "FeatureDataset",
    "ImageDataset",
    "RankSpace",
    "Sample",
    "adience",
    "aesthetics",
    "build_transforms",
    "check_files",
    "few_shot",
    "hci",
    "label_shift",
    "load_benchmark",
    "load_features",
    "load_image",
    "load_split",
    "morph2",
    "read_csv_samples",
    "read_folder_samples",
    "read_list_file",
    "save_split",
    "verify_images",
]

# module -> its attributes (as the TYPE_CHECKING imports above list them), imported on first use
__getattr__, __dir__ = lazy_attributes(
    __name__,
    globals(),
    {
        ".benchmarks": "ADIENCE_GROUPS AESTHETICS_CATEGORIES BENCHMARKS HCI_DECADES Benchmark adience "
        "aesthetics hci load_benchmark morph2",
        ".features": "SPLIT_CODES FeatureDataset load_features",
        ".images": "IMAGENET_MEAN IMAGENET_STD ImageDataset build_transforms load_image verify_images",
        ".protocols": "few_shot label_shift load_split save_split",
        ".samples": "IMAGE_EXTENSIONS DataError RankSpace Sample check_files read_csv_samples "
        "read_folder_samples read_list_file",
    },
)
