"""Robustness, round three, the deploy path: ``ordinalclip predict`` and the export loaders.

1. ``predict -o`` naming an input of the command (the model, its sidecar, the input CSV) is refused before
   anything is written
2. a file name with a carriage return or newline reads back from the predictions CSV as one row
3. mixed good and broken images: ``--on-error skip`` predicts the good ones and names the skipped; without it
   the one ``error:`` line names every bad file
4. a single image path as INPUTS is one image
5. an export sidecar that disagrees with its graph or weights fails at load, before anything is built
6. an ONNX graph that keeps tensors in external data (outside the sha256 its sidecar records) is refused, and
   onnxruntime runs the bytes that were hashed, not the file read again
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ordinalclip.exports.write import export_head
from ordinalclip.modeling import build_model
from ordinalclip.runtime.onnx import load_onnx_export
from ordinalclip.runtime.sidecar import ExportError, sidecar_path
from tests.helpers import PREP, reseal, run_cli, tiny_vit_config, user_error


def _png(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)).save(path, format="PNG")
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for i in range(3):
        _png(folder / f"p{i}.png", i)
    return folder


# ------------------------------------------------------------------------------ 1. -o naming an input


@pytest.mark.parametrize("which", ["model", "sidecar", "csv"])
def test_out_naming_an_input_is_refused_before_anything_is_written(
    image_export, photos, tmp_path, capsys, which
):
    # before: the model (or sidecar, or the input list) was replaced by CSV text, exit 0
    listing = tmp_path / "in.csv"
    listing.write_text("path\n" + "".join(f"{photos}/p{i}.png\n" for i in range(3)))
    out = {"model": image_export, "sidecar": image_export.with_suffix(".json"), "csv": listing}[which]
    before = {p: p.read_bytes() for p in (image_export, image_export.with_suffix(".json"), listing)}
    code, _, err = run_cli(["predict", str(image_export), str(listing), "-o", str(out)], capsys)
    assert code == 2
    line = user_error(err)
    assert str(out) in line and "input of this command" in line, line
    assert {p: p.read_bytes() for p in before} == before
    # another spelling of the same file is refused too
    other = out.parent / "." / out.name
    code, _, err = run_cli(["predict", str(image_export), str(listing), "-o", str(other)], capsys)
    assert code == 2 and "input of this command" in user_error(err)


def test_out_beside_the_inputs_still_writes(image_export, photos, tmp_path, capsys):
    code, _, err = run_cli(["predict", str(image_export), str(photos), "-o", str(tmp_path / "p.csv")], capsys)
    assert code == 0, err
    assert len(pd.read_csv(tmp_path / "p.csv")) == 3


# ------------------------------------------------------------------------------ 2. CR / LF in a file name


def test_a_carriage_return_or_newline_in_a_name_reads_back_as_one_row(image_export, tmp_path, capsys):
    # before: "a\rb.png" went out bare; csv and pandas read two rows for it
    folder = tmp_path / "odd"
    folder.mkdir()
    names = ["a\rb.png", "c\nd.png", "plain.png"]
    for i, name in enumerate(names):
        _png(folder / name, i)
    out = tmp_path / "p.csv"
    code, _, err = run_cli(["predict", str(image_export), str(folder), "-o", str(out)], capsys)
    assert code == 0, err
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["path"] for r in rows) == sorted(names)
    frame = pd.read_csv(out)
    assert sorted(frame["path"]) == sorted(names)
    assert frame["pred_rank"].between(0, 4).all()
    # the plain rows keep the minimal quoting of before
    assert "\nplain.png," in out.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------ 3. good and broken images


@pytest.fixture()
def mixed(tmp_path) -> tuple[Path, list[str], list[str]]:
    """A folder of 2 good and 3 broken images, the broken ones spread over batches of 2."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = ["a_good.png", "d_good.png"]
    for i, name in enumerate(good):
        _png(folder / name, i)
    (folder / "b_text.png").write_text("not an image")
    whole = _png(tmp_path / "whole.png").read_bytes()
    (folder / "c_cut.png").write_bytes(whole[: len(whole) // 3])
    (folder / "e_empty.jpg").write_bytes(b"")
    return folder, good, ["b_text.png", "c_cut.png", "e_empty.jpg"]


def test_broken_images_are_all_named_in_one_error(image_export, mixed, tmp_path, capsys):
    # before: the error named only the first bad file
    folder, _, broken = mixed
    out = tmp_path / "p.csv"
    argv = ["predict", str(image_export), str(folder), "-o", str(out), "--batch-size", "2"]
    code, _, err = run_cli(argv, capsys)
    assert code == 2
    text = user_error(err)
    assert text.startswith("error: 3 of 5 images cannot be read:"), text
    for name in broken:
        assert str(folder / name) in text, (name, text)
    assert not out.exists()


def test_on_error_skip_predicts_the_good_and_names_every_skipped(image_export, mixed, tmp_path, capsys):
    # before: the CLI had no --on-error
    folder, good, broken = mixed
    out = tmp_path / "p.csv"
    argv = [
        "predict",
        str(image_export),
        str(folder),
        "-o",
        str(out),
        "--batch-size",
        "2",
        "--on-error",
        "skip",
    ]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    assert "Traceback" not in err and "error:" not in err
    frame = pd.read_csv(out)
    assert list(frame["path"]) == good
    assert "skipped 3 of 5 unreadable images" in err
    for name in broken:
        assert str(folder / name) in err, (name, err)
    # the good rows are those of predicting the good images alone
    alone = tmp_path / "alone"
    alone.mkdir()
    for name in good:
        (alone / name).write_bytes((folder / name).read_bytes())
    code, _, err = run_cli(["predict", str(image_export), str(alone), "-o", str(tmp_path / "q.csv")], capsys)
    assert code == 0, err
    pd.testing.assert_frame_equal(frame, pd.read_csv(tmp_path / "q.csv"))


# ------------------------------------------------------------------------------ 4. one image as INPUTS


@pytest.mark.parametrize("name", ["one.png", "one.JPG"])
def test_a_single_image_is_predicted_as_one_image(image_export, photos, tmp_path, capsys, name):
    # before: read as a list file, "not valid UTF-8"
    image = tmp_path / name
    Image.open(photos / "p1.png").save(image, format="JPEG" if name.lower().endswith("jpg") else "PNG")
    out = tmp_path / "one.csv"
    code, _, err = run_cli(["predict", str(image_export), str(image), "-o", str(out)], capsys)
    assert code == 0, err
    frame = pd.read_csv(out)
    assert list(frame["path"]) == [str(image)]
    # the same prediction as the image inside a folder
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / name).write_bytes(image.read_bytes())
    code, _, err = run_cli(["predict", str(image_export), str(folder), "-o", str(tmp_path / "f.csv")], capsys)
    assert code == 0, err
    in_folder = pd.read_csv(tmp_path / "f.csv")
    pd.testing.assert_frame_equal(frame.drop(columns="path"), in_folder.drop(columns="path"))


# ------------------------------------------------------------------------------ 5. sidecar against graph / weights


@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory) -> Path:
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    torch.manual_seed(0)
    cfg = tiny_vit_config()
    folder = tmp_path_factory.mktemp("onnx")
    return export_head(build_model(cfg).eval(), cfg, folder / "m.onnx", preprocess=PREP)


