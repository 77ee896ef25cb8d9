"""Robustness: unusual and hostile input, case by case, on generated files.

Most cases are met through the ``ordinalclip`` command (``cli.main(argv)``), where a user meets them.

1. images as a camera, phone or scanner saves them load as a viewer shows them: 16-bit and float grayscale,
   alpha and palette transparency, EXIF orientation, embedded ICC profiles, CMYK; predict gives a 16-bit or a
   rotated file the prediction of its plain 8-bit twin
2. non-finite and out-of-range float config values are config errors (no run folder)
3. float64 features beyond float32's range are refused after the cast; NaN predictions or metrics exit 1, never 0
4. export sidecars: every entry validated and sealed by sidecar_sha256, truncated safetensors an ExportError
5. one run per folder: a second run stops at once, a lock left by a killed process does not block
6. stale temporaries are removed on the next start; --resume takes the newest intact checkpoint and says which
7. duplicate YAML keys, the .npz pickled-array hint, the decompression-bomb warning naming the file
8. hypothesis: list/CSV/inputs parsers, the config loader and the export sidecar reader raise only our own errors
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms

from ordinalclip.config import RunConfig, load_run_config
from ordinalclip.config.typed import ConfigError, load_yaml, to_dict
from ordinalclip.data import DataError, RankSpace, read_csv_samples, read_list_file
from ordinalclip.data.features import load_features
from ordinalclip.data.images import ImageDataset, load_image
from ordinalclip.data.samples import Sample
from ordinalclip.engine.run import LOCK_NAME, run_dir_lock
from ordinalclip.exports.load import ExportedModel, load_export
from ordinalclip.exports.write import export_head
from ordinalclip.modeling import ClipConfig, ImageTowerConfig, ModelConfig, PromptConfig, build_model
from ordinalclip.predict import read_inputs
from ordinalclip.runtime.sidecar import ExportError, read_export_metadata
from tests.helpers import (
    features_data,
    reseal,
    run_cli,
    run_config,
    save_checkpoint,
    tiny_clip_custom,
    tiny_config,
    user_error,
)

COSINE = {"arch": "cosine", "num_ranks": 4, "embed_dim": 6, "image": {"kind": "features", "input_dim": 8}}


def tiny_vit_config() -> ModelConfig:
    """A 5-rank OrdinalCLIP on the tiny CLIP (32x32 images, 32-d embeddings)."""
    return ModelConfig(
        clip=ClipConfig(name=None, custom=tiny_clip_custom()),
        num_ranks=5,
        image=ImageTowerConfig(kind="clip"),
        prompts=PromptConfig(num_base_ranks=2, context_init=None, num_context_tokens=3),
    )


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(load_image(Sample(str(path), 0, "list.txt:7")), dtype=np.int16)


# ------------------------------------------------------------------------------------------------- 1. images


def test_16_bit_grayscale_is_scaled_not_saturated(tmp_path):
    # a horizontal gradient over the whole 16-bit range; Pillow's convert("RGB") made 94% of it white
    values = np.tile(np.linspace(0, 65535, 64).round().astype(np.uint16), (8, 1))
    expected = np.rint(values / 257.0)
    Image.fromarray(values).save(tmp_path / "g.png")  # PNG: mode I;16
    Image.fromarray(values.astype(">u2")).save(tmp_path / "g.tif")  # big-endian TIFF: mode I;16B
    for name in ("g.png", "g.tif"):
        got = _pixels(tmp_path / name)
        assert got.shape == (8, 64, 3)
        assert np.array_equal(got[..., 0], expected) and (got == got[..., :1]).all(), name
        assert (got == 255).mean() < 0.02


def test_float_grayscale_in_0_1_is_scaled(tmp_path):
    values = np.linspace(0.0, 1.0, 32, dtype=np.float32).reshape(4, 8)
    Image.fromarray(values).save(tmp_path / "f.tif")  # mode F, as scientific cameras and HDR tools write
    assert np.array_equal(_pixels(tmp_path / "f.tif")[..., 1], np.rint(values * 255.0))


def test_transparency_is_composited_over_white(tmp_path):
    # hidden colour under the transparent pixels: red, which a viewer never shows
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[0, :, 3] = [0, 128, 255]  # transparent, half, opaque
    rgba[1] = [10, 200, 30, 255]
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    got = _pixels(tmp_path / "a.png")
    assert got[0, 0].tolist() == [255, 255, 255]
    assert np.abs(got[0, 1] - [255, 127, 127]).max() <= 1  # 255 * a + 255 * (1 - a), a = 128/255
    assert got[0, 2].tolist() == [255, 0, 0] and got[1, 0].tolist() == [10, 200, 30]

    la = np.stack([np.full((2, 2), 40, np.uint8), np.array([[0, 255], [255, 0]], np.uint8)], axis=-1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert _pixels(tmp_path / "la.png")[..., 0].tolist() == [[255, 40], [40, 255]]

    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 250, 20, 20] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    palette.save(tmp_path / "p.png", transparency=0)  # entry 0 (black) is transparent
    assert _pixels(tmp_path / "p.png").tolist() == [[[255, 255, 255], [250, 20, 20]]]


@pytest.mark.parametrize(("orientation", "turns"), [(3, 2), (6, -1), (8, 1)])
def test_exif_orientation_is_applied(tmp_path, orientation, turns):
    stored = np.random.default_rng(orientation).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation  # 3: upside down, 6: turn 90° clockwise to view, 8: 90° anticlockwise
    Image.fromarray(stored).save(tmp_path / "o.png", exif=exif)
    assert np.array_equal(_pixels(tmp_path / "o.png"), np.rot90(stored, turns))


def _swapped_primaries_profile() -> bytes:
    """An RGB ICC profile whose red and blue primaries are swapped: its (r, g, b) is sRGB's (b, g, r)."""
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = struct.unpack(">I", data[128:132])[0]
    entries = {bytes(data[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    r, b = entries[b"rXYZ"], entries[b"bXYZ"]
    data[r + 4 : r + 12], data[b + 4 : b + 12] = data[b + 4 : b + 12], data[r + 4 : r + 12]
    return bytes(data)


def test_embedded_icc_profile_is_converted_to_srgb(tmp_path):
    Image.new("RGB", (3, 2), (200, 30, 90)).save(
        tmp_path / "icc.png", icc_profile=_swapped_primaries_profile()
    )
    assert np.abs(_pixels(tmp_path / "icc.png") - [90, 30, 200]).max() <= 2
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.new("RGB", (3, 2), (200, 30, 90)).save(tmp_path / "srgb.png", icc_profile=srgb)
    assert np.abs(_pixels(tmp_path / "srgb.png") - [200, 30, 90]).max() <= 1


def test_cmyk_and_one_bit_images(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)  # print red
    assert np.abs(_pixels(tmp_path / "c.jpg") - [255, 0, 0]).max() <= 3
    bits = Image.new("1", (2, 1))
    bits.putpixel((1, 0), 1)
    bits.save(tmp_path / "b.png")
    assert _pixels(tmp_path / "b.png").tolist() == [[[0, 0, 0], [255, 255, 255]]]


def test_decompression_bomb_warning_names_the_file(tmp_path, monkeypatch):
    Image.new("RGB", (12, 12)).save(tmp_path / "big.png")  # 144 pixels: over 100, under the 200 that refuse
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = ImageDataset([Sample(str(tmp_path / "big.png"), 0, "train.txt:3")], on_error="skip")
        dataset[0]
    bombs = [str(w.message) for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert bombs and all(
        m.startswith(f"train.txt:3: {tmp_path / 'big.png'}: Image size (144 pixels)") for m in bombs
    ), bombs


def test_predict_sees_16_bit_and_rotated_files_as_their_8_bit_twins(image_export, tmp_path, capsys):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (36, 40), dtype=np.uint8)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(gray).save(photos / "gray8.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(photos / "gray16.png")
    colour = rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)
    Image.fromarray(colour).save(photos / "upright.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.rot90(colour, 1).copy()).save(
        photos / "sideways.png", exif=exif
    )  # as a phone stores it
    out = tmp_path / "p.csv"
    code, _, err = run_cli(
        ["predict", str(image_export), str(photos), "-o", str(out), "--probabilities"], capsys
    )
    assert code == 0, err
    rows = {r.split(",")[0]: r.split(",")[1:] for r in out.read_text().splitlines()[1:]}
    assert rows["gray16.png"] == rows["gray8.png"]
    assert rows["sideways.png"] == rows["upright.png"]


# -------------------------------------------------------------------------------------------- 2. float options


@pytest.fixture(scope="module")
def features_root(tmp_path_factory) -> Path:
    """features.npz: 8-wide features, 4 ranks, 4 train / 2 val / 2 test rows per rank."""
    root = tmp_path_factory.mktemp("feats")
    rng = np.random.default_rng(0)
    rows = [
        (split, label)
        for split, n in (("train", 4), ("val", 2), ("test", 2))
        for label in range(4)
        for _ in range(n)
    ]
    feats = rng.normal(0, 0.3, (len(rows), 8))
    for i, (_, label) in enumerate(rows):
        feats[i, label] += 2.0
    np.savez(
        root / "features.npz",
        features=feats.astype(np.float32),
        labels=np.array([r[1] for r in rows]),
        split=np.array([r[0] for r in rows]),
    )
    return root


def _features_config(tmp_path: Path, features: Path, **sections) -> str:
    cfg = tiny_config(
        tmp_path,
        features_data(features),
        dict(COSINE),
        **sections,
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=.nan", "optim.lr: expected a finite number, got nan (float)"),
        ("loss.temperature=.inf", "loss.temperature: expected a finite number, got inf (float)"),
        (
            "data.label_shift.scale=-.inf",
            "data.label_shift.scale: expected a finite number, got -inf (float)",
        ),
        ("data.mean=[0.5, .nan, 0.5]", "data.mean[1]: expected a finite number, got nan (float)"),
        ("optim.weight_decay=1" + "0" * 400, "optim.weight_decay: expected a finite number"),
        ("optim.eps=0", "optim.eps: expected a value > 0, got 0.0"),
        ("optim.betas=[0.9, 1.0]", "optim.betas[1]: expected a value in [0, 1), got 1.0"),
        ("optim.gamma=-0.5", "optim.gamma: expected a value > 0, got -0.5"),
        ("optim.momentum=-1", "optim.momentum: expected a value >= 0, got -1.0"),
        ("loss.temperature=0", "loss.temperature: expected a value > 0, got 0.0"),
        ("loss.kl_weight=-1", "loss.kl_weight: expected a value >= 0, got -1.0"),
        ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val: expected a value >= 0, got -1.0"),
        ("model.logit_scale=0", "model.logit_scale: expected a value > 0, got 0.0"),
        ("model.prompts.init_std=-0.1", "model.prompts.init_std: expected a value >= 0, got -0.1"),
    ],
)
def test_non_finite_and_out_of_range_floats_are_config_errors(
    features_root, tmp_path, capsys, override, message
):
    config = _features_config(tmp_path, features_root / "features.npz")
    code, _, err = run_cli(["train", "-c", config, "--set", override], capsys)
    assert code == 2
    assert user_error(err) == f"error: {message}" or user_error(err).startswith(f"error: {message}"), err
    assert not (tmp_path / "runs").exists()


def test_non_finite_floats_in_a_yaml_file_are_config_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: .NaN\n")
    with pytest.raises(ConfigError, match=r"^optim\.lr: expected a finite number, got nan"):
        load_run_config([path])


# --------------------------------------------------------------------------------- 3. features, NaN outputs


def test_float64_features_beyond_float32_are_refused_after_the_cast(features_root, tmp_path, capsys):
    with np.load(features_root / "features.npz") as npz:
        arrays = dict(npz)
    feats = arrays["features"].astype(np.float64)
    feats[5, 3] = 1e300  # finite in float64, inf in float32
    arrays["features"] = feats
    np.savez(tmp_path / "wide.npz", **arrays)
    config = _features_config(tmp_path, tmp_path / "wide.npz")
    code, _, err = run_cli(["train", "-c", config], capsys)
    assert code == 2
    assert user_error(err).startswith(
        f"error: {tmp_path / 'wide.npz'}: feature row 5 contains NaN or inf, or values beyond float32's range"
    )
    assert not (tmp_path / "runs").exists()


def test_nan_predictions_never_exit_0(features_root, tmp_path, capsys):
    # finite float32 features that overflow inside the model: training is fine, the val outputs are NaN
    with np.load(features_root / "features.npz") as npz:
        arrays = dict(npz)
    arrays["features"][arrays["split"] == "val"] = 3e38
    np.savez(tmp_path / "huge_val.npz", **arrays)
    code, _, err = run_cli(["train", "-c", _features_config(tmp_path, tmp_path / "huge_val.npz")], capsys)
    assert code == 1
    assert "error: non-finite model output: 8 of 8 val samples have NaN or infinite logits" in user_error(err)


def test_a_checkpoint_with_nan_weights_fails_eval_and_predict(image_export, tmp_path, capsys):
    torch.manual_seed(0)
    model_cfg = tiny_vit_config()
    model = build_model(model_cfg).eval()
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "image_tower" in n).fill_(float("nan"))
    ckpt = save_checkpoint(model, run_config(model_cfg), tmp_path / "nan.ckpt")
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((36, 36, 3), np.uint8)).save(image)
    (tmp_path / "list.txt").write_text("a.png 16\n")
    out = tmp_path / "p.csv"
    code, _, err = run_cli(["predict", str(ckpt), str(tmp_path / "list.txt"), "-o", str(out)], capsys)
    assert code == 1
    assert user_error(err).startswith(
        "error: non-finite model output: 1 of 1 images of this batch have NaN or "
        f"infinite logits (first: a.png ({tmp_path / 'list.txt'}:1))"
    )
    assert not out.exists()
    listing = tmp_path / "list.txt"
    code, _, err = run_cli(
        [
            "eval",
            str(ckpt),
            "--set",
            f"data.train={listing}",
            "--set",
            f"data.test={listing}",
            "--set",
            f"data.root={tmp_path}",
        ],
        capsys,
    )
    assert code == 1, err
    assert (
        user_error(err).startswith("error: non-finite model output: 1 of 1 test samples")
        and "list.txt:1" in err
    )


