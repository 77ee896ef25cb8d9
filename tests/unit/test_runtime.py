"""The deploy runtime: an ONNX export predicts, serves and runs from the command line without torch; its numpy
preprocessing gives torchvision's pixels; one decoder everywhere; int8 exports agree with float32; the
predictions CSV says its units and reads the old layouts."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("onnxruntime", reason="the deploy runtime runs ONNX exports in onnxruntime")
pytest.importorskip("onnxscript", reason="ONNX export needs the onnx extra")

import ordinalclip as oc  # noqa: E402
from ordinalclip.data.images import build_transforms  # noqa: E402
from ordinalclip.exports.write import export_head  # noqa: E402
from ordinalclip.modeling import build_model  # noqa: E402
from ordinalclip.runtime.preprocess import preprocess_image  # noqa: E402
from ordinalclip.runtime.sidecar import ExportError  # noqa: E402
from tests.helpers import PREP, REPO_ROOT, tiny_features_cosine_config, tiny_vit_model  # noqa: E402

ROOT = REPO_ROOT
SRC = ROOT / "src"
TRAINING_STACK = ("torch", "torchvision", "lightning", "open_clip", "timm", "transformers")
AGES = [16.0, 17.0, 18.0, 19.0, 20.0]


LOADED = f"""
import sys
print("LOADED", sorted(m for m in {TRAINING_STACK!r} if m in sys.modules))
print("ENGINE", sorted(m for m in sys.modules if m.startswith(("ordinalclip.engine", "ordinalclip.api"))))
"""


def _run(code: str) -> str:
    """``code`` in a fresh interpreter with this checkout's source first, then :data:`LOADED`; its stdout."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code) + LOADED],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{ROOT}"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="module")
def model_and_cfg():
    return tiny_vit_model()


