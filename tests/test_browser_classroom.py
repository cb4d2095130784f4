"""A classroom on one server, in headless Chromium (issue 28, item 1): sessions that click "Start the default" at
the same time share one job and every one of them sees it finish; a job page's polling backs off while the job's
progress stands still and speeds up again when it moves. The figures for 10 and 30 sessions: bench/classroom.py.
Needs Debian's ``/usr/bin/chromium`` (never ``playwright install``)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts.browser import CHROMIUM, CHROMIUM_ARGS, launch, start_server, stop_server, stop_workers

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]
# The offline default (mobilenet_v3_small's shipped baseline, 2,000 images, 3 × 6 s of timing, a first C++ build
# of the compiled FP32 reference) takes a couple of minutes when the machine is quiet, many more at load 10 on
# 2 cores. A wait only costs its length when something is broken.
JOB_MS = 1_800_000
SESSIONS = 4


@pytest.fixture
def server(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    proc, url = start_server(home)
    yield home, url
    stop_server(proc)
    stop_workers(home)


def test_sessions_that_start_the_default_at_once_share_one_job_and_all_see_it_finish(server):
    from playwright.sync_api import expect, sync_playwright

    from qcore.runs.store import Store

    home, url = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        pages = [browser.new_context(viewport={"width": 1400, "height": 1000}).new_page() for _ in range(SESSIONS)]
        for page in pages:
            page.goto(url)
        buttons = [page.get_by_role("button", name="Start the default") for page in pages]
        for b in buttons:
            expect(b).to_be_visible(timeout=300_000)
        for b in buttons:  # as close together as one driver clicks
            b.click()
        for page in pages:
            page.wait_for_url(re.compile(r"job=\w+"), timeout=300_000)
        jids = {re.search(r"job=(\w+)", page.url).group(1) for page in pages}
        assert len(jids) == 1, jids
        (jid,) = jids
        joined = []
        for page in pages:
            expect(page.get_by_text(f"Job {jid}:").first).to_be_visible(timeout=300_000)
        note = re.compile(rf"Joined job {jid}, started by another session")
        expect(pages[-1].get_by_text(note)).to_be_visible(timeout=300_000)  # (the last click joined, at least)
        for page in pages:
            joined.append(page.get_by_text(note).count() > 0)
        assert sorted(joined) == [False] + [True] * (SESSIONS - 1), joined
        finished = re.compile(rf"^Job {jid}: finished")
        deadline = time.monotonic() + JOB_MS / 1000
        for page in pages:  # every session sees it, each within the job's time
            expect(page.get_by_text(finished)).to_be_visible(timeout=max(1000, (deadline - time.monotonic()) * 1000))
        store = Store(home / "runs.sqlite")
        jobs = store.jobs()
        assert [(j.job_id, j.state) for j in jobs] == [(jid, "done")], [(j.job_id, j.state) for j in jobs]
        assert len(store.results(sweep_id=jid)) == 3  # FP32, INT8, INT4: each measured once

        late = browser.new_context().new_page()  # a visitor after it finished: the stored results are offered
        late.goto(url)
        offer = late.get_by_role("link", name=re.compile(rf"Already measured .*job {jid}"))
        expect(offer).to_be_visible(timeout=300_000)
        browser.close()


def _sent(page) -> list[float]:
    """Times at which the page sent a message to the server over its websocket (a fragment's rerun is one)."""
    sent: list[float] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda _payload: sent.append(time.monotonic())))
    return sent


def test_a_job_page_polls_less_while_the_job_stands_still_and_again_when_it_moves(server):
    from playwright.sync_api import expect, sync_playwright

    from qcore.quant.spec import QuantSpec
    from qcore.runs.store import Store
    from qcore.runs.sweep import SweepConfig

    home, url = server
    store = Store(home / "runs.sqlite")
    jid = store.submit_job(SweepConfig().to_dict(), [QuantSpec("int8").to_dict(), QuantSpec("fp16").to_dict()])
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(900)"])  # alive; the fixture ends it
    store.claim_next_job(holder.pid)  # "running" under a live process that does nothing: the job stands still
    store.update_job(jid, message="FP32 baseline")
    with sync_playwright() as p:
        browser, page = launch(p)
        sent = _sent(page)
        page.goto(f"{url}/sweep?job={jid}")
        expect(page.get_by_text(re.compile(rf"^Job {jid}: running"))).to_be_visible(timeout=300_000)
        page.wait_for_timeout(25_000)  # 5 s at one read a second, then slower
        t0 = time.monotonic()
        page.wait_for_timeout(20_000)
        quiet = [t for t in sent if t >= t0]
        assert len(quiet) <= 8, f"{len(quiet)} messages in 20 s while nothing changed"  # 1 s polling: 20
        store.update_job(jid, done=1, message="INT8 · evaluating")
        expect(page.get_by_text("1/3 measured").first).to_be_visible(timeout=60_000)  # seen within a slow tick
        t1 = time.monotonic()
        page.wait_for_timeout(4_000)
        assert len([t for t in sent if t >= t1]) >= 2, "polling did not speed up again after the job moved"
        browser.close()
    store.update_job(jid, state="cancelled", finished_at=time.time())
    holder.kill()
    holder.wait()
