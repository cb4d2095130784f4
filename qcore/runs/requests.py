"""One job per request: the same sweep asked for twice (ten students clicking the offline default) joins the job
already queued or running, results already stored for it are offered instead of measuring again, and a queued
job says where it stands in the queue and about how long it waits.

The same request (:func:`request_key`): the job's kind, its settings (the config the job stores), its specs in any
order, all as canonical JSON, and the size and modification time of a weights or calibration-list file the
settings name (an uploaded checkpoint is stored under its content's hash, so its path names its content).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable

from qcore.runs.store import Job, Store, spec_key

__all__ = ["ACTIVE", "request_key", "submit_or_join", "queue", "stored_job", "wait_seconds"]

ACTIVE = ("queued", "running")


def _canon(config: dict) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def request_key(kind: str, config: dict, specs: list[dict]) -> str:
    files = [(os.stat(v).st_size, os.stat(v).st_mtime_ns) if isinstance(v, str) and os.path.isfile(v) else None
             for v in (config.get("weights"), config.get("calib_list"))]  # fmt: skip
    canon = [kind, json.loads(_canon(config)), sorted(spec_key(s) for s in specs), files]
    return hashlib.sha256(json.dumps(canon, sort_keys=True).encode()).hexdigest()[:32]


def submit_or_join(store: Store, config: dict, specs: list[dict], kind: str = "sweep") -> tuple[str, bool]:
    """Queue a job, or join the oldest queued or running job of the same :func:`request_key`; the look-up and the
    insert are one transaction (the write lock taken up front), so ten clicks at once queue one job. Returns
    ``(job id, joined)``. Only jobs queued here carry a key: another page's job is never joined."""
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"kind={kind!r} is not allowed; allowed: a job kind such as 'sweep'")
    key, job_id = request_key(kind, config, specs), uuid.uuid4().hex[:10]
    with store._write() as c:  # (the store's own transaction: BEGIN IMMEDIATE, ROLLBACK on error)
        row = c.execute("SELECT job_id FROM jobs WHERE request_key=? AND state IN ('queued','running') "
                        "ORDER BY created_at LIMIT 1", (key,)).fetchone()  # fmt: skip
        if row is not None:
            return row["job_id"], True
        c.execute("INSERT INTO jobs (job_id, created_at, state, config, specs, total, kind, request_key) "
                  "VALUES (?,?,?,?,?,?,?,?)", (job_id, time.time(), "queued", json.dumps(config), json.dumps(specs),
                                               len(specs) + 1, kind, key))  # fmt: skip
    return job_id, False


def queue(store: Store) -> list[Job]:
    """The running job(s), then the queued ones in the order the worker takes them (oldest first)."""
    store.mark_interrupted()
    with store._conn() as c:
        rows = c.execute("SELECT * FROM jobs WHERE state IN ('queued','running') "
                         "ORDER BY state='queued', created_at").fetchall()  # fmt: skip
        return [store._job(r) for r in rows]


def stored_job(store: Store, config: dict, specs: list[dict], limit: int = 200) -> Job | None:
    """The newest finished sweep job of exactly these settings whose ``ok`` rows hold every one of ``specs`` and
    the FP32 baseline: its results answer the request without measuring again. None when there is none."""
    want, canon = {spec_key(s) for s in specs}, _canon(config)
    for job in store.jobs(limit=limit, kind="sweep"):
        if job.active or _canon(job.config) != canon:
            continue
        rows = store.results(sweep_id=job.job_id, status="ok")
        have = {spec_key(r.spec.to_dict()) for r in rows}
        if want <= have and any(r.spec.is_reference for r in rows):
            return job
    return None


def wait_seconds(jobs: list[Job], job_id: str, steps_of: Callable[[Job], tuple[float, ...]],
                 now: float | None = None) -> float | None:
    """How long queued job ``job_id`` waits before it starts: what is left of the running job (its estimate, scaled
    by how its finished steps went: :func:`qcore.runs.estimate.seconds_left`) plus the estimates of the jobs queued
    ahead of it. ``jobs``: :func:`queue`; ``steps_of``: a job's estimated seconds per step. None when it is not
    queued or a job ahead of it has no estimate."""
    from qcore.runs.estimate import seconds_left

    now = time.time() if now is None else now
    ids = [j.job_id for j in jobs]
    if job_id not in ids or jobs[ids.index(job_id)].state != "queued":
        return None
    total = 0.0
    for j in jobs[: ids.index(job_id)]:
        steps = steps_of(j)
        if not steps:
            return None
        if j.state == "running":
            total += seconds_left(steps, j.done, max(0.0, now - (j.started_at or now)))
        else:
            total += sum(steps)
    return total
