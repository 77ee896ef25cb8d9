"""Shared fixtures: tiny CLIP architectures (real vocabulary and 77-token context) and the reference vectors."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

# the `browser` and `page` fixtures (a real headless Chromium) for tests of what a person sees
pytest_plugins = ["tests.browser"]

REFERENCE = Path(__file__).parent / "data" / "reference"

torch.set_num_threads(2)


def load_reference(name: str) -> dict:
    """A JSON file of reference vectors (in tests/data/reference, unchanged)."""
    return json.loads((REFERENCE / name).read_text())


def official_logits() -> torch.Tensor:
    """The fixed logits of official_vectors.json: logits[b, k] = 5 sin(0.1 (b+1)(k+1)) + 0.3 k, b < 8, k < 10."""
    b = torch.arange(8, dtype=torch.float32)[:, None]
    k = torch.arange(10, dtype=torch.float32)[None, :]
    return 5 * torch.sin(0.1 * (b + 1) * (k + 1)) + 0.3 * k


def _make_tiny_clip_module():
    spec = importlib.util.spec_from_file_location("make_tiny_clip", REFERENCE / "make_tiny_clip.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def tiny_clip_file(tmp_path_factory) -> Path:
    """The deterministic tiny CLIP of tests/data/reference, written in OpenAI state-dict format (float16)."""
    mod = _make_tiny_clip_module()
    path = tmp_path_factory.mktemp("tiny_clip") / "tiny_clip.pt"
    torch.save(mod.tiny_clip_state_dict(), path)
    return path


def tiny_clip_custom(embed_dim: int = 32, width: int = 64, layers: int = 2, heads: int = 2) -> dict:
    """open_clip.CLIP kwargs of a tiny random ViT-CLIP with the real 49,408-token vocabulary and context 77."""
    return {
        "embed_dim": embed_dim,
        "vision_cfg": {"layers": layers, "width": width, "patch_size": 16, "image_size": 32, "head_width": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": width, "heads": heads, "layers": layers},
    }


@pytest.fixture
def tiny_custom() -> dict:
    return tiny_clip_custom()
