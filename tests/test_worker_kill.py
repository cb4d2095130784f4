"""A worker killed in the middle of a sweep loses nothing that had finished: every committed row is
still in the database, the job shows as interrupted, and a resume measures only the rest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from qcore.spec import QuantSpec
from qcore.store import Store, spec_key
from qcore.sweep import SweepConfig

ROOT = Path(__file__).resolve().parent.parent
SPECS = [
    QuantSpec("int8", mode="dynamic"),
    QuantSpec("fp16"),
    QuantSpec("int4", granularity="per-group", calibration="minmax", mode="weight-only"),
    QuantSpec("int8", granularity="per-tensor", mode="dynamic"),
]


def test_killed_worker_keeps_finished_rows_and_resumes_the_rest(tmp_path, resnet18_checkpoint, fashion_mnist):
    from qcore.worker import run_job

    db = tmp_path / "runs.sqlite"
    store = Store(db)
    config = SweepConfig(weights=str(resnet18_checkpoint), calib_size=32, eval_limit=64, latency_budget_s=0.2)
    jid = store.submit_job(config.to_dict(), [s.to_dict() for s in SPECS])

    env = {**os.environ, "QCORE_HOME": str(tmp_path), "QCORE_DB": str(db)}
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "qcore", "worker", "--idle-exit", "60"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while len(store.results(sweep_id=jid)) < 2:
            assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the worker committed fewer than 2 results in 300 s"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)  # in the middle of the sweep: no clean-up of any kind
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        log.close()

    before = {r.run_id for r in store.results(sweep_id=jid)}
    assert 2 <= len(before) < len(SPECS) + 1, "the kill came too late to test anything"
    job = store.job(jid)
    assert job.state == "interrupted", job
    assert {r.run_id for r in store.results(sweep_id=jid)} == before  # every finished row is still there
    assert all(r.status == "ok" for r in store.results(sweep_id=jid))

    store.resume_job(jid)
    claimed = store.claim_next_job(os.getpid())
    assert claimed is not None and claimed.job_id == jid
    run_job(store, claimed)

    rows = store.results(sweep_id=jid)
    assert before <= {r.run_id for r in rows}  # the rows from before the kill were kept, not redone
    counts = Counter(spec_key(r.spec.to_dict()) for r in rows)
    wanted = [QuantSpec("fp32")] + SPECS
    assert sorted(counts) == sorted(spec_key(s.to_dict()) for s in wanted)
    assert set(counts.values()) == {1}, counts  # every spec exactly once
    base = next(r for r in rows if r.spec.is_reference)
    assert {r.baseline_run_id for r in rows} == {base.run_id}  # the resumed rows name the FP32 row of before
    assert store.job(jid).state == "done"
    assert store.job(jid).done == store.job(jid).total == len(wanted)
