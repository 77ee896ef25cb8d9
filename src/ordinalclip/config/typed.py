"""Typed dataclass configs: YAML in and out, ``key.path=value`` overrides, strict validation.

The config *fields* live elsewhere as plain dataclasses; this module only knows how to build them from
plain dicts (checking every key and type), turn them back into plain dicts, and read/write YAML.

YAML is read with YAML 1.2 style scalars: ``1e-4`` is a float (PyYAML alone reads it as a string) and
only ``true``/``false`` are booleans (``yes``/``no``/``on``/``off`` stay strings).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from ordinalclip.errors import ConfigError
from ordinalclip.fileio import atomic_write

__all__ = [
    "ConfigDeprecationWarning",
    "ConfigError",
    "apply_overrides",
    "deprecated",
    "from_dict",
    "load_config",
    "load_yaml",
    "merge",
    "parse_override",
    "save_yaml",
    "to_dict",
]

T = TypeVar("T")

BASE_KEY = "base"  # top-level YAML key naming the file(s) this one extends


class ConfigDeprecationWarning(DeprecationWarning, FutureWarning):
    """An old spelling of a config key, value or built-in config name: it still loads, under its new name;
    also the old import paths of its modules (``ordinalclip.configtools``, ``ordinalclip.config_files``).

    A DeprecationWarning that is also a FutureWarning, so filters on either catch it; shown by default (the
    filter below), because the people with old configs and checkpoints are users, not only developers.
    """


warnings.filterwarnings("default", category=ConfigDeprecationWarning)


def deprecated(message: str) -> None:
    """Warn (:class:`ConfigDeprecationWarning`) that an old spelling was read under its new name."""
    warnings.warn(message, ConfigDeprecationWarning, stacklevel=3)


# --------------------------------------------------------------------------------------------- YAML dialect

_BOOL_TAG = "tag:yaml.org,2002:bool"
_FLOAT_TAG = "tag:yaml.org,2002:float"
# PyYAML's YAML 1.1 float pattern needs a dot, so exponent-only numbers like 1e-4 would be strings.
_EXP_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


def _yaml12_resolvers(cls: Any) -> Any:
    # Copy the resolver table (PyYAML shares it between classes) without the YAML 1.1 bool words.
    cls.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in entries if tag != _BOOL_TAG]
        for first, entries in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    cls.add_implicit_resolver(_BOOL_TAG, _BOOL, list("tTfF"))
    cls.add_implicit_resolver(_FLOAT_TAG, _EXP_FLOAT, list("-+0123456789."))
    return cls


@_yaml12_resolvers
class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # PyYAML lets a repeated key silently win; in a config that hides a typo or a stale line, so it is
        # an error naming both lines. Checked before merge keys (<<) are flattened: overriding merged keys is
        # what they are for.
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    earlier = first.setdefault(key, key_node)
                except TypeError:  # an unhashable key: the base constructor reports it
                    continue
                if earlier is not key_node:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {key!r} (first given at line {earlier.start_mark.line + 1})",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


# The dumper must resolve scalars the same way, so a *string* "1e-4" or "true" gets quoted on output.
@_yaml12_resolvers
class _Dumper(yaml.SafeDumper):
    pass


# ------------------------------------------------------------------------------------------ dict -> object


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _got(value: Any) -> str:
    return f"got {_show(value)} ({type(value).__name__})"


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _type_name(tp: Any) -> str:
    """Human-readable type for error messages: ``float``, ``list[int]``, ``int | None``, ``one of 'a',
    'b'``."""
    if tp is type(None):
        return "None"
    if tp is Any:
        return "any value"
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return f"a mapping for {tp.__name__}"
    if isinstance(tp, type) and issubclass(tp, PurePath):
        return "a path (str)"
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if _is_union(tp):
        return " | ".join(_type_name(a) for a in args)
    if origin in (list, tuple, dict) and args:
        inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
        return f"{origin.__name__}[{inner}]"
    return getattr(tp, "__name__", str(tp))


def _mismatch(key: str, tp: Any, value: Any) -> ConfigError:
    return ConfigError(f"{key or '<root>'}: expected {_type_name(tp)}, {_got(value)}")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _convert(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it in the field's type."""
    if tp is Any:
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise _mismatch(key, tp, value)
        return from_dict(tp, value, key)
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        # Compare types too: True == 1 and 1 == 1.0 must not pass for Literal[1] / Literal[1.0].
        if any(value == a and type(value) is type(a) for a in args):
            return value
        err = f"{key}: expected {_type_name(tp)}, {_got(value)}"
        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
        raise ConfigError(err + (f" (did you mean {close[0]!r}?)" if close else ""))
    if _is_union(tp):
        if value is None and type(None) in args:
            return None
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:  # Optional[X]: let X's own (more precise) error through
            return _convert(members[0], value, key)
        for member in members:
            try:
                return _convert(member, value, key)
            except ConfigError:
                continue
        raise _mismatch(key, tp, value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _mismatch(key, tp, value)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _mismatch(key, tp, value)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an int too large for a float
                number = math.inf
            if not math.isfinite(number):  # .nan / .inf would pass every range check and poison a run
                raise ConfigError(f"{key}: expected a finite number, {_got(value)}")
            return number
        raise _mismatch(key, tp, value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _mismatch(key, tp, value)
    if isinstance(tp, type) and issubclass(tp, PurePath):
        if isinstance(value, (str, PurePath)):
            return tp(value)
        raise _mismatch(key, tp, value)
    if tp in (list, tuple, dict):
        origin, args = tp, ()
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _mismatch(key, tp, value)
        if origin is tuple and args and args[-1] is not Ellipsis:  # fixed-length tuple[X, Y]
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {_type_name(tp)} ({len(args)} items), {_got(value)}")
            return tuple(_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _mismatch(key, tp, value)
        key_tp, val_tp = args if args else (Any, Any)
        return {
            _convert(key_tp, k, f"{key} (key {k!r})"): _convert(val_tp, v, _join(key, str(k)))
            for k, v in value.items()
        }
    raise TypeError(f"{key}: unsupported config field type {tp!r}")


def _nested_keys(tp: Any, prefix: str) -> list[str]:
    """All dotted keys below a dataclass type (through Optional), for 'did you mean' on misplaced keys."""
    if _is_union(tp):
        return [k for a in get_args(tp) for k in _nested_keys(a, prefix)]
    if not dataclasses.is_dataclass(tp):
        return []
    hints = get_type_hints(tp)
    out: list[str] = []
    for f in dataclasses.fields(tp):
        if f.init:
            full = _join(prefix, f.name)
            out += [full, *_nested_keys(hints[f.name], full)]
    return out


def _unknown_key(cls: type, hints: dict[str, Any], names: list[str], key: str, path: str) -> ConfigError:
    full = _join(path, key)
    close = difflib.get_close_matches(key, names, n=1)
    if close:
        return ConfigError(f"unknown key {full!r} (did you mean {_join(path, close[0])!r}?)")
    # A right name at the wrong level, e.g. 'lr' given at the top instead of under 'optim'.
    deeper = [k for n in names for k in _nested_keys(hints[n], _join(path, n)) if k.rsplit(".", 1)[-1] == key]
    if deeper:
        return ConfigError(f"unknown key {full!r} (did you mean {deeper[0]!r}?)")
    return ConfigError(f"unknown key {full!r}; valid keys for {cls.__name__}: {', '.join(names)}")


def _renamed(cls: type, data: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    """``data`` with the old spellings ``cls`` declares read under their new names, each with a warning.

    The one place where renames are undone, for YAML files, ``--set`` overrides, checkpoints and export
    sidecars alike (all are built by :func:`from_dict`): ``cls.RENAMED_KEYS`` maps old key -> new key (giving
    both is an error), ``cls.RENAMED_VALUES`` maps a field to ``{old value: new value}``, and a classmethod
    ``cls.upgrade_old_spellings(data, path, deprecated)`` makes moves that depend on other keys.
    """
    renamed: Mapping[str, str] = getattr(cls, "RENAMED_KEYS", {})
    values: Mapping[str, Mapping[Any, Any]] = getattr(cls, "RENAMED_VALUES", {})
    upgrade = getattr(cls, "upgrade_old_spellings", None)
    out = dict(data)
    for old, new in renamed.items():
        if old not in out:
            continue
        if new in out:
            raise ConfigError(
                f"{_join(path, old)!r} is the old name of {_join(path, new)!r}; give only the new one"
            )
        deprecated(f"config key {_join(path, old)!r} is deprecated: it is now {_join(path, new)!r}")
        out[new] = out.pop(old)
    for key, table in values.items():
        value = out.get(key)
        if isinstance(value, str) and value in table:
            deprecated(
                f"{_join(path, key)}: {value!r} is deprecated: it is now {table[value]!r} (same meaning)"
            )
            out[key] = table[value]
    return upgrade(out, path, deprecated) if upgrade is not None else out


def from_dict(cls: type[T], data: Mapping[str, Any], path: str = "") -> T:
    """Build the dataclass ``cls`` from a plain (possibly nested) mapping, checking every key and type.

    ``path`` is the dotted key of ``data`` inside a bigger config, used in error messages. Missing keys
    take the dataclass defaults. Raises :class:`ConfigError` for unknown keys (with the closest valid key),
    wrong types (key, expected type, value given) and missing required keys.
    """
    if not dataclasses.is_dataclass(cls) or not isinstance(cls, type):
        raise TypeError(f"from_dict needs a dataclass type, got {cls!r}")
    if not isinstance(data, Mapping):
        raise _mismatch(path, cls, data)
    hints = get_type_hints(cls)  # resolves string annotations from `from __future__ import annotations`
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    names = list(fields)
    kwargs: dict[str, Any] = {}
    for key, value in _renamed(cls, data, path).items():
        if key not in fields:
            raise _unknown_key(cls, hints, names, str(key), path)
        kwargs[key] = _convert(hints[key], value, _join(path, key))
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in kwargs:
            raise ConfigError(
                f"missing required key {_join(path, name)!r} (expected {_type_name(hints[name])})"
            )
    return cls(**kwargs)


# ------------------------------------------------------------------------------------------ object -> dict


def _plain(value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name), _join(key, f.name))
            for f in dataclasses.fields(value)
            if f.init
        }
    if isinstance(value, Mapping):
        return {k: _plain(v, _join(key, str(k))) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, PurePath):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{key or '<root>'}: cannot store {type(value).__name__} in a YAML config")


def to_dict(instance: Any) -> dict[str, Any]:
    """Turn a dataclass instance into plain YAML-safe types (dicts, lists, str, numbers, bools, None).

    Paths become strings and tuples lists; ``from_dict(type(x), to_dict(x)) == x``.
    """
    if not dataclasses.is_dataclass(instance) or isinstance(instance, type):
        raise TypeError(f"to_dict needs a dataclass instance, got {type(instance).__name__}")
    return _plain(instance, "")


# ------------------------------------------------------------------------------------- merging, overrides


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge two config dicts into a new one: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"a.b.c=VALUE"`` into ``(["a", "b", "c"], value)``; VALUE is read as YAML.

    So ``1e-4`` is a float, ``true`` a bool, ``[1, 2]`` a list, ``null`` None, and a bare word a string.
    An empty VALUE (``a.b=``) is the empty string.
    """
    key, sep, raw = text.partition("=")
    path = key.strip().split(".")
    if not sep or any(not part or part != part.strip() for part in path):
        raise ConfigError(f"override {text!r}: expected KEY.PATH=VALUE, e.g. optim.lr=1e-4")
    if not raw.strip():
        return path, ""
    try:
        value = yaml.load(raw, Loader=_Loader)  # _Loader is a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ConfigError(
            f"override {text!r}: value is not valid YAML "
            f"({getattr(err, 'problem', None) or err}); quote it to pass a string"
        ) from None
    return path, value


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return ``data`` with each ``key.path=value`` override applied in order (missing levels are created).

    Keys are not checked here; :func:`from_dict` rejects unknown ones with a suggestion.
    """
    out = dict(data)
    for text in overrides:
        path, value = parse_override(text)
        nested: Any = value
        for part in reversed(path):
            nested = {part: nested}
        out = merge(out, nested)
    return out


# ---------------------------------------------------------------------------------------------- YAML I/O


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read config file {str(path)!r}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not valid UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        detail = "; ".join(str(p) for p in (err.context, err.problem) if p)
        kind = "YAML error" if isinstance(err, yaml.constructor.ConstructorError) else "YAML syntax error"
        raise ConfigError(f"{where}: {kind}: {detail}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: YAML error: {err}") from None


def _load(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    resolved = path.resolve()
    if resolved in chain:
        loop = " -> ".join(str(p) for p in (*chain, resolved))
        raise ConfigError(f"cycle in config '{BASE_KEY}' chain: {loop}")
    data = _read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of config keys, {_got(data)}")
    bases = data.pop(BASE_KEY, None)
    if bases is None:
        return data
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: '{BASE_KEY}' must be a file name or a list of file names, {_got(bases)}")
    merged: dict[str, Any] = {}
    for base in bases:
        base_path = path.parent / base  # relative to the including file, not the working directory
        if not base_path.is_file():
            raise ConfigError(f"{path}: {BASE_KEY} file {base!r} not found (looked for {str(base_path)!r})")
        merged = merge(merged, _load(base_path, (*chain, resolved)))
    return merge(merged, data)


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config file into a dict, resolving ``base: other.yaml`` (or a list) composition.

    Base files are relative to the including file and merged first, in order; the file's own keys win.
    Syntax errors name the file, line and column; a cycle of bases is an error.
    """
    return _load(Path(path), ())


def load_config(cls: type[T], paths: Sequence[str | os.PathLike[str]], overrides: Iterable[str] = ()) -> T:
    """Merge the YAML files in order, apply ``key.path=value`` overrides, and build ``cls`` from the
    result."""
    data: dict[str, Any] = {}
    for path in paths:
        data = merge(data, load_yaml(path))
    return from_dict(cls, apply_overrides(data, overrides))


def save_yaml(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write a dataclass instance or a plain dict as YAML, atomically.

    The text goes to a temporary file in the same directory that then replaces ``path`` in one step, so
    a failure midway leaves any existing file untouched. Parent directories are created.
    """
    data = to_dict(obj) if dataclasses.is_dataclass(obj) else _plain(obj, "")
    if not isinstance(data, dict):
        raise TypeError(f"save_yaml needs a dataclass instance or a mapping, got {type(obj).__name__}")

    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as stream:
            yaml.dump(data, stream, Dumper=_Dumper, sort_keys=False, allow_unicode=True)

    atomic_write(path, write)
