"""Data layer: sample lists (list file, CSV, rank folders), label -> rank mapping, image and feature
datasets, the reference transforms, few-shot / label-shift protocols and benchmark adapters.

Nothing here imports the model or the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ordinalclip.lazy import lazy_attributes

# attribute -> defining module, imported on first use (see ordinalclip.lazy)
_WHERE = {
    "ADIENCE_GROUPS": ".benchmarks",
    "AESTHETICS_CATEGORIES": ".benchmarks",
    "BENCHMARKS": ".benchmarks",
    "HCI_DECADES": ".benchmarks",
    "Benchmark": ".benchmarks",
    "adience": ".benchmarks",
    "aesthetics": ".benchmarks",
    "hci": ".benchmarks",
    "load_benchmark": ".benchmarks",
    "morph2": ".benchmarks",
    "SPLIT_CODES": ".features",
    "FeatureDataset": ".features",
    "load_features": ".features",
    "IMAGENET_MEAN": ".images",
    "IMAGENET_STD": ".images",
    "ImageDataset": ".images",
    "build_transforms": ".images",
    "load_image": ".images",
    "verify_images": ".images",
    "few_shot": ".protocols",
    "label_shift": ".protocols",
    "load_split": ".protocols",
    "save_split": ".protocols",
    "IMAGE_EXTENSIONS": ".samples",
    "DataError": ".samples",
    "RankSpace": ".samples",
    "Sample": ".samples",
    "check_files": ".samples",
    "read_csv_samples": ".samples",
    "read_folder_samples": ".samples",
    "read_list_file": ".samples",
}
__getattr__, __dir__ = lazy_attributes(__name__, _WHERE, globals())

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
