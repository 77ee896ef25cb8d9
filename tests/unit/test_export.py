"""Exports: identical logits after a round trip, no text tower, and clear errors for tampered or foreign files."""

from __future__ import annotations

import hashlib
import json
import math

import open_clip
import pytest
import safetensors.torch
import torch
from safetensors import safe_open

import ordinalclip.modeling.backbones.clip as clip_backbone
import ordinalclip.modeling.build as model_build
from ordinalclip.exports.load import ExportedModel, load_export
from ordinalclip.exports.write import export_head
from ordinalclip.modeling import (
    ClipConfig,
    ImageTowerConfig,
    LinearClassifier,
    ModelConfig,
    PromptConfig,
    build_model,
)
from ordinalclip.modeling.backbones.clip import clip_vision_spec
from ordinalclip.runtime.sidecar import ExportError
from tests.helpers import (
    PREP,
    reseal,
    run_config,
    save_checkpoint,
    tiny_clip_custom,
    tiny_features_cosine_config,
    tiny_resnet_cosine_config,
)


def tiny_config(num_ranks: int = 5, **clip) -> ModelConfig:
    clip_cfg = ClipConfig(**clip) if clip else ClipConfig(name=None, custom=tiny_clip_custom())
    return ModelConfig(
        clip=clip_cfg,
        num_ranks=num_ranks,
        image=ImageTowerConfig(kind="clip"),
        prompts=PromptConfig(num_base_ranks=2, context_init=None, num_context_tokens=3),
    )


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    cfg = tiny_config()
    return build_model(cfg).eval(), cfg


@pytest.fixture
def exported(tiny_model, tmp_path):
    model, cfg = tiny_model
    path = export_head(
        model,
        cfg,
        tmp_path / "m.safetensors",
        rank_values=[16.0, 17.0, 18.0, 19.0, 20.0],
        rank_names=["a", "b", "c", "d", "e"],
        preprocess=PREP,
        extra={"mae": 1.5},
    )
    return path


