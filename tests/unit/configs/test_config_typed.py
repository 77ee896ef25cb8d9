"""Tests for the generic typed-config machinery (ordinalclip.config.typed)."""

from __future__ import annotations  # on purpose: annotations are strings and must still resolve

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest
import yaml

from ordinalclip.config import typed
from ordinalclip.config.typed import (
    ConfigError,
    apply_overrides,
    from_dict,
    load_config,
    load_yaml,
    merge,
    parse_override,
    save_yaml,
    to_dict,
)


@dataclass
class Optim:
    lr: float
    momentum: float = 0.9
    nesterov: bool = False
    betas: tuple[float, ...] = (0.9, 0.999)


@dataclass
class Sched:
    kind: Literal["cosine", "step", "none"] = "cosine"
    milestones: list[int] = field(default_factory=lambda: [30, 60])
    warmup: Optional[int] = None  # noqa: UP045 - typing.Optional spelling on purpose (Union origin)


@dataclass
class Model:
    name: str = "RN50"
    num_ranks: int = 101
    ctx_init: str | None = None
    checkpoint: Path | None = None
    shape: tuple[int, int] = (224, 224)


@dataclass
class Run:
    optim: Optim
    model: Model = field(default_factory=Model)
    sched: Sched | None = None
    tags: dict[str, int] = field(default_factory=dict)
    out_dir: Path = Path("runs")
    seed: int = 0


FULL = {
    "optim": {"lr": 1e-3, "momentum": 0.5, "nesterov": True, "betas": [0.8, 0.9]},
    "model": {
        "name": "ViT-B/16",
        "num_ranks": 8,
        "ctx_init": "a photo of",
        "checkpoint": "w/m.pt",
        "shape": [32, 16],
    },
    "sched": {"kind": "step", "milestones": [1, 2, 3], "warmup": 5},
    "tags": {"a": 1, "b": 2},
    "out_dir": "runs/x",
    "seed": 7,
}


def message(exc: pytest.ExceptionInfo[ConfigError]) -> str:
    return str(exc.value)


# ------------------------------------------------------------------------------------------- from_dict


def test_from_dict_builds_nested_instance_with_converted_types() -> None:
    run = from_dict(Run, FULL)
    assert run == Run(
        optim=Optim(lr=1e-3, momentum=0.5, nesterov=True, betas=(0.8, 0.9)),
        model=Model("ViT-B/16", 8, "a photo of", Path("w/m.pt"), (32, 16)),
        sched=Sched("step", [1, 2, 3], 5),
        tags={"a": 1, "b": 2},
        out_dir=Path("runs/x"),
        seed=7,
    )
    assert isinstance(run.model.checkpoint, Path) and isinstance(run.optim.betas, tuple)


def test_round_trip_through_to_dict_is_plain_and_lossless() -> None:
    run = from_dict(Run, FULL)
    plain = to_dict(run)
    assert plain == FULL  # tuples -> lists, Paths -> str, key order kept
    assert list(plain) == ["optim", "model", "sched", "tags", "out_dir", "seed"]
    assert from_dict(Run, plain) == run
    assert yaml.safe_load(yaml.safe_dump(plain)) == plain  # only YAML-safe types


def test_missing_fields_take_defaults_and_factories_are_fresh() -> None:
    a = from_dict(Run, {"optim": {"lr": 1}})
    b = from_dict(Run, {"optim": {"lr": 1}})
    assert a.optim == Optim(lr=1.0) and type(a.optim.lr) is float  # int accepted for float
    assert a.model == Model() and a.sched is None and a.out_dir == Path("runs") and a.seed == 0
    a.tags["x"] = 1
    assert b.tags == {}


def test_missing_required_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"missing required key 'optim' \(expected a mapping for Optim\)"):
        from_dict(Run, {})
    with pytest.raises(ConfigError, match=r"missing required key 'optim\.lr' \(expected float\)") as e:
        from_dict(Run, {"optim": {"momentum": 0.1}})
    assert isinstance(e.value, ValueError)


