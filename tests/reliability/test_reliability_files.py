"""Files a user did not write: checkpoints, exports and CLIP weights are read without running code
(``weights_only``, safetensors, JSON); TorchScript archives only with the user's consent.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
import yaml

import ordinalclip
from ordinalclip import api
from ordinalclip.config import RunConfig
from ordinalclip.config.typed import from_dict, to_dict
from ordinalclip.modeling import build_model
from tests.helpers import (
    NUM_RANKS,
    run_cli,
    user_error,
    write_raw_checkpoint,
)

NAMES = ["young", "adult", "middle", "old"]
PREP = {"size": 32, "resize": 36, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


# ---------------------------------------------------------------------------------------------- 11. untrusted


SRC = Path(ordinalclip.__file__).parent


def _calls(name: str) -> list[tuple[Path, ast.Call]]:
    """Every call ``<something>.<name>(...)`` in the package sources."""
    out = []
    for file in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == name:
                out.append((file, node))
    return out


def _keyword(call: ast.Call, name: str) -> object:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else kw.value
    return None


def _where(file: Path, call: ast.Call) -> str:
    return f"{file.relative_to(SRC)}:{call.lineno}"


def test_sources_only_unpickle_with_weights_only():
    torch_loads = [(f, c) for f, c in _calls("load") if ast.unparse(c.func) == "torch.load"]
    assert torch_loads, "the scan should see the checkpoint readers"
    assert [_where(f, c) for f, c in torch_loads if _keyword(c, "weights_only") is not True] == []
    assert [
        _where(f, c)
        for f, c in _calls("load")
        if ast.unparse(c.func) in ("np.load", "numpy.load")
        and _keyword(c, "allow_pickle") not in (None, False)
    ] == []
    # Lightning restores checkpoints itself in fit/validate/test: weights_only there too
    lightning = [
        (f, c) for m in ("fit", "validate", "test") for f, c in _calls(m) if _keyword(c, "ckpt_path")
    ]
    assert lightning and [_where(f, c) for f, c in lightning if _keyword(c, "weights_only") is not True] == []
    # TorchScript (code) only in read_state_dict, behind allow_torchscript
    jit = [_where(f, c) for f, c in _calls("load") if ast.unparse(c.func) == "torch.jit.load"]
    assert len(jit) == 1 and jit[0].startswith("modeling/backbones/clip.py")
    assert not [
        f for f in SRC.rglob("*.py") if "import pickle" in f.read_text() or "pickle.load" in f.read_text()
    ]


class _Payload:
    """Unpickling this would create ``marker``: a stand-in for code hidden in a checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickled_payload_never_runs_through_any_command(trained_like, root, tmp_path, capsys):
    model, cfg = trained_like
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.ckpt"
    torch.save(
        {"state_dict": {}, "payload": _Payload(marker), "ordinalclip": {"format": 1, "config": to_dict(cfg)}},
        evil,
    )
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg)))
    (run / "checkpoints" / "last.ckpt").write_bytes(evil.read_bytes())
    for argv in (
        ["eval", str(evil)],
        ["export", str(evil), "-o", str(tmp_path / "x.safetensors")],
        ["predict", str(evil), str(root / "test.txt"), "-o", str(tmp_path / "p.csv")],
        ["train", "--resume", str(run)],
    ):
        code, _, err = run_cli(argv, capsys)
        assert code == 2, argv
        assert (
            f"{evil if argv[0] != 'train' else run / 'checkpoints' / 'last.ckpt'}: not a readable checkpoint"
            in user_error(err)
        )
        assert not marker.exists(), argv


def test_a_checkpoint_cannot_grant_itself_torchscript_consent(tiny_clip_file, tmp_path, monkeypatch):
    from ordinalclip.modeling import load_clip
    from tests.helpers import StateHolder

    archive = tmp_path / "openai_like.pt"
    torch.jit.script(StateHolder(load_clip(pretrained=str(tiny_clip_file)).model.state_dict())).save(
        str(archive)
    )
    cfg = from_dict(
        RunConfig,
        {
            "model": {
                "num_ranks": NUM_RANKS,
                "prompts": {"num_base_ranks": 2},
                "clip": {"name": None, "pretrained": str(archive), "allow_torchscript": True},
            }
        },
    )
    path = write_raw_checkpoint(build_model(cfg.model), to_dict(cfg), tmp_path / "c.ckpt")

    opened: list[str] = []
    real = torch.jit.load
    monkeypatch.setattr(torch.jit, "load", lambda f, *a, **k: opened.append(str(f)) or real(f, *a, **k))
    with pytest.raises(Exception, match="allow_torchscript"):
        api.load_checkpoint(path)  # the person loading it did not ask for TorchScript
    assert opened == []
