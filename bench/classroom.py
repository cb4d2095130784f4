"""A classroom on one server (issue 28, item 1): N browser sessions click "Start the default" and watch their job.

Starts the app (``streamlit run app.py``, .streamlit/config.toml's settings) on a free loopback port with a fresh
QCORE_HOME, opens N Playwright contexts of one headless Chromium, has each click Home's "Start the default" (all
as close together as one driver can) and watch its job page until it shows "finished". Meanwhile a thread polls
``/_stcore/health`` every 0.5 s and another samples the server's RSS. Prints, per run:

- health p50/p95/max (ms) while the sessions watch; render p50/p95 (s): from each click until the job page shows
  its status, and from each navigation until Home shows its button;
- when the server's answer reached each browser: the first websocket message carrying the job's status line
  (before the browser lays it out and paints it; the bench's browsers share the server's cores);
- sessions that saw "finished", and when (s after the clicks; the job's own time from the store);
- jobs run (from the store: how many, their states, whether any spec was measured twice);
- the server's peak RSS (MB, its process and children, the worker included);
- who used the CPU from the clicks until the last job page showed: the server, its worker (the job, which starts
  at the first click) and the bench's own Chromium renderers (in a real class each student's browser runs on their
  own machine; here they share the server's cores, so the render times are an upper bound).

Goal: health p95 < 200 ms, render p95 < 3 s, every session sees its result within one job's time plus the queue
ahead of it, no job run twice. Run it on a quiet machine: ``python bench/classroom.py --sessions 10,30``.
Needs Debian's /usr/bin/chromium and the playwright package (never ``playwright install``).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.browser import CHROMIUM, CHROMIUM_ARGS, start_server, stop_server, stop_workers  # noqa: E402

__all__ = ["run", "main"]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


class _Sampler(threading.Thread):
    """Polls the health endpoint and the server's RSS until stopped."""

    def __init__(self, url: str, pid: int) -> None:
        super().__init__(daemon=True)
        self.url, self.pid, self.stop = url, pid, threading.Event()
        self.health_ms: list[float] = []
        self.failed = 0
        self.rss_mb = 0.0

    def _rss(self) -> float:
        import psutil

        try:
            proc = psutil.Process(self.pid)
            procs = [proc, *proc.children(recursive=True)]
            return sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20
        except psutil.Error:
            return 0.0

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=60) as r:
                    r.read()
                self.health_ms.append((time.perf_counter() - t) * 1000)
            except OSError:
                self.failed += 1
            self.rss_mb = max(self.rss_mb, self._rss())
            self.stop.wait(0.5)


_STATUS_LINE = re.compile(rb"Job \w+: ")


def _frame(served: dict[int, float], session: int, data) -> None:
    """Record when the first websocket message carrying a job status line reached ``session``'s browser after the
    clicks: the server's answer, before the browser paints it."""
    raw = data if isinstance(data, bytes) else data.encode()
    if -1 in served and session not in served and _STATUS_LINE.search(raw):
        served[session] = time.monotonic() - served[-1]


def _cpu_seconds(server_pid: int) -> dict[str, float]:
    """CPU seconds (user + system) so far of the server, its children (the worker) and this bench's browsers."""
    import psutil

    def used(procs) -> float:
        total = 0.0
        for proc in procs:
            try:
                total += sum(proc.cpu_times()[:2])
            except psutil.Error:
                pass
        return total

    server = psutil.Process(server_pid)
    browsers = [c for c in psutil.Process().children(recursive=True) if "chrom" in c.name().lower()]
    return {"server": used([server]), "worker": used(server.children(recursive=True)), "browsers": used(browsers)}


