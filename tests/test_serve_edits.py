"""Edits through the server: POST /edit with the server's token (loopback only), each writing a new
checkpoint and report while the served model becomes the edited one; the page's actions in a browser."""

from __future__ import annotations

import re

import pytest

from tests.test_serve import CHROMIUM, app_served, browser_page, needs_chromium

httpx = pytest.importorskip("httpx")


def edit_server(tiny_run, edits_dir):
    """The server on a fresh load of the tiny model, edits on, in a thread of this process."""
    import protolm

    return app_served(protolm.load(tiny_run), edits_dir=edits_dir)


def token_of(url: str) -> str:
    return re.search(r'name="token" value="([^"]+)"', httpx.get(url, timeout=60).text).group(1)


def test_an_edit_needs_the_token_changes_the_served_model_and_writes_beside_it(tiny_run, tmp_path):
    with edit_server(tiny_run, tmp_path) as url:
        refused = httpx.post(f"{url}/edit", json={"kind": "remove", "prototypes": [1]}, timeout=60)
        assert refused.status_code == 403 and "token" in refused.json()["error"]
        token = token_of(url)
        bad = httpx.post(f"{url}/edit", json={"kind": "remove", "prototypes": [99], "token": token}, timeout=60)
        assert bad.status_code == 400 and bad.json()["error"].startswith("remove: no prototype 99")
        done = httpx.post(f"{url}/edit", json={"kind": "remove", "prototypes": [1], "token": token}, timeout=300)
        assert done.status_code == 200, done.text
        report = done.json()
        assert report["edit"]["removed"] == [1] and set(report["before"]) == {"acc", "ce", "ece"}
        assert len(httpx.get(f"{url}/prototypes", timeout=60).json()["prototypes"]) == 7  # served model edited
        assert httpx.post(f"{url}/predict", json={"texts": ["a fine film"]}, timeout=60).status_code == 200
    written = tmp_path / "edits" / "001-remove"
    assert (written / "edited.ckpt").exists() and (written / "edit_report.md").exists()


@needs_chromium
def test_the_page_removes_a_prototype_and_shows_the_report(tiny_run, tmp_path):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM
    with edit_server(tiny_run, tmp_path) as url, sync_playwright() as p:
        browser, page, problems = browser_page(p)
        page.goto(url)
        assert page.locator("details.debug").is_visible()
        page.locator("details.class-group summary").first.click()
        page.locator(".card.proto form.act button", has_text="remove").first.click()
        page.wait_for_selector("section.report", timeout=300_000)
        report = page.locator("section.report").inner_text()
        assert "Edit: remove" in report and "predictions flipped" in report and "before" in report
        assert page.locator(".card.proto").count() == 7
        page.fill(".dbg input[name=phrases]", "")
        page.locator(".dbg form button", has_text="forbid").click()
        page.wait_for_selector("p.error")
        assert "forbid: give phrases" in page.locator("p.error").inner_text()
        browser.close()
    assert problems == []
