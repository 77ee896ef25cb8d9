"""The documentation site in a real browser: every page of the navigation opens, from disk and from a local
server, with its images loaded and no console errors; the search box finds "few-shot".

Search runs in a web worker, which Chromium does not start for file:// pages, so the search check (and a second
pass over every page) uses ``python -m http.server``'s handler on 127.0.0.1.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.docs.site import build_site, nav_pages

pytestmark = pytest.mark.slow

BROKEN_IMAGES = (
    "imgs => imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src'))"
)
NAV_LINKS = "els => els.map(e => e.href)"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_site(tmp_path_factory.mktemp("site"))


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the test reports failures itself
        pass


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _page_url(base: str, page: str) -> str:
    return base + page[: -len(".md")] + ".html"


def _visit_every_nav_page(page: Any, base: str) -> list[str]:
    """Open the home page, then every link of the primary navigation; return the pages visited."""
    page.goto(base + "index.html")
    links = page.eval_on_selector_all("nav.md-nav--primary a.md-nav__link[href]", NAV_LINKS)
    targets = list(dict.fromkeys(link.split("#")[0] for link in links))
    problems = []
    for url in targets:
        response = page.goto(url)
        page.wait_for_load_state("load")
        if response is not None and not response.ok:
            problems.append(f"{url}: HTTP {response.status}")
        title = page.locator("article h1").first.inner_text()
        if not title.strip():
            problems.append(f"{url}: no page title")
        broken = page.eval_on_selector_all("article img", BROKEN_IMAGES)
        problems += [f"{url}: image {src} did not load" for src in broken]
    problems += page.problems
    assert problems == [], "\n".join(problems)
    return targets


def test_every_nav_page_opens_from_disk_with_its_images(page: Any, site: Path) -> None:
    base = site.as_uri() + "/"
    visited = _visit_every_nav_page(page, base)
    # every page of mkdocs.yml's nav is linked from the navigation, and nothing else is
    assert visited == [_page_url(base, p) for p in nav_pages()]


def test_every_nav_page_opens_from_a_server(page: Any, server: str) -> None:
    visited = _visit_every_nav_page(page, server)
    assert len(visited) == len(nav_pages())
    images = 0
    for url in visited:
        page.goto(url)
        images += page.locator("article img").count()
    # the pages show the figures of docs/images (home, method, demo, reports, deploy, results)
    assert images >= 6


def test_the_search_box_finds_few_shot(page: Any, server: str) -> None:
    page.goto(server + "index.html")
    page.keyboard.press("s")  # Material's shortcut: focus the search box
    box = page.locator(".md-search__input")
    box.type("few-shot")
    results = page.locator(".md-search-result__item")
    results.first.wait_for(timeout=15_000)
    titles = " ".join(results.all_inner_texts()).lower()
    assert "few-shot" in titles
    assert page.locator(".md-search-result__meta").inner_text().strip().split()[0].isdigit()
    hrefs = page.eval_on_selector_all(
        ".md-search-result__link", "els => els.map(e => e.getAttribute('href'))"
    )
    assert any("language-priors" in h for h in hrefs), hrefs
    assert page.problems == []
