"""The Learn page in headless Chromium: moving the bits slider changes the numbers (the scale, the SQNR)
and the URL follows. Its own server on a free port, its own QCORE_HOME; a random-weights resnet18.
A screenshot goes to ``test-artifacts/learn.png``."""

from __future__ import annotations

import re

import pytest

from tests.test_browser import (
    ARTIFACTS,
    CHROMIUM,
    launch,
    start_server,
    stop_server,
    stop_workers,
    store_checkpoint,
    wait_idle,
)
from tests.test_browser_charts import CUT  # a metric's label or value cut to "0.…"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing"),
]


def _metric(page, label: str) -> str:
    box = page.get_by_test_id("stMetric").filter(has=page.get_by_text(label, exact=True))
    return box.get_by_test_id("stMetricValue").inner_text()


def _sqnr(page) -> str:
    """The SQNR of the asymmetric staircase, as the page writes it (``SQNR 21.0 dB``)."""
    text = page.get_by_text(re.compile(r"^asymmetric: s = ")).inner_text()
    return re.search(r"SQNR ([0-9.]+ dB)", text).group(1)


def test_bits_slider_changes_scale_and_sqnr(tmp_path, resnet18_checkpoint, fashion_mnist, monkeypatch):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    monkeypatch.setenv("QCORE_HOME", str(tmp_path))
    ckpt = store_checkpoint(tmp_path, resnet18_checkpoint)
    proc, url = start_server(tmp_path)
    try:
        with sync_playwright() as pw:
            browser, page = launch(pw)
            page.set_default_timeout(120_000)
            expect.set_options(timeout=180_000)  # the first page imports torch and captures: slow on a busy machine
            try:
                page.goto(f"{url}/learn?model=resnet18&weights=upload&ckpt={ckpt}&layer=fc&kind=activations&bits=4")
                expect(page.get_by_text("5 · What it does to the model")).to_be_visible()
                wait_idle(page, 180_000)
                scale, sqnr = _metric(page, "scale s"), _sqnr(page)
                assert _metric(page, "codes") == "0..15"
                slider = page.get_by_role("slider", name="Bits")
                slider.focus()
                slider.press("ArrowRight")  # 4 -> 5 bits
                expect(page.get_by_test_id("stMetric").filter(has=page.get_by_text("codes", exact=True))
                       .get_by_test_id("stMetricValue")).to_have_text("0..31")
                # the sections further down are redrawn a moment later: wait for the SQNR line to change
                expect(page.get_by_text(re.compile(r"^asymmetric: s = "))).not_to_contain_text(f"SQNR {sqnr}")
                wait_idle(page, 180_000)
                assert "bits=5" in page.url and "layer=fc" in page.url
                assert _metric(page, "scale s") != scale
                assert float(_sqnr(page).split()[0]) > float(sqnr.split()[0])  # one more bit, less noise
                page.set_viewport_size({"width": 1024, "height": 1000})  # a laptop, or a projector
                for label in ("scale s", "zero point z", "codes"):  # whole, not "0.…" (issue 24, item 7)
                    box = page.get_by_test_id("stMetric").filter(has=page.get_by_text(label, exact=True))
                    assert not box.evaluate(CUT), f"{label} is cut at 1024 px"
                page.screenshot(path=str(ARTIFACTS / "learn.png"), full_page=True)
            except BaseException:
                page.screenshot(path=str(ARTIFACTS / "learn-failure.png"), full_page=True)
                raise
            browser.close()
    finally:
        stop_server(proc)
        stop_workers(tmp_path)
