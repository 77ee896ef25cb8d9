"""The installed distributions an install needs, from this environment's metadata: the runtime wheel's
dependencies as a view without torch (for the wheel check), and the size on disk of an install.

    python packaging/runtime/installed.py size 'ordinalclip-runtime[serve]' 'ordinalclip[onnx,serve]'
    python packaging/runtime/installed.py view VIEW_DIR 'numpy' 'onnxruntime' ...   # symlinks, for a .pth
"""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def closure(requirements: list[str]) -> list[metadata.Distribution]:
    """The installed distributions that ``requirements`` (with extras) need, transitively (environment
    markers evaluated here; an uninstalled requirement raises)."""
    found: dict[str, metadata.Distribution] = {}
    todo = [Requirement(r) for r in requirements]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req = todo.pop()
        key = (_norm(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{req.name} is needed but not installed in {sys.prefix}") from None
        found[_norm(req.name)] = dist
        for text in dist.requires or []:
            sub = Requirement(text)
            env = [{"extra": e} for e in req.extras] or [{"extra": ""}]
            if sub.marker is None or any(sub.marker.evaluate(e) for e in env):
                todo.append(sub)
    return sorted(found.values(), key=lambda d: _norm(d.metadata["Name"]))


def _files(dist: metadata.Distribution) -> list[Path]:
    return [Path(str(dist.locate_file(f))) for f in dist.files or []]


def size_mb(dists: list[metadata.Distribution]) -> float:
    """Bytes on disk of the distributions' files (as their RECORD lists them), in MB."""
    total = sum(p.stat().st_size for d in dists for p in _files(d) if p.is_file())
    return total / 1e6


def make_view(view: Path, dists: list[metadata.Distribution]) -> list[str]:
    """Symlink the top-level entries (packages, modules, .dist-info) of ``dists`` into ``view``, so that a
    path entry pointing at ``view`` sees exactly these distributions."""
    view.mkdir(parents=True, exist_ok=True)
    linked = []
    for dist in dists:
        root = Path(str(dist.locate_file("")))
        for top in sorted({f.parts[0] for f in dist.files or [] if not f.parts[0].startswith("..")}):
            source, target = root / top, view / top
            if source.exists() and not target.exists() and top != "__pycache__":
                target.symlink_to(source)
                linked.append(top)
    return linked


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "size":
        print(json.dumps({req: round(size_mb(closure([req])), 1) for req in args}))
    elif command == "view":
        dists = closure(args[1:])
        names = sorted(_norm(d.metadata["Name"]) for d in dists)
        make_view(Path(args[0]), dists)
        print(" ".join(names))
    else:
        raise SystemExit(__doc__)
