"""Shared fixtures: the tiny reference CLIP file and tiny CLIP architectures (plain helpers: tests/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import make_tiny_clip_module, tiny_clip_custom

# the `browser` and `page` fixtures (a real headless Chromium) for tests of what a person sees
pytest_plugins = ["tests.browser.fixtures"]

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_clip_file(tmp_path_factory) -> Path:
    """The deterministic tiny CLIP of tests/data/reference, written in OpenAI state-dict format (float16)."""
    mod = make_tiny_clip_module()
    path = tmp_path_factory.mktemp("tiny_clip") / "tiny_clip.pt"
    torch.save(mod.tiny_clip_state_dict(), path)
    return path


@pytest.fixture
def tiny_custom() -> dict:
    return tiny_clip_custom()