def test_unknown_key_suggests_closest_with_full_dotted_path() -> None:
    with pytest.raises(ConfigError) as e:
        from_dict(Run, {"optim": {"lrr": 0.1}})
    assert message(e) == "unknown key 'optim.lrr' (did you mean 'optim.lr'?)"
    with pytest.raises(ConfigError) as e:
        from_dict(Run, {"optim": {"lr": 1}, "modle": {}})
    assert message(e) == "unknown key 'modle' (did you mean 'model'?)"


def test_unknown_key_at_wrong_level_points_to_nested_key() -> None:
    with pytest.raises(ConfigError) as e:
        from_dict(Run, {"optim": {"lr": 1}, "num_ranks": 5})
    assert message(e) == "unknown key 'num_ranks' (did you mean 'model.num_ranks'?)"


def test_unknown_key_without_close_match_lists_valid_keys() -> None:
    with pytest.raises(ConfigError) as e:
        from_dict(Run, {"optim": {"lr": 1, "zzz": 0}})
    assert message(e) == "unknown key 'optim.zzz'; valid keys for Optim: lr, momentum, nesterov, betas"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"optim": {"lr": "abc"}}, "optim.lr: expected float, got 'abc' (str)"),
        ({"optim": {"lr": True}}, "optim.lr: expected float, got True (bool)"),
        ({"optim": {"lr": 1, "nesterov": 1}}, "optim.nesterov: expected bool, got 1 (int)"),
        ({"optim": {"lr": 1, "nesterov": "yes"}}, "optim.nesterov: expected bool, got 'yes' (str)"),
        ({"optim": {"lr": 1}, "seed": 1.5}, "seed: expected int, got 1.5 (float)"),
        ({"optim": {"lr": 1}, "seed": False}, "seed: expected int, got False (bool)"),
        ({"optim": {"lr": 1}, "model": {"name": 3}}, "model.name: expected str, got 3 (int)"),
        ({"optim": {"lr": 1}, "model": {"ctx_init": 3}}, "model.ctx_init: expected str, got 3 (int)"),
        ({"optim": {"lr": 1}, "out_dir": 3}, "out_dir: expected a path (str), got 3 (int)"),
        ({"optim": 0.1}, "optim: expected a mapping for Optim, got 0.1 (float)"),
        ({"optim": {"lr": 1}, "sched": [1]}, "sched: expected a mapping for Sched, got [1] (list)"),
        ({"optim": {"lr": 1, "betas": 0.9}}, "optim.betas: expected tuple[float, ...], got 0.9 (float)"),
        ({"optim": {"lr": 1, "betas": [0.9, "x"]}}, "optim.betas[1]: expected float, got 'x' (str)"),
        (
            {"optim": {"lr": 1}, "sched": {"milestones": [1, "2"]}},
            "sched.milestones[1]: expected int, got '2' (str)",
        ),
        ({"optim": {"lr": 1}, "tags": {"a": "x"}}, "tags.a: expected int, got 'x' (str)"),
        ({"optim": {"lr": 1}, "tags": [1]}, "tags: expected dict[str, int], got [1] (list)"),
        (
            {"optim": {"lr": 1}, "model": {"shape": [1, 2, 3]}},
            "model.shape: expected tuple[int, int] (2 items), got [1, 2, 3] (list)",
        ),
        ({"optim": {"lr": None}}, "optim.lr: expected float, got None (NoneType)"),
    ],
)
def test_wrong_type_names_key_expected_type_and_value(data: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        from_dict(Run, data)
    assert message(e) == expected


def test_literal_accepts_allowed_values_and_lists_them_on_error() -> None:
    assert from_dict(Sched, {"kind": "none"}).kind == "none"
    with pytest.raises(ConfigError) as e:
        from_dict(Sched, {"kind": "cosin"})
    assert (
        message(e)
        == "kind: expected one of 'cosine', 'step', 'none', got 'cosin' (str) (did you mean 'cosine'?)"
    )
    with pytest.raises(ConfigError) as e:
        from_dict(Sched, {"kind": 3})
    assert message(e) == "kind: expected one of 'cosine', 'step', 'none', got 3 (int)"


def test_literal_compares_types_not_just_equality() -> None:
    @dataclass
    class L:
        flag: Literal[1, 2] = 1

    # Local class: its string annotations resolve against module globals, where Literal lives.
    assert from_dict(L, {"flag": 2}).flag == 2
    with pytest.raises(ConfigError, match=r"flag: expected one of 1, 2, got True \(bool\)"):
        from_dict(L, {"flag": True})
    with pytest.raises(ConfigError, match=r"got 1\.0 \(float\)"):
        from_dict(L, {"flag": 1.0})


def test_optional_accepts_none_and_value_in_both_spellings() -> None:
    assert from_dict(Sched, {"warmup": None}).warmup is None
    assert from_dict(Sched, {"warmup": 3}).warmup == 3
    assert from_dict(Model, {"checkpoint": None}).checkpoint is None
    assert from_dict(Run, {"optim": {"lr": 1}, "sched": None}).sched is None
    with pytest.raises(ConfigError) as e:
        from_dict(Sched, {"warmup": "3"})
    assert message(e) == "warmup: expected int, got '3' (str)"


def test_optional_nested_dataclass_keeps_inner_error() -> None:
    # Optional[Sched] must not hide the precise inner message behind a generic union mismatch.
    with pytest.raises(ConfigError) as e:
        from_dict(Run, {"optim": {"lr": 1}, "sched": {"kindd": "step"}})
    assert message(e) == "unknown key 'sched.kindd' (did you mean 'sched.kind'?)"


def test_general_union_tries_members_in_order() -> None:
    @dataclass
    class U:
        x: int | str = 0

    assert from_dict(U, {"x": 4}).x == 4 and from_dict(U, {"x": "a"}).x == "a"
    with pytest.raises(ConfigError) as e:
        from_dict(U, {"x": 1.5})
    assert message(e) == "x: expected int | str, got 1.5 (float)"


def test_path_prefix_and_non_mapping_root() -> None:
    with pytest.raises(ConfigError) as e:
        from_dict(Optim, {"lr": "x"}, path="train.optim")
    assert message(e) == "train.optim.lr: expected float, got 'x' (str)"
    with pytest.raises(ConfigError, match=r"<root>: expected a mapping for Optim, got \[\] \(list\)"):
        from_dict(Optim, [])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dataclass type"):
        from_dict(dict, {})


def test_to_dict_rejects_non_dataclass_and_unsupported_values() -> None:
    with pytest.raises(TypeError, match="dataclass instance"):
        to_dict({"a": 1})

    @dataclass
    class Bad:
        x: object = dataclasses.field(default_factory=object)

    with pytest.raises(TypeError, match=r"x: cannot store object in a YAML config"):
        to_dict(Bad())


def test_to_dict_skips_non_init_fields_so_round_trip_works() -> None:
    @dataclass
    class D:
        a: int = 1
        b: int = dataclasses.field(init=False, default=5)

    assert to_dict(D(a=2)) == {"a": 2}
    assert from_dict(D, to_dict(D(a=2))) == D(a=2)


# ------------------------------------------------------------------------------------ merge / overrides


def test_merge_is_deep_and_does_not_mutate_inputs() -> None:
    base = {"a": {"x": 1, "y": {"p": 1, "q": 2}}, "l": [1, 2], "s": 1}
    over = {"a": {"y": {"q": 3}, "z": 4}, "l": [9], "s": {"now": "dict"}}
    assert merge(base, over) == {"a": {"x": 1, "y": {"p": 1, "q": 3}, "z": 4}, "l": [9], "s": {"now": "dict"}}
    assert base == {"a": {"x": 1, "y": {"p": 1, "q": 2}}, "l": [1, 2], "s": 1}
    assert over == {"a": {"y": {"q": 3}, "z": 4}, "l": [9], "s": {"now": "dict"}}


@pytest.mark.parametrize(
    ("text", "path", "value"),
    [
        ("optim.lr=1e-4", ["optim", "lr"], 0.0001),
        ("optim.lr=-2.5E+3", ["optim", "lr"], -2500.0),
        ("optim.lr=3", ["optim", "lr"], 3),
        ("a=true", ["a"], True),
        ("a=False", ["a"], False),
        ("a=yes", ["a"], "yes"),  # YAML 1.2: only true/false are booleans
        ("a=off", ["a"], "off"),
        ("a.b=[1, 2]", ["a", "b"], [1, 2]),
        ("a.b={x: 1}", ["a", "b"], {"x": 1}),
        ("a=null", ["a"], None),
        ("a=~", ["a"], None),
        ("model.name=ViT-B/16", ["model", "name"], "ViT-B/16"),
        ("a='1e-4'", ["a"], "1e-4"),
        ("a=x=y", ["a"], "x=y"),  # only the first '=' splits
        (" a.b = 2 ", ["a", "b"], 2),
        ("a=", ["a"], ""),
    ],
)
def test_parse_override(text: str, path: list[str], value: object) -> None:
    got_path, got_value = parse_override(text)
    assert got_path == path
    assert got_value == value and type(got_value) is type(value)


@pytest.mark.parametrize("text", ["optim.lr", "=3", "a..b=1", ".a=1", "a.=1", "a. b=1"])
def test_parse_override_rejects_malformed(text: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"override {text!r}: expected KEY.PATH=VALUE")):
        parse_override(text)


