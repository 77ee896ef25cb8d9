"""The baseline and ablation configs: every YAML under configs/ loads; each differs from the setting it ablates
only where it should; a few build with tiny towers; every command in docs/paper-rows.md parses and plans."""

from __future__ import annotations

import json
import re
import shlex
import warnings

import pytest
import torch

from ordinalclip.app import cli
from ordinalclip.config import RunConfig, load_run_config
from ordinalclip.config.typed import ConfigDeprecationWarning, to_dict
from ordinalclip.data import ADIENCE_GROUPS, HCI_DECADES
from ordinalclip.engine.optim import apply_freezing
from ordinalclip.modeling import build_model
from tests.helpers import REPO_ROOT, tiny_clip_custom

ROOT = REPO_ROOT
CONFIGS = ROOT / "configs"
DATASETS = {"morph": 101, "adience": len(ADIENCE_GROUPS), "aesthetics": 5, "hci": len(HCI_DECADES)}
TINY_CLIP = [
    "model.clip.name=null",
    "model.clip.pretrained=null",
    f"model.clip.custom={json.dumps(tiny_clip_custom())}",
]
TINY_IMAGE = ["model.image.kind=clip", "model.image.weights=null"]  # the tiny CLIP's 32x32 ViT, not a VGG-16
# the reference's eight MORPH contexts (configs/.../init-context-morph-additonal), 0-0 being the default
CONTEXTS = {
    "0_1": "the age of the person is",
    "1_0": "age estimation: the age of the person in the portrait is",
    "1_1": "the age of the person in the portrait is",
    "2_0": "age estimation: the age is",
    "2_1": "the age is",
    "3_0": "age estimation: the age of the face is",
    "3_1": "the age of the face is",
}


def load(rel: str, *overrides: str) -> RunConfig:
    return load_run_config([CONFIGS / rel], overrides)


def _without(cfg: RunConfig, *keys: str) -> dict:
    """The config as a dict with the dotted ``keys`` (and the run name) removed."""
    d = to_dict(cfg)
    for key in ("name", *keys):
        *parents, last = key.split(".")
        node = d
        for p in parents:
            node = node[p]
        node.pop(last)
    return d


def test_every_yaml_under_configs_loads():
    paths = sorted(CONFIGS.rglob("*.yaml"))
    assert len(paths) >= 60
    names = {}
    for path in paths:
        atom = path.parent.name in ("heads", "names")
        with warnings.catch_warnings():
            # a shipped config uses no deprecated spelling (a names atom alone reads as the default model)
            warnings.simplefilter("ignore" if atom else "error", ConfigDeprecationWarning)
            cfg = load_run_config([path])  # an unknown key or a wrong type raises with the file's name
        if not atom:
            names.setdefault(cfg.name, []).append(path.name)
    # runs of different configs never share a name (atoms excepted)
    assert {n: p for n, p in names.items() if len(p) > 1} == {}


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_zero_shot_and_coop_have_one_name_per_rank(dataset):
    zero = load(f"baselines/{dataset}_zeroshot.yaml")
    coop = load(f"baselines/{dataset}_coop.yaml")
    c = DATASETS[dataset]
    assert zero.model.num_ranks == coop.model.num_ranks == c
    assert (
        zero.model.arch == "zeroshot" and zero.model.image.kind == "clip" and zero.model.image.weights is None
    )
    assert len(zero.model.prompts.rank_names) == c and len(set(zero.model.prompts.rank_names)) == c
    assert len(zero.model.zero_shot_templates) >= 3
    assert all(t.count("{}") == 1 for t in zero.model.zero_shot_templates)
    assert coop.model.prompts.learner == "plain" and coop.model.prompts.rank_names_file is None
    assert coop.model.prompts.rank_names == zero.model.prompts.rank_names
    if dataset == "morph":
        assert zero.model.prompts.rank_names == [str(age) for age in range(101)]


@pytest.mark.parametrize("dataset", list(DATASETS))
@pytest.mark.parametrize(
    "head, arch", [("cosine", "cosine"), ("linear", "linear"), ("coral", "coral"), ("corn", "corn")]
)
def test_head_baselines_change_only_the_head(dataset, head, arch):
    rel = (
        "morph_cosine.yaml" if (dataset, head) == ("morph", "cosine") else f"baselines/{dataset}_{head}.yaml"
    )
    cfg, base = load(rel), load(f"{dataset}.yaml")
    assert cfg.model.arch == arch and cfg.model.embed_dim == 1024
    assert cfg.data == base.data and cfg.trainer == base.trainer
    assert cfg.model.image == base.model.image  # same image tower as the OrdinalCLIP run it is compared with
    assert cfg.loss.kl_weight == (0.0 if head == "linear" else 1.0)
    skip = ["model.arch", "model.embed_dim"] + (
        ["model.logit_scale", "optim.lr_prototypes"]
        if head == "cosine"
        else ["loss.kl_weight"]
        if head == "linear"
        else []
    )
    assert _without(cfg, *skip) == _without(base, *skip)


def test_adience_sord_row_is_the_linear_head_with_sord_labels():
    sord, linear = load("baselines/adience_sord.yaml"), load("baselines/adience_linear.yaml")
    assert sord.loss.name == "sord" and sord.model.arch == "linear" and sord.model.num_ranks == 8
    assert _without(sord, "loss") == _without(linear, "loss")
    # the module trains it with SORD: cross-entropy to softmax(-|k - y|) targets
    from ordinalclip.engine.module import OrdinalModule
    from ordinalclip.losses import soft_label_loss, sord_targets

    tiny = load("baselines/adience_sord.yaml", *TINY_CLIP, *TINY_IMAGE)
    module = OrdinalModule(build_model(tiny.model), tiny)
    module.log = module.log_dict = lambda *a, **k: None
    x, y = torch.randn(3, 3, 32, 32), torch.tensor([0, 4, 7])
    loss = module.training_step((x, y), 0)
    with torch.no_grad():
        want = soft_label_loss(module(x), y, sord_targets(8))
    assert torch.allclose(loss.detach(), want, atol=1e-6)