def run(sessions: int, timeout_s: float) -> dict:
    """One classroom of ``sessions``; returns the figures (also printed)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    from qcore.runs.store import Store

    home = Path(tempfile.mkdtemp(prefix=f"qcore-classroom-{sessions}-"))
    proc, url = start_server(home)
    sampler = _Sampler(url, proc.pid)
    sampler.start()
    home_render, job_render, seen = [], [], {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            pages = [browser.new_context(viewport={"width": 1400, "height": 1000}).new_page() for _ in range(sessions)]
            served: dict[int, float] = {}  # session -> when the server's message with its job's status line arrived
            for i, page in enumerate(pages):
                page.on("websocket", lambda ws, i=i: ws.on("framereceived", lambda data, i=i: _frame(served, i, data)))
            for page in pages:
                t = time.monotonic()
                page.goto(url)
                page.get_by_role("button", name="Start the default").wait_for(timeout=timeout_s * 1000)
                home_render.append(time.monotonic() - t)
            cpu0 = _cpu_seconds(proc.pid)
            clicked = time.monotonic()
            served.clear()
            served[-1] = clicked  # from here on, frames count
            deadline = clicked + timeout_s
            for page in pages:
                page.get_by_role("button", name="Start the default").click()
            for page in pages:  # a session that never shows its job page is counted, not a crash of the bench
                try:
                    page.get_by_text(re.compile(r"^Job \w+: ")).first.wait_for(
                        timeout=max(1.0, deadline - time.monotonic()) * 1000)
                    job_render.append(time.monotonic() - clicked)
                except PlaywrightTimeout:
                    pass
            cpu = {k: v - cpu0[k] for k, v in _cpu_seconds(proc.pid).items()}
            cpu_wall = time.monotonic() - clicked
            while len(seen) < sessions and time.monotonic() < deadline:
                for i, page in enumerate(pages):
                    if i not in seen and page.get_by_text(re.compile(r"^Job \w+: finished")).count():
                        seen[i] = time.monotonic() - clicked
                time.sleep(1.0)
            browser.close()
    finally:
        sampler.stop.set()
        sampler.join(70)
        stop_server(proc)
        stop_workers(home)
    jobs = Store(home / "runs.sqlite").jobs(limit=1000)
    rows = Store(home / "runs.sqlite").results()
    keys = [(r.sweep_id, r.label) for r in rows]
    took = [j.finished_at - j.started_at for j in jobs if j.finished_at and j.started_at]
    out = {
        "sessions": sessions,
        "health_p50_ms": _pct(sampler.health_ms, 0.5),
        "health_p95_ms": _pct(sampler.health_ms, 0.95),
        "health_max_ms": max(sampler.health_ms, default=float("nan")),
        "health_failed": sampler.failed,
        "home_render_p50_s": _pct(home_render, 0.5),
        "home_render_p95_s": _pct(home_render, 0.95),
        "job_render_p50_s": _pct(job_render, 0.5),
        "job_render_p95_s": _pct(job_render, 0.95),
        "job_pages_shown": len(job_render),
        "job_served_p50_s": _pct([v for k, v in served.items() if k >= 0], 0.5),
        "job_served_p95_s": _pct([v for k, v in served.items() if k >= 0], 0.95),
        "finished_sessions": len(seen),
        "finished_first_s": min(seen.values(), default=float("nan")),
        "finished_last_s": max(seen.values(), default=float("nan")),
        "jobs_run": len(jobs),
        "job_states": ",".join(sorted(j.state for j in jobs)),
        "job_seconds": ",".join(f"{t:.0f}" for t in took),
        "rows_measured_twice": len(keys) - len(set(keys)),
        "server_rss_peak_mb": sampler.rss_mb,
        **{f"cpu_{k}_s": v for k, v in cpu.items()},
        "cpu_window_s": cpu_wall,
    }
    print(f"\n== {sessions} sessions ==")
    print(f"health: p50 {out['health_p50_ms']:.0f} ms, p95 {out['health_p95_ms']:.0f} ms, max "
          f"{out['health_max_ms']:.0f} ms ({len(sampler.health_ms)} checks, {sampler.failed} failed)")
    print(f"render: Home p50 {out['home_render_p50_s']:.1f} s, p95 {out['home_render_p95_s']:.1f} s; job page after "
          f"the click p50 {out['job_render_p50_s']:.1f} s, p95 {out['job_render_p95_s']:.1f} s "
          f"({len(job_render)}/{sessions} sessions showed it within the time limit); the server's answer with the "
          f"job's status reached the browsers at p50 {out['job_served_p50_s']:.1f} s, p95 "
          f"{out['job_served_p95_s']:.1f} s")
    print(f"finished: {len(seen)}/{sessions} sessions saw it, first at {out['finished_first_s']:.0f} s, last at "
          f"{out['finished_last_s']:.0f} s after the clicks (the job itself ran {out['job_seconds'] or '-'} s)")
    print(f"jobs run: {len(jobs)} ({out['job_states'] or 'none'}); rows measured twice: {out['rows_measured_twice']}")
    total = sum(cpu.values()) or float("nan")
    print(f"CPU from the clicks to the last job page ({cpu_wall:.1f} s): "
          + ", ".join(f"{k} {v:.1f} s ({100 * v / total:.0f}%)" for k, v in cpu.items()))
    print(f"server RSS peak: {out['server_rss_peak_mb']:.0f} MB (the server and its children, the worker included)")
    shutil.rmtree(home, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", default="10,30", help="comma-separated session counts, one run each (10,30)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds each run may take (1800)")
    args = ap.parse_args(argv)
    results = [run(int(n), args.timeout) for n in args.sessions.split(",") if n.strip()]
    print("\n" + " | ".join(results[0]) if results else "")
    for r in results:
        print(" | ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in r.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
