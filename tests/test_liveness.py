"""A running job's process is told by more than its PID (issue 28, item 5): its start time and the worker's
heartbeat. A PID taken by another process, or a heartbeat that stopped, leaves the job interrupted (Resume),
not "running" for as long as that other process lives."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time

import pytest

from qcore.quant.spec import QuantSpec
from qcore.runs import liveness
from qcore.runs.store import Store
from qcore.service.worker import heartbeat


@pytest.fixture
def other():
    """A live process that is not the job's worker (it took the worker's PID, as far as the job knows)."""
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


def _running(tmp_path, pid: int) -> tuple[Store, str]:
    st = Store(tmp_path / "runs.sqlite")
    jid = st.submit_job({}, [QuantSpec().to_dict()])
    assert st.claim_next_job(pid).job_id == jid
    return st, jid


def _set(st: Store, jid: str, **fields) -> None:
    with sqlite3.connect(st.path) as c:
        c.execute(f"UPDATE jobs SET {', '.join(f'{k}=?' for k in fields)} WHERE job_id=?", (*fields.values(), jid))


def test_process_start_is_the_processes_own(other):
    start = liveness.process_start(other.pid)
    assert start is not None and start == liveness.process_start(other.pid)
    assert liveness.process_start(os.getpid()) != start  # this test's process started earlier
    other.kill()
    other.wait()
    assert liveness.process_start(other.pid) is None and not liveness.pid_alive(other.pid)


def test_a_pid_taken_by_another_process_is_not_the_worker(tmp_path, other):
    st, jid = _running(tmp_path, other.pid)
    assert st.job(jid).state == "running"  # the claimer, as recorded
    _set(st, jid, pid_start=liveness.process_start(other.pid) - 100)  # the worker that claimed it started earlier
    job = st.job(jid)
    assert job.state == "interrupted" and job.pid == other.pid, job
    st.resume_job(jid)  # Resume is offered and works
    assert st.job(jid).state == "queued"


def test_the_sweep_page_offers_resume_for_a_job_whose_pid_was_taken(tmp_path, other, monkeypatch):
    from tests.apptest import open_linked

    monkeypatch.setenv("QCORE_APP_NO_WORKER", "1")
    st = Store()  # the app's database (QCORE_HOME)
    jid = st.submit_job({}, [QuantSpec().to_dict()])
    st.claim_next_job(other.pid)
    _set(st, jid, pid_start=liveness.process_start(other.pid) - 100)
    at = open_linked("pages/sweep.py", job=jid)
    assert any("interrupted" in w.value for w in at.warning), [w.value for w in at.warning]
    assert not any(b.label == "Cancel" for b in at.button)
    next(b for b in at.button if b.label == "Resume the rest").click().run()
    assert st.job(jid).state == "queued"


def test_a_stale_heartbeat_is_not_a_running_worker(tmp_path, other):
    st, jid = _running(tmp_path, other.pid)
    st.beat(jid, other.pid)
    assert st.job(jid).state == "running"
    _set(st, jid, heartbeat=time.time() - liveness.STALE_S - 5)
    assert st.job(jid).state == "interrupted"


def test_a_live_worker_with_its_start_and_a_fresh_heartbeat_runs(tmp_path, other):
    st, jid = _running(tmp_path, other.pid)
    st.beat(jid, other.pid)
    st.mark_interrupted()
    assert st.job(jid).state == "running"
    st.request_cancel(jid)  # a live worker reads the flag
    assert st.job(jid).cancel and st.job(jid).state == "running"


def test_the_worker_beats_while_it_runs_a_job(tmp_path):
    st, jid = _running(tmp_path, os.getpid())

    def beat() -> float | None:
        with sqlite3.connect(st.path) as c:
            return c.execute("SELECT heartbeat FROM jobs WHERE job_id=?", (jid,)).fetchone()[0]

    assert beat() is None  # claimed: no heartbeat until the worker's thread writes one
    with heartbeat(st, jid, every_s=0.05):
        deadline = time.time() + 30
        while beat() is None and time.time() < deadline:
            time.sleep(0.05)
        first = beat()
        assert first is not None
        while beat() == first and time.time() < deadline:
            time.sleep(0.05)
        assert beat() > first
    last = beat()
    time.sleep(0.3)
    assert beat() == last  # the thread stopped with the job


OLD_JOBS = """CREATE TABLE jobs (job_id TEXT PRIMARY KEY, created_at REAL NOT NULL, state TEXT NOT NULL,
    config TEXT NOT NULL, specs TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '', pid INTEGER, started_at REAL, finished_at REAL,
    cancel INTEGER NOT NULL DEFAULT 0, error TEXT NOT NULL DEFAULT '')"""


def test_an_old_database_opens_and_its_running_job_is_judged_by_its_pid(tmp_path, other):
    db = tmp_path / "runs.sqlite"
    with sqlite3.connect(db) as c:
        c.execute(OLD_JOBS)
        for jid, pid in (("alive", other.pid), ("gone", 2**22 + 7)):
            c.execute("INSERT INTO jobs (job_id, created_at, state, config, specs, total, pid) VALUES "
                      "(?, ?, 'running', '{}', '[]', 1, ?)", (jid, time.time(), pid))
    st = Store(db)
    assert st.job("alive").state == "running" and st.job("gone").state == "interrupted"
    with sqlite3.connect(db) as c:
        columns = {row[1] for row in c.execute("PRAGMA table_info(jobs)")}
    assert {"pid_start", "heartbeat"} <= columns
