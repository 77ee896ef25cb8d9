"""ONNX exports: onnxruntime gives the torch model's logits (CLIP ViT, CNN and features towers, any batch size),
the sidecar is the safetensors one, and predict / oc.load take the .onnx."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="the onnx extra (pip install 'ordinalclip[onnx]') is not installed")
pytest.importorskip("onnxscript", reason="the onnx extra (pip install 'ordinalclip[onnx]') is not installed")

import onnxruntime as ort  # noqa: E402

import ordinalclip as oc  # noqa: E402
from ordinalclip.exports.write import export_head  # noqa: E402
from ordinalclip.modeling import (  # noqa: E402
    ImageTowerConfig,
    ModelConfig,
    build_model,
)
from ordinalclip.runtime.onnx import load_onnx_export  # noqa: E402
from ordinalclip.runtime.sidecar import ExportError  # noqa: E402
from tests.helpers import (  # noqa: E402
    PREP,
    run_config,
    save_checkpoint,
    tiny_features_cosine_config,
    tiny_resnet_cosine_config,
    tiny_vit_config,
)  # noqa: E402


def _images(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


pytestmark = pytest.mark.slow  # each export traces the model with torch.export (several seconds on 2 cores)

TOL = 1e-4


def _onnx_logits(path, x: torch.Tensor) -> np.ndarray:
    """Logits from a plain onnxruntime session, as any ONNX consumer would run the file (not through our loader)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    return session.run(["logits"], {"images": x.numpy()})[0]


def _check(model: torch.nn.Module, path, inputs: list[torch.Tensor]) -> None:
    for x in inputs:  # several batch sizes: the batch dimension is dynamic
        with torch.no_grad():
            want = model(x).numpy()
        got = _onnx_logits(path, x)
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= TOL


def test_clip_vit_tower(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_vit_config()
    model = build_model(cfg).eval()
    settings = {
        "rank_values": [16, 17, 18, 19, 20],
        "rank_names": list("abcde"),
        "preprocess": PREP,
        "extra": {"mae": 1.5},
    }
    path = export_head(model, cfg, tmp_path / "vit.onnx", **settings)
    head = model.to_head().eval()
    _check(head, path, [_images(1), _images(7, seed=3)])

    meta = json.loads(path.with_name("vit.onnx.json").read_text())
    safetensors_meta = json.loads(
        export_head(model, cfg, tmp_path / "vit.safetensors", **settings).with_suffix(".json").read_text()
    )
    # the same sidecar as the safetensors export, plus the graph's input and output
    differ = {k for k in meta.keys() | safetensors_meta.keys() if meta.get(k) != safetensors_meta.get(k)}
    assert (
        differ <= {"weights_file", "sha256", "sidecar_sha256", "created", "onnx"}
        and {"weights_file", "sha256", "onnx"} <= differ
    )
    assert meta["weights_file"] == "vit.onnx" and meta["rank_names"] == list("abcde")
    assert meta["onnx"]["input_shape"] == ["batch", 3, 32, 32] and meta["onnx"]["output_shape"] == [
        "batch",
        5,
    ]
    assert not list(tmp_path.glob(".*.tmp")) and not list(tmp_path.glob("*.data"))  # one file, no temporaries

    loaded = load_onnx_export(path)
    assert loaded.rank_values == [16, 17, 18, 19, 20] and loaded.preprocess == PREP
    x = _images(3)
    with torch.no_grad():
        assert (loaded(x) - head(x)).abs().max() <= TOL


def test_cnn_tower(tmp_path):
    """CLIP's ResNet (a CNN with an attention-pool), small and random, as a cosine (CNN baseline) head."""
    torch.manual_seed(0)
    cfg = tiny_resnet_cosine_config(tmp_path)
    model = build_model(cfg).eval()
    path = export_head(model, cfg, tmp_path / "rn.onnx", preprocess=PREP)
    _check(model, path, [_images(1), _images(5, seed=2)])


def test_features_tower(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_features_cosine_config()
    model = build_model(cfg).eval()
    path = export_head(model, cfg, tmp_path / "f.onnx", rank_values=[1, 2, 3, 4], preprocess={})
    _check(model, path, [torch.randn(1, 10), torch.randn(9, 10)])
    predictor = oc.load(path)
    assert not predictor.takes_images
    rows = predictor.predict([torch.randn(10), torch.randn(10)])
    assert len(rows) == 2 and all(len(r["probabilities"]) == 4 for r in rows)


def test_tampered_graph_and_wrong_sidecar(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(
        arch="cosine", num_ranks=3, embed_dim=4, image=ImageTowerConfig(kind="features", input_dim=5)
    )
    model = build_model(cfg).eval()
    path = export_head(model, cfg, tmp_path / "f.onnx", preprocess={})
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ExportError, match="sha256"):
        load_onnx_export(path)
    st = export_head(model, cfg, tmp_path / "g.safetensors", preprocess={})
    st.with_suffix(".onnx").write_bytes(st.read_bytes())  # a safetensors export renamed to .onnx
    st.with_name("g.onnx.json").write_text(st.with_suffix(".json").read_text())
    with pytest.raises(ExportError, match="not an ONNX graph"):
        load_onnx_export(st.with_suffix(".onnx"))
    with pytest.raises(ExportError, match=r"\.onnx file"):
        export_head(model, cfg, tmp_path / "h.pt", preprocess={}, format="onnx")


def test_cli_export_onnx_then_predict_matches_torch(tmp_path, capsys):
    """The command line: export a checkpoint to ONNX, predict images with it, same numbers as the checkpoint."""
    from PIL import Image

    from ordinalclip.app.cli import main

    torch.manual_seed(0)
    cfg = tiny_vit_config()
    model = build_model(cfg).eval()
    ckpt = save_checkpoint(model, run_config(cfg), tmp_path / "last.ckpt")
    out = tmp_path / "exp" / "model.onnx"
    assert main(["export", str(ckpt), "--format", "onnx", "-o", str(out)]) == 0
    assert out.is_file() and (out.parent / "model.onnx.json").is_file()
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    results = {}
    for name, source in (("onnx", out), ("ckpt", ckpt)):
        csv_path = tmp_path / f"{name}.csv"
        assert main(["predict", str(source), str(photos), "-o", str(csv_path), "--probabilities"]) == 0
        with open(csv_path) as fh:
            results[name] = list(csv.DictReader(fh))
    for a, b in zip(results["onnx"], results["ckpt"], strict=True):
        assert a["path"] == b["path"] and a["pred_rank"] == b["pred_rank"] and a["rank"] == b["rank"]
        assert a["prediction"] == b["prediction"] == "expectation"  # the run's headline, through the export
        assert abs(float(a["exp_value"]) - float(b["exp_value"])) <= 1e-4
    # and in Python, one line
    rows = oc.load(out).predict([photos / "0.png", photos / "1.png"])
    ckpt_rows = results["ckpt"][:2]
    assert [r["pred_rank"] for r in rows] == [int(r["pred_rank"]) for r in ckpt_rows]
    assert [r["rank"] for r in rows] == [round(float(r["exp_rank"])) for r in ckpt_rows]
    assert rows[0]["value"] == pytest.approx(float(ckpt_rows[0]["exp_value"]), abs=1e-4)
    assert rows[0]["pred_value"] == 16 + rows[0]["pred_rank"]  # rank_offset 16 in run_config
    assert sum(rows[0]["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    assert main(["export", str(ckpt), "--format", "onnx", "-o", str(tmp_path / "x.safetensors")]) == 2
    assert "error: the onnx format is written to a .onnx file" in capsys.readouterr().err
