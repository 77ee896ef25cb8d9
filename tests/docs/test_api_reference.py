"""Every public name of the ``oc`` facade and of ``ordinalclip.losses`` / ``metrics`` / ``penalties`` has an entry in
the built API reference (mkdocstrings gives each documented object an anchor named by its full path)."""

from __future__ import annotations

import re

import pytest

import ordinalclip
from ordinalclip import losses, metrics, penalties
from tests.docs.site import build_site

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api_ids(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    site = build_site(tmp_path_factory.mktemp("site"))
    ids: set[str] = set()
    for page in (site / "api").glob("*.html"):
        ids |= set(re.findall(r'id="([\w.]+)"', page.read_text(encoding="utf-8")))
    return ids


def _facade_paths() -> dict[str, str]:
    """``oc.NAME`` -> the full path of the object it resolves to (the lazy names load here)."""
    out = {}
    for name in ordinalclip.__all__:
        if name == "__version__":
            continue
        obj = getattr(ordinalclip, name)
        out[name] = f"{obj.__module__}.{obj.__qualname__}"
    return out


def test_the_facade_resolves_every_name_to_a_module_object() -> None:
    paths = _facade_paths()
    assert paths["load"] == "ordinalclip.runtime.predictor.load"
    assert paths["export"] == "ordinalclip.exports.write.export_model"
    assert len(paths) == len(ordinalclip.__all__) - 1


def test_every_facade_name_is_in_the_api_reference(api_ids: set[str]) -> None:
    missing = {name: path for name, path in _facade_paths().items() if path not in api_ids}
    assert missing == {}


@pytest.mark.parametrize("module", [losses, metrics, penalties], ids=["losses", "metrics", "penalties"])
def test_every_public_name_of_losses_and_metrics_is_in_the_api_reference(module, api_ids: set[str]) -> None:
    missing = [name for name in module.__all__ if f"{module.__name__}.{name}" not in api_ids]
    assert missing == []


def test_the_reference_has_no_page_for_a_name_it_does_not_define(api_ids: set[str]) -> None:
    # the facade's entries are on its own page under the real module paths, never as a second copy elsewhere
    assert "ordinalclip.fit" not in api_ids and "ordinalclip.api.fit" in api_ids
