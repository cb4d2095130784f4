"""The app in headless Chromium, end to end: a small sweep from the Sweep page, the Pareto chart, a
hovered and a clicked point, the CSV download, a page switch and a reload back to the finished job.

Screenshots go to ``test-artifacts/``; the Pareto one is copied to ``assets/pareto.png`` (README).
Needs Debian's ``/usr/bin/chromium`` (never ``playwright install``).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pytest

from qcore.result import COLUMNS

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]  # fmt: skip

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, theme: str | None = None) -> tuple[subprocess.Popen, str]:
    """``streamlit run app.py`` on a free port with QCORE_HOME=home; returns (process, base URL)."""
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ROOT / "app.py"),
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.fileWatcherType",
        "none",
    ]
    if theme:
        cmd += ["--theme.base", theme]
    env = {**os.environ, "QCORE_HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("QCORE_DB", None)
    env.pop("QCORE_APP_NO_WORKER", None)
    log = open(home / "server.log", "wb")  # noqa: SIM115  (closed with the process)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited: {(home / 'server.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return proc, url
        except OSError:
            time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError("streamlit did not answer /_stcore/health within 120 s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def stop_workers(home: Path) -> None:
    """The app starts a detached worker; end the ones this test's jobs recorded."""
    from qcore.store import Store

    db = home / "runs.sqlite"
    if not db.exists():
        return
    for pid in {j.pid for j in Store(db).jobs() if j.pid}:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def launch(playwright, color_scheme: str = "light"):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True,
                                  color_scheme=color_scheme)  # fmt: skip
    return browser, context.new_page()


def wait_idle(page, timeout: float = 60_000) -> None:
    """Until the script has stopped running and no spinner is left."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        '() => !document.querySelector(\'[data-testid="stStatusWidget"], [data-testid="stSpinner"]\')',
        timeout=timeout,
    )


def center(page, locator) -> tuple[float, float]:
    """Where a plotly point is on the screen (after a rerun the chart may take a moment to draw)."""
    for _ in range(100):
        box = locator.bounding_box() if locator.count() else None
        if box and box["width"] > 0:
            return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.wait_for_timeout(200)
    raise AssertionError("the point was not drawn within 20 s")


def small_sweep_query(ckpt: str) -> str:
    """FP32 baseline, INT8 dynamic and FP16 on the random resnet18, with few images and a short budget."""
    q = [
        ("weights", "upload"),
        ("ckpt", ckpt),
        ("calib", "32"),
        ("eval", "64"),
        ("budget", "0.3"),
        ("g_precision", "FP32"),
        ("g_precision", "INT8"),
        ("g_precision", "FP16"),
        ("g_mode", "dynamic"),
    ]
    return urlencode(q)


def store_checkpoint(home: Path, checkpoint: Path) -> str:
    """Put the checkpoint where an upload lands (uploads/<hash>.pt); return the name the URL uses."""
    from ui import uploads

    return uploads.save_checkpoint(checkpoint.read_bytes())[0].name


def drive(page, url: str, ckpt: str) -> None:
    """The user's path: sweep, chart, hover, click, the other chart, CSV, Runs and back, reload."""
    from playwright.sync_api import expect

    page.goto(f"{url}/sweep?{small_sweep_query(ckpt)}")
    expect(page.get_by_text("2 spec(s)")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "sweep-settings.png"), full_page=True)
    page.get_by_role("button", name="Run sweep").click()
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()  # while it runs
    expect(page.get_by_role("progressbar")).to_be_visible()
    expect(page.get_by_text("finished").first).to_be_visible(timeout=240_000)
    assert "job=" in page.url
    chart = page.locator(".js-plotly-plot")
    points = chart.first.locator(".scatterlayer path.point")
    expect(points.first).to_be_visible()
    wait_idle(page)
    expect(chart).to_have_count(1)  # (while the page reruns, the old chart may linger a moment)
    expect(points).to_have_count(3)  # FP32, INT8, FP16
    expect(page.locator('[data-testid="stDataFrame"]').first).to_be_visible()
    page.wait_for_timeout(1000)  # the table draws on a canvas after it appears
    page.screenshot(path=str(ARTIFACTS / "pareto.png"), full_page=True)

    x, y = center(page, points.nth(1))
    page.mouse.move(x, y)
    hover = page.locator(".hoverlayer .hovertext")
    expect(hover.first).to_be_visible()
    assert "kernel" in hover.first.text_content() and "size" in hover.first.text_content()
    texts = []
    for i in range(3):  # the FP32 point says what its compiled reference cost to build
        page.mouse.move(*center(page, points.nth(i)))
        expect(hover.first).to_be_visible()
        texts.append(hover.first.text_content())
    assert any(t.startswith("FP32") and "build " in t for t in texts), texts
    page.mouse.move(x, y)
    page.mouse.click(x, y)
    expect(page.get_by_text("Full spec and manifest")).to_be_visible()
    expect(page.get_by_text("Agreement with FP32").first).to_be_visible()
    wait_idle(page)
    page.screenshot(path=str(ARTIFACTS / "sweep-details.png"), full_page=True)

    page.get_by_role("radio", name="accuracy vs size").click()  # the other chart, log size axis
    expect(chart.first.locator(".xtitle")).to_contain_text("size (bytes")
    wait_idle(page)
    assert "job=" in page.url and "x=" in page.url  # the job and the setting both stay in the URL
    page.get_by_role("radio", name="accuracy vs latency").click()
    expect(chart.first.locator(".xtitle")).to_contain_text("latency")
    wait_idle(page)  # a button re-drawn by a rerun would swallow the click below

    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    text = Path(download.value.path()).read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0].keys()) == COLUMNS
    assert sorted(r["precision"] for r in rows) == ["fp16", "fp32", "int8"]
    with page.expect_download() as download:
        page.get_by_role("button", name="Download HTML report").click()
    report = Path(download.value.path()).read_text()
    assert "Accuracy against latency" in report and "Manifest" in report and "plotly" in report
    assert "<script src=" not in report  # self-contained: plotly.js is inline

    wait_idle(page)
    page.get_by_role("link", name="Runs", exact=True).click()
    expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible()
    wait_idle(page)
    page.screenshot(path=str(ARTIFACTS / "runs.png"), full_page=True)
    page.get_by_role("link", name="Sweep & Pareto", exact=True).click()
    expect(page.get_by_text("finished").first).to_be_visible()
    expect(points.first).to_be_visible()
    page.reload()
    expect(page.get_by_text("finished").first).to_be_visible()
    assert "job=" in page.url


def test_sweep_chart_details_download_and_back(tmp_path, resnet18_checkpoint, fashion_mnist, monkeypatch):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    monkeypatch.setenv("QCORE_HOME", str(tmp_path))
    ckpt = store_checkpoint(tmp_path, resnet18_checkpoint)
    proc, url = start_server(tmp_path)
    try:
        with sync_playwright() as pw:
            browser, page = launch(pw)
            page.set_default_timeout(60_000)
            expect.set_options(timeout=120_000)  # the first page imports torch: slow on a busy machine
            try:
                drive(page, url, ckpt)
            except BaseException:
                page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
                raise
            browser.close()
        shutil.copyfile(ARTIFACTS / "pareto.png", ROOT / "assets" / "pareto.png")
    finally:
        stop_server(proc)
        stop_workers(tmp_path)
