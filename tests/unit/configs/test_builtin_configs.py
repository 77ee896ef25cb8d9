"""Built-in configs: one copy inside the package, found by name, listed and shown by the command line, and their
``base:`` chains resolve wherever the package is installed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from ordinalclip.app.cli import main
from ordinalclip.config import builtin, load_run_config
from ordinalclip.config.builtin import builtin_config_dir, builtin_configs, config_path
from ordinalclip.config.typed import ConfigError
from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT


def test_one_copy_the_repository_configs_folder_is_the_package_one():
    repo = ROOT / "configs"
    assert repo.is_symlink() and repo.resolve() == builtin_config_dir()
    assert builtin_config_dir() == ROOT / "src" / "ordinalclip" / "configs"


def test_names_resolve_to_packaged_files_and_paths_stay_paths(tmp_path, monkeypatch):
    assert config_path("tiny") == builtin_config_dir() / "tiny.yaml"
    assert config_path("baselines/morph_coral") == builtin_config_dir() / "baselines" / "morph_coral.yaml"
    # a .yaml argument is a path even where a built-in of that name exists
    monkeypatch.chdir(tmp_path)
    assert config_path("tiny.yaml") == Path("tiny.yaml")
    assert config_path(Path("sub/x.yaml")) == Path("sub/x.yaml")
    (tmp_path / "myconf").write_text(
        "name: mine\n"
    )  # a file without the suffix, not a built-in name: the file
    assert config_path("myconf") == Path("myconf")
    with pytest.raises(ConfigError, match=r"no built-in config named 'mroph'; did you mean morph"):
        config_path("mroph")
    cfg = load_run_config(["tiny"], ["trainer.max_epochs=1"])
    assert cfg.name == "tiny" and cfg.trainer.max_epochs == 1 and cfg.model.num_ranks == 4


def test_every_built_in_is_listed_with_its_own_first_comment_line():
    found = {c.name: c for c in builtin_configs()}
    files = sorted(p for p in builtin_config_dir().rglob("*.yaml"))
    assert len(found) == len(files) >= 50
    assert found["tiny"].description.startswith("A tiny, fast run on CPU")
    assert (
        found["morph"].description == "OrdinalCLIP on MORPH II, the reference setting (reference notes §2.1)."
    )
    for c in found.values():
        first = c.path.read_text(encoding="utf-8").splitlines()[0]
        assert (
            first.startswith("# ")
            and c.description
            and "\n" not in c.description
            and len(c.description) <= 100
        )
        assert (
            c.description.rstrip("…").rstrip(".") in first.lstrip("# ") or first.lstrip("# ") in c.description
        )


def test_cli_lists_and_shows(capsys):
    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(builtin_configs())
    tiny = next(line for line in lines if line.startswith("tiny "))
    assert "A tiny, fast run on CPU" in tiny
    assert main(["configs", "show", "ablations/morph_inv_prop"]) == 0
    shown = capsys.readouterr().out
    assert shown == (builtin_config_dir() / "ablations" / "morph_inv_prop.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(shown)["base"] == "../morph.yaml"
    assert main(["configs", "show", "nope"]) == 2
    assert "error: no built-in config named 'nope'" in capsys.readouterr().err
    assert main(["configs", "show"]) == 2
    assert "configs show needs a NAME" in capsys.readouterr().err
    assert main(["configs", "morph"]) == 2  # argparse: invalid choice
    assert "invalid choice: 'morph'" in capsys.readouterr().err
    assert main(["configs", "list", "morph"]) == 2
    assert "did you mean 'ordinalclip configs show morph'" in capsys.readouterr().err


def test_base_chains_resolve_from_a_copy_elsewhere(tmp_path, monkeypatch):
    """As installed: the folder alone, somewhere else, with no repository around it."""
    copy = tmp_path / "site-packages" / "ordinalclip" / "configs"
    shutil.copytree(builtin_config_dir(), copy)
    monkeypatch.setattr(builtin, "builtin_config_dir", lambda: copy)
    monkeypatch.chdir(tmp_path)
    path = config_path("ablations/morph_inv_prop")
    assert path == copy / "ablations" / "morph_inv_prop.yaml"
    cfg = load_run_config(["ablations/morph_inv_prop"])
    morph = load_run_config(["morph"])
    assert (
        cfg.model.prompts.interpolation == "inv_prop" and cfg.model.num_ranks == morph.model.num_ranks == 101
    )
    fragments = ("baselines/heads/", "baselines/names/")  # pieces other configs include with base:
    for c in builtin_configs():  # every whole config, through its base chain
        assert c.path.is_relative_to(copy)
        if not c.name.startswith(fragments):
            load_run_config([c.name])  # a base that did not resolve, or a wrong key, would raise


def test_sweep_takes_names(tmp_path):
    from ordinalclip.app.sweep import plan_sweep

    cells = plan_sweep(["tiny"], seeds=[1, 2])
    assert len(cells) == 2 and cells[0].config == builtin_config_dir() / "tiny.yaml"


@pytest.mark.parametrize(
    "old, new",
    [
        ("morph_cnn", "morph_cosine"),
        ("baselines/adience_cnn", "baselines/adience_cosine"),
        ("baselines/heads/cnn", "baselines/heads/cosine"),
    ],
)
def test_a_renamed_built_in_is_found_under_its_old_name_and_path_with_a_warning(old, new, monkeypatch):
    from ordinalclip.config.typed import ConfigDeprecationWarning

    want = builtin_config_dir() / f"{new}.yaml"
    assert want.is_file() and not (builtin_config_dir() / f"{old}.yaml").exists()
    assert builtin.RENAMED_CONFIGS[old] == new
    with pytest.warns(ConfigDeprecationWarning, match=f"built-in config '{old}' is now '{new}'"):
        assert config_path(old) == want
    # the old path through the repository's configs link, as the README and scripts wrote it
    monkeypatch.chdir(ROOT)
    with pytest.warns(ConfigDeprecationWarning, match=f"built-in name '{new}'"):
        assert config_path(f"configs/{old}.yaml") == want
    # and the run is the same one
    with pytest.warns(ConfigDeprecationWarning):
        assert load_run_config([old]) == load_run_config([new])


def test_a_missing_file_outside_the_package_stays_a_missing_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config_path("morph_cnn.yaml") == Path("morph_cnn.yaml")  # not the package's: no alias
    with pytest.raises(ConfigError, match="cannot read config file 'morph_cnn.yaml'"):
        load_run_config(["morph_cnn.yaml"])
