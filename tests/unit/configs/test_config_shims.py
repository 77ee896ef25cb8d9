"""The config package: ``ordinalclip.config`` gives every config name (the run config's, the typed machinery's,
the built-in configs', the model's) as the object its module defines; the old import paths
``ordinalclip.configtools`` and ``ordinalclip.config_files`` still import, warn with the new module's name and give
the same objects; the package's own code never imports them; the deploy runtime's import of the typed machinery
loads neither the run config nor the built-in configs."""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys

import pytest

import ordinalclip
import ordinalclip.config as face
from ordinalclip.config import builtin, run, typed
from ordinalclip.modeling import config as model_config
from tests.helpers import REPO_ROOT
from tests.unit.test_layers import SRC, _files, _imported_modules

OLD_PATHS = {
    "ordinalclip.configtools": "ordinalclip.config.typed",
    "ordinalclip.config_files": "ordinalclip.config.builtin",
}
MODEL_CLASSES = ("ModelConfig", "ImageTowerConfig", "TextTowerConfig", "PromptConfig", "ClipConfig")


@pytest.mark.parametrize(("old", "new"), OLD_PATHS.items())
def test_an_old_import_path_warns_and_gives_the_same_objects(old, new, monkeypatch):
    monkeypatch.delitem(sys.modules, old, raising=False)  # a fresh import: the warning comes on import
    with pytest.warns(typed.ConfigDeprecationWarning) as seen:
        shim = importlib.import_module(old)
    assert [str(w.message) for w in seen] == [
        f"{old} is deprecated: import from {new} (or ordinalclip.config)"
    ]
    module = importlib.import_module(new)
    assert (
        shim.__all__ == module.__all__ and "config_path" in builtin.__all__ and "from_dict" in typed.__all__
    )
    for name in module.__all__:
        assert getattr(shim, name) is getattr(module, name), name


def test_a_user_script_is_shown_the_warning_at_its_import_line(tmp_path):
    script = tmp_path / "user_script.py"
    script.write_text(
        "import os\nfrom ordinalclip.configtools import from_dict\nimport ordinalclip.config_files\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "PYTHONWARNINGS": ""},
    )
    assert out.returncode == 0, out.stderr
    # shown without any -W flag (users, not only developers, have old imports), at the line that imports
    assert f"{script}:2: ConfigDeprecationWarning: ordinalclip.configtools is deprecated" in out.stderr
    assert f"{script}:3: ConfigDeprecationWarning: ordinalclip.config_files is deprecated" in out.stderr


def test_the_package_never_imports_its_old_paths() -> None:
    shims = {SRC / (old.split(".", 1)[1] + ".py") for old in OLD_PATHS}
    assert all(path.is_file() for path in shims)
    found = {
        str(path.relative_to(SRC)): sorted(
            m for m in _imported_modules(path) if m.startswith(tuple(OLD_PATHS))
        )
        for path in _files("")
        if path not in shims
    }
    assert {name: old for name, old in found.items() if old} == {}


def test_one_place_gives_every_config_as_its_module_defines_it() -> None:
    names = set(face.__all__)
    assert names == set(run.__all__) | set(typed.__all__) | set(builtin.__all__) | set(MODEL_CLASSES)
    assert {"FEW_SHOT_MIN_STEPS", "PRIOR_LR", "PRIOR_WEIGHT", "check_run_config"} <= names  # the old module's
    star: dict[str, object] = {}
    exec("from ordinalclip.config import *", star)
    assert set(star) - {"__builtins__"} == names
    assert names <= set(dir(face))
    for name in MODEL_CLASSES:
        assert getattr(face, name) is getattr(model_config, name)
    for name in sorted(names):
        owners = [m for m in (run, typed, builtin, model_config) if hasattr(m, name)]
        assert owners, name
        assert all(getattr(m, name) is getattr(face, name) for m in owners), name
    assert face.RunConfig is ordinalclip.RunConfig and face.builtin_configs is ordinalclip.builtin_configs
    with pytest.raises(
        AttributeError, match=re.escape("module 'ordinalclip.config' has no attribute 'Nope'")
    ):
        face.Nope  # noqa: B018


def test_the_typed_machinery_loads_without_the_run_config() -> None:
    """What the deploy runtime imports (export sidecars are checked with ``from_dict``)."""
    code = (
        "import sys, ordinalclip.config.typed\n"
        "assert not hasattr(ordinalclip.config, '__wrapped__')\n"  # tools probe dunders: no import for those
        "print(sorted(m for m in sys.modules if m.startswith('ordinalclip.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")},
    )
    assert out.returncode == 0, out.stderr
    loaded = ast.literal_eval(out.stdout)
    assert "ordinalclip.config.typed" in loaded
    assert not {"ordinalclip.config.run", "ordinalclip.config.builtin", "ordinalclip.modeling.config"} & set(
        loaded
    )


def test_the_config_package_without_the_run_config_still_gives_the_typed_tools(tmp_path):
    """The deploy runtime's wheel ships ``config/__init__`` and ``config/typed`` only: a name of ``typed`` looked
    up through the package must not import the run config first (it failed with ModuleNotFoundError)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['ordinalclip.config.run'] = None\n"  # as if not installed
        "sys.modules['ordinalclip.config.builtin'] = None\n"
        "from ordinalclip.config import ConfigError, from_dict\n"
        "import ordinalclip.config as c\n"
        "assert 'from_dict' in c.__all__ and 'RunConfig' not in c.__all__\n"
        "try:\n"
        "    c.RunConfig\n"
        "except AttributeError as e:\n"
        "    print('no RunConfig:', e)\n"
        "assert 'torch' not in sys.modules\n"
        "print(from_dict.__module__, ConfigError.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "no RunConfig: module 'ordinalclip.config' has no attribute 'RunConfig'",
        "ordinalclip.config.typed ConfigError",
    ]
