"""The browser fixture itself: a local page renders, and a broken one is reported (what the page tests rely on)."""

from __future__ import annotations

from pathlib import Path


def test_a_local_page_renders_and_its_problems_are_recorded(page, tmp_path: Path) -> None:
    good = tmp_path / "good.html"
    good.write_text("<html><body><table id=t><tr><td>1</td><td>2</td></tr></table></body></html>")
    page.goto(good.as_uri())
    box = page.locator("#t").bounding_box()
    assert box is not None and box["width"] > 0
    assert page.problems == []
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<html><body><img src="missing.png"><script>throw new Error("boom")</script></body></html>'
    )
    page.goto(bad.as_uri())
    page.wait_for_timeout(200)
    assert any("boom" in p for p in page.problems)
    assert any("missing.png" in p for p in page.problems)
