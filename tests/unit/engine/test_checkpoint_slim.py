"""trainer.save_frozen_towers=false: checkpoints without the frozen pretrained text tower still load exactly."""

from __future__ import annotations

import torch

from ordinalclip.api import evaluate, fit, load_checkpoint
from ordinalclip.data import load_features
from tests.helpers import NUM_RANKS, make_features, save_tiny_bert


def _cfg(tmp_path, bert, save_frozen: bool) -> dict:
    feats = make_features(tmp_path / "f.npz")
    return {
        "name": "slim",
        "output_dir": str(tmp_path / "runs"),
        "model": {
            "num_ranks": NUM_RANKS,
            "image": {"kind": "features", "input_dim": 8},
            "text": {"kind": "huggingface", "hf_model": str(bert)},
            "prompts": {"num_base_ranks": 2, "context_init": "a photo"},
        },
        "data": {"format": "features", "train": feats, "columns": {"split": "split"}, "batch_size": 4},
        "optim": {"lr": 1e-2},
        "trainer": {
            "max_epochs": 2,
            "loggers": ["csv"],
            "progress_bar": False,
            "seed": 0,
            "save_frozen_towers": save_frozen,
        },
    }


def test_slim_checkpoint_loads_to_the_same_model(tmp_path):
    bert = save_tiny_bert(tmp_path / "bert")
    slim = fit(_cfg(tmp_path, bert, save_frozen=False), run_dir=tmp_path / "slim")
    full = fit(_cfg(tmp_path, bert, save_frozen=True), run_dir=tmp_path / "full")
    slim_ckpt = torch.load(slim.last_checkpoint, map_location="cpu", weights_only=True)
    full_ckpt = torch.load(full.last_checkpoint, map_location="cpu", weights_only=True)
    assert slim_ckpt["ordinalclip"]["omitted"] == ["model.text_tower."]
    assert not any(k.startswith("model.text_tower.") for k in slim_ckpt["state_dict"])
    assert any(k.startswith("model.text_tower.") for k in full_ckpt["state_dict"])
    # same seed, same data: training is unaffected by what the checkpoint leaves out
    for k, v in slim_ckpt["state_dict"].items():
        assert torch.equal(v, full_ckpt["state_dict"][k]), k
    a, _ = load_checkpoint(slim.last_checkpoint)
    b, _ = load_checkpoint(full.last_checkpoint)
    x = load_features(tmp_path / "f.npz", split="test").features
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    assert slim.metrics["last"]["test"] == full.metrics["last"]["test"]
    assert evaluate(slim.last_checkpoint)["metrics"] == full.metrics["last"]["test"]
