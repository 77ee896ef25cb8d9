"""Without network, a model whose tokenizer or weights would be downloaded fails with one ``error:`` line that says
what to pass (never a traceback): SigLIP's Hugging Face tokenizer, an open_clip weights tag, a missing HF folder."""

from __future__ import annotations

import logging
from pathlib import Path

import huggingface_hub.constants
import pytest
import yaml

from ordinalclip.app import cli
from tests.helpers import COUNTS, make_images, save_word_tokenizer, tiny_config, write_lists


@pytest.fixture
def offline(monkeypatch):
    # as with no network, minus the minute of retries a real outage costs
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("offline")
    write_lists(path, make_images(path, counts={"train": 1, "val": 1, "test": 1}))
    return path


def _train(root: Path, tmp_path: Path, clip: dict, capsys) -> tuple[int, str]:
    data = {"format": "list", "root": str(root), **{s: str(root / f"{s}.txt") for s in COUNTS}}
    cfg = tiny_config(tmp_path, data, {"num_ranks": 4, "clip": clip, "prompts": {"num_base_ranks": 2}})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    code = cli.main(["train", "-c", str(tmp_path / "c.yaml")])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return code, lines[0]


def test_siglip_without_a_tokenizer_folder_says_to_pass_one(offline, root, tmp_path, capsys):
    code, line = _train(root, tmp_path, {"name": "ViT-B-16-SigLIP"}, capsys)
    assert code == 2
    assert "Hugging Face tokenizer 'timm/ViT-B-16-SigLIP'" in line
    assert "--set model.clip.tokenizer=DIR" in line


def test_weights_tag_offline_says_to_pass_a_file(offline, root, tmp_path, capsys, monkeypatch):
    tok = save_word_tokenizer(tmp_path / "tok", pad_is_eos=True)
    # as in a terminal: no handler on the root logger (pytest installs its own), so that open_clip's
    # logging.error would print a second line through basicConfig
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    code, line = _train(
        root, tmp_path, {"name": "ViT-B-16-SigLIP", "pretrained": "webli", "tokenizer": str(tok)}, capsys
    )
    assert code == 2
    assert "could not fetch CLIP weights ViT-B-16-SigLIP:webli" in line
    assert "--set model.clip.pretrained=/path/to/weights" in line
    assert logging.getLogger().handlers == []


def test_missing_hf_folder_says_what_to_pass(root, tmp_path, capsys):
    code, line = _train(root, tmp_path, {"hf_model": str(tmp_path / "no-such-model")}, capsys)
    assert code == 2 and "model.clip.hf_model:" in line and "not a local Hugging Face model folder" in line
