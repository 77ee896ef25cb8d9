"""The configs that ship inside the package (``ordinalclip/configs/``), found by name.

A config argument (``ordinalclip train -c ...``, :func:`ordinalclip.fit`) is either a path or a built-in name:

* ending in ``.yaml`` / ``.yml`` it is a path, used as it is (relative to the working directory);
* anything else is the name of a built-in config: its path under ``ordinalclip/configs/`` without ``.yaml``
  (``tiny``, ``morph``, ``baselines/morph_coral``); only a name that no built-in has falls back to a file of
  that name, if there is one.

So ``-c tiny`` means the same thing in every folder, and ``-c my_run.yaml`` is never taken for a built-in.
A renamed built-in (:data:`RENAMED_CONFIGS`) is still found under its old name, or its old path inside the
package or the repository's ``configs`` link, with a deprecation warning.
Built-in configs compose others with ``base:`` relative to themselves, which holds inside the installed
package as in the repository (the repository's ``configs`` is a link to this folder: one copy).

Needs only the standard library and PyYAML: ``ordinalclip configs`` lists them without importing torch.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ordinalclip.config.typed import ConfigError, deprecated

__all__ = [
    "RENAMED_CONFIGS",
    "BuiltinConfig",
    "builtin_config_dir",
    "builtin_configs",
    "config_path",
    "is_config_name",
]

SUFFIXES = (".yaml", ".yml")

# Old built-in name -> new one. The CNN baseline of the paper is named after its head, ``model.arch: cosine``
# (image tower + learnable cosine prototypes), as every other head baseline is (``_linear``, ``_coral``, ...).
RENAMED_CONFIGS = {
    "morph_cnn": "morph_cosine",
    **{f"baselines/{d}_cnn": f"baselines/{d}_cosine" for d in ("adience", "aesthetics", "hci")},
    "baselines/heads/cnn": "baselines/heads/cosine",
}
_DESCRIPTION_CHARS = 100


@dataclass(frozen=True)
class BuiltinConfig:
    """One shipped config: ``name`` (``baselines/morph_coral``), its ``path``, a one-line ``description``."""

    name: str
    path: Path
    description: str


def builtin_config_dir() -> Path:
    """The folder of the shipped configs (inside the installed package)."""
    return Path(__file__).resolve().parents[1] / "configs"


def _description(path: Path) -> str:
    """The first sentence of the file's leading ``#`` comment block, on one line (usage lines ``#   cmd``
    end the block), shortened to fit a terminal line."""
    words: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#") or line.startswith("#   ") or not line.strip("# "):
            break
        words.append(line.lstrip("#").strip())
    text = re.split(r"(?<=\.)\s+(?=[A-Z])", " ".join(words), maxsplit=1)[0].rstrip(":").strip()
    if len(text) > _DESCRIPTION_CHARS:
        text = text[: _DESCRIPTION_CHARS - 1].rstrip() + "…"
    return text


def builtin_configs() -> list[BuiltinConfig]:
    """Every shipped config, sorted by name (top-level ones first)."""
    root = builtin_config_dir()
    paths = [p for p in root.rglob("*") if p.suffix in SUFFIXES and p.is_file()]
    out = [BuiltinConfig(p.relative_to(root).with_suffix("").as_posix(), p, _description(p)) for p in paths]
    return sorted(out, key=lambda c: (c.name.count("/"), c.name))


def is_config_name(arg: str | os.PathLike[str]) -> bool:
    """True when ``arg`` names a built-in config rather than a file (it does not end in .yaml / .yml)."""
    return not isinstance(arg, Path) and Path(os.fspath(arg)).suffix.lower() not in SUFFIXES


def _renamed_builtin_file(path: Path) -> Path | None:
    """The new file of a renamed built-in given by its old path (``configs/morph_cnn.yaml``), else None."""
    if path.exists():
        return None
    try:
        old = path.resolve().relative_to(builtin_config_dir()).with_suffix("").as_posix()
    except ValueError:  # not inside the package's configs
        return None
    if old not in RENAMED_CONFIGS:
        return None
    new = builtin_config_dir() / f"{RENAMED_CONFIGS[old]}.yaml"
    deprecated(
        f"built-in config file {str(path)!r} is now {str(new)!r} (built-in name {RENAMED_CONFIGS[old]!r})"
    )
    return new


def config_path(arg: str | os.PathLike[str]) -> Path:
    """The file a config argument means: a path as it is, a built-in name as its file in the package.

    Raises:
        ConfigError: an unknown built-in name (the message lists the closest names and says how to see all).
    """
    if not is_config_name(arg):
        return _renamed_builtin_file(Path(arg)) or Path(arg)
    name = os.fspath(arg).strip().strip("/")
    if name in RENAMED_CONFIGS:
        deprecated(f"built-in config {name!r} is now {RENAMED_CONFIGS[name]!r}")
        name = RENAMED_CONFIGS[name]
    path = builtin_config_dir() / f"{name}.yaml"
    if name and path.is_file():
        return path
    if Path(arg).is_file():  # a config file without the usual suffix
        return Path(arg)
    names = [c.name for c in builtin_configs()]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"no built-in config named {name!r}{hint} "
        "(see `ordinalclip configs`; a config file needs its .yaml suffix)"
    )
