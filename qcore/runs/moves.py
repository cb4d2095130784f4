"""A fix measured as a move: the doctor's suggestion queued into the job of the point it fixes, and the link from
that point to the fix's row, which the Pareto chart draws as an arrow.

:func:`queue_fix` appends the fix's spec to the sweep job (once: a spec the job already has is not added twice),
records the move ``(job, from_run_id, spec)`` in the ``moves`` table of the run database, and queues the job again
when it had ended (finished specs keep their rows; the worker measures only the new one, against an FP32 timing
taken again in the same process). A job still running picks the new spec up when its current specs are done
(:func:`qcore.service.worker.run_sweep_job` looks again before it ends).

:func:`arrows` pairs each move with the rows it links: the origin and the newest ok row of the job with the fix's
spec.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from qcore.metrics.result import Result
from qcore.quant.spec import QuantSpec
from qcore.runs.store import Store, spec_key

__all__ = ["SCHEMA", "Move", "Moves", "queue_fix", "arrows"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS moves (
    job_id TEXT NOT NULL,
    from_run_id TEXT NOT NULL,
    spec_key TEXT NOT NULL,
    what TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (job_id, from_run_id, spec_key)
);
"""
REQUEUE_STATES = ("done", "cancelled", "error", "interrupted")


@dataclass(frozen=True)
class Move:
    job_id: str
    from_run_id: str
    spec_key: str
    what: str
    created_at: float


class Moves:
    """The ``moves`` table in the database at ``path`` (a :class:`~qcore.runs.store.Store`'s ``path``)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        with closing(self._connect()) as c:
            c.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def add(self, job_id: str, from_run_id: str, spec: QuantSpec, what: str) -> None:
        with closing(self._connect()) as c:
            c.execute("INSERT OR REPLACE INTO moves VALUES (?,?,?,?,?)",
                      (job_id, from_run_id, spec_key(spec.to_dict()), what, time.time()))

    def of_job(self, job_id: str) -> list[Move]:
        return self.of_jobs([job_id])

    def of_jobs(self, job_ids: list[str]) -> list[Move]:
        """The moves of these jobs, oldest first (one query, whatever the number of jobs)."""
        ids = sorted(set(job_ids))
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        with closing(self._connect()) as c:
            found = c.execute(f"SELECT job_id, from_run_id, spec_key, what, created_at FROM moves WHERE job_id IN "
                              f"({marks}) ORDER BY created_at", ids).fetchall()
        return [Move(*row) for row in found]


def queue_fix(store: Store, from_row: Result, spec: QuantSpec, what: str) -> str:
    """Queue ``spec`` into the sweep job of ``from_row`` and link it to that row; return what happened, in words.
    Raises ValueError when the row belongs to no sweep job of this database. FP32 (every sweep's reference) is not
    queued: the move links the point to the job's FP32 row."""
    job = store.job(from_row.sweep_id) if from_row.sweep_id else None
    if job is None or job.kind != "sweep" or job.config.get("retime_of"):
        raise ValueError(f"run {from_row.run_id} belongs to no sweep job in {store.path}: a fix joins the job of the "
                         "point it fixes; run it as a new sweep instead")
    key = spec_key(spec.to_dict())
    if spec.is_reference:  # every sweep measures it: the move links the point to the job's own FP32 row
        ref = next((r for r in store.results(sweep_id=job.job_id, status="ok") if r.spec.is_reference), None)
        if ref is None:
            raise ValueError(f"job {job.job_id} has no FP32 row to link this point to: resume the job first")
        Moves(store.path).add(job.job_id, from_row.run_id, ref.spec, what)
        return f"FP32 is measured with job {job.job_id}: the chart links this point to its FP32 row"
    done = key in store.done_spec_keys(job.job_id)
    with store._write() as c:
        row = c.execute("SELECT specs, total, state FROM jobs WHERE job_id=?", (job.job_id,)).fetchone()
        specs = json.loads(row["specs"])
        added = key not in {spec_key(s) for s in specs}
        if added:
            specs.append(spec.to_dict())
            c.execute("UPDATE jobs SET specs=?, total=? WHERE job_id=?",
                      (json.dumps(specs), row["total"] + 1, job.job_id))
        state = row["state"]
        if state in REQUEUE_STATES and not done:
            c.execute("UPDATE jobs SET state='queued', cancel=0, pid=NULL, message='queued: a fix to measure', "
                      "error='', finished_at=NULL WHERE job_id=?", (job.job_id,))
            c.execute("DELETE FROM results WHERE sweep_id=? AND status='cancelled'", (job.job_id,))
    Moves(store.path).add(job.job_id, from_row.run_id, spec, what)
    if done:
        return f"{spec.label()} is already measured in job {job.job_id}: the chart links it to this point"
    where = "queued again" if state in REQUEUE_STATES else f"{state}: it measures the fix after its current specs"
    return f"{spec.label()} {'added to' if added else 'already in'} job {job.job_id} ({where})"


def arrows(rows: list[Result], moves: list[Move]) -> list[tuple[Result, Result, str]]:
    """``(origin, fix, what)`` for each move whose origin and fix rows are both among ``rows`` and ok."""
    by_id = {r.run_id: r for r in rows}
    newest: dict[str, Result] = {}
    for r in sorted(rows, key=lambda r: r.created_at):
        if r.ok:
            newest[spec_key(r.spec.to_dict())] = r
    out = []
    for m in moves:
        origin, fix = by_id.get(m.from_run_id), newest.get(m.spec_key)
        if origin is not None and fix is not None and origin.ok and fix.run_id != origin.run_id:
            out.append((origin, fix, m.what))
    return out