def _edited_copy(export: Path, folder: Path, edit) -> Path:
    """A copy of ``export`` (weights + sidecar) whose sidecar is changed by ``edit`` and re-sealed."""
    folder.mkdir()
    copy = folder / export.name
    copy.write_bytes(export.read_bytes())
    meta = json.loads(sidecar_path(export).read_text())
    edit(meta)
    sidecar_path(copy).write_text(json.dumps(reseal(meta)))
    return copy


def _prep_size(meta: dict, size: int) -> None:
    meta["preprocess"] = {**meta["preprocess"], "size": size, "resize": size + 4}


def _ranks(meta: dict, n: int) -> None:
    meta["num_ranks"] = meta["model"]["num_ranks"] = n
    meta["rank_values"] = [float(i) for i in range(n)]
    if meta.get("rank_names"):
        meta["rank_names"] = [str(i) for i in range(n)]


@pytest.mark.parametrize(
    ("entry", "edit"),
    [("preprocess.size", lambda m: _prep_size(m, 48)), ("num_ranks", lambda m: _ranks(m, 7))],
)
def test_an_onnx_sidecar_disagreeing_with_its_graph_fails_at_load(
    onnx_export, photos, tmp_path, capsys, entry, edit
):
    # before: loaded, then a traceback at the first batch
    copy = _edited_copy(onnx_export, tmp_path / "edited", edit)
    with pytest.raises(ExportError, match=rf"entry '{re.escape(entry)}' .* graph .*shape"):
        load_onnx_export(copy)
    code, _, err = run_cli(["predict", str(copy), str(photos), "-o", str(tmp_path / "p.csv")], capsys)
    assert code != 0
    line = user_error(err)
    assert f"entry '{entry}'" in line and str(copy) in line, line
    assert not (tmp_path / "p.csv").exists()
    # the unedited export loads and predicts
    assert load_onnx_export(onnx_export).num_ranks == 5


