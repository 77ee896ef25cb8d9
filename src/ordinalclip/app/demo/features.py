"""The demo's image features: a frozen ImageNet EfficientNet-Lite0 encodes every photo once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ordinalclip.fileio import atomic_write


def extract_features(dataset, out: Path, progress: bool = True) -> Path:
    """EfficientNet-Lite0 (ImageNet) features of every image of the demo set -> one ``.npz`` with a split
    column.

    Reused when it exists (the data set and the tower are fixed, so the file is keyed by the data set's
    folder).
    """
    from PIL import Image
    from torchvision import transforms as T

    from ordinalclip.modeling.backbones.efficientnet import EfficientNetLite0Tower

    if out.is_file():
        return out
    tower = EfficientNetLite0Tower(output_dim=None).eval()
    pre = tower.preprocess
    # The crops are small (96 px): encode them at native size; upsampling would blur every level alike.
    tf = T.Compose([T.ToTensor(), T.Normalize(pre["mean"], pre["std"])])
    feats, labels, splits = [], [], []
    rows = []
    for split in ("train", "val", "test"):
        for line in dataset.list_file(split).read_text().splitlines():
            if line.strip():
                path, label = line.split()[:2]
                rows.append((split, path, int(label)))
    batch: list[torch.Tensor] = []
    bar = tqdm(total=len(rows), desc="EfficientNet-Lite0 features", unit="img", disable=not progress)

    def flush() -> None:
        with torch.no_grad():
            feats.append(tower(torch.stack(batch)).numpy())
        bar.update(len(batch))
        batch.clear()

    for split, path, label in rows:
        with Image.open(dataset.root / path) as im:
            batch.append(tf(im.convert("RGB")))
        labels.append(label)
        splits.append(split)
        if len(batch) == 64:
            flush()
    if batch:
        flush()
    bar.close()
    arrays: dict[str, Any] = {
        "features": np.concatenate(feats).astype(np.float32),
        "labels": np.array(labels),
        "split": np.array(splits),
    }

    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:  # a file object: np.savez would add ".npz" to a path
            np.savez(fh, **arrays)

    return atomic_write(out, write)
