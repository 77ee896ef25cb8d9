"""Fixtures of the app tests: two tiny feature configs (linear, cosine) that the sweep tests share."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helpers import NUM_RANKS, features_data, make_features, tiny_config

FEATURE_MODEL = {"num_ranks": NUM_RANKS, "embed_dim": 8, "image": {"kind": "features", "input_dim": 8}}


def write_feature_config(folder: Path, name: str, arch: str, features: str, **sections) -> Path:
    cfg = tiny_config(
        folder,
        features_data(features),
        model={**FEATURE_MODEL, "arch": arch},
        trainer={"progress_bar": False},
        **sections,
    )
    cfg["name"] = name
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("sweep_cfg")
    features = make_features(folder / "features.npz")
    return (
        write_feature_config(folder, "linear", "linear", features, loss={"kl_weight": 0}),
        write_feature_config(folder, "cosine", "cosine", features),
    )
