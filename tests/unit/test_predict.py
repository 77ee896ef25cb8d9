"""predict / Predictor: CSV columns and rows, expectation over rank values by hand, folder, list and CSV inputs."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from ordinalclip.data.samples import DataError
from ordinalclip.exports.load import load_export
from ordinalclip.exports.write import export_head
from ordinalclip.modeling import ImageTowerConfig, ModelConfig, build_model
from ordinalclip.predict import Predictor, predict, read_inputs
from ordinalclip.runtime.sidecar import ExportError
from tests.helpers import PREP, run_config, save_checkpoint, tiny_vit_model

AGES = [16.0, 17.0, 18.0, 19.0, 20.0]
NAMES = ["a.png", "b.png", "sub/c.png", "sub/deeper/d.png"]
HEADLINE = ["prediction", "value", "rank"]  # the headline columns of a model without rank names
BOTH = ["exp_value", "pred_value", "exp_rank", "pred_rank"]


@pytest.fixture(scope="module")
def model_and_cfg():
    return tiny_vit_model()


@pytest.fixture(scope="module")
def export_path(model_and_cfg, tmp_path_factory):
    model, cfg = model_and_cfg
    out = tmp_path_factory.mktemp("export") / "ages.safetensors"
    return export_head(model, cfg, out, rank_values=AGES, preprocess=PREP)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Four random 32x32 PNGs in nested folders, plus files predict must ignore."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name in NAMES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / name)
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / ".hidden" / "x.png")
    return root


def _read(path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _by_hand(model, root, names, values):
    """Expectation and argmax of the model's logits, with the eval transform spelled out step by step."""
    tf = T.Compose(
        [T.Resize((36, 36)), T.CenterCrop(32), T.ToTensor(), T.Normalize(PREP["mean"], PREP["std"])]
    )
    x = torch.stack([tf(Image.open(root / n).convert("RGB")) for n in names])
    with torch.no_grad():
        logits = model(x)
    probs = torch.softmax(logits, dim=1)
    v = torch.tensor(values)
    return (probs * v).sum(1), v[probs.argmax(1)], probs.argmax(1), probs


def test_folder_predictions_match_the_model_by_hand(model_and_cfg, export_path, images, tmp_path):
    model, _ = model_and_cfg
    out = predict(export_path, images, tmp_path / "out" / "pred.csv", batch_size=3)
    rows = _read(out)
    assert list(rows[0]) == ["path", *HEADLINE, *BOTH]
    assert [r["path"] for r in rows] == NAMES  # recursive, sorted, other files and hidden folders ignored
    exp, top, rank, probs = _by_hand(model, images, NAMES, AGES)
    nearest = torch.round(probs @ torch.arange(5.0)).long()  # the expectation's nearest rank
    for row, e, m, r, n in zip(rows, exp, top, rank, nearest):
        assert row["prediction"] == "expectation"  # export_head's default headline
        assert float(row["value"]) == pytest.approx(float(e), abs=1e-5) and int(row["rank"]) == int(n)
        assert float(row["exp_value"]) == pytest.approx(float(e), abs=1e-5)
        assert float(row["pred_value"]) == float(m) and int(row["pred_rank"]) == int(r)
        assert 16.0 <= float(row["exp_value"]) <= 20.0


def test_rank_offset_shifts_predictions(model_and_cfg, export_path, images, tmp_path):
    model, cfg = model_and_cfg
    plain = export_head(model, cfg, tmp_path / "plain.safetensors", rank_values=None, preprocess=PREP)
    aged = _read(predict(export_path, images, tmp_path / "aged.csv"))
    zero = _read(predict(plain, images, tmp_path / "zero.csv"))
    for a, z in zip(aged, zero):
        assert float(a["exp_value"]) - float(z["exp_value"]) == pytest.approx(16.0, abs=1e-5)
        assert float(a["pred_value"]) == float(z["pred_value"]) + 16 == float(z["pred_rank"]) + 16
        assert a["pred_rank"] == z["pred_rank"]


def test_probability_columns(model_and_cfg, export_path, images, tmp_path):
    model, _ = model_and_cfg
    rows = _read(predict(export_path, images, tmp_path / "p.csv", probabilities=True))
    assert list(rows[0]) == [
        "path",
        *HEADLINE,
        *BOTH,
        "p_0",
        "p_1",
        "p_2",
        "p_3",
        "p_4",
    ]
    _, _, _, probs = _by_hand(model, images, NAMES, AGES)
    got = torch.tensor([[float(r[f"p_{i}"]) for i in range(5)] for r in rows])
    torch.testing.assert_close(got, probs, atol=1e-6, rtol=0)