@pytest.mark.parametrize(
    "column, base", [("ordinalclip", "morph.yaml"), ("coop", "baselines/morph_coop.yaml")]
)
@pytest.mark.parametrize(
    "row, tune_rank, tune_ctx, init_ctx",
    [
        ("tune_rank", True, False, False),
        ("tune_ctx", False, True, False),
        ("tune_rank_ctx", True, True, False),
        ("tune_rank_init_ctx", True, False, True),
        ("tune_ctx_init_ctx", False, True, True),
    ],
)
def test_tune_init_rows(column, base, row, tune_rank, tune_ctx, init_ctx):
    cfg, ref = load(f"ablations/tune_init/{column}_{row}.yaml"), load(base)
    assert (cfg.optim.freeze_ranks, cfg.optim.freeze_context) == (not tune_rank, not tune_ctx)
    assert cfg.model.prompts.context_init == (ref.model.prompts.context_init if init_ctx else None)
    assert _without(
        cfg, "optim.freeze_ranks", "optim.freeze_context", "model.prompts.context_init"
    ) == _without(ref, "optim.freeze_ranks", "optim.freeze_context", "model.prompts.context_init")
    # built with tiny towers, exactly the prompt parts marked "tune" train (the image tower always does)
    tiny = load(f"ablations/tune_init/{column}_{row}.yaml", *TINY_CLIP, *TINY_IMAGE)
    trainable = set(apply_freezing(build_model(tiny.model), tiny.optim))
    assert trainable == {"image"} | ({"ranks"} if tune_rank else set()) | ({"context"} if tune_ctx else set())


def test_alternative_contexts_change_only_the_context():
    morph = load("morph.yaml")
    found = {
        p.stem.removeprefix("context_"): load(f"ablations/contexts/{p.name}")
        for p in sorted((CONFIGS / "ablations/contexts").glob("*.yaml"))
    }
    assert {k: c.model.prompts.context_init for k, c in found.items()} == CONTEXTS
    for cfg in found.values():
        assert _without(cfg, "model.prompts.context_init") == _without(morph, "model.prompts.context_init")


def test_interpolation_and_image_tower_ablations():
    morph = load("morph.yaml")
    inv = load("ablations/morph_inv_prop.yaml")
    assert inv.model.prompts.interpolation == "inv_prop"
    assert _without(inv, "model.prompts.interpolation") == _without(morph, "model.prompts.interpolation")
    towers = {
        p.stem: load(f"ablations/image_towers/{p.name}")
        for p in (CONFIGS / "ablations/image_towers").glob("*")
    }
    got = {
        k: (c.model.image.kind, c.model.clip.name if c.model.image.kind == "clip" else c.model.image.weights)
        for k, c in towers.items()
    }
    assert got == {
        "clip_rn50": ("clip", "RN50"),
        "clip_vit_b16": ("clip", "ViT-B-16"),
        "clip_vit_b32": ("clip", "ViT-B-32"),
        "imagenet_vgg16": ("vgg16", ".cache/vgg/vgg16_imagenet.pt"),
        "imagenet_resnet50": ("resnet50", ".cache/resnet/resnet50_imagenet.pt"),
    }
    for cfg in towers.values():
        assert (
            cfg.model.prompts == morph.model.prompts and cfg.optim == morph.optim and cfg.data == morph.data
        )


def test_baselines_build_with_tiny_towers():
    images = torch.randn(2, 3, 32, 32)
    zero = build_model(load("baselines/morph_zeroshot.yaml", *TINY_CLIP).model)
    assert zero(images).shape == (2, 101)
    assert not any(p.requires_grad for n, p in zero.named_parameters() if not n.startswith("image_tower"))
    coop = build_model(load("baselines/adience_coop.yaml", *TINY_CLIP, *TINY_IMAGE).model)
    assert coop(images).shape == (2, 8) and coop.prototypes().shape == (8, 32)
    features = ["model.image.kind=features", "model.image.input_dim=6"]
    for head, width in (("linear", 5), ("coral", 4), ("corn", 4), ("cosine", 5)):
        model = build_model(load(f"baselines/hci_{head}.yaml", *features).model)
        assert model(torch.randn(3, 6)).shape == (3, width), head


# ------------------------------------------------------------------------------------------ docs/paper-rows.md


def _doc_commands() -> list[str]:
    text = (ROOT / "docs" / "paper-rows.md").read_text(encoding="utf-8")
    commands = re.findall(r"`(ordinalclip (?:train|sweep) [^`]+)`", text)
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        commands += [line.strip() for line in joined.splitlines() if line.strip().startswith("ordinalclip ")]
    return commands


def test_every_command_in_paper_rows_plans(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(ROOT)
    commands = _doc_commands()
    assert len(commands) >= 30
    swept = 0
    for command in commands:
        argv = shlex.split(command)[1:]
        args = cli.build_parser().parse_args(argv)  # exits on an unknown option
        if args.command == "train":
            load_run_config(args.config, args.overrides)  # files exist, keys and values are valid
        elif args.command == "sweep":
            # --dry-run resolves every cell's config without touching data; --out goes to a scratch folder
            code = cli.main([*argv, "--dry-run", "--out", str(tmp_path / "dry")])
            assert code == 0, (command, capsys.readouterr().err)
            swept += 1
    assert swept >= 10
