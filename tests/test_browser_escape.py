"""Issue 28, item 2 in headless Chromium: every page opened with Markdown and HTML in every value it reads from
its URL, and an upload whose record names it with Markdown (a hand-written upload request can; a file picker
cannot), renders no link, image or element that is not the app's own, and makes no request to a host but the
app's loopback address (every other request is aborted and recorded). Needs Debian's ``/usr/bin/chromium`` and
playwright (skipped without either); about a minute here."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from urllib.parse import urlencode

import pytest

from scripts.browser import CHROMIUM, block_outside, launch, start_server, stop_server, stop_workers, wait_idle
from tests.test_app_escape import LINK, PARAMS, PAYLOAD

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
    pytest.mark.skipif(find_spec("playwright") is None, reason="playwright is missing (pip install playwright)"),
    pytest.mark.timeout(1200),
]
HTML = "<img src=http://attacker.test/html.png><a href=http://attacker.test/a>a</a>"
PAGES = ["", "explore", "sweep", "layers", "learn", "runs"]
# what the payloads would make: a link or image to the attacker, or any element carrying their address
FOREIGN_JS = """() => [...document.querySelectorAll(
    'a[href*="attacker"], img[src*="attacker"], [src*="attacker"], [href*="attacker"], [srcset*="attacker"]'
)].map(e => e.outerHTML.slice(0, 200))"""


def test_no_page_renders_or_fetches_what_a_user_sent(tmp_path, monkeypatch):
    import torch
    from playwright.sync_api import sync_playwright

    from qcore.service import uploads
    from tests.crafted import torch_bytes

    monkeypatch.setenv("QCORE_HOME", str(tmp_path))
    uploads.save_checkpoint(torch_bytes({"w": torch.ones(2)}), f"{LINK} {HTML}.pt")  # the record keeps the name
    proc, url = start_server(tmp_path)
    seen: dict[str, list[str]] = {}
    shown: dict[str, bool] = {}
    try:
        with sync_playwright() as pw:
            browser, page = launch(pw)
            outside = block_outside(page.context, url)
            page.set_default_timeout(180_000)
            for name in PAGES:
                query = urlencode({key: f"{PAYLOAD} {HTML}" for key in PARAMS})
                page.goto(f"{url}/{name}?{query}")
                page.wait_for_selector('[data-testid="stMain"]')
                if name in ("explore", "sweep"):  # these quote a refused value: wait until they do
                    page.locator('[data-testid="stAlert"]', has_text="sign in again").first.wait_for()
                wait_idle(page, quiet_ms=2000)
                page.wait_for_timeout(1000)  # images and fonts a rendered message would load
                for header in page.get_by_text("Uploads on this server").all():  # the shared list, opened
                    header.click()
                    wait_idle(page)
                seen[name] = page.evaluate(FOREIGN_JS)
                shown[name] = "sign in again" in page.inner_text("body")
            browser.close()
    finally:
        stop_server(proc)
        stop_workers(tmp_path)
    assert not outside, outside
    assert not any(seen.values()), seen
    assert shown["explore"] and shown["sweep"] and shown["layers"], shown  # shown as text (values, the upload)
