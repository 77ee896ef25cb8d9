"""A real headless browser for tests of what a person sees (report pages, the served web page).

Debian's ``chromium`` driven by Playwright for Python (``make test`` installs both: ``make browser``). Playwright
never downloads a browser here: it is pointed at the system's chromium. Where neither can be had, tests that use
the ``page`` fixture are skipped with the reason; in CI (``CI=true``) a missing browser is a failure instead, so a
green CI always means the browser tests ran.

``tests/conftest.py`` registers this module as a plugin, so any test can take the fixtures::

    def test_it(page):
        page.goto(url)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
VIEWPORT = {"width": 1000, "height": 800}


def chromium_executable() -> str | None:
    """Path of a system Chromium (``$ORDINALCLIP_CHROMIUM`` first), or None."""
    given = os.environ.get("ORDINALCLIP_CHROMIUM")
    if given:
        return given if os.path.isfile(given) else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run in CI: {reason} (make browser installs them)")
    pytest.skip(f"{reason}; install with `make browser` (apt-get install chromium; pip install playwright)")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless Chromium (Playwright ``Browser``), shared by the session's tests."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed")
    exe = chromium_executable()
    if exe is None:
        _unavailable("no chromium executable found")
    with sync_playwright() as pw:
        # --no-sandbox: tests run as root in containers, where Chromium's sandbox cannot start
        b = pw.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page (1000 x 800 viewport) that records console errors and failed requests.

    ``page.problems`` lists them as strings; a test that expects a clean page asserts it is empty.
    """
    context = browser.new_context(viewport=VIEWPORT)
    p = context.new_page()
    problems: list[str] = []
    p.on(
        "console",
        lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None,
    )
    p.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    # ERR_ABORTED: a request the browser cancelled because the test navigated on (a favicon, a search index
    # still loading); a missing file fails with its own error (ERR_FILE_NOT_FOUND) or an HTTP status instead
    p.on(
        "requestfailed",
        lambda req: (
            None
            if req.failure == "net::ERR_ABORTED"
            else problems.append(f"request failed: {req.url} ({req.failure})")
        ),
    )
    p.problems = problems  # type: ignore[attr-defined]
    try:
        yield p
    finally:
        context.close()
