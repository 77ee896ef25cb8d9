"""CLIP loading: OpenAI state dicts and TorchScript archives, open_clip files, safetensors, clear errors."""

from __future__ import annotations

import pytest
import torch

from ordinalclip.modeling import ClipLoadError, load_clip, read_state_dict
from tests.helpers import StateHolder, tiny_clip_custom


def test_state_dict_variants_read_the_same(tiny_clip_file, tmp_path):
    ref = read_state_dict(tiny_clip_file)
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.items()}}, tmp_path / "wrapped.pt")
    wrapped = read_state_dict(tmp_path / "wrapped.pt")
    assert wrapped.keys() == ref.keys() and all(torch.equal(wrapped[k], ref[k]) for k in ref)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in ref.items()}, tmp_path / "w.safetensors")
    st = load_clip(pretrained=str(tmp_path / "w.safetensors"))
    base = load_clip(pretrained=str(tiny_clip_file))
    for (k, a), b in zip(st.model.state_dict().items(), base.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_torchscript_archive_needs_explicit_consent(tiny_clip_file, tmp_path):
    base = load_clip(pretrained=str(tiny_clip_file))
    traced = torch.jit.script(StateHolder(base.model.state_dict()))
    path = tmp_path / "openai_like.pt"
    traced.save(str(path))
    with pytest.raises(ClipLoadError, match="TorchScript archive.*allow_torchscript=True"):
        load_clip(pretrained=str(path))
    loaded = load_clip(pretrained=str(path), allow_torchscript=True)
    for (k, a), b in zip(loaded.model.state_dict().items(), base.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_weights_only_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": _Evil()}, path)
    with pytest.raises(ClipLoadError, match="weights-only"):
        read_state_dict(path)


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_named_architecture_with_wrong_file_is_a_clear_error(tiny_clip_file):
    with pytest.raises(ClipLoadError, match="does not match architecture 'RN50'.*missing keys"):
        load_clip("RN50", str(tiny_clip_file))


def test_unknown_name_and_offline_tag():
    with pytest.raises(ClipLoadError, match="did you mean"):
        load_clip("ViT-B-61")
    with pytest.raises(ClipLoadError, match="unknown pretrained tag 'nope'"):
        load_clip("RN50", "nope")


def test_custom_architecture_and_preprocess():
    bundle = load_clip(custom=tiny_clip_custom())
    assert bundle.preprocess.size == 32
    assert bundle.model.text_projection.shape == (64, 32)
    assert len(bundle.preprocess.mean) == 3