def test_parse_override_reports_bad_yaml_value() -> None:
    with pytest.raises(ConfigError, match=r"override 'a=\[1, 2': value is not valid YAML"):
        parse_override("a=[1, 2")


def test_apply_overrides_creates_levels_replaces_leaves_and_keeps_input() -> None:
    data = {"optim": {"lr": 0.1, "momentum": 0.9}, "tags": {"a": 1}}
    out = apply_overrides(data, ["optim.lr=1e-4", "sched.kind=step", "tags.b=2", "optim.lr=0.5", "seed=null"])
    assert out == {
        "optim": {"lr": 0.5, "momentum": 0.9},
        "tags": {"a": 1, "b": 2},
        "sched": {"kind": "step"},
        "seed": None,
    }
    assert data == {"optim": {"lr": 0.1, "momentum": 0.9}, "tags": {"a": 1}}


# ------------------------------------------------------------------------------------------------- YAML


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_load_yaml_reads_yaml12_scalars(tmp_path: Path) -> None:
    p = write(tmp_path / "c.yaml", "lr: 1e-4\nbig: 5E3\nflag: true\nword: no\nn: 3\nnothing:\n")
    assert load_yaml(p) == {"lr": 0.0001, "big": 5000.0, "flag": True, "word": "no", "n": 3, "nothing": None}
    assert load_yaml(write(tmp_path / "empty.yaml", "# only a comment\n")) == {}


