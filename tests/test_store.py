import os
import subprocess
import sys
import time

import pytest

from qcore.metrics.result import Result
from qcore.quant.spec import FP32, QuantSpec
from qcore.runs.store import Store, spec_key


def _result(sweep="s1", **kw):
    return Result(QuantSpec(), "resnet18", "fashion-mnist", sweep_id=sweep, top1=90.0, **kw)


def test_results_round_trip_filter_delete(tmp_path):
    st = Store(tmp_path / "runs.sqlite")
    a, b = _result(), _result(sweep="s2", status="error", error="boom")
    st.add_result(a)
    st.add_result(b)
    assert [r.run_id for r in st.results()] == [b.run_id, a.run_id]  # newest first
    got = st.results(sweep_id="s1")[0]
    assert got.to_dict() == a.to_dict()
    assert [r.error for r in st.results(status="error")] == ["boom"]
    with pytest.raises(ValueError, match="cannot filter by"):
        st.results(colour="red")
    st.set_pareto({a.run_id: True})
    assert st.results(sweep_id="s1")[0].pareto is True
    assert st.delete_results([a.run_id]) == 1
    assert [r.run_id for r in st.results()] == [b.run_id]


def test_default_path_is_in_the_data_home(_isolated_home):
    assert Store().path == _isolated_home / "runs.sqlite"


def test_job_lifecycle_and_queue(tmp_path):
    st = Store(tmp_path / "runs.sqlite")
    j1 = st.submit_job({"model": "resnet18"}, [QuantSpec().to_dict()])
    j2 = st.submit_job({"model": "resnet18"}, [])
    assert st.job(j1).state == "queued" and st.job(j1).total == 2
    assert st.queue_position(j1) == 1 and st.queue_position(j2) == 2
    job = st.claim_next_job(os.getpid())
    assert job.job_id == j1 and job.state == "running"
    assert st.queue_position(j1) == 0 and st.queue_position(j2) == 1
    st.request_cancel(j2)  # a queued job is cancelled at once
    assert st.job(j2).state == "cancelled"
    st.update_job(j1, done=1, message="half way")
    assert st.job(j1).message == "half way"
    with pytest.raises(ValueError, match="state='finished'"):
        st.update_job(j1, state="finished")


def test_dead_worker_marks_job_interrupted_and_resume(tmp_path):
    st = Store(tmp_path / "runs.sqlite")
    job_id = st.submit_job({}, [QuantSpec().to_dict()])
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    st.claim_next_job(proc.pid)
    st.add_result(Result(FP32, "m", "d", sweep_id=job_id))
    st.add_result(Result(QuantSpec(), "m", "d", sweep_id=job_id, status="cancelled"))
    assert st.job(job_id).state == "interrupted"
    assert st.done_spec_keys(job_id) == {spec_key(FP32.to_dict())}
    st.resume_job(job_id)
    assert st.job(job_id).state == "queued"
    assert [r.status for r in st.results(sweep_id=job_id)] == ["ok"]  # cancelled rows go; they will rerun


_WRITER = """
import os, sys, time
from qcore.metrics.result import Result
from qcore.quant.spec import QuantSpec
from qcore.runs.store import Store

st, stop, cap = Store(sys.argv[1]), sys.argv[2], time.monotonic() + 600
print("ready", flush=True)
while not os.path.exists(stop) and time.monotonic() < cap:  # until the test has seen enough of both
    st.add_result(Result(QuantSpec(), "m", "d", sweep_id="other"))
"""


def test_set_pareto_never_meets_database_is_locked_while_another_process_commits(tmp_path):
    """set_pareto reads then writes. Under a deferred BEGIN, a commit by another process between its read
    and its write failed at once with "database is locked" (the busy timeout cannot help a stale read
    snapshot): 273 of 369 calls failed in the report's stress test. BEGIN IMMEDIATE takes the lock first."""
    db = tmp_path / "runs.sqlite"
    st = Store(db)
    mine = [_result(sweep="mine") for _ in range(30)]
    for r in mine:
        st.add_result(r)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    stop = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(db), str(stop)], env=env, stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert writer.stdout.readline().strip() == "ready"
        calls, failures, flag, others = 0, [], False, 0
        # 4 s of both at once, and at least 10 calls and 10 commits each, however slow a loaded machine makes them
        start = time.monotonic()
        while True:
            assert writer.poll() is None, f"the writer stopped after {others} commits, {calls} calls here"
            assert time.monotonic() < start + 300, f"{calls} calls and {others} commits in 300 s"
            flag = not flag
            try:
                st.set_pareto({r.run_id: flag for r in mine})
            except Exception as exc:  # noqa: BLE001  (counted, shown below)
                failures.append(f"{type(exc).__name__}: {exc}")
            calls += 1
            if calls >= 10 and time.monotonic() >= start + 4:
                others = len(st.results(sweep_id="other"))
                if others >= 10:
                    break
        stop.touch()
        writer.wait(120)
    finally:
        writer.kill()
        writer.wait()
    others = len(st.results(sweep_id="other"))
    assert calls >= 10 and others >= 10, (calls, others)  # the two really overlapped
    assert failures == [], f"{len(failures)} of {calls} set_pareto calls failed: {failures[:3]}"
    assert {r.pareto for r in st.results(sweep_id="mine")} == {flag}
