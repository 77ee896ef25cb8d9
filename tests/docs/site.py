"""Build the documentation site (``mkdocs build --strict``) for the tests that read or browse it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO_ROOT


def build_site(out: Path) -> Path:
    """Build the site from this checkout into ``out`` (strict: a warning fails); return ``out``."""
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    # the API reference is read from this checkout's sources (mkdocs.yml: paths [src])
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (
        f"mkdocs build --strict failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    return out


def nav_pages() -> list[str]:
    """The pages of mkdocs.yml's nav (paths under docs/), in order."""
    import yaml

    def leaves(node: object) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, list):
            return [p for item in node for p in leaves(item)]
        if isinstance(node, dict):
            return [p for value in node.values() for p in leaves(value)]
        return []

    # mkdocs.yml has no custom YAML tags, so the safe loader reads it
    config = yaml.safe_load((REPO_ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    return leaves(config["nav"])