def test_load_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    p = write(tmp_path / "bad.yaml", "optim:\n  lr: 0.1\n  momentum: [0.9\nseed: 1\n")
    with pytest.raises(ConfigError) as e:
        load_yaml(p)
    assert re.match(re.escape(str(p)) + r":4:\d+: YAML syntax error: ", message(e))
    p = write(tmp_path / "tab.yaml", "a: 1\nb:\n\t- 2\n")
    with pytest.raises(ConfigError, match=re.escape(f"{p}:3:1: YAML syntax error")):
        load_yaml(p)


def test_load_yaml_rejects_missing_file_and_non_mapping_top(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=re.escape(f"cannot read config file {str(tmp_path / 'nope.yaml')!r}")
    ):
        load_yaml(tmp_path / "nope.yaml")
    p = write(tmp_path / "list.yaml", "- 1\n- 2\n")
    with pytest.raises(
        ConfigError, match=re.escape(f"{p}: top level must be a mapping of config keys, got [1, 2]")
    ):
        load_yaml(p)


def test_base_composition_is_relative_ordered_and_deep(tmp_path: Path) -> None:
    write(tmp_path / "common" / "defaults.yaml", "optim: {lr: 0.1, momentum: 0.9}\nseed: 1\ntags: {a: 1}\n")
    write(tmp_path / "common" / "sgd.yaml", "base: defaults.yaml\noptim: {nesterov: true}\ntags: {b: 2}\n")
    write(tmp_path / "common" / "seed.yaml", "seed: 2\n")
    top = write(
        tmp_path / "exp" / "run.yaml", "base: [../common/sgd.yaml, ../common/seed.yaml]\noptim: {lr: 0.01}\n"
    )
    assert load_yaml(top) == {
        "optim": {"lr": 0.01, "momentum": 0.9, "nesterov": True},
        "seed": 2,
        "tags": {"a": 1, "b": 2},
    }


