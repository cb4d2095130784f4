"""Drive the app in headless Chromium: start a Streamlit server, launch the browser, wait for the page.

Shared by the browser test (``tests/test_browser.py``) and ``make screenshot`` (``scripts/screenshot.py``).
Needs Debian's ``/usr/bin/chromium`` (never ``playwright install``) and the ``playwright`` package.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

__all__ = ["ROOT", "CHROMIUM", "CHROMIUM_ARGS", "SERVER_START_S", "start_server", "stop_server", "stop_workers",
           "launch", "wait_idle", "center", "chart_points", "find_point", "hover_point", "click_point", "Hovered"]

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]  # fmt: skip
# How long a server may take to answer /_stcore/health: seconds when quiet, a minute or more at load 10 on 2 cores.
# A wait only costs its length when something is broken, so every wait here is generous.
SERVER_START_S = 300


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
    deadline = time.monotonic() + SERVER_START_S
    last = "no answer yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited (code {proc.returncode}) before it answered {url}/_stcore/health: "
                               f"{(home / 'server.log').read_text()[-2000:]}")  # fmt: skip
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=10) as r:  # a loaded server answers late
                body = r.read().strip()
                if body == b"ok":
                    return proc, url
                last = f"it answered {body[:80]!r}"
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(f"streamlit did not answer 'ok' at {url}/_stcore/health within {SERVER_START_S} s (last: "
                       f"{last}); its log: {(home / 'server.log').read_text()[-2000:]}")


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
    from qcore.runs.store import Store

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


def block_outside(context, url: str) -> list[str]:
    """Let ``context`` reach only the app at ``url`` (and data:/blob: URLs): every other request is aborted and
    its URL appended to the list returned, which a test asserts stays empty."""
    outside: list[str] = []

    def only_local(route) -> None:
        if route.request.url.startswith((url, "data:", "blob:")):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    return outside


IDLE_JS = """([quiet_ms, sel]) => {  // no run indicator for quiet_ms on end: a rerun that starts late is waited for
    const now = performance.now();
    if (document.querySelector(sel)) { window.__qcoreIdleSince = null; return false; }
    if (window.__qcoreIdleSince == null) window.__qcoreIdleSince = now;
    return now - window.__qcoreIdleSince >= quiet_ms;
}"""
RUNNING = '[data-testid="stStatusWidget"], [data-testid="stSpinner"]'


def wait_idle(page, timeout: float = 180_000, quiet_ms: int = 500) -> None:
    """Until the script has stopped running and no spinner is left, for ``quiet_ms`` on end (on a loaded machine a
    rerun can start a moment after the click that asked for it)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.wait_for_timeout(300)
    page.evaluate("() => { window.__qcoreIdleSince = null; }")
    try:
        page.wait_for_function(IDLE_JS, arg=[quiet_ms, RUNNING], timeout=timeout, polling=100)
    except PlaywrightTimeout as exc:
        raise AssertionError(f"the page at {page.url} was still running (a status widget or spinner showed: "
                             f"{RUNNING}) after {timeout / 1000:.0f} s") from exc


def center(page, locator, timeout_s: float = 120) -> tuple[float, float]:
    """Where a plotly point is on the screen (after a rerun the chart may take a moment to draw)."""
    deadline = time.monotonic() + timeout_s
    while True:
        box = locator.bounding_box() if locator.count() else None
        if box and box["width"] > 0:
            return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        if time.monotonic() > deadline:
            raise AssertionError(f"{locator} was not drawn within {timeout_s:.0f} s")
        page.wait_for_timeout(200)


