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
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from qcore.env.malloc import keep_freed_memory
from qcore.env.paths import atomic_write_bytes, data_home
from qcore.metrics.result import Result
from qcore.runs.store import Job, Store, spec_key

__all__ = ["JOB_RUNNERS", "lock_path", "start_path", "worker_running", "ensure_worker", "job_runner", "execute_job",
           "store_pareto", "run_job", "run_sweep_job", "record_cluster", "heartbeat", "serve"]

ProgressFn = Callable[[int, int, str], None]
# Job kind -> "module:function" of its runner, imported when a job of that kind runs.
JOB_RUNNERS: dict[str, str] = {
    "sweep": "qcore.service.worker:run_sweep_job",
    "learn-layer": "qcore.learn.one_layer:run_job",
    "layers": "qcore.layers.job:run_layers_job",
    "mixed-walk": "qcore.layers.job:run_walk_job",
    "doctor": "qcore.doctor.job:run_doctor_job",
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


def start_path() -> Path:
    """Where a starting worker's pid is written: it has not taken the lock yet (it imports torch first)."""
    return data_home() / "worker.starting"


# How long a started worker may take to reach its lock (importing torch on a busy 2-core machine: ~30 s).
START_GRACE_S = 120.0
_children: list[subprocess.Popen] = []


def _worker_command() -> list[str]:
    return [sys.executable, "-m", "qcore", "worker"]


def _starting() -> bool:
    """True when a worker started by some process has not exited yet and is younger than START_GRACE_S."""
    from qcore.runs.liveness import pid_alive

    try:
        pid_text, _, started = start_path().read_text(encoding="ascii").partition(" ")
        pid, started_at = int(pid_text), float(started)
    except (OSError, ValueError):
        return False
    return pid_alive(pid) and time.time() - started_at < START_GRACE_S


def _reap(proc: subprocess.Popen) -> None:
    proc.wait()  # a finished child is reaped at once, never left a zombie of the app's server
    try:
        _children.remove(proc)
    except ValueError:
        pass


def ensure_worker(db: Path | None = None) -> bool:
    """Start a detached worker process unless one is running or starting. Returns True if one was started.

    A page polls every second while its job is queued, and the worker takes its lock only after importing
    torch: without the start file (``worker.starting``: pid and time, checked and written under a lock of its
    own) every poll in between started another worker. The child is waited for in a daemon thread, so it is
    reaped the moment it exits."""
    if worker_running():
        return False
    with open(data_home() / "worker.start.lock", "a+") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # two sessions polling at once: one starts, the other sees it
        if _starting() or worker_running():
            return False
        env = dict(os.environ)
        if db:
            env["QCORE_DB"] = str(db)
        root = Path(__file__).resolve().parents[2]  # "-m qcore" from here: this checkout's qcore
        with open(data_home() / "worker.log", "ab") as log:  # the child keeps its own copy of the handle
            proc = subprocess.Popen(_worker_command(), stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
                                    cwd=str(root), start_new_session=True)  # fmt: skip
        _children.append(proc)
        atomic_write_bytes(start_path(), f"{proc.pid} {time.time()}".encode())
    threading.Thread(target=_reap, args=(proc,), name=f"qcore-reap-{proc.pid}", daemon=True).start()
    return True


def job_runner(kind: str) -> Callable[[Store, Job], dict | None]:
    """The function registered in :data:`JOB_RUNNERS` for ``kind``."""
    if kind not in JOB_RUNNERS:
        raise ValueError(f"job kind {kind!r} has no runner; allowed: {', '.join(JOB_RUNNERS)}")
    module, _, name = JOB_RUNNERS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def execute_job(store: Store, job: Job, progress: ProgressFn | None = None,
                cancel: Callable[[], bool] | None = None, cluster: str | None = None) -> list[Result]:
    """Measure what job ``job`` has not measured yet and return all its rows, oldest first, with their
    Pareto flags set (in memory: :func:`store_pareto` writes them). Finished specs keep their rows and
    are skipped; the FP32 row is measured only when missing (its latency is always timed again: every
    speed-up is against an FP32 timing taken in the same process). With a ``cluster`` address the specs
    run on that Ray cluster (:mod:`qcore.cluster.driver`), this process committing each row as it arrives;
    the job's ``result`` then holds each spec's node and queue state."""
    from qcore.metrics.pareto import mark_pareto
    from qcore.quant.spec import FP32, QuantSpec
    from qcore.runs.sweep import SweepConfig, run_sweep

    config = SweepConfig.from_dict(job.config)
    specs = [QuantSpec.from_dict(d) for d in job.specs]
    done_keys = store.done_spec_keys(job.job_id)
    todo = [s for s in specs if spec_key(s.to_dict()) not in done_keys]
    include_baseline = spec_key(FP32.to_dict()) not in done_keys
    stored = [] if include_baseline else store.results(sweep_id=job.job_id, status="ok")
    base = next((r for r in stored if r.spec.is_reference), None)  # a resumed job keeps its FP32 row
    offset = len(done_keys)

    def report(done: int, total: int, message: str) -> None:
        store.update_job(job.job_id, done=offset + done, total=offset + total, message=message)
        if progress:
            progress(offset + done, offset + total, message)

    cancel = cancel or (lambda: store.cancel_requested(job.job_id))
    if (todo or include_baseline) and cluster:
        from qcore.cluster.driver import run_cluster_sweep

        run_cluster_sweep(cluster, config, todo, progress=report, cancel=cancel, on_result=store.add_result,
                          on_state=lambda st: store.update_job(job.job_id, result=st), sweep_id=job.job_id,
                          include_baseline=include_baseline, baseline_run_id=base.run_id if base else "")
    elif todo or include_baseline:
        run_sweep(config, todo, progress=report, cancel=cancel,
                  on_result=store.add_result, sweep_id=job.job_id, include_baseline=include_baseline,
                  baseline_run_id=base.run_id if base else "")
    rows = sorted(store.results(sweep_id=job.job_id), key=lambda r: r.created_at)
    mark_pareto(rows)
    return rows


def store_pareto(store: Store, rows: list[Result], tries: int = 3) -> str:
    """Write the Pareto flags of measured rows; return "" or why they could not be written, never raise:
    the rows are measured and committed, and a flag is only a summary of them (the chart recomputes it)."""
    for attempt in range(tries):
        try:
            store.set_pareto({r.run_id: r.pareto for r in rows})
            return ""
        except sqlite3.Error as exc:
            reason = f"{type(exc).__name__}: {exc}"
            time.sleep(0.5 * (attempt + 1))
    print(f"could not store the Pareto flags: {reason}", file=sys.stderr, flush=True)
    return reason


def run_job(store: Store, job: Job) -> None:
    """Run (or resume) one job of any kind; its state ends as done, cancelled or error.

    A runner returns the job's JSON result or None; a result's ``note`` is added to the final message
    (a sweep whose Pareto flags could not be written says so, without failing its measured rows)."""
    try:
        result = job_runner(job.kind)(store, job)
    except Exception as exc:  # the job fails, the worker goes on with the next one
        store.update_job(
            job.job_id, state="error", finished_at=time.time(), error=f"{type(exc).__name__}: {exc}", message="failed"
        )
        return
    cancelled = store.cancel_requested(job.job_id)
    message = "cancelled" if cancelled else "finished"
    if result and result.get("note"):
        message += f"; {result['note']}"
    store.update_job(job.job_id, state="cancelled" if cancelled else "done", finished_at=time.time(),
                     message=message, **({"result": result} if result is not None else {}))


def run_sweep_job(store: Store, job: Job) -> dict | None:
    """A sweep: every Result is committed as soon as it exists; a resumed sweep skips finished specs.
    The Pareto flags are written last; if they cannot be, the job still succeeds and says so.
    With ``$QCORE_RAY_ADDRESS`` set, the sweep runs on that Ray cluster and this worker is its driver.
    A Time again job (``retime_of`` in its config) only times its rows, here (:mod:`qcore.service.retime`)."""
    from qcore.cluster import configured_address

    if job.config.get("retime_of"):
        from qcore.service.retime import execute_retime

        rows = execute_retime(store, job)
    else:
        rows = execute_job(store, job, cluster=configured_address())
        for _ in range(MORE_ROUNDS):  # fixes the doctor queued while it ran: measured before the job ends
            if store.cancel_requested(job.job_id) or not _more_specs(store, job.job_id):
                break
            rows = execute_job(store, store.job(job.job_id), cluster=configured_address())
    problem = store_pareto(store, rows)
    if problem:
        note = (f"the Pareto column was not stored ({problem}): every result is, and the chart draws "
                "the frontier from them")
        return {**(store.job(job.job_id).result or {}), "note": note}
    return None


MORE_ROUNDS = 20  # a bound, so that a spec that never gets a row cannot keep a job running


def _more_specs(store: Store, job_id: str) -> bool:
    """Whether job ``job_id`` has specs with no row yet (a fix the doctor queued while it ran)."""
    from qcore.quant.spec import QuantSpec

    job = store.job(job_id)
    done = store.done_spec_keys(job_id)
    return job is not None and any(spec_key(QuantSpec.from_dict(s).to_dict()) not in done for s in job.specs)


CLUSTER_REFRESH_S = 30.0  # how often an idle worker re-reads the cluster for the Home page


def record_cluster() -> dict | None:
    """With ``$QCORE_RAY_ADDRESS`` set: connect (this process is the Ray driver) and write what the cluster
    has (nodes, CPUs, bench slots) for the app to show, or why it could not be reached; never raises."""
    from qcore.cluster import ENV, configured_address, write_snapshot

    try:
        address = configured_address()
        if not address:
            return None
        from qcore.cluster.session import cluster_info, connect

        connect(address)
        info = cluster_info(address)
    except Exception as exc:  # a wrong or unreachable address is shown on Home, the worker goes on
        info = {"address": os.environ.get(ENV, ""), "nodes": [], "cpus": 0, "bench_slots": 0,
                "error": f"{type(exc).__name__}: {exc}"}
    write_snapshot(info)
    return info


@contextmanager
def heartbeat(store: Store, job_id: str, every_s: float | None = None) -> Iterator[None]:
    """While the block runs, a thread writes job ``job_id``'s heartbeat every ``every_s`` seconds
    (:data:`qcore.runs.liveness.HEARTBEAT_S`): a job whose heartbeat stops is no longer shown running, even when
    another process has taken this worker's PID. A write that fails (the database busy) is tried at the next beat."""
    from qcore.runs.liveness import HEARTBEAT_S

    stop, pid = threading.Event(), os.getpid()

    def beat() -> None:
        while True:  # at once, then every every_s seconds until the block ends
            try:
                store.beat(job_id, pid)
            except (sqlite3.Error, OSError) as exc:
                print(f"could not write the heartbeat of job {job_id}: {exc}", file=sys.stderr, flush=True)
            if stop.wait(HEARTBEAT_S if every_s is None else every_s):
                return

    thread = threading.Thread(target=beat, name=f"qcore-heartbeat-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def serve(idle_exit_s: float = 600.0, poll_s: float = 0.5, db: Path | None = None) -> int:
    """Claim and run jobs until none has come for ``idle_exit_s`` seconds."""
    with open(lock_path(), "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("another qcore worker is running; exiting", file=sys.stderr)
            return 0
        start_path().unlink(missing_ok=True)  # started: the lock says so from now on
        keep_freed_memory()  # the jobs time models in this process (qcore.env.malloc)
        store = Store(db)
        idle_since = time.monotonic()
        seen_cluster = 0.0
        while time.monotonic() - idle_since < idle_exit_s:
            if time.monotonic() - seen_cluster > CLUSTER_REFRESH_S:
                seen_cluster = time.monotonic()
                record_cluster()
            store.mark_interrupted()
            job = store.claim_next_job(os.getpid())
            if job is None:
                time.sleep(poll_s)
                continue
            print(f"running job {job.job_id}", file=sys.stderr, flush=True)
            with heartbeat(store, job.job_id):
                run_job(store, job)
            idle_since = time.monotonic()
    return 0