def test_base_diamond_is_not_a_cycle(tmp_path: Path) -> None:
    write(tmp_path / "root.yaml", "seed: 1\n")
    write(tmp_path / "a.yaml", "base: root.yaml\n")
    write(tmp_path / "b.yaml", "base: root.yaml\n")
    assert load_yaml(write(tmp_path / "top.yaml", "base: [a.yaml, b.yaml]\n")) == {"seed": 1}


def test_base_cycle_is_detected_and_shown(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "base: b.yaml\nseed: 1\n")
    b = write(tmp_path / "b.yaml", "base: sub/../a.yaml\n")
    (tmp_path / "sub").mkdir()
    with pytest.raises(ConfigError) as e:
        load_yaml(a)
    ra, rb = a.resolve(), b.resolve()
    assert message(e) == f"cycle in config 'base' chain: {ra} -> {rb} -> {ra}"
    selfref = write(tmp_path / "self.yaml", "base: self.yaml\n")
    with pytest.raises(ConfigError, match="cycle in config 'base' chain"):
        load_yaml(selfref)


def test_base_errors_name_the_including_file(tmp_path: Path) -> None:
    p = write(tmp_path / "x.yaml", "base: missing.yaml\n")
    with pytest.raises(ConfigError, match=re.escape(f"{p}: base file 'missing.yaml' not found")):
        load_yaml(p)
    p = write(tmp_path / "y.yaml", "base: 3\n")
    with pytest.raises(ConfigError, match=re.escape(f"{p}: 'base' must be a file name or a list")):
        load_yaml(p)
    write(tmp_path / "broken.yaml", "a: [\n")
    p = write(tmp_path / "z.yaml", "base: broken.yaml\n")
    with pytest.raises(
        ConfigError, match=re.escape(str(tmp_path / "broken.yaml")) + r":2:1: YAML syntax error"
    ):
        load_yaml(p)


def test_load_config_merges_files_then_overrides(tmp_path: Path) -> None:
    one = write(tmp_path / "one.yaml", "optim: {lr: 1e-3}\nmodel: {name: RN50, num_ranks: 8}\n")
    two = write(tmp_path / "two.yaml", "model: {num_ranks: 5}\nsched: {kind: step}\n")
    run = load_config(
        Run, [one, str(two)], ["optim.lr=1e-4", "sched.milestones=[3, 4]", "optim.nesterov=true"]
    )
    assert run == Run(
        optim=Optim(lr=1e-4, nesterov=True),
        model=Model(name="RN50", num_ranks=5),
        sched=Sched(kind="step", milestones=[3, 4]),
    )
    assert load_config(Run, [], ["optim.lr=2"]).optim.lr == 2.0


def test_load_config_override_into_unknown_key_is_caught_with_suggestion(tmp_path: Path) -> None:
    p = write(tmp_path / "c.yaml", "optim: {lr: 0.1}\n")
    with pytest.raises(ConfigError) as e:
        load_config(Run, [p], ["optim.lrr=0.2"])
    assert message(e) == "unknown key 'optim.lrr' (did you mean 'optim.lr'?)"
    with pytest.raises(ConfigError) as e:
        load_config(Run, [p], ["optim.lr=fast"])
    assert message(e) == "optim.lr: expected float, got 'fast' (str)"


