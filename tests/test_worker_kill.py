"""A worker (or a CLI sweep) killed in the middle of a sweep loses nothing that had finished: every committed
row is still in the database, the job shows as interrupted, and a resume measures only the rest."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from qcore.quant.spec import QuantSpec
from qcore.runs.store import Store, spec_key
from qcore.runs.sweep import SweepConfig

ROOT = Path(__file__).resolve().parent.parent
# How long a sweep may take to commit its first two rows: FP32 first, with its compiled reference (a C++ build of
# a minute or more on a quiet machine, unless an earlier test left it in the shared build cache; several minutes
# at load 10-15 on 2 cores). A wait only costs its length when something is broken.
FIRST_ROWS_S = 900
pytestmark = pytest.mark.timeout(1800)  # that wait, then the resume's sweep: more than the suite's 900 s per test
SPECS = [
    QuantSpec("int8", mode="dynamic"),
    QuantSpec("fp16"),
    QuantSpec("int4", granularity="per-group", calibration="minmax", mode="weight-only"),
    QuantSpec("int8", granularity="per-tensor", mode="dynamic"),
]


def test_killed_worker_keeps_finished_rows_and_resumes_the_rest(tmp_path, resnet18_checkpoint, fashion_mnist):
    from qcore.service.worker import run_job

    db = tmp_path / "runs.sqlite"
    store = Store(db)
    config = SweepConfig(model="resnet18", weights=str(resnet18_checkpoint), calib_size=32, eval_limit=64,
                         latency_budget_s=0.2)
    jid = store.submit_job(config.to_dict(), [s.to_dict() for s in SPECS])

    env = {**os.environ, "QCORE_HOME": str(tmp_path), "QCORE_DB": str(db)}
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "qcore", "worker", "--idle-exit", "60"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + FIRST_ROWS_S
        while len(store.results(sweep_id=jid)) < 2:
            assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
            assert time.monotonic() < deadline, f"the worker committed fewer than 2 results in {FIRST_ROWS_S} s"
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


def test_killed_cli_sweep_resumes_with_every_spec_once(tmp_path, resnet18_checkpoint, fashion_mnist, capsys):
    """``python -m qcore sweep`` killed mid-way, then ``--resume JOB``: the rows from before the kill are kept,
    the rest measured, every spec exactly once, and the CSV written at the end holds them all."""
    from qcore.cli import main

    db = tmp_path / "runs.sqlite"
    store = Store(db)
    grid = ["--precision", "int8,fp16", "--mode", "dynamic", "--granularity", "per-channel,per-tensor"]
    cmd = [sys.executable, "-m", "qcore", "sweep", "--model", "resnet18", "--weights", str(resnet18_checkpoint), *grid,
           "--calib-size", "32", "--eval-limit", "64", "--latency-budget", "0.2"]  # fmt: skip
    env = {**os.environ, "QCORE_HOME": str(tmp_path), "QCORE_DB": str(db), "PYTHONPATH": str(ROOT)}
    log = open(tmp_path / "cli.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + FIRST_ROWS_S
        while not (jobs := store.jobs()) or len(store.results(sweep_id=jobs[0].job_id)) < 2:
            assert proc.poll() is None, (tmp_path / "cli.log").read_text()[-2000:]
            assert time.monotonic() < deadline, f"the CLI committed fewer than 2 results in {FIRST_ROWS_S} s"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        log.close()
    (job,) = store.jobs()
    assert job.job_id.startswith("cli-") and f"--resume {job.job_id}" in (tmp_path / "cli.log").read_text()
    assert store.job(job.job_id).state == "interrupted"  # its process is gone
    before = {r.run_id for r in store.results(sweep_id=job.job_id)}
    assert 2 <= len(before) < 4, "the kill came too late to test anything"

    out = tmp_path / "all.csv"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QCORE_DB", str(db))
        assert main(["sweep", "--resume", job.job_id, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"resuming sweep {job.job_id}: {4 - len(before)} of 4 spec(s) left to measure" in err

    rows = store.results(sweep_id=job.job_id)
    assert before <= {r.run_id for r in rows}
    counts = Counter(spec_key(r.spec.to_dict()) for r in rows)
    wanted = [QuantSpec("fp32"), QuantSpec("int8", mode="dynamic"),
              QuantSpec("int8", granularity="per-tensor", mode="dynamic"), QuantSpec("fp16")]  # fmt: skip
    assert sorted(counts) == sorted(spec_key(s.to_dict()) for s in wanted)
    assert set(counts.values()) == {1}, counts
    assert all(r.status == "ok" for r in rows)
    assert sorted(csv_row["run_id"] for csv_row in csv.DictReader(out.open())) == sorted(r.run_id for r in rows)
    assert store.job(job.job_id).state == "done" and store.job(job.job_id).done == 4
    with pytest.MonkeyPatch.context() as mp:  # a second resume has nothing left: it measures nothing
        mp.setenv("QCORE_DB", str(db))
        assert main(["sweep", "--resume", job.job_id]) == 0
    assert "0 of 4 spec(s) left" in capsys.readouterr().err
    assert len(store.results(sweep_id=job.job_id)) == 4