# -------------------------------------------------------------------------------------------------- 4. exports


@pytest.fixture
def features_export(tmp_path) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(
        arch="cosine", num_ranks=4, embed_dim=6, image=ImageTowerConfig(kind="features", input_dim=10)
    )
    return export_head(
        build_model(cfg).eval(),
        cfg,
        tmp_path / "f.safetensors",
        rank_values=[16, 17, 18, 19],
        rank_names=["a", "b", "c", "d"],
    )


def _edit(path: Path, edit, seal: bool = False) -> None:
    sidecar = path.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    edit(meta)
    sidecar.write_text(json.dumps(reseal(meta) if seal else meta))


def _set(key: str, value):
    def edit(meta):
        *parents, last = key.split(".")
        target = meta
        for part in parents:
            target = target[part]
        target[last] = value

    return edit


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("preprocess.size", "abc", "entry 'preprocess.size': expected an integer in [1, 65536], got 'abc'"),
        ("preprocess.size", 64, "entry 'preprocess.size' (64) is larger than 'preprocess.resize' (36)"),
        ("preprocess.mean", "abc", "entry 'preprocess.mean': expected 3 finite numbers (R, G, B), got 'abc'"),
        ("preprocess.std", [0.2, 0.0, 0.3], "entry 'preprocess.std': expected positive values"),
        ("rank_values", ["a", 1, 2, 3, 4], "entry 'rank_values': expected a list of finite numbers"),
        ("rank_values", [0, 1, 2], "entry 'rank_values': 3 rank values for C = 5 ranks"),
        ("rank_names", [1, 2, 3, 4, 5], "entry 'rank_names': expected null or a list of strings"),
        ("num_ranks", True, "entry 'num_ranks': expected an integer >= 1, got True"),
        ("sha256", 5, "entry 'sha256': expected 64 lower-case hex digits, got 5"),
        ("model.num_ranks", 7, "entry 'model.num_ranks' is 7 but 'num_ranks' is 5"),
        (
            "model.prompts.init_std",
            float("inf"),  # json writes and reads Infinity
            "entry 'model': the stored model config does not fit this ordinalclip: model.prompts.init_std: expected a "
            "finite number, got inf",
        ),
        ("rank_values", [1, 2, 3, 4, 5], "entry 'sidecar_sha256' does not match the sidecar's content"),
        ("preprocess.resize", 40, "entry 'sidecar_sha256' does not match"),
    ],
)
def test_edited_sidecar_entries_are_export_errors_naming_file_and_entry(
    image_export, tmp_path, capsys, key, value, message
):
    export = tmp_path / "m.safetensors"
    export.write_bytes(image_export.read_bytes())
    export.with_suffix(".json").write_text(image_export.with_suffix(".json").read_text())
    _edit(export, _set(key, value))
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((36, 36, 3), np.uint8)).save(image)
    out = tmp_path / "p.csv"
    code, _, err = run_cli(["predict", str(export), str(image.parent), "-o", str(out)], capsys)
    assert code == 2
    assert user_error(err).startswith(f"error: {export.with_suffix('.json')}: ") and message in err, err
    assert not out.exists()