@pytest.fixture(scope="module")
def exports(model_and_cfg, tmp_path_factory):
    """The same tiny model as ONNX (float32 and int8) and as safetensors, with rank values 16..20."""
    model, cfg = model_and_cfg
    folder = tmp_path_factory.mktemp("exports")
    names = list("abcde")
    kw = {"rank_values": AGES, "rank_names": names, "preprocess": PREP}
    return {
        "onnx": export_head(model, cfg, folder / "m.onnx", **kw),
        "int8": export_head(model, cfg, folder / "q.onnx", quantize="int8", **kw),
        "safetensors": export_head(model, cfg, folder / "m.safetensors", **kw),
    }


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Six random RGB PNGs of assorted sizes (none the model's)."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(40, 48), (33, 57), (64, 64), (37, 36), (90, 41), (36, 36)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


# --------------------------------------------------------------------------------- no training stack


def test_oc_load_onnx_predicts_without_the_training_stack(exports, photos, model_and_cfg):
    out = _run(f"""
        import json
        import ordinalclip as oc
        rows = oc.load({str(exports["onnx"])!r}).predict([{str(photos / "0.png")!r}, {str(photos / "1.png")!r}])
        print("ROWS", json.dumps(rows))
    """)
    assert "LOADED []" in out and "ENGINE []" in out
    rows = json.loads(out.split("ROWS ", 1)[1].splitlines()[0])
    model, _ = model_and_cfg
    tf = build_transforms(False, size=PREP["size"], resize=PREP["resize"], mean=PREP["mean"], std=PREP["std"])
    x = torch.stack([tf(Image.open(photos / f"{i}.png").convert("RGB")) for i in (0, 1)])
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1)
    # export_head's default headline is the expectation: value = sum_i p_i v_i, rank = round(sum_i p_i i)
    expected = (probs @ torch.tensor(AGES)).numpy()
    nearest = torch.round(probs @ torch.arange(5.0)).long().tolist()
    assert [r["prediction"] for r in rows] == ["expectation"] * 2
    assert list(rows[0])[:4] == ["prediction", "value", "rank", "name"]  # the headline first
    np.testing.assert_allclose([r["value"] for r in rows], expected, atol=1e-4, rtol=0)
    assert [r["rank"] for r in rows] == nearest
    assert [r["name"] for r in rows] == ["abcde"[r] for r in nearest]
    assert [r["pred_rank"] for r in rows] == probs.argmax(1).tolist()
    assert [r["pred_value"] for r in rows] == [AGES[r] for r in probs.argmax(1).tolist()]
    assert [r["pred_name"] for r in rows] == ["abcde"[r] for r in probs.argmax(1).tolist()]
    np.testing.assert_allclose([r["probabilities"] for r in rows], probs.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose([r["expectation"] for r in rows], expected, atol=1e-4, rtol=0)


def test_cli_predict_onnx_runs_without_the_training_stack(exports, photos, tmp_path):
    csv_path = tmp_path / "p.csv"
    out = _run(f"""
        from ordinalclip.app.cli import main
        print("RC", main(["predict", {str(exports["onnx"])!r}, {str(photos)!r}, "-o", {str(csv_path)!r},
                          "--probabilities"]))
    """)
    assert "RC 0" in out and "LOADED []" in out and "ENGINE []" in out
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    header = ",".join(list(rows[0])[:9])
    assert header == "path,prediction,value,rank,rank_name,exp_value,pred_value,exp_rank,pred_rank"
    # the same numbers as the torch path (safetensors export of the same model), image by image
    torch_rows = oc.load(exports["safetensors"]).predict([photos / r["path"] for r in rows])
    for row, ref in zip(rows, torch_rows, strict=True):
        assert row["prediction"] == ref["prediction"] == "expectation"
        assert float(row["value"]) == pytest.approx(ref["expectation"], abs=1e-4)
        assert int(row["rank"]) == ref["rank"] == round(float(row["exp_rank"]))
        assert row["rank_name"] == ref["name"] == "abcde"[ref["rank"]]
        assert int(row["pred_rank"]) == ref["pred_rank"]
        assert float(row["exp_value"]) == pytest.approx(ref["expectation"], abs=1e-4)
        assert float(row["exp_rank"]) == pytest.approx(ref["expectation"] - 16.0, abs=1e-4)
        assert float(row["pred_value"]) == ref["pred_value"] == AGES[ref["pred_rank"]]
        np.testing.assert_allclose([float(row[f"p_{k}"]) for k in range(5)], ref["probabilities"], atol=1e-4)


def test_serve_on_onnx_runs_without_the_training_stack(exports, photos):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    requests = pytest.importorskip("requests", reason="the test extra (requests) is not installed")
    del requests  # used in the subprocess
    out = _run(f"""
        import socket
        import requests
        from ordinalclip.app.commands.tools import check_device
        from ordinalclip.app.serve import ServeOptions, running_server
        from ordinalclip.runtime.predictor import Predictor
        check_device("cpu")  # what `ordinalclip serve x.onnx` checks before it loads the model
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with running_server(Predictor({str(exports["onnx"])!r}), ServeOptions(port=port)) as url:
            with open({str(photos / "2.png")!r}, "rb") as fh:
                r = requests.post(url + "/predict", files={{"files": ("2.png", fh.read(), "image/png")}})
            print("STATUS", r.status_code, r.json()["predictions"][0]["rank"])
    """)
    assert "LOADED []" in out and "ENGINE []" in out
    rank = oc.load(exports["safetensors"]).predict(photos / "2.png")[0]["rank"]
    assert f"STATUS 200 {rank}" in out


def test_a_safetensors_export_needs_neither_lightning_nor_a_text_library(exports, tmp_path):
    out = _run(f"""
        import sys
        import ordinalclip as oc
        oc.load({str(exports["safetensors"])!r})
        print("TEXT", sorted(m for m in sys.modules if m.startswith("ordinalclip.modeling.backbones.hf")))
    """)
    assert "ENGINE []" in out and "TEXT []" in out
    assert "lightning" not in out.split("LOADED", 1)[1].splitlines()[0]
    # a tower of another family: not even open_clip (nor the text libraries open_clip imports)
    cfg = tiny_features_cosine_config()
    path = export_head(build_model(cfg), cfg, tmp_path / "f.safetensors", preprocess={})
    out = _run(f"""
        import torch
        import ordinalclip as oc
        print("RANK", oc.load({str(path)!r}).predict(torch.zeros(10))[0]["rank"])
    """)
    loaded = out.split("LOADED ", 1)[1].splitlines()[0]
    assert "ENGINE []" in out and "RANK" in out
    assert not {"lightning", "open_clip", "transformers"} & set(json.loads(loaded.replace("'", '"')))


# -------------------------------------------------------------------------------------- preprocessing


@pytest.mark.parametrize(
    ("height", "width", "size", "resize"),
    [
        (40, 48, 32, 36),
        (33, 57, 31, 36),
        (224, 300, 224, 256),
        (7, 5, 5, 8),
        (90, 41, 3, 4),
        (64, 64, 64, 64),
    ],
)
def test_numpy_preprocessing_gives_torchvisions_pixels(height, width, size, resize):
    """Resize (Pillow's bilinear in both), centre crop (odd margins round as torchvision rounds), float32
    scaling and normalisation: equal arrays, not merely close."""
    rng = np.random.default_rng(height * width)
    img = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    prep = {"size": size, "resize": resize, "mean": [0.1, 0.5, 0.9], "std": [0.3, 0.2, 0.25]}
    ours = preprocess_image(img, prep)
    theirs = build_transforms(False, size=size, resize=resize, mean=prep["mean"], std=prep["std"])(img)
    assert ours.dtype == np.float32 and ours.shape == (3, size, size)
    assert np.array_equal(ours, theirs.numpy())


def test_one_decoder_for_training_prediction_and_serving(exports, tmp_path):
    """EXIF orientation and transparency: predict (paths), the data layer and serve all decode alike."""
    from ordinalclip.app.serve import _decode
    from ordinalclip.data import images as data_images
    from ordinalclip.runtime import decode

    assert data_images.read_image is decode.read_image
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (30, 44, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees clockwise
    Image.fromarray(pixels).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    shown = Image.fromarray(np.asarray(Image.open(tmp_path / "rotated.jpg").convert("RGB"))).transpose(
        Image.Transpose.ROTATE_270
    )
    predictor = oc.load(exports["onnx"])
    assert predictor.predict(tmp_path / "rotated.jpg") == predictor.predict(shown)
    # transparency over white, in serve as in predict
    rgba = np.dstack([pixels, np.where(np.arange(44) < 22, 0, 255).astype(np.uint8)[None].repeat(30, 0)])
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    white = pixels.copy()
    white[:, :22] = 255
    expected = preprocess_image(Image.fromarray(white), predictor.preprocess)
    assert np.array_equal(_decode(buf.getvalue(), "t.png", predictor), expected)


# ------------------------------------------------------------------------------------------------ int8


def test_int8_export_agrees_with_float32(exports):
    """onnxruntime's dynamic int8 quantisation of the tiny ViT's matrix products: the same rank on >= 98% of
    256 random inputs, expectations within 0.2 of a rank; the products run as MatMulInteger on int8 weights,
    the patch convolution stays float; the sidecar says so."""
    import onnx

    from ordinalclip.runtime.onnx import load_onnx_export

    full, small = load_onnx_export(exports["onnx"]), load_onnx_export(exports["int8"])
    assert small.metadata["onnx"]["quantization"] == "int8" and "quantization" not in full.metadata["onnx"]
    graph = onnx.load(str(exports["int8"])).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("MatMulInteger") >= 8 and "Conv" in ops and "ConvInteger" not in ops
    int8 = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert sum(int(np.prod(t.dims)) for t in int8) > 90_000  # the 2 blocks' attention and MLP weights
    assert exports["int8"].stat().st_size < 0.7 * exports["onnx"].stat().st_size
    x = np.random.default_rng(0).standard_normal((256, 3, 32, 32)).astype(np.float32)
    a, b = oc.load(exports["onnx"]).predict_arrays(x), oc.load(exports["int8"]).predict_arrays(x)
    assert (a["pred_rank"] == b["pred_rank"]).mean() >= 0.98
    assert np.abs(a["exp_rank"] - b["exp_rank"]).max() < 0.2
    assert not np.array_equal(a["logits"], b["logits"])  # it did change the graph


def test_quantize_is_for_onnx_only(model_and_cfg, tmp_path):
    model, cfg = model_and_cfg
    with pytest.raises(ExportError, match="applies to an ONNX export"):
        export_head(model, cfg, tmp_path / "m.safetensors", preprocess=PREP, quantize="int8")
    with pytest.raises(ExportError, match="unknown quantisation 'int4'"):
        export_head(model, cfg, tmp_path / "m.onnx", preprocess=PREP, quantize="int4")
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------ predictions CSV


def test_predictions_csv_reads_both_old_layouts(tmp_path):
    from ordinalclip.runtime.predictions import read_predictions_csv

    run = tmp_path / "run.csv"  # a run folder's file before the units were named: ranks
    run.write_text("path,label,pred_exp,pred_max,p_0,p_1\na.png,1,0.75,1,0.25,0.75\n")
    got = read_predictions_csv(run)
    assert got["label_rank"].tolist() == [1.0] and got["exp_rank"].tolist() == [0.75]
    assert got["pred_rank"].tolist() == [1.0] and got["probs"].tolist() == [[0.25, 0.75]]
    old = tmp_path / "predict.csv"  # ordinalclip predict's file before: label values next to pred_rank
    old.write_text("path,label,pred_exp,pred_max,pred_rank\na.png,17,16.75,17,1\n")
    got = read_predictions_csv(old)
    assert got["exp_value"].tolist() == [16.75] and got["pred_value"].tolist() == [17.0]
    assert got["pred_rank"].tolist() == [1.0] and got["label"].tolist() == ["17"]


def test_the_headline_rank_and_value(tmp_path):
    from ordinalclip.runtime.predictions import PredictionsWriter, headline_rank, headline_value

    exp_rank, pred_rank = [0.5, 1.5, 2.49, 2.51], [1, 1, 3, 3]
    assert headline_rank("expectation", exp_rank, pred_rank).tolist() == [0, 2, 2, 3]  # half to even
    assert headline_rank("argmax", exp_rank, pred_rank).tolist() == [1, 1, 3, 3]
    assert headline_value("argmax", [16.5, 17.0], [17.0, 18.0]).tolist() == [17.0, 18.0]
    assert headline_value("expectation", [16.5, 17.0], [17.0, 18.0]).tolist() == [16.5, 17.0]
    with pytest.raises(ValueError, match="unknown headline prediction 'median'"):
        PredictionsWriter(io.StringIO(), prediction="median")
    out = io.StringIO()  # an evaluation's rows: true ranks, no label values, rank names
    writer = PredictionsWriter(
        out, label_rank=True, values=False, prediction="expectation", rank_names="abcd"
    )
    writer.write("x.png", label_rank=2, exp_rank=2.5, pred_rank=3)
    assert out.getvalue().splitlines() == [
        "path,label_rank,prediction,rank,rank_name,exp_rank,pred_rank",
        "x.png,2,expectation,2,c,2.5,3",
    ]