_PEAK = """
import resource, sys
from ordinalclip.exports.load import load_export
from ordinalclip.runtime.sidecar import ExportError
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_export(sys.argv[1])
    print("loaded")
except ExportError as err:
    print("ExportError:", err)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)
"""


def test_a_safetensors_sidecar_describing_another_tower_fails_before_building_it(image_export, tmp_path):
    # before: the described tower was built first (a huge one: 17 GB RSS); here a ~450 MB one (24 layers of
    # width 768) against the 2-layer, 64-wide weights, measured as the peak RSS growth of a fresh process
    def grow(meta: dict) -> None:
        meta["model"]["clip"]["custom"]["vision_cfg"].update(layers=24, width=768, head_width=64)

    copy = _edited_copy(image_export, tmp_path / "huge", grow)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"), *sys.path])}
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, str(copy)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    message, grown_mb = done.stdout.strip().splitlines()
    assert message.startswith("ExportError:"), message
    assert "do not fit the architecture in the sidecar's model config" in message, message
    assert str(copy) in message and "visual.conv1.weight: checkpoint (64, 3, 16, 16) vs model (768" in message
    assert int(grown_mb) < 150, (grown_mb, message)
    # the unedited export still loads
    from ordinalclip.exports.load import load_export

    assert load_export(image_export).num_ranks == 5


# ------------------------------------------------------------------------------ 6. external data, hashed bytes


