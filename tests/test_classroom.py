"""Many sessions on one server (issue 28, item 1): no garbage collection after every script run, one job per
request (the same settings and specs join the queued or running job), results already stored offered instead of
measuring again, each queued session told its position and wait, and the job page's polling backing off while a
job's progress stands still. The browser side: tests/test_browser_classroom.py."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import tomllib

from qcore.quant.spec import QuantSpec
from qcore.runs import requests
from qcore.runs.store import Store
from qcore.runs.sweep import SweepConfig
from tests.apptest import ROOT, open_linked

SPECS = [QuantSpec("int8").to_dict(), QuantSpec("fp16").to_dict()]
DEFAULT_SPECS = [QuantSpec("int8", granularity="per-channel", calibration="minmax", mode="static"),
                 QuantSpec("int4", granularity="per-group", group_size=64, calibration="mse", mode="weight-only")]


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "runs.sqlite")


# -- the server's settings ------------------------------------------------------------------------------


def test_the_server_runs_no_full_collection_after_each_script_run():
    """Streamlit's runner.postScriptGC (gc.collect(2) after every run, fragment runs included) is off, in the
    file and as Streamlit reads it there (a misspelt option would be ignored and stay on)."""
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["runner"]["postScriptGC"] is False
    read = subprocess.run([sys.executable, "-c", "from streamlit import config; "
                           "print(config.get_option('runner.postScriptGC'))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert read.stdout.strip() == "False", read.stdout + read.stderr


# -- one job per request ----------------------------------------------------------------------------------


def test_the_same_request_joins_the_queued_job_and_another_does_not(store, tmp_path):
    cfg = SweepConfig().to_dict()
    first, joined = requests.submit_or_join(store, cfg, SPECS)
    assert not joined
    assert requests.submit_or_join(store, cfg, list(reversed(SPECS))) == (first, True)  # specs in any order
    store.claim_next_job(os.getpid())  # running: still joined
    assert requests.submit_or_join(store, cfg, SPECS) == (first, True)
    other = [requests.submit_or_join(store, c, s)
             for c, s in [({**cfg, "eval_limit": 100}, SPECS), (cfg, SPECS[:1]), ({**cfg, "seed": 1}, SPECS)]]
    assert [j for _, j in other] == [False] * 3 and len({jid for jid, _ in other} | {first}) == 4
    store.update_job(first, state="done", finished_at=time.time())
    again, joined = requests.submit_or_join(store, cfg, SPECS)  # a finished job is not joined: measured again
    assert not joined and again != first
    assert store.submit_job(cfg, SPECS) not in (first, again)  # other pages' jobs (Explore, ...) never join


def test_a_weights_file_is_part_of_the_request(store, tmp_path):
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"one")
    cfg = {**SweepConfig().to_dict(), "weights": str(ckpt)}
    key = requests.request_key("sweep", cfg, SPECS)
    assert requests.request_key("sweep", cfg, SPECS) == key
    ckpt.write_bytes(b"other weights")  # the same path, other content
    assert requests.request_key("sweep", cfg, SPECS) != key
    assert requests.request_key("layers", cfg, SPECS) != requests.request_key("sweep", cfg, SPECS)


def test_ten_clicks_at_once_queue_one_job(tmp_path):
    path, cfg = tmp_path / "runs.sqlite", SweepConfig().to_dict()
    Store(path)
    got, start = [], threading.Barrier(10)

    def click():
        st = Store(path)  # a session's own connection, as the app's cached store opens one per call
        start.wait()
        got.append(requests.submit_or_join(st, cfg, SPECS))

    threads = [threading.Thread(target=click) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len({jid for jid, _ in got}) == 1 and sorted(j for _, j in got) == [False] + [True] * 9
    assert len(Store(path).jobs()) == 1


def test_a_database_of_before_keys_opens_and_its_jobs_are_not_joined(tmp_path):
    """A runs.sqlite made before request_key (and before kind and result) gets the column when opened."""
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE jobs (job_id TEXT PRIMARY KEY, created_at REAL NOT NULL, state TEXT NOT NULL, "
                  "config TEXT NOT NULL, specs TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL "
                  "DEFAULT 0, message TEXT NOT NULL DEFAULT '', pid INTEGER, started_at REAL, finished_at REAL, "
                  "cancel INTEGER NOT NULL DEFAULT 0, error TEXT NOT NULL DEFAULT '')")  # fmt: skip
        c.execute("INSERT INTO jobs (job_id, created_at, state, config, specs, total) VALUES (?,?,?,?,?,?)",
                  ("0ld0ld0ld0", time.time(), "queued", json.dumps(SweepConfig().to_dict()), json.dumps(SPECS), 3))
    st = Store(path)
    with sqlite3.connect(path) as c:
        assert "request_key" in {r[1] for r in c.execute("PRAGMA table_info(jobs)")}
    assert st.job("0ld0ld0ld0").state == "queued"
    jid, joined = requests.submit_or_join(st, SweepConfig().to_dict(), SPECS)
    assert not joined and jid != "0ld0ld0ld0"
    assert requests.submit_or_join(Store(path), SweepConfig().to_dict(), SPECS) == (jid, True)  # opened again


# -- stored results, queue and wait -------------------------------------------------------------------------


def _stored_rows(store, jid: str, specs: list[dict], status: str = "ok") -> None:
    from qcore.metrics.result import Result

    for d in [QuantSpec("fp32").to_dict(), *specs]:
        r = Result(spec=QuantSpec.from_dict(d), model="mobilenet_v3_small", dataset="fashion-mnist")
        r.sweep_id, r.status = jid, ("ok" if d["precision"] == "fp32" else status)
        store.add_result(r)


def test_results_stored_for_the_same_request_are_found(store):
    cfg = SweepConfig().to_dict()
    assert requests.stored_job(store, cfg, SPECS) is None
    jid = store.submit_job(cfg, SPECS)
    _stored_rows(store, jid, SPECS)
    assert requests.stored_job(store, cfg, SPECS) is None  # still queued: joined, not offered
    store.update_job(jid, state="done", finished_at=time.time())
    assert requests.stored_job(store, cfg, SPECS).job_id == jid
    assert requests.stored_job(store, cfg, SPECS[:1]).job_id == jid  # a subset is stored too
    assert requests.stored_job(store, {**cfg, "eval_limit": 100}, SPECS) is None  # other settings
    assert requests.stored_job(store, cfg, [*SPECS, QuantSpec("bf16").to_dict()]) is None  # a spec not measured
    int4 = [QuantSpec("int4", granularity="per-group", group_size=64, mode="weight-only").to_dict()]
    failed = store.submit_job(cfg, int4)
    _stored_rows(store, failed, int4, status="error")
    store.update_job(failed, state="done", finished_at=time.time())
    assert requests.stored_job(store, cfg, int4) is None  # not ok


def test_the_wait_is_the_running_jobs_rest_and_the_queue_ahead(store):
    cfg = SweepConfig().to_dict()
    ids = [store.submit_job({**cfg, "seed": i}, SPECS) for i in range(3)]
    store.claim_next_job(os.getpid())
    store.update_job(ids[0], done=1)
    queue = requests.queue(store)
    assert [j.job_id for j in queue] == ids and [j.state for j in queue] == ["running", "queued", "queued"]
    steps = {ids[0]: (100.0, 10.0, 10.0), ids[1]: (50.0, 5.0, 5.0), ids[2]: (1.0, 1.0, 1.0)}
    started = queue[0].started_at
    # the running job did its first step (estimated 100 s) in 50 s: its 20 s left take 10 s; then 60 s for ids[1]
    assert requests.wait_seconds(queue, ids[2], lambda j: steps[j.job_id], now=started + 50) == pytest.approx(70)
    assert requests.wait_seconds(queue, ids[1], lambda j: steps[j.job_id], now=started + 50) == pytest.approx(10)
    assert requests.wait_seconds(queue, ids[0], lambda j: steps[j.job_id]) is None  # running: no wait
    assert requests.wait_seconds(queue, ids[2], lambda j: ()) is None  # no estimate: none said


def test_polling_backs_off_while_nothing_changes():
    from ui.jobs import POLL_MAX_S, POLL_S, poll_interval

    assert poll_interval(0) == POLL_S == 1.0
    assert POLL_S < poll_interval(10) < POLL_MAX_S == poll_interval(60) == 5.0


# -- the pages: joined, offered, queued ----------------------------------------------------------------


@pytest.fixture
def no_worker(monkeypatch):
    monkeypatch.setenv("QCORE_APP_NO_WORKER", "1")


def _click_start(at):
    next(b for b in at.button if b.label == "Start the default").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_two_sessions_starting_the_default_share_one_job_and_the_second_is_told(no_worker):
    first = _click_start(open_linked())
    second = _click_start(open_linked())
    jobs = Store().jobs()
    assert len(jobs) == 1, [j.job_id for j in jobs]
    jid = jobs[0].job_id
    assert first.query_params["job"] == [jid] or first.query_params["job"] == jid
    said = [i.value for i in second.info]
    assert any(s.startswith(f"Joined job {jid}, started by another session") and "position 1 in the queue" in s
               for s in said), said  # fmt: skip
    assert not any(s.startswith("Joined job") for s in (i.value for i in first.info))  # the first queued it


def test_stored_results_of_the_default_are_offered_on_home(no_worker):
    at = open_linked()
    assert not [p for p in at.get("page_link") if "Already measured" in p.proto.label]
    cfg, specs = SweepConfig().to_dict(), [s.to_dict() for s in DEFAULT_SPECS]  # Home's, as app.py says them
    st = Store()
    jid = st.submit_job(cfg, specs)
    _stored_rows(st, jid, specs)
    st.update_job(jid, state="done", finished_at=time.time())
    from streamlit import cache_data

    cache_data.clear()
    at = open_linked()
    links = [p.proto for p in at.get("page_link") if "Already measured" in p.proto.label]
    assert len(links) == 1 and jid in links[0].label, [p.proto.label for p in at.get("page_link")]


def test_the_classroom_bench_starts():
    """bench/classroom.py (the figures for 10 and 30 sessions) is run by hand: a broken import would go unseen."""
    out = subprocess.run([sys.executable, "bench/classroom.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert out.returncode == 0 and "--sessions" in out.stdout, out.stderr