def test_list_file_with_labels(model_and_cfg, export_path, images, tmp_path):
    model, _ = model_and_cfg
    listing = images / "list.txt"
    listing.write_text("# path age\nsub/c.png 18\n\na.png 20 21\n")  # paths relative to the list's folder
    rows = _read(predict(export_path, listing, tmp_path / "l.csv"))
    assert list(rows[0]) == ["path", "label", *HEADLINE, *BOTH]
    assert [(r["path"], r["label"]) for r in rows] == [("sub/c.png", "18"), ("a.png", "20")]
    exp, _, _, _ = _by_hand(model, images, ["sub/c.png", "a.png"], AGES)
    assert [float(r["exp_value"]) for r in rows] == pytest.approx(exp.tolist(), abs=1e-5)


def test_list_file_of_paths_with_an_images_root(export_path, images, tmp_path):
    listing = tmp_path / "paths.lst"
    listing.write_text("b.png\nsub/deeper/d.png\n")
    rows = _read(predict(export_path, listing, tmp_path / "l.csv", root=images))
    assert list(rows[0]) == ["path", *HEADLINE, *BOTH]
    assert [r["path"] for r in rows] == ["b.png", "sub/deeper/d.png"]
    folder = {r["path"]: r for r in _read(predict(export_path, images, tmp_path / "all.csv"))}
    for r in rows:  # the same numbers as from the folder (up to batch composition)
        assert float(r["exp_value"]) == pytest.approx(float(folder[r["path"]]["exp_value"]), abs=1e-5)


def test_csv_inputs(export_path, images, tmp_path):
    table = images / "table.csv"
    table.write_text("id,path,label\n1,a.png,17\n2,sub/c.png,19\n")
    rows = _read(predict(export_path, table, tmp_path / "c.csv"))
    assert [(r["path"], r["label"]) for r in rows] == [("a.png", "17"), ("sub/c.png", "19")]
    other = tmp_path / "files.csv"
    other.write_text("file\nb.png\n")
    rows = _read(predict(export_path, other, tmp_path / "d.csv", root=images, path_column="file"))
    assert list(rows[0]) == ["path", *HEADLINE, *BOTH] and rows[0]["path"] == "b.png"
    with pytest.raises(DataError, match=r"files\.csv:1: no column 'path'"):
        read_inputs(other)


def test_missing_files_are_all_reported_before_running(export_path, images, tmp_path):
    listing = images / "missing.txt"
    listing.write_text("a.png\nnope1.png\nsub/nope2.png\n")
    with pytest.raises(
        DataError, match=r"(?s)2 of 3 image files are missing:.*nope1\.png.*missing\.txt:2.*nope2\.png"
    ):
        predict(export_path, listing, tmp_path / "m.csv")
    assert not (tmp_path / "m.csv").exists()


def test_corrupt_image_names_file_and_line_or_is_skipped(export_path, images, tmp_path):
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    listing = images / "bad.txt"
    listing.write_text("a.png\nbroken.png\n")
    try:
        with pytest.raises(DataError, match=r"bad\.txt:2: cannot read image .*broken\.png"):
            predict(export_path, listing, tmp_path / "b.csv")
        rows = _read(predict(export_path, listing, tmp_path / "b.csv", on_error="skip"))
        assert [r["path"] for r in rows] == ["a.png"]
    finally:
        (images / "broken.png").unlink()


def test_predictor_on_images_and_tensors(model_and_cfg, export_path, images, tmp_path):
    model, _ = model_and_cfg
    predictor = Predictor(export_path)
    pil = [Image.open(images / n).convert("RGB") for n in NAMES]
    out = predictor.predict_images(pil, batch_size=3)
    # numpy arrays
    assert set(out) == {"logits", "probs", "pred_exp", "pred_max", "exp_rank", "pred_rank", "value", "rank"}
    assert out["logits"].shape == (4, 5) and out["pred_rank"].dtype == np.int64
    exp, top, rank, probs = _by_hand(model, images, NAMES, AGES)
    torch.testing.assert_close(torch.from_numpy(out["pred_exp"]), exp, atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["exp_rank"], exp.numpy() - 16.0, atol=1e-5, rtol=0)
    assert np.array_equal(out["pred_max"], top.numpy()) and np.array_equal(out["pred_rank"], rank.numpy())
    # preprocessed tensors go straight in; the numpy preprocessing of PIL images gave the very same pixels
    prepared = torch.stack([predictor.transform()(p) for p in pil])
    again = predictor.predict_images(list(prepared), preprocessed=True, batch_size=3)
    assert np.array_equal(again["logits"], out["logits"])
    # raw [0, 1] tensors get resize/crop/normalise (tensor resizing differs from PIL's only by interpolation)
    raw = predictor.predict_images([T.ToTensor()(p) for p in pil])
    np.testing.assert_allclose(raw["probs"], out["probs"], atol=0.05, rtol=0)
    # the CSV holds the same numbers
    rows = _read(predict(export_path, images, tmp_path / "x.csv"))
    assert [float(r["exp_value"]) for r in rows] == pytest.approx(
        out["pred_exp"].tolist(), rel=1e-6, abs=1e-6
    )  # float32, other batch