def test_save_yaml_round_trip_creates_dirs_and_quotes_ambiguous_strings(tmp_path: Path) -> None:
    run = from_dict(Run, FULL)
    run.model.name = "1e-4"  # a string that the YAML 1.2 reader would otherwise take as a float
    run.model.ctx_init = "no"
    target = tmp_path / "deep" / "dir" / "config.yaml"
    save_yaml(run, target)
    assert load_config(Run, [target]) == run
    save_yaml({"a": Path("p"), "t": (1, 2)}, tmp_path / "d.yaml")
    assert load_yaml(tmp_path / "d.yaml") == {"a": "p", "t": [1, 2]}
    assert sorted(os.listdir(tmp_path)) == ["d.yaml", "deep"]  # no temp files left behind


def test_save_yaml_is_atomic_when_serialisation_fails_midway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = write(tmp_path / "config.yaml", "seed: 1\n")

    def half_then_fail(data: object, stream: object, **kwargs: object) -> None:
        stream.write("optim:\n  lr: ")  # type: ignore[attr-defined]
        raise RuntimeError("disk full")

    monkeypatch.setattr(typed.yaml, "dump", half_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        save_yaml(from_dict(Run, FULL), target)
    assert target.read_text(encoding="utf-8") == "seed: 1\n"
    assert os.listdir(tmp_path) == ["config.yaml"]


def test_save_yaml_rejects_unsupported_values_before_touching_target(tmp_path: Path) -> None:
    target = write(tmp_path / "config.yaml", "seed: 1\n")
    with pytest.raises(TypeError, match=r"x\[1\]: cannot store object"):
        save_yaml({"x": [1, object()]}, target)
    with pytest.raises(TypeError, match="dataclass instance or a mapping"):
        save_yaml([1, 2], target)
    assert target.read_text(encoding="utf-8") == "seed: 1\n"
    assert os.listdir(tmp_path) == ["config.yaml"]


def test_renamed_key_reads_as_the_new_one_with_a_warning(tmp_path: Path) -> None:
    from ordinalclip.checkpoint import CHECKPOINT_KEY, config_of
    from ordinalclip.config import RunConfig
    from ordinalclip.modeling.config import ImageTowerConfig

    # A YAML written before the rename: image.pretrained (bool) is now image.imagenet_weights.
    target = write(
        tmp_path / "old.yaml", "model:\n  image:\n    kind: efficientnet_lite0\n    pretrained: false\n"
    )
    with pytest.warns(
        FutureWarning, match=r"'model\.image\.pretrained' is deprecated.*'model\.image\.imagenet_weights'"
    ):
        cfg = load_config(RunConfig, [target])
    assert cfg.model.image.imagenet_weights is False
    assert "pretrained" not in to_dict(cfg)["model"]["image"]  # written back under the new name only
    # A checkpoint's stored config goes through the same reader.
    old = to_dict(cfg)
    old["model"]["image"]["pretrained"] = old["model"]["image"].pop("imagenet_weights")
    with pytest.warns(FutureWarning, match="deprecated"):
        assert config_of({CHECKPOINT_KEY: {"config": old}}, "old.ckpt") == cfg
    with pytest.raises(
        ConfigError, match=r"'image\.pretrained' is the old name of 'image\.imagenet_weights'"
    ):
        from_dict(ImageTowerConfig, {"pretrained": True, "imagenet_weights": False}, path="image")


# ----------------------------------------------------------------------------------------------- old spellings


def _run(model: dict) -> dict:
    return {"model": model}


def test_old_spellings_of_model_keys_and_values_load_with_a_deprecation_warning(tmp_path: Path) -> None:
    from ordinalclip.config import RunConfig

    # A YAML written before the renames: arch ordinalclip, text.path, base-rank names in rank_names.
    old = write(
        tmp_path / "old.yaml",
        "model:\n  arch: ordinalclip\n  text:\n    path: naive\n  prompts:\n"
        "    rank_names: [young, adult, old]\n",
    )
    with pytest.warns(typed.ConfigDeprecationWarning) as seen:
        cfg = load_config(RunConfig, [old])
    messages = sorted(str(w.message) for w in seen)
    assert messages == [
        "config key 'model.prompts.rank_names' with the rank learner holds the C' base-rank names: it is now "
        "'model.prompts.base_rank_names' ('model.prompts.rank_names' holds the C rank names of the plain "
        "learner and zero-shot)",
        "config key 'model.text.path' is deprecated: it is now 'model.text.route'",
        "model.arch: 'ordinalclip' is deprecated: it is now 'prompts' (same meaning)",
    ]
    assert all(issubclass(w.category, (DeprecationWarning, FutureWarning)) for w in seen)
    m = cfg.model
    assert (m.arch, m.text.route, m.prompts.base_rank_names, m.prompts.rank_names) == (
        "prompts",
        "naive",
        ["young", "adult", "old"],
        None,
    )
    new = to_dict(cfg)["model"]  # written back (run folders, checkpoints) under the new names only
    assert new["arch"] == "prompts" and "path" not in new["text"] and new["prompts"]["rank_names"] is None
    # the same through --set overrides, and a name file
    with pytest.warns(typed.ConfigDeprecationWarning, match="base_rank_names_file"):
        cfg = load_config(RunConfig, [], ["model.prompts.rank_names_file=names.txt"])
    assert (cfg.model.prompts.base_rank_names_file, cfg.model.prompts.rank_names_file) == ("names.txt", None)


def test_a_checkpoint_config_from_before_the_renames_loads_the_same(tmp_path: Path) -> None:
    import warnings

    from ordinalclip.checkpoint import CHECKPOINT_KEY, config_of
    from ordinalclip.config import RunConfig

    new = {"arch": "prompts", "text": {"route": "truncated"}, "prompts": {"base_rank_names_file": "b.txt"}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spellings warn about nothing
        want = from_dict(RunConfig, _run(new))
    stored = to_dict(want)
    stored["model"]["arch"] = "ordinalclip"
    stored["model"]["text"]["path"] = stored["model"]["text"].pop("route")
    prompts = stored["model"]["prompts"]
    prompts["rank_names_file"] = prompts.pop("base_rank_names_file")
    del prompts["base_rank_names"]
    with pytest.warns(DeprecationWarning):
        assert config_of({CHECKPOINT_KEY: {"config": stored}}, "old.ckpt") == want


@pytest.mark.parametrize(
    "model",
    [
        {"arch": "zeroshot", "prompts": {"rank_names": ["a", "b"]}},  # zero-shot: C names, default learner
        {"prompts": {"learner": "plain", "rank_names": ["a", "b"]}},  # CoOp: C names
        {"prompts": {"base_rank_names": ["x", "y", "z"], "rank_names": ["a", "b"]}},  # both given: both kept
        {"arch": "linear", "prompts": {"rank_names": ["a", "b"]}},
    ],
)
def test_rank_names_that_mean_rank_names_stay_without_a_warning(model: dict) -> None:
    import warnings

    from ordinalclip.config import RunConfig

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = from_dict(RunConfig, _run(model))
    assert cfg.model.prompts.rank_names == ["a", "b"]


def test_an_old_and_a_new_spelling_together_is_an_error() -> None:
    from ordinalclip.modeling.config import ModelConfig

    with pytest.raises(ConfigError, match=r"'model\.text\.path' is the old name of 'model\.text\.route'"):
        from_dict(ModelConfig, {"text": {"path": "naive", "route": "naive"}}, path="model")
    with pytest.raises(ConfigError, match=r"model\.arch: expected one of 'prompts', .*got 'ordinal'"):
        from_dict(ModelConfig, {"arch": "ordinal"}, path="model")


def test_the_deprecation_warning_is_shown_by_default() -> None:
    import subprocess
    import sys

    code = (
        "from ordinalclip.config.typed import from_dict\n"
        "from ordinalclip.modeling.config import ModelConfig\n"
        "from_dict(ModelConfig, {'arch': 'ordinalclip'}, path='model')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "ConfigDeprecationWarning: model.arch: 'ordinalclip' is deprecated" in out.stderr