def test_a_truncated_safetensors_file_with_a_matching_sha_is_an_export_error(
    features_export, capsys, tmp_path
):
    data = features_export.read_bytes()
    features_export.write_bytes(data[: len(data) // 2])

    def rehash(meta):
        meta["sha256"] = hashlib.sha256(features_export.read_bytes()).hexdigest()

    _edit(features_export, rehash, seal=True)
    with pytest.raises(ExportError, match=rf"^{features_export}: not a readable safetensors file \("):
        load_export(features_export)


def test_sidecars_are_sealed_and_old_unsealed_ones_still_load_with_a_warning(features_export, caplog):
    meta = json.loads(features_export.with_suffix(".json").read_text())
    assert meta["sidecar_sha256"] == reseal(meta)["sidecar_sha256"]
    _edit(features_export, lambda m: m.pop("sidecar_sha256"))
    assert isinstance(load_export(features_export), ExportedModel)
    assert "has no sidecar_sha256" in caplog.text


# --------------------------------------------------------------------------------------- 5. one run per folder


# Another process holding the run folder's lock the way run_dir_lock takes it (filelock on .ordinalclip.lock);
# plain filelock because importing ordinalclip's engine in a subprocess costs half a minute on a busy CI machine.
HOLD = """
import sys, time, filelock
lock = filelock.FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_second_run_in_the_same_folder_stops_at_once_and_a_killed_runs_lock_does_not_block(
    features_root, tmp_path, capsys
):
    config = _features_config(tmp_path, features_root / "features.npz", trainer={"max_epochs": 1})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # a run in this process (a notebook, a second API call) holds the folder
    with run_dir_lock(run_dir):
        code, _, err = run_cli(["train", "-c", config, "--run-dir", str(run_dir)], capsys)
    assert code == 2
    assert user_error(err).startswith(
        f"error: run folder {run_dir} is in use by another ordinalclip run (held by pid {os.getpid()} on "
    )
    assert [p.name for p in run_dir.iterdir()] == [LOCK_NAME]  # nothing written (the holder's note is gone)

    # another process holds it, then is killed: the lock file stays, the kernel drops the lock
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir / LOCK_NAME)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = run_cli(["train", "-c", config, "--run-dir", str(run_dir)], capsys)
        assert (
            code == 2
            and f"error: run folder {run_dir} is in use by another ordinalclip run" in user_error(err)
        )
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run_dir / LOCK_NAME).exists()
    code, _, err = run_cli(["train", "-c", config, "--run-dir", str(run_dir)], capsys)
    assert code == 0, err
    assert (run_dir / "metrics.json").is_file()
    with run_dir_lock(run_dir):  # --resume is refused the same way
        code, _, err = run_cli(["train", "--resume", str(run_dir), "--set", "trainer.max_epochs=2"], capsys)
    assert code == 2 and "is in use by another ordinalclip run" in user_error(err)


# ------------------------------------------------------------------------------------- 6. temporaries, resume


def test_resume_after_a_kill_during_the_first_last_ckpt_write(features_root, tmp_path, capsys, caplog):
    config = _features_config(tmp_path, features_root / "features.npz", trainer={"max_epochs": 1})
    run_dir = tmp_path / "run"
    code, _, err = run_cli(["train", "-c", config, "--run-dir", str(run_dir)], capsys)
    assert code == 0, err
    checkpoints = run_dir / "checkpoints"
    # what a SIGKILL during the first write of last.ckpt leaves: best.ckpt, a partial temporary, no last.ckpt
    partial = checkpoints / ".last.ckpt.1a2b3c4d.tmp"
    partial.write_bytes((checkpoints / "last.ckpt").read_bytes()[:1000])
    (checkpoints / "last.ckpt").unlink()
    stale_json = run_dir / ".metrics.json.5e6f7a8b.tmp"
    stale_json.write_text("{")
    code, _, err = run_cli(["train", "--resume", str(run_dir), "--set", "trainer.max_epochs=2"], capsys)
    assert code == 0, err
    assert f"resuming from {checkpoints / 'best.ckpt'} (epoch 0, step 4): last.ckpt is missing" in caplog.text
    assert not partial.exists() and not stale_json.exists()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["last"]["epoch"] == 1 and metrics["last"]["step"] == 8

    # a damaged last.ckpt (cut short) next to a good best.ckpt: the newest intact one is used, and named
    (checkpoints / "last.ckpt").write_bytes((checkpoints / "last.ckpt").read_bytes()[:2000])
    caplog.clear()
    code, _, err = run_cli(["train", "--resume", str(run_dir), "--set", "trainer.max_epochs=3"], capsys)
    assert code == 0, err
    assert (
        f"resuming from {checkpoints / 'best.ckpt'}" in caplog.text and "last.ckpt is damaged" in caplog.text
    )

    (checkpoints / "best.ckpt").unlink()
    (checkpoints / "last.ckpt").write_bytes(b"PK\x03\x04 nothing")
    code, _, err = run_cli(["train", "--resume", str(run_dir)], capsys)
    assert code == 2
    message = user_error(err)
    assert message.startswith(
        f"error: --resume: no intact checkpoint in {checkpoints}: nothing to continue from"
    )
    assert "best.ckpt is missing" in message and "last.ckpt is damaged" in message


# --------------------------------------------------------------------------------------------- 7. smaller ones


def test_a_duplicate_yaml_key_is_an_error_naming_key_and_lines(features_root, tmp_path, capsys):
    config = Path(_features_config(tmp_path, features_root / "features.npz"))
    text = config.read_text().replace("optim:\n", "optim:\n  lr: 0.5\n", 1)
    lines = text.splitlines()
    first = lines.index("  lr: 0.5") + 1
    second = next(i for i, line in enumerate(lines) if line.startswith("  lr: ") and i + 1 != first) + 1
    config.write_text(text)
    code, _, err = run_cli(["train", "-c", str(config)], capsys)
    assert code == 2
    assert user_error(err).startswith(
        f"error: {config}:{max(first, second)}:3: YAML error: duplicate key 'lr' "
        f"(first given at line {min(first, second)})"
    )
    # merge keys exist to be overridden: that is not a duplicate
    anchors = tmp_path / "anchors.yaml"
    anchors.write_text("defaults: &d {lr: 0.1, eps: 1.0e-6}\noptim:\n  <<: *d\n  lr: 0.2\n")
    assert load_yaml(anchors)["optim"] == {"lr": 0.2, "eps": 1e-6}


@pytest.mark.parametrize("name", ["features", "labels", "split"])
def test_npz_pickled_array_hint_names_the_right_array(tmp_path, name):
    arrays = {
        "features": np.zeros((3, 2), np.float32),
        "labels": np.arange(3),
        "split": np.array(["a", "b", "c"]),
    }
    arrays[name] = (
        np.array([None, 1, "x"], dtype=object)
        if name != "features"
        else np.array([[None, 1.0], [1.0, 2.0], [3.0, 4.0]], dtype=object)
    )
    np.savez(tmp_path / "o.npz", **arrays)
    with pytest.raises(
        DataError, match=rf"o\.npz: cannot read array '{name}' .*object arrays are not supported"
    ):
        load_features(tmp_path / "o.npz")


def test_non_utf8_config_is_a_config_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"name: ok\noptim: {lr: 0.1}\nnote: caf\xe9\n")
    with pytest.raises(ConfigError, match=rf"^{path}:3: not valid UTF-8 text"):
        load_yaml(path)


# ------------------------------------------------------------------------------------------------ 8. fuzzing


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
AGES = RankSpace(62, offset=16)
NAMES = RankSpace(4, names=["young", "adult", "middle", "old"], offset=1)

text_lines = st.lists(
    st.one_of(
        st.text(max_size=30),
        st.sampled_from(
            [
                "a.png 3",
                "b.jpg old",
                "c.png 1.0",
                "\ufeffd.png 2",
                "e.png\t4\r",
                "# x",
                "f.png",
                "",
                "g.png,3",
                '"h,1.png",2',
                "path,label",
                "x,y,z",
                '"unterminated',
                "i.png 1e9",
            ]
        ),
    ),
    max_size=12,
)


@FUZZ
@given(lines=text_lines, ending=st.sampled_from(["\n", "\r\n", "\r"]), raw=st.binary(max_size=40))
def test_fuzz_list_csv_and_inputs_parsers_raise_only_data_errors(tmp_path, lines, ending, raw):
    for content in ((ending.join(lines)).encode("utf-8", "surrogatepass"), raw):
        for name, parse in (
            ("l.txt", lambda p: read_list_file(p, "", NAMES)),
            ("c.csv", lambda p: read_csv_samples(p, "", AGES)),
            (
                "s.csv",
                lambda p: read_csv_samples(
                    p,
                    "",
                    NAMES,
                    path_column="path",
                    label_column="label",
                    split_column="split",
                    split="val",
                    group_column="group",
                ),
            ),
            ("i.txt", read_inputs),
            ("i.csv", read_inputs),
        ):
            path = tmp_path / name
            path.write_bytes(content)
            try:
                parse(path)
            except DataError as err:
                assert name in str(err)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=10),
    st.sampled_from(["1e-4", ".inf", "true", "yes", "~", "radam", "16-mixed"]),
)
CONFIG_KEYS = [
    "name",
    "output_dir",
    "model",
    "data",
    "optim",
    "loss",
    "trainer",
    "base",
    "lr",
    "num_ranks",
    "arch",
    "image",
    "kind",
    "clip",
    "custom",
    "prompts",
    "format",
    "train",
    "columns",
    "few_shot",
    "mean",
    "std",
    "betas",
    "scheduler",
    "milestones",
    "max_epochs",
    "devices",
    "precision",
    "loggers",
    "temperature",
    "label_shift",
    "scale",
    "shots",
    "batch_size",
    "momentum",
    "seed",
    "<<",
]
config_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(CONFIG_KEYS) | st.text(max_size=6), inner, max_size=5),
    ),
    max_leaves=20,
)


@FUZZ
@given(
    data=st.dictionaries(st.sampled_from(CONFIG_KEYS), config_values, max_size=6),
    overrides=st.lists(
        st.builds(
            "{}={}".format,
            st.sampled_from(
                ["optim.lr", "loss.temperature", "data.mean", "trainer.devices", "model.image", "a..b", ""]
            ),
            st.text(max_size=12)
            | st.sampled_from([".nan", "[1, 2", "{x: 1, x: 2}", "!!python/object:os.system"]),
        ),
        max_size=3,
    ),
    raw=st.binary(max_size=60),
)
def test_fuzz_config_loader_gives_a_config_or_a_config_error(tmp_path, data, overrides, raw):
    path = tmp_path / "c.yaml"
    for content in (yaml.safe_dump(data, allow_unicode=True).encode("utf-8"), raw):
        path.write_bytes(content)
        try:
            cfg = load_run_config([path], overrides)
        except ConfigError:
            continue
        assert isinstance(cfg, RunConfig)
        assert to_dict(cfg)  # a loaded config always serialises back


@pytest.fixture(scope="module")
def sealed_features_export(tmp_path_factory) -> tuple[Path, dict]:
    torch.manual_seed(0)
    cfg = ModelConfig(
        arch="cosine", num_ranks=4, embed_dim=6, image=ImageTowerConfig(kind="features", input_dim=10)
    )
    folder = tmp_path_factory.mktemp("fuzz-export")
    path = export_head(build_model(cfg).eval(), cfg, folder / "f.safetensors", rank_values=[16, 17, 18, 19])
    return path, json.loads(path.with_suffix(".json").read_text())


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _paths(value, prefix=()):
    """Every (path, value) inside a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


@FUZZ
@given(
    data=st.data(),
    replacement=json_values,
    drop=st.booleans(),
    seal=st.booleans(),
    raw=st.binary(max_size=80),
)
def test_fuzz_export_sidecar_reader_loads_or_raises_export_error(
    sealed_features_export, tmp_path, data, replacement, drop, seal, raw
):
    source, meta = sealed_features_export
    weights = tmp_path / "f.safetensors"
    weights.write_bytes(source.read_bytes())
    paths = [p for p in _paths(meta) if p]
    where = data.draw(st.sampled_from(paths))
    edited = json.loads(json.dumps(meta))
    target = edited
    for part in where[:-1]:
        target = target[part]
    if drop and isinstance(target, dict):
        del target[where[-1]]
    else:
        target[where[-1]] = replacement
    for content in (json.dumps(reseal(edited) if seal else edited).encode(), raw):
        weights.with_suffix(".json").write_bytes(content)
        try:
            read_export_metadata(weights)
            model = load_export(weights)
        except ExportError as err:
            assert "f.json" in str(err) or "f.safetensors" in str(err)
            continue
        assert isinstance(model, ExportedModel)
        with torch.no_grad():
            assert model(torch.randn(2, 10)).shape == (2, 4)
