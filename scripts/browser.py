"""Drive the app in headless Chromium: start a Streamlit server, launch the browser, wait for the page.

Shared by the browser test (``tests/test_browser.py``) and ``make screenshot`` (``scripts/screenshot.py``).
Needs Debian's ``/usr/bin/chromium`` (never ``playwright install``) and the ``playwright`` package.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

__all__ = ["ROOT", "CHROMIUM", "CHROMIUM_ARGS", "start_server", "stop_server", "stop_workers", "launch", "wait_idle",
           "center"]

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]  # fmt: skip


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
    env = {**os.environ, "QCORE_HOME": str(home)}
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