# Every drawn point of a plotly chart, by what it is: the name of its trace, its customdata (a run id on the
# Pareto chart), its label (the hover text's first line), hover prefix (its first two lines, as the hover label's
# text starts) and hover text (lines joined by newlines), whether its trace skips the hover, and where its
# centre is on the screen.
# Each point's path carries plotly's datum for it (``.i``: its index in the trace), each trace group its trace.
# Never a point's position among the paths: that follows the traces' order, and a point timed while the machine
# was busy is drawn elsewhere in its trace (quiet rows first) with a legend trace of its own beside it.
POINTS_JS = """chart => {
    const plain = html => { const d = document.createElement('div'); d.innerHTML = html || ''; return d.textContent; };
    const out = [];
    for (const g of chart.querySelectorAll('.scatterlayer .trace')) {
        const trace = g.__data__ && g.__data__[0] && g.__data__[0].trace;
        if (!trace) continue;
        for (const p of g.querySelectorAll('path.point')) {
            const i = p.__data__ ? p.__data__.i : undefined;
            if (i === undefined) continue;
            const text = Array.isArray(trace.text) ? trace.text[i] : trace.text;
            const lines = String(text || '').split('<br>');
            const b = p.getBoundingClientRect();
            const cd = Array.isArray(trace.customdata) ? trace.customdata[i] : undefined;
            out.push({trace: trace.name || '', curve: trace.index, point: i,
                      customdata: cd === undefined ? null : cd, id: Array.isArray(cd) ? cd[0] : (cd ?? null),
                      label: plain(lines[0]), hover: lines.slice(0, 2).map(plain).join(''),
                      text: lines.map(plain).join('\\n'),
                      skip: trace.hoverinfo === 'skip', x: b.x + b.width / 2, y: b.y + b.height / 2, width: b.width});
        }
    }
    return out;
}"""


def chart_points(chart) -> list[dict]:
    """:data:`POINTS_JS` on ``chart`` (a locator of one ``.js-plotly-plot``): every drawn point, by what it is."""
    return chart.evaluate(POINTS_JS)


def _matches(p: dict, trace: str | None, id: str | None, label: str | None) -> bool:
    return ((trace is None or p["trace"] == trace) and (id is None or p["id"] == id)
            and (label is None or p["label"] == label) and p["width"] > 0)  # fmt: skip


