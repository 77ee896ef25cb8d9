"""Every backbone source end to end through the ``ordinalclip`` command: train -> export -> predict, and the
export gives the checkpoint's logits. timm image towers (trained, or frozen with the feature cache), Hugging Face
CLIP / SigLIP folders (CoOp, zero-shot) and a SigLIP-style open_clip tower with a local tokenizer folder."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml

from ordinalclip import api
from ordinalclip.app import cli
from ordinalclip.exports.load import load_export
from tests.helpers import (
    COUNTS,
    NUM_RANKS,
    make_images,
    save_tiny_hf_clip,
    save_word_tokenizer,
    tiny_clip_custom,
    tiny_config,
    write_lists,
)

SIGLIP_STYLE = {
    "custom_text": True,
    "embed_dim": 24,
    "vision_cfg": {"layers": 1, "width": 32, "patch_size": 16, "image_size": 32, "head_width": 16},
    "text_cfg": {
        "context_length": 16,
        "vocab_size": 64,
        "width": 32,
        "heads": 2,
        "layers": 2,
        "no_causal_mask": True,
        "pool_type": "last",
        "proj_bias": True,
        "tokenizer_kwargs": {"clean": "canonicalize"},
    },
}
RANK_WORDS = ["baby", "child", "adult", "elderly"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("backbones")
    write_lists(root, make_images(root))
    return {
        "root": root,
        "hf_clip": save_tiny_hf_clip(root / "hf_clip", "clip"),
        "hf_siglip": save_tiny_hf_clip(root / "hf_siglip", "siglip"),
        "tokenizer": save_word_tokenizer(root / "tok", pad_is_eos=True),
    }


def _setup(name: str, assets: dict[str, Path]) -> tuple[dict, dict]:
    """(model section, extra config sections) of each backbone set-up."""
    clip = {"name": None, "custom": tiny_clip_custom()}
    timm_image = {"kind": "timm", "timm_model": "test_resnet"}
    words = {"context_init": "a photo of the", "num_base_ranks": 2}
    if name == "timm_trained_ordinalclip":
        return {"clip": clip, "image": timm_image, "prompts": {"num_base_ranks": 2}}, {}
    if name == "timm_frozen_cached_coop":
        return (
            {"clip": clip, "image": timm_image, "prompts": {"learner": "plain"}},
            {"optim": {"freeze_image": True}, "data": {"feature_cache": True}},
        )
    if name == "hf_siglip_ordinalclip":
        return {"clip": {"hf_model": str(assets["hf_siglip"])}, "prompts": words}, {}
    if name == "hf_clip_coop":
        return {"clip": {"hf_model": str(assets["hf_clip"])}, "prompts": {**words, "learner": "plain"}}, {}
    if name == "hf_clip_zeroshot":
        return (
            {
                "arch": "zeroshot",
                "clip": {"hf_model": str(assets["hf_clip"])},
                "prompts": {"rank_names": RANK_WORDS},
                "zero_shot_templates": ["a photo of the {}."],
            },
            {},
        )
    assert name == "openclip_siglip_style_ordinalclip"
    return {
        "clip": {"name": None, "custom": SIGLIP_STYLE, "tokenizer": str(assets["tokenizer"])},
        "prompts": words,
    }, {}


SETUPS = [
    "timm_trained_ordinalclip",
    "timm_frozen_cached_coop",
    "hf_siglip_ordinalclip",
    "hf_clip_coop",
    "hf_clip_zeroshot",
    "openclip_siglip_style_ordinalclip",
]


@pytest.mark.slow
@pytest.mark.parametrize("setup", SETUPS)
def test_train_export_predict(setup: str, assets: dict[str, Path], tmp_path: Path, capsys):
    root = assets["root"]
    model, sections = _setup(setup, assets)
    data = {
        "format": "list",
        "root": str(root),
        **{s: str(root / f"{s}.txt") for s in COUNTS},
        **sections.pop("data", {}),
    }
    cfg = tiny_config(tmp_path, data, {"num_ranks": NUM_RANKS, **model}, **sections)
    cfg["trainer"]["max_epochs"] = 1
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert cli.main(["train", "-c", str(tmp_path / "c.yaml")]) == 0, capsys.readouterr().err
    # zero-shot is evaluated as built and keeps last.ckpt only
    best = next(p for name in ("best.ckpt", "last.ckpt") for p in (tmp_path / "runs").rglob(name))
    out = tmp_path / "model.safetensors"
    assert cli.main(["export", str(best), "--out", str(out)]) == 0, capsys.readouterr().err
    assert cli.main(["predict", str(out), str(root / "test.txt"), "--out", str(tmp_path / "p.csv")]) == 0
    with open(tmp_path / "p.csv") as f:
        assert len(list(csv.DictReader(f))) == COUNTS["test"] * NUM_RANKS

    # the export (image tower rebuilt from the sidecar alone) gives the checkpoint's logits
    trained, run_cfg = api.load_checkpoint(best)
    exported = load_export(out)
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(exported(images), trained(images), atol=1e-5, rtol=0)
    if setup.startswith("timm"):
        assert exported.preprocess["size"] == 32  # data.image_size of the run
    if setup == "timm_frozen_cached_coop":  # the frozen timm tower's features were cached once
        assert list((tmp_path / "runs" / ".cache" / "features").glob("*/*.safetensors"))