def _external_copy(export: Path, folder: Path) -> tuple[Path, str]:
    """A copy of the ONNX ``export`` rewritten by onnx with its tensors of 1 KiB and more in ``<name>.data``
    beside it, and its sidecar re-sealed to the new graph (the sha256 entries are plain hashes anyone can
    recompute). Returns the copy and the name of its first initializer that lives in the data file."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    folder.mkdir()
    copy = folder / export.name
    onnx.save_model(
        onnx.load(str(export)),
        str(copy),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=copy.name + ".data",
    )
    meta = json.loads(sidecar_path(export).read_text())
    meta["sha256"] = hashlib.sha256(copy.read_bytes()).hexdigest()
    sidecar_path(copy).write_text(json.dumps(reseal(meta)))
    graph = onnx.load(str(copy), load_external_data=False).graph
    external = [t.name for t in graph.initializer if uses_external_data(t)]
    assert external and (folder / (copy.name + ".data")).stat().st_size > 1024 * len(external)
    return copy, external[0]


def test_an_onnx_graph_with_external_data_is_refused(onnx_export, photos, tmp_path, capsys):
    # before: loaded, running whatever tensors the file beside the graph held, unchecked
    import onnxruntime as ort

    copy, tensor = _external_copy(onnx_export, tmp_path / "ext")
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    # the rewritten pair is a working model: onnxruntime, given its path, runs it to the export's logits
    run = {p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (onnx_export, copy)}
    outs = [s.run(None, {"images": x})[0] for s in run.values()]
    np.testing.assert_allclose(outs[1], outs[0], rtol=0, atol=1e-6)
    with pytest.raises(ExportError, match=rf"{re.escape(str(copy))}: tensor '{re.escape(tensor)}'.*external"):
        load_onnx_export(copy)
    code, _, err = run_cli(["predict", str(copy), str(photos), "-o", str(tmp_path / "p.csv")], capsys)
    assert code == 2
    line = user_error(err)
    assert str(copy) in line and repr(tensor) in line and "m.onnx.data" in line, line
    assert not (tmp_path / "p.csv").exists()


def test_onnxruntime_runs_the_bytes_that_were_hashed(onnx_export, tmp_path, monkeypatch):
    # before: the graph file was hashed, then read again by onnxruntime: a file swapped in between ran unchecked
    import onnxruntime as ort

    torch.manual_seed(1)
    cfg = tiny_vit_config()
    other = export_head(build_model(cfg).eval(), cfg, tmp_path / "other" / "m.onnx", preprocess=PREP)
    (tmp_path / "m").mkdir()
    copy = tmp_path / "m" / "m.onnx"
    copy.write_bytes(onnx_export.read_bytes())
    sidecar_path(copy).write_bytes(sidecar_path(onnx_export).read_bytes())
    real = ort.InferenceSession

    def swap_then_load(model, *args, **kwargs):
        copy.write_bytes(other.read_bytes())  # the file changes after its sha256 was checked
        return real(model, *args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", swap_then_load)
    loaded = load_onnx_export(copy)
    monkeypatch.setattr(ort, "InferenceSession", real)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    sealed = ort.InferenceSession(str(onnx_export), providers=["CPUExecutionProvider"])
    swapped = ort.InferenceSession(str(other), providers=["CPUExecutionProvider"])
    want, wrong = (s.run(None, {"images": x})[0] for s in (sealed, swapped))
    assert np.abs(want - wrong).max() > 1e-3  # the two graphs disagree, so the comparison below can fail
    np.testing.assert_array_equal(loaded.run(x), want)


def test_external_tensors_are_found_wherever_onnx_can_hold_a_tensor():
    """Every place onnx.proto can put a tensor (listed from onnx's own message descriptors) is searched: a
    model with one external tensor in each place has all of them found; a model without, none."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    from onnx.external_data_helper import set_external_data

    from ordinalclip.runtime.onnx import _external_tensors

    def tensor(name: str, external: bool = True, dtype: int = TensorProto.FLOAT) -> TensorProto:
        data = np.array([1, 2], dtype=helper.tensor_dtype_to_np_dtype(dtype)).tobytes()
        t = helper.make_tensor(name, dtype, [2], data, raw=True)
        if external:
            set_external_data(t, location=f"{name}.bin")
            t.ClearField("raw_data")
        return t

    def sparse(name: str, indices: str | None = None):
        idx = tensor(indices or "idx", external=indices is not None, dtype=TensorProto.INT64)
        return helper.make_sparse_tensor(tensor(name), idx, [4])

    def constant(out: str, **attr):
        return helper.make_node("Constant", [], [out], **attr)

    vi = helper.make_tensor_value_info
    sub = helper.make_graph(
        [constant("s", value=tensor("in_subgraph"))],
        "sub",
        [],
        [vi("s", TensorProto.FLOAT, [2])],
        initializer=[tensor("subgraph_initializer")],
    )
    node_attrs = [
        constant("c1", value=tensor("node_t")),
        constant("c2", sparse_value=sparse("node_sparse_tensor")),
        helper.make_node("If", ["cond"], ["y"], then_branch=sub, else_branch=sub),
        helper.make_node("Custom", [], ["c3"], domain="x", ts=[tensor("node_tensors")]),
        helper.make_node("Custom", [], ["c4"], domain="x", sg=[sparse("node_sparse_tensors")]),
        helper.make_node("Custom", [], ["c5"], domain="x", gs=[sub]),
    ]
    graph = helper.make_graph(
        node_attrs,
        "g",
        [vi("cond", TensorProto.BOOL, [])],
        [vi("y", TensorProto.FLOAT, [2])],
        initializer=[tensor("initializer"), tensor("internal", external=False)],
        sparse_initializer=[sparse("sparse_initializer", indices="sparse_indices")],
    )
    function = helper.make_function(
        "x", "F", [], ["o"], [constant("o", value=tensor("function_node"))], [helper.make_opsetid("", 18)]
    )
    function.attribute_proto.append(helper.make_attribute("d", tensor("function_default")))
    model = helper.make_model(graph, functions=[function])
    model.training_info.add().initialization.CopyFrom(
        helper.make_graph([], "init", [], [], initializer=[tensor("training_initialization")])
    )
    model.training_info[0].algorithm.CopyFrom(
        helper.make_graph([], "algo", [], [], initializer=[tensor("training_algorithm")])
    )
    found = _external_tensors(model.SerializeToString())
    names = sorted(n for n, _ in found)
    expected = [
        "function_default",
        "function_node",
        "initializer",
        "node_sparse_tensor",
        "node_sparse_tensors",
        "node_t",
        "node_tensors",
        "sparse_indices",
        "sparse_initializer",
        "training_algorithm",
        "training_initialization",
    ] + ["in_subgraph", "subgraph_initializer"] * 3  # the If's two branches and the graphs attribute
    assert names == sorted(expected)
    assert all(location == f"{name}.bin" for name, location in found)
    # the places searched are every place onnx.proto has a message that leads to a TensorProto
    holders = {
        "TensorProto",
        "SparseTensorProto",
        "GraphProto",
        "NodeProto",
        "AttributeProto",
        "FunctionProto",
        "TrainingInfoProto",
    }
    fields = {
        (d.name, f.number)
        for d in [getattr(onnx, n).DESCRIPTOR for n in holders | {"ModelProto"}]
        for f in d.fields
        if f.message_type is not None and f.message_type.name in holders
    }
    assert fields == {
        ("ModelProto", 7),
        ("ModelProto", 20),
        ("ModelProto", 25),
        ("TrainingInfoProto", 1),
        ("TrainingInfoProto", 2),
        ("GraphProto", 1),
        ("GraphProto", 5),
        ("GraphProto", 15),
        ("FunctionProto", 7),
        ("FunctionProto", 11),
        ("NodeProto", 5),
        ("AttributeProto", 5),
        ("AttributeProto", 6),
        ("AttributeProto", 10),
        ("AttributeProto", 11),
        ("AttributeProto", 22),
        ("AttributeProto", 23),
        ("SparseTensorProto", 1),
        ("SparseTensorProto", 2),
    }
    # nothing external: nothing found
    plain = helper.make_model(
        helper.make_graph(
            [constant("c", value=tensor("t", external=False))],
            "g",
            [],
            [],
            initializer=[tensor("i", external=False)],
        )
    )
    assert _external_tensors(plain.SerializeToString()) == []


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (wire type 2)."""

    def varint(n: int) -> bytes:
        out = b""
        while n >= 0x80:
            out += bytes([n & 0x7F | 0x80])
            n >>= 7
        return out + bytes([n])

    return varint(number << 3 | 2) + varint(len(payload)) + payload


def test_a_deeply_nested_or_malformed_graph_is_one_error(tmp_path):
    from ordinalclip.runtime.onnx import _external_tensors, _refuse_external_data

    # an external tensor (name, data_location = EXTERNAL) in a Constant 3000 subgraphs deep: found, and no
    # RecursionError on the way
    graph = _field(1, _field(5, _field(5, _field(8, b"deep") + bytes([14 << 3, 1]))))
    for _ in range(3000):
        graph = _field(1, _field(5, _field(6, graph)))
    assert _external_tensors(_field(7, graph)) == [("deep", "")]
    with pytest.raises(
        ExportError, match=r": tensor 'deep' keeps its data in an external file; external data"
    ):
        _refuse_external_data(_field(7, graph), tmp_path)
    for bad in (b"\x0f", _field(7, graph)[:-3], b"\x3a\x05ab"):  # wire type 7, truncated, length past the end
        with pytest.raises(ExportError, match=rf"^{re.escape(str(tmp_path))}: not a readable ONNX graph"):
            _refuse_external_data(bad, tmp_path)