def find_point(page, chart, *, trace: str | None = None, id: str | None = None, label: str | None = None,
               timeout_s: float = 120) -> dict:
    """The first drawn point of ``chart`` with that trace name (``"FP32"``: a precision's points), customdata id
    (a run id) and label, waiting until one is drawn (a rerun redraws the chart). Its ``x``, ``y``: its centre."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen = chart_points(chart) if chart.count() else []
        hit = next((p for p in seen if _matches(p, trace, id, label)), None)
        if hit:
            return hit
        if time.monotonic() > deadline:
            drawn = [(p["trace"], p["id"], p["label"]) for p in seen]
            raise AssertionError(f"no point with trace={trace!r} id={id!r} label={label!r} was drawn within "
                                 f"{timeout_s:.0f} s; drawn: {drawn}")  # fmt: skip
        page.wait_for_timeout(200)


_AROUND = [(1, 0), (-1, 0), (0, 1), (0, -1), (0.7, 0.7), (-0.7, 0.7), (0.7, -0.7), (-0.7, -0.7)]
FX_HOVER_JS = "(gd, [c, i]) => window.Plotly.Fx.hover(gd, [{curveNumber: c, pointNumber: i}])"


class Hovered(str):
    """A hover label's text; ``point``: whose (:func:`chart_points`); ``at``: where the mouse showed it, None
    when ``Plotly.Fx.hover`` did (no spot of the mouse singled the point out)."""

    point: dict
    at: tuple[float, float] | None

    def __new__(cls, text: str, point: dict, at: tuple[float, float] | None) -> Hovered:
        out = super().__new__(cls, text)
        out.point, out.at = point, at
        return out

    @property
    def by_mouse(self) -> bool:
        return self.at is not None


def _label_shown(page, chart, p: dict, tries: int = 10) -> str | None:
    """The hover label of point ``p`` once it shows (not the label of the point hovered before)."""
    hover = chart.locator(".hoverlayer .hovertext")
    for _ in range(tries):
        hit = next((t for t in hover.all_text_contents() if t and t.startswith(p["hover"])), None)
        if hit:
            return hit
        page.wait_for_timeout(150)
    return None


def _hover_by_mouse(page, chart, p: dict) -> Hovered | None:
    """The mouse at ``p``'s centre, then at spots inside its marker away from its neighbours, until its label shows.

    plotly labels the closest point, and two rows with the same top-1 and latency (FP32 and INT8 dynamic on a random
    resnet18, whose one Linear layer is all that mode quantizes) can overlap to the pixel."""
    others = [(q["x"], q["y"]) for q in chart_points(chart)
              if not q["skip"] and (q["curve"], q["point"]) != (p["curve"], p["point"])]  # fmt: skip
    r = max(0.6 * p["width"] / 2, 1.0)
    around = [(p["x"] + dx * r, p["y"] + dy * r) for dx, dy in _AROUND]
    around.sort(key=lambda s: -min((math.dist(s, o) for o in others), default=0.0))
    for x, y in [(p["x"], p["y"]), *around[:4]]:
        page.mouse.move(x + 40, y + 40)  # off it first: a move to where the mouse already is hovers nothing
        page.mouse.move(x, y, steps=4)
        hit = _label_shown(page, chart, p)
        if hit:
            return Hovered(hit, p, (x, y))
    return None


def hover_point(page, chart, *, trace: str | None = None, id: str | None = None, label: str | None = None,
                timeout_s: float = 120) -> Hovered:
    """Hover the mouse over the point :func:`find_point` finds and return its hover label's text, once the label
    is that point's (its first two lines), not the one of the point hovered before, which may still show.

    Only a point that no spot of the mouse singles out (:func:`_hover_by_mouse`) is hovered the way plotly's mouse
    handler does it, ``Plotly.Fx.hover`` with its trace and index: the result's ``by_mouse`` says which."""
    deadline = time.monotonic() + timeout_s
    while True:
        p = find_point(page, chart, trace=trace, id=id, label=label, timeout_s=timeout_s)
        hit = _hover_by_mouse(page, chart, p)
        if hit:
            return hit
        if chart.evaluate("() => !!(window.Plotly && window.Plotly.Fx && window.Plotly.Fx.hover)"):
            chart.evaluate(FX_HOVER_JS, [p["curve"], p["point"]])
            text = _label_shown(page, chart, p)
            if text:
                return Hovered(text, p, None)
        if time.monotonic() > deadline:
            shown = chart.locator(".hoverlayer .hovertext").all_text_contents()
            raise AssertionError(f"hovering {p['label']!r} (trace {p['trace']!r}, id {p['id']!r}) at "
                                 f"({p['x']:.0f}, {p['y']:.0f}) did not show its label within {timeout_s:.0f} s; "
                                 f"shown: {shown}")  # fmt: skip


def click_point(page, chart, *, trace: str | None = None, id: str | None = None, label: str | None = None,
                timeout_s: float = 120) -> Hovered:
    """Click, with the mouse, a point with that trace name, id and label: the first of them whose own label the
    mouse shows somewhere inside its marker (so the click selects that point, not one drawn over it). Returns what
    was hovered before the click (``.point``: which point)."""
    deadline = time.monotonic() + timeout_s
    while True:
        for p in [q for q in chart_points(chart) if _matches(q, trace, id, label)]:
            hit = _hover_by_mouse(page, chart, p)
            if hit:
                page.mouse.click(*hit.at)
                return hit
        if time.monotonic() > deadline:
            drawn = [(q["trace"], q["id"], q["label"]) for q in chart_points(chart)]
            raise AssertionError(f"no point with trace={trace!r} id={id!r} label={label!r} showed its own label "
                                 f"under the mouse within {timeout_s:.0f} s; drawn: {drawn}")  # fmt: skip
        page.wait_for_timeout(200)