def test_predictor_from_a_module(model_and_cfg, images):
    model, _ = model_and_cfg
    predictor = Predictor(model, rank_values=AGES, preprocess=PREP)  # an OrdinalCLIP is frozen into its head
    pil = [Image.open(images / n).convert("RGB") for n in NAMES]
    exp, _, _, _ = _by_hand(model, images, NAMES, AGES)
    torch.testing.assert_close(
        torch.from_numpy(predictor.predict_images(pil)["pred_exp"]), exp, atol=1e-5, rtol=0
    )
    with pytest.raises(ValueError, match="3 rank values for a model with 5 ranks"):
        Predictor(model, rank_values=[1, 2, 3], preprocess=PREP)


def test_feature_models_and_unknown_files_are_refused(tmp_path, images):
    cfg = ModelConfig(
        arch="cosine", num_ranks=3, embed_dim=4, image=ImageTowerConfig(kind="features", input_dim=6)
    )
    path = export_head(build_model(cfg), cfg, tmp_path / "f.safetensors", preprocess={})
    with pytest.raises(ValueError, match="takes precomputed feature vectors"):
        predict(path, images, tmp_path / "f.csv")
    feats = torch.randn(2, 6)
    with torch.no_grad():
        expected = load_export(path)(feats)
    got = Predictor(path).predict_images(list(feats), preprocessed=True)["logits"]
    assert torch.equal(torch.from_numpy(got), expected)
    with pytest.raises(
        ExportError, match=r"expected an export .*, a Lightning checkpoint .* or a run folder"
    ):
        Predictor(tmp_path / "model.pt")


def test_checkpoint_and_export_predict_the_same(model_and_cfg, export_path, images, tmp_path):
    model, cfg = model_and_cfg
    ckpt = save_checkpoint(model, run_config(cfg), tmp_path / "run" / "checkpoints" / "best.ckpt")
    from_export = _read(predict(export_path, images, tmp_path / "e.csv", probabilities=True))
    from_ckpt = _read(predict(ckpt, images, tmp_path / "c.csv", probabilities=True))
    from_run = _read(predict(tmp_path / "run", images, tmp_path / "r.csv", probabilities=True))
    assert from_ckpt == from_export and from_run == from_export  # same weights, rank values and transform


def test_rank_names_and_an_argmax_headline(model_and_cfg, images, tmp_path):
    from ordinalclip.runtime.predictions import read_predictions_csv

    model, cfg = model_and_cfg
    ranks = ["teen", "twenty", "thirty", "forty", "fifty"]
    path = export_head(
        model, cfg, tmp_path / "m.safetensors", AGES, ranks, preprocess=PREP, prediction="argmax"
    )
    listing = images / "named.txt"
    listing.write_text("a.png 18\nsub/c.png 20\nb.png 16\n")
    out = predict(path, listing, tmp_path / "n.csv")
    rows = _read(out)
    assert list(rows[0]) == ["path", "label", "prediction", "value", "rank", "rank_name", *BOTH]
    _, top, rank, _ = _by_hand(model, images, ["a.png", "sub/c.png", "b.png"], AGES)
    for row, m, r in zip(rows, top, rank):
        assert row["prediction"] == "argmax"
        assert float(row["value"]) == float(row["pred_value"]) == float(m) == AGES[int(r)]
        assert int(row["rank"]) == int(row["pred_rank"]) == int(r)  # ranks 0..4, values 16..20
        assert row["rank_name"] == ranks[int(r)]
    got = read_predictions_csv(out)
    assert got["rank_name"].tolist() == [ranks[int(r)] for r in rank]
    assert got["prediction"].tolist() == ["argmax"] * 3 and got["label"].tolist() == ["18", "20", "16"]
    assert (got["pred_value"] - got["pred_rank"]).tolist() == [16.0] * 3
    assert got["value"].tolist() == [float(m) for m in top]
