"""Fixtures of the reliability tests: a tiny image set with its list files, and a tiny untrained model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """2 train, 1 val, 1 test image per rank (8 / 4 / 4) and their list files."""
    from tests.helpers import make_images, write_lists

    path = tmp_path_factory.mktemp("rel")
    write_lists(path, make_images(path, counts={"train": 2, "val": 1, "test": 1}))
    return path


@pytest.fixture(scope="module")
def trained_like(root, tmp_path_factory):
    """A tiny model and its run config (untrained: only shapes and formats matter here)."""
    from ordinalclip.config import RunConfig
    from ordinalclip.config.typed import from_dict
    from ordinalclip.modeling import build_model
    from tests.helpers import list_files, tiny_config

    folder = tmp_path_factory.mktemp("ckpt")
    cfg = from_dict(RunConfig, tiny_config(folder, {"format": "list", **list_files(root, "train", "test")}))
    torch.manual_seed(0)
    return build_model(cfg.model).eval(), cfg


@pytest.fixture(scope="module")
def image_export(tmp_path_factory) -> Path:
    """A tiny random ViT-CLIP OrdinalCLIP export (32 px, 5 ranks)."""
    from ordinalclip.exports.write import export_head
    from ordinalclip.modeling import build_model
    from tests.helpers import PREP, tiny_vit_config

    torch.manual_seed(0)
    cfg = tiny_vit_config()
    folder = tmp_path_factory.mktemp("export")
    return export_head(build_model(cfg).eval(), cfg, folder / "m.safetensors", preprocess=PREP)
