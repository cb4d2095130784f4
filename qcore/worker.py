"""The background worker: runs queued jobs from the store, one at a time.

The app never runs a sweep in its own script thread (any click would kill it). It submits a
job to the store and makes sure one worker process is alive (:func:`ensure_worker`); the
worker claims jobs in order, commits each Result as it is measured, reports progress into
the job row and checks the job's cancel flag between specs. One worker at a time (a file
lock), so that two sweeps never share the CPU and distort each other's latencies.

Each job has a kind; :data:`JOB_RUNNERS` names the function that runs each kind
(``"module:function"``, imported when a job of that kind runs, so the worker does not import
every runner's dependencies). A runner takes ``(store, job)``, reports progress with
``store.update_job`` and returns the job's JSON result (or None); :func:`run_job` does the rest
(final state, result, errors) the same way for every kind.
"""

from __future__ import annotations

import fcntl
import importlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .paths import data_home
from .store import Job, Store, spec_key

JOB_RUNNERS: dict[str, str] = {
    "sweep": "qcore.worker:run_sweep_job",
    "learn-layer": "qcore.learn.one_layer:run_job",
}


def lock_path() -> Path:
    return data_home() / "worker.lock"


def worker_running() -> bool:
    """True when some process holds the worker lock."""
    with open(lock_path(), "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def ensure_worker(db: Path | None = None) -> bool:
    """Start a detached worker process unless one is running. Returns True if one was started."""
    if worker_running():
        return False
    env = dict(os.environ)
    if db:
        env["QCORE_DB"] = str(db)
    log = open(data_home() / "worker.log", "ab")  # noqa: SIM115  (handed to the child)
    root = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
    subprocess.Popen(
        [sys.executable, "-m", "qcore", "worker"],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=str(root),
        start_new_session=True,
    )
    return True


def job_runner(kind: str) -> Callable[[Store, Job], dict | None]:
    """The function registered in :data:`JOB_RUNNERS` for ``kind``."""
    if kind not in JOB_RUNNERS:
        raise ValueError(f"job kind {kind!r} has no runner; allowed: {', '.join(JOB_RUNNERS)}")
    module, _, name = JOB_RUNNERS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def run_job(store: Store, job: Job) -> None:
    """Run (or resume) one job of any kind; its state ends as done, cancelled or error."""
    try:
        result = job_runner(job.kind)(store, job)
        cancelled = store.cancel_requested(job.job_id)
        store.update_job(
            job.job_id,
            state="cancelled" if cancelled else "done",
            finished_at=time.time(),
            message="cancelled" if cancelled else "finished",
            **({"result": result} if result is not None else {}),
        )
    except Exception as exc:  # the job fails, the worker goes on with the next one
        store.update_job(
            job.job_id, state="error", finished_at=time.time(), error=f"{type(exc).__name__}: {exc}", message="failed"
        )


def run_sweep_job(store: Store, job: Job) -> None:
    """A sweep: every Result is committed as soon as it exists; a resumed sweep skips finished specs."""
    from .pareto import mark_pareto
    from .spec import FP32, QuantSpec
    from .sweep import SweepConfig, run_sweep

    config = SweepConfig.from_dict(job.config)
    specs = [QuantSpec.from_dict(d) for d in job.specs]
    done_keys = store.done_spec_keys(job.job_id)
    todo = [s for s in specs if spec_key(s.to_dict()) not in done_keys]
    include_baseline = spec_key(FP32.to_dict()) not in done_keys
    offset = len(done_keys)

    def progress(done: int, total: int, message: str) -> None:
        store.update_job(job.job_id, done=offset + done, total=offset + total, message=message)

    run_sweep(
        config,
        todo,
        progress=progress,
        cancel=lambda: store.cancel_requested(job.job_id),
        on_result=store.add_result,
        sweep_id=job.job_id,
        include_baseline=include_baseline,
    )
    rows = store.results(sweep_id=job.job_id)
    mark_pareto(rows)
    store.set_pareto({r.run_id: r.pareto for r in rows})


def serve(idle_exit_s: float = 600.0, poll_s: float = 0.5, db: Path | None = None) -> int:
    """Claim and run jobs until none has come for ``idle_exit_s`` seconds."""
    with open(lock_path(), "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("another qcore worker is running; exiting", file=sys.stderr)
            return 0
        store = Store(db)
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < idle_exit_s:
            store.mark_interrupted()
            job = store.claim_next_job(os.getpid())
            if job is None:
                time.sleep(poll_s)
                continue
            print(f"running job {job.job_id}", file=sys.stderr, flush=True)
            run_job(store, job)
            idle_since = time.monotonic()
    return 0