def _images(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _edit_sidecar(path, edit) -> None:
    """Edit the sidecar and reseal it: a consistent pair that still disagrees, for the checks past the
    integrity check (an unsealed edit is refused by it, see tests/reliability/test_robustness.py)."""
    sidecar = path.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    edit(meta)
    sidecar.write_text(json.dumps(reseal(meta)))


def test_round_trip_gives_identical_logits(tiny_model, exported):
    model, cfg = tiny_model
    loaded = load_export(exported)
    assert isinstance(loaded, ExportedModel)
    x = _images()
    with torch.no_grad():
        expected_model = model(x)
        expected_head = model.to_head()(x)
        got = loaded(x)
    assert torch.equal(got, expected_head)
    assert torch.equal(got, expected_model)
    assert loaded.rank_values == [16.0, 17.0, 18.0, 19.0, 20.0] and loaded.rank_names == [
        "a",
        "b",
        "c",
        "d",
        "e",
    ]
    assert loaded.preprocess == PREP and loaded.model_config == cfg and loaded.takes_images
    # the JSON path of the pair loads the same model
    with torch.no_grad():
        assert torch.equal(load_export(exported.with_suffix(".json"))(x), got)


def test_sidecar_contents(tiny_model, exported):
    meta = json.loads(exported.with_suffix(".json").read_text())
    assert meta["format"] == "ordinalclip-export" and meta["format_version"] == 1
    assert meta["sha256"] == hashlib.sha256(exported.read_bytes()).hexdigest()
    assert meta["num_ranks"] == 5 and meta["embed_dim"] == 32
    assert meta["model"]["clip"]["custom"]["embed_dim"] == 32 and meta["extra"] == {"mae": 1.5}
    assert meta["ordinalclip_version"] and meta["created"]


def test_export_holds_no_text_tower(tiny_model, exported):
    model, _ = tiny_model
    with safe_open(str(exported), "pt") as fh:
        keys = set(fh.keys())
        scale = fh.get_tensor("log_logit_scale")
        protos = fh.get_tensor("prototypes")
    tower_keys = {f"image_tower.{k}" for k in model.image_tower.state_dict()}
    assert keys == tower_keys | {"prototypes", "log_logit_scale"}
    assert not any(
        word in k for k in keys for word in ("token_embedding", "text_projection", "ln_final", "prompt")
    )
    # prototypes are the raw (unnormalised) text features; the scale is log s
    with torch.no_grad():
        assert torch.equal(protos, model.text_features())
    assert scale.shape == () and float(scale) == float(model.logit_scale.value)


def test_loading_builds_no_text_tower_and_reads_no_clip_weights(exported, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the text tower / full CLIP must not be built for an export")

    monkeypatch.setattr(model_build, "build_text_tower", refuse)
    monkeypatch.setattr(clip_backbone, "load_clip", refuse)  # build_model imports it from there on use
    monkeypatch.setattr(open_clip, "CLIP", refuse)
    monkeypatch.setattr(torch, "load", refuse)  # and no pickle anywhere
    assert load_export(exported).num_ranks == 5


def test_tampered_weights_fail_the_checksum(exported):
    data = bytearray(exported.read_bytes())
    data[-10] ^= 0xFF
    exported.write_bytes(bytes(data))
    with pytest.raises(ExportError, match=r"sha256 \w+ does not match \w+ recorded in .*/m\.json"):
        load_export(exported)


def test_other_format_version_is_a_clear_error(exported):
    _edit_sidecar(exported, lambda m: m.update(format_version=7, ordinalclip_version="9.0"))
    with pytest.raises(
        ExportError,
        match=r"written by format version 7 \(ordinalclip 9\.0\), this ordinalclip "
        r"\(.*\) reads format version 1",
    ):
        load_export(exported)


def test_not_an_export(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ExportError, match="not an ordinalclip export"):
        load_export(tmp_path / "x.safetensors")
    with pytest.raises(ExportError, match="sidecar not found"):
        load_export(tmp_path / "y.safetensors")


def test_prototype_width_mismatch_is_a_clear_error(exported):
    def narrow(meta):
        meta["model"]["clip"]["custom"]["embed_dim"] = 16

    _edit_sidecar(exported, narrow)
    with pytest.raises(ExportError, match=r"prototypes are \(5, 32\) but the image tower .* outputs 16-d"):
        load_export(exported)


def test_rank_count_mismatch_is_a_clear_error(exported):
    def six(meta):
        meta.update(
            num_ranks=6, rank_values=[*meta["rank_values"], 21.0], rank_names=[*meta["rank_names"], "f"]
        )
        meta["model"]["num_ranks"] = 6

    _edit_sidecar(exported, six)
    with pytest.raises(ExportError, match=r"prototypes are \(5, 32\) but the sidecar says C = 6"):
        load_export(exported)


def test_tower_architecture_mismatch_lists_keys(exported):
    def deeper(meta):
        meta["model"]["clip"]["custom"]["vision_cfg"]["layers"] = 3

    _edit_sidecar(exported, deeper)
    with pytest.raises(
        ExportError, match=r"do not fit the architecture.*\d+ missing \(e\.g\. \['visual\.transformer"
    ):
        load_export(exported)


def test_unknown_config_key_is_a_clear_error(exported):
    _edit_sidecar(exported, lambda m: m["model"].update(arhc="cosine"))
    with pytest.raises(
        ExportError,
        match=r"m\.json: entry 'model': the stored model config does not fit.*'model\.arhc'.*'model\.arch'",
    ):
        load_export(exported)


def test_failed_write_keeps_the_previous_export(tiny_model, exported, monkeypatch):
    model, cfg = tiny_model
    before = {p.name: p.read_bytes() for p in exported.parent.iterdir()}
    assert set(before) == {"m.safetensors", "m.json"}

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:  # half a file, then the "crash"
            fh.write(b"\x00" * 100)
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        export_head(model, cfg, exported, rank_values=None, preprocess=PREP)
    after = {p.name: p.read_bytes() for p in exported.parent.iterdir()}
    assert after == before  # intact, and no temporary files left behind
    assert load_export(exported).rank_values[0] == 16.0


def test_openai_format_clip_round_trips(tiny_clip_file, tmp_path):
    """Architecture inferred from an OpenAI file (name: null): rebuilt from the exported tensors alone."""
    cfg = tiny_config(name=None, pretrained=str(tiny_clip_file))
    model = build_model(cfg).eval()
    path = export_head(model, cfg, tmp_path / "o.safetensors", preprocess=PREP)
    tiny_clip_file.rename(tmp_path / "moved.pt")  # the export must not need the original CLIP file
    try:
        x = _images(2)
        with torch.no_grad():
            assert torch.equal(load_export(path)(x), model(x))
    finally:
        (tmp_path / "moved.pt").rename(tiny_clip_file)


def test_openai_format_resnet_cosine_head_round_trips(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_resnet_cosine_config(tmp_path)
    model = build_model(cfg).eval()
    path = export_head(model, cfg, tmp_path / "rn.safetensors", preprocess=PREP)
    x = _images(2)
    with torch.no_grad():
        assert torch.equal(load_export(path)(x), model(x))


@pytest.mark.parametrize(
    "name,quick", [("RN50", None), ("ViT-B-16", None), ("ViT-B-32", True), ("RN50-quickgelu", None)]
)
def test_named_architectures_rebuild_as_open_clip_builds_them(name, quick):
    from open_clip.model import _build_vision_tower

    with torch.device("meta"):  # shapes and modules only: no memory, no init cost
        full = open_clip.create_model(name, pretrained=None, device="meta", force_quick_gelu=bool(quick))
        width, vision_cfg, quick_gelu = clip_vision_spec(ClipConfig(name=name, quick_gelu=quick), {})
        visual = _build_vision_tower(width, vision_cfg, quick_gelu, None)
    assert repr(visual) == repr(full.visual)  # same modules, activations included
    assert {k: v.shape for k, v in visual.state_dict().items()} == {
        k: v.shape for k, v in full.visual.state_dict().items()
    }


def test_features_tower_cosine_export(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_features_cosine_config()
    model = build_model(cfg).eval()
    path = export_head(model, cfg, tmp_path / "f.safetensors", rank_values=[1, 2, 3, 4], preprocess={})
    loaded = load_export(path)
    feats = torch.randn(3, 10)
    with torch.no_grad():
        assert torch.equal(loaded(feats), model(feats))
    assert not loaded.takes_images
    assert float(loaded.logit_scale()) == pytest.approx(100.0) and math.isclose(
        float(loaded.logit_scale.value), math.log(100.0), rel_tol=1e-6
    )


def test_export_head_checks_its_arguments(tiny_model, tmp_path):
    model, cfg = tiny_model
    out = tmp_path / "m.safetensors"
    with pytest.raises(ExportError, match="3 rank values for 5 ranks"):
        export_head(model, cfg, out, rank_values=[1, 2, 3], preprocess=PREP)
    with pytest.raises(ExportError, match="preprocess is missing"):
        export_head(model, cfg, out, preprocess={"size": 32})
    with pytest.raises(ExportError, match=r"\.safetensors file"):
        export_head(model, cfg, tmp_path / "m.pt", preprocess=PREP)
    with pytest.raises(ExportError, match="num_ranks is 7"):
        export_head(model, tiny_config(num_ranks=7), out, preprocess=PREP)
    linear = LinearClassifier(model.image_tower, 5)
    with pytest.raises(ExportError, match="only prototype models"):
        export_head(linear, cfg, out, preprocess=PREP)
    assert not any(tmp_path.iterdir())


def test_export_model_from_a_checkpoint(tiny_model, tmp_path):
    from ordinalclip.exports.write import export_model

    model, cfg = tiny_model
    ckpt = save_checkpoint(model, run_config(cfg), tmp_path / "last.ckpt")
    path = export_model(ckpt, tmp_path / "exp" / "model.safetensors")
    loaded = load_export(path)
    x = _images(3)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert loaded.rank_values == [16.0, 17.0, 18.0, 19.0, 20.0] and loaded.rank_names is None
    assert loaded.preprocess == PREP  # the run's eval transform: data.image_size / resize / mean / std
    assert loaded.metadata["extra"]["checkpoint"] == str(ckpt)


# ------------------------------------------------------------------------------ the headline prediction


def _probs(model, x):
    with torch.no_grad():
        return torch.softmax(model(x), dim=1)


def test_the_sidecar_carries_the_headline_prediction(tiny_model, exported, tmp_path):
    from ordinalclip.runtime.predictor import Predictor

    model, cfg = tiny_model
    assert json.loads(exported.with_suffix(".json").read_text())["prediction"] == "expectation"
    x = _images(6)
    probs = _probs(model, x)
    got = Predictor(exported).predict_batch(x.numpy())
    nearest = torch.round(probs @ torch.arange(5.0)).long()  # the expectation's nearest rank
    assert got["rank"].tolist() == nearest.tolist()
    assert got["value"].tolist() == pytest.approx((probs @ torch.arange(16.0, 21.0)).tolist(), abs=1e-4)
    argmax = export_head(model, cfg, tmp_path / "a.safetensors", preprocess=PREP, prediction="argmax")
    predictor = Predictor(argmax)
    assert predictor.prediction == "argmax"
    assert predictor.predict_batch(x.numpy())["rank"].tolist() == probs.argmax(1).tolist()
    assert Predictor(argmax, prediction="expectation").prediction == "expectation"  # an override
    with pytest.raises(ExportError, match="unknown headline prediction 'median'"):
        export_head(model, cfg, tmp_path / "b.safetensors", preprocess=PREP, prediction="median")


def test_a_sidecar_without_a_prediction_entry_leads_with_the_argmax(tiny_model, exported):
    from ordinalclip.runtime.predictor import Predictor

    model, _ = tiny_model
    _edit_sidecar(exported, lambda meta: meta.pop("prediction"))  # as written before the entry existed
    predictor = Predictor(exported)
    assert predictor.prediction == "argmax"
    x = _images(6)
    rows = predictor.rows(predictor.predict_arrays(x.numpy()))
    top = _probs(model, x).argmax(1).tolist()
    assert [r["rank"] for r in rows] == [r["pred_rank"] for r in rows] == top
    assert [r["value"] for r in rows] == [16.0 + r for r in top]
    assert [r["name"] for r in rows] == ["abcde"[r] for r in top]


def test_a_wrong_prediction_entry_names_it(exported):
    _edit_sidecar(exported, lambda meta: meta.update(prediction="median"))
    with pytest.raises(ExportError, match=r"entry 'prediction': expected one of \['expectation', 'argmax'\]"):
        load_export(exported)


@pytest.mark.parametrize(("trainer", "want"), [({}, "expectation"), ({"monitor": "val_mae_max"}, "argmax")])
def test_a_checkpoint_and_its_export_lead_with_the_runs_headline(tiny_model, tmp_path, trainer, want):
    from ordinalclip.config import TrainerConfig
    from ordinalclip.exports.write import export_model
    from ordinalclip.runtime.predictor import Predictor

    model, cfg = tiny_model
    run_cfg = run_config(cfg)
    run_cfg.trainer = TrainerConfig(**trainer)
    run_cfg.__post_init__()  # resolves trainer.prediction as loading a config does
    ckpt = save_checkpoint(model, run_cfg, tmp_path / "last.ckpt")
    path = export_model(ckpt, tmp_path / "exp" / "model.safetensors")
    assert json.loads(path.with_suffix(".json").read_text())["prediction"] == want
    assert Predictor(ckpt).prediction == Predictor(path).prediction == want
