"""``import ordinalclip as oc``: the names, loaded lazily, so the command's help and ``configs`` stay light."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import ordinalclip as oc
from tests.helpers import REPO_ROOT

SRC = REPO_ROOT / "src"
HEAVY = ("torch", "lightning", "open_clip", "torchvision")


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    return out.stdout


@pytest.mark.parametrize(
    "argv", [["--help"], ["train", "--help"], ["serve", "--help"], ["configs"], ["configs", "show", "tiny"]]
)
def test_help_and_configs_import_no_torch(argv):
    out = _run(f"""
        import sys
        from ordinalclip.app.cli import main
        code = main({argv!r})
        print("RC", code)
        print("HEAVY", sorted(m for m in {HEAVY!r} if m in sys.modules))
    """)
    assert "RC 0" in out and "HEAVY []" in out


def test_import_is_light_and_names_load_on_use():
    out = _run(f"""
        import sys
        import ordinalclip as oc
        print("HEAVY", sorted(m for m in {HEAVY!r} if m in sys.modules))
        oc.RunConfig  # configs are plain dataclasses: still no torch
        print("CONFIG", "torch" in sys.modules)
        oc.build_model
        print("AFTER", "torch" in sys.modules)
    """)
    assert "HEAVY []" in out and "CONFIG False" in out and "AFTER True" in out


def test_the_public_names():
    from ordinalclip import api
    from ordinalclip.checkpoint import load_checkpoint
    from ordinalclip.config import RunConfig
    from ordinalclip.exports.load import load_export
    from ordinalclip.exports.write import export_model
    from ordinalclip.factory import create_model
    from ordinalclip.modeling.build import build_model
    from ordinalclip.modeling.config import ModelConfig
    from ordinalclip.runtime.predictor import Predictor, load

    assert oc.fit is api.fit and oc.evaluate is api.evaluate and oc.load is load and oc.Predictor is Predictor
    assert oc.build_model is build_model and oc.RunConfig is RunConfig and oc.ModelConfig is ModelConfig
    assert oc.load_checkpoint is load_checkpoint and oc.load_export is load_export
    assert oc.create_model is create_model
    assert set(oc.__all__) == {"__version__", *oc._LAZY} and set(oc.__all__) <= set(dir(oc))
    assert all(getattr(oc, name) is not None for name in oc.__all__)
    # oc.export is the function; no module of the package is called "export" any more
    assert oc.export is export_model
    assert not (REPO_ROOT / "src" / "ordinalclip" / "export.py").exists()
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        oc.nope  # noqa: B018


def test_export_is_the_function_in_any_import_order(tmp_path):
    out = _run(f"""
        import ordinalclip.predict, ordinalclip.exports.write  # the loaders and writers, imported first
        import ordinalclip as oc
        try:
            oc.export("{tmp_path}/missing.ckpt", "{tmp_path}/m.onnx")
        except Exception as err:
            print(type(err).__name__, err)
    """)
    assert "missing.ckpt" in out  # it got as far as reading the checkpoint


def test_create_model_gives_the_model_and_its_eval_transform():
    """``oc.create_model`` by built-in name, by ModelConfig and by RunConfig; the transform is the run's eval
    transform (tiny: resize 37 -> centre crop 32, the CLIP tower's statistics), checked on a known image."""
    import numpy as np
    import torch
    from PIL import Image

    from ordinalclip.config import load_run_config
    from ordinalclip.modeling.ordinalclip import OrdinalCLIP

    model, transform = oc.create_model("tiny")
    assert isinstance(model, OrdinalCLIP) and not model.training
    cfg = load_run_config(["tiny"])
    assert model.num_ranks == cfg.model.num_ranks
    img = Image.fromarray(np.full((50, 40, 3), (255, 0, 128), np.uint8))
    x = transform(img)
    assert tuple(x.shape) == (3, 32, 32)
    assert transform.transforms[0].size == (37, 37)  # round(32 * 256 / 224)
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)  # OpenAI CLIP's
    expected = [(v / 255 - m) / s for v, m, s in zip((255, 0, 128), mean, std)]
    torch.testing.assert_close(x[:, 0, 0], torch.tensor(expected), atol=1e-6, rtol=0)
    with torch.no_grad():
        assert model(x[None]).shape == (1, cfg.model.num_ranks)
    again, _ = oc.create_model(cfg.model)
    assert type(again) is type(model) and again.num_ranks == model.num_ranks
    changed, _ = oc.create_model(cfg, overrides=["model.num_ranks=7"])
    assert changed.num_ranks == 7


def test_device_keyword_everywhere_and_map_location_still_works(tmp_path):
    """``device=`` in every loader; the old ``map_location=`` spelling warns and still loads."""
    import torch

    from tests.helpers import run_config, save_checkpoint, tiny_vit_config

    torch.manual_seed(0)
    cfg = tiny_vit_config()
    ckpt = save_checkpoint(oc.build_model(cfg).eval(), run_config(cfg), tmp_path / "last.ckpt")
    model, _ = oc.load_checkpoint(ckpt, device="cpu")
    with pytest.warns(DeprecationWarning, match="map_location"):
        old, _ = oc.load_checkpoint(ckpt, map_location="cpu")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), old.state_dict().values()))
    path = oc.export(ckpt, tmp_path / "m.safetensors")
    assert oc.load_export(path, device="cpu").num_ranks == cfg.num_ranks
    with pytest.warns(DeprecationWarning, match="map_location"):
        assert oc.load_export(path, map_location="cpu").num_ranks == cfg.num_ranks
    with pytest.warns(DeprecationWarning, match="map_location"):
        assert oc.load(path, map_location="cpu").num_ranks == cfg.num_ranks
    assert oc.load(ckpt, device="cpu").num_ranks == cfg.num_ranks
