"""Run history in SQLite: every Result ever measured, and the queue of background jobs.

The database lives in the user's data directory (``qcore.env.paths.data_home()/runs.sqlite``,
or ``$QCORE_DB``). Each Result is committed the moment it is measured, so a process killed
in the middle of a sweep loses nothing that had finished. Jobs carry their state
(queued, running, done, cancelled, error, interrupted) and the worker's pid, so a job whose
worker died shows as interrupted and can be resumed.

Jobs are of a ``kind`` (``"sweep"``, ``"learn-layer"``, ...): the worker runs each with the runner
registered for its kind (:data:`qcore.service.worker.JOB_RUNNERS`) and may store a JSON ``result`` on the
job (a sweep's results are rows of ``results`` instead). Databases made before kinds existed get
the two columns added when opened.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qcore.env.paths import data_home
from qcore.env.space import ensure_free
from qcore.metrics.result import Result
from qcore.runs.db_backup import after_update, checkpoint
from qcore.runs.db_check import open_db
from qcore.runs.liveness import process_start, runner_alive

__all__ = ["SCHEMA", "JOB_STATES", "default_db", "spec_key", "Job", "Store"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT PRIMARY KEY,
    sweep_id TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    model TEXT, dataset TEXT, label TEXT, precision TEXT, backend TEXT, status TEXT,
    pareto INTEGER NOT NULL DEFAULT 0,
    spec_key TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_sweep ON results(sweep_id);
-- the Runs page filters, counts and pages through these (qcore.runs.query); made when an older database opens
CREATE INDEX IF NOT EXISTS results_list ON results(created_at, model, dataset, precision, status, sweep_id, label);
CREATE INDEX IF NOT EXISTS results_busy ON results(json_extract(CASE WHEN json_valid(body) THEN body END, '$.busy'));
CREATE INDEX IF NOT EXISTS results_baseline
    ON results(json_extract(CASE WHEN json_valid(body) THEN body END, '$.baseline_run_id'));
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    state TEXT NOT NULL,
    config TEXT NOT NULL,
    specs TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    pid INTEGER,
    started_at REAL,
    finished_at REAL,
    cancel INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL DEFAULT 'sweep',
    result TEXT NOT NULL DEFAULT '',
    request_key TEXT NOT NULL DEFAULT '',
    pid_start REAL, heartbeat REAL
);
"""
# Columns added after the first release: (name, declaration) added to older databases when opened.
JOB_COLUMNS_ADDED = (("kind", "TEXT NOT NULL DEFAULT 'sweep'"), ("result", "TEXT NOT NULL DEFAULT ''"),
                     ("request_key", "TEXT NOT NULL DEFAULT ''"), ("pid_start", "REAL"), ("heartbeat", "REAL"))

JOB_STATES = ("queued", "running", "done", "cancelled", "error", "interrupted")


def default_db() -> Path:
    env = os.environ.get("QCORE_DB")
    return Path(env).expanduser() if env else data_home() / "runs.sqlite"


def spec_key(spec_dict: dict) -> str:
    return json.dumps(spec_dict, sort_keys=True)


def _current_key(stored: str) -> str:
    """A stored spec key as today's QuantSpec writes it: rows stored before a field was added (the QAT schedule,
    ...) match the same spec read back from a job, so resuming an old job does not measure them again."""
    from qcore.quant.spec import QuantSpec

    try:
        return spec_key(QuantSpec.from_dict(json.loads(stored)).to_dict())
    except (ValueError, TypeError):
        return stored


@dataclass
class Job:
    job_id: str
    created_at: float
    state: str
    config: dict
    specs: list[dict]
    done: int
    total: int
    message: str
    pid: int | None
    started_at: float | None
    finished_at: float | None
    cancel: bool
    error: str
    kind: str = "sweep"
    result: dict | None = None  # a JSON result the job's runner stored (None: none yet)

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")


def _row(r: Result) -> tuple:
    """A Result as a row of the results table."""
    return (r.run_id, r.sweep_id, r.created_at, r.model, r.dataset, r.label, r.spec.precision, r.backend, r.status,
            int(r.pareto), spec_key(r.spec.to_dict()), r.to_json())


class Store:
    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path else default_db()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._conn() as c:
            c.executescript(SCHEMA)
            have = {row["name"] for row in c.execute("PRAGMA table_info(jobs)")}
            for name, decl in JOB_COLUMNS_ADDED:
                if name not in have:
                    c.execute(f"ALTER TABLE jobs ADD COLUMN {name} {decl}")
            c.execute("CREATE INDEX IF NOT EXISTS jobs_request ON jobs(request_key, state)")  # qcore.runs.requests

    def _conn(self) -> AbstractContextManager[sqlite3.Connection]:
        return open_db(self.path)  # damage and a full disk raise named errors (StoreDamaged, NoSpace)

    # -- results ---------------------------------------------------------------------------------

    def add_result(self, r: Result) -> None:
        """Commit one Result now (insert or replace by run_id), and move it from the log into the database file."""
        ensure_free(self.path.parent, 1 << 20, "a result")  # NoSpace names the folder before SQLite fails
        with self._conn() as c:
            c.execute("INSERT OR REPLACE INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", _row(r))
            checkpoint(c)  # a damaged log (runs.sqlite-wal) then loses no result: qcore.runs.db_backup

    def add_new_results(self, results: list[Result]) -> tuple[int, int]:
        """Store those of ``results`` whose run_id is not stored yet, as they are (run ids, times and links kept),
        in one transaction: all of them or, on any error, none. Returns ``(added, already stored)``."""
        added = 0
        with self._write() as c:
            for r in results:
                added += c.execute("INSERT OR IGNORE INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", _row(r)).rowcount
        return added, len(results) - added

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A transaction that reads, then writes: it takes the write lock up front (``BEGIN IMMEDIATE``).

        A deferred ``BEGIN`` reads from a snapshot and asks for the write lock only at its first write;
        when another process has committed in between, SQLite cannot move the snapshot forward and fails
        at once with "database is locked" (the busy timeout does not apply). Taken up front, the lock is
        waited for like any other (up to the busy timeout), and the reads see the latest data."""
        with self._conn() as c:
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

    def set_pareto(self, flags: dict[str, bool]) -> None:
        with self._write() as c:
            for run_id, flag in flags.items():
                row = c.execute("SELECT body FROM results WHERE run_id=?", (run_id,)).fetchone()
                if row is None:
                    continue
                body = json.loads(row["body"])
                body["pareto"] = bool(flag)
                c.execute("UPDATE results SET pareto=?, body=? WHERE run_id=?", (int(flag), json.dumps(body), run_id))

    def results(self, sweep_id: str | None = None, limit: int | None = None, **equals: Any) -> list[Result]:
        """Stored Results, newest first; filter by sweep and by column equality (model=, dataset=, ...)."""
        allowed = {"model", "dataset", "precision", "backend", "status", "run_id"}
        bad = set(equals) - allowed
        if bad:
            raise ValueError(f"cannot filter by {', '.join(sorted(bad))}; allowed: {', '.join(sorted(allowed))}")
        where, args = [], []
        if sweep_id is not None:
            where.append("sweep_id=?")
            args.append(sweep_id)
        for k, v in equals.items():
            where.append(f"{k}=?")
            args.append(v)
        sql = "SELECT body FROM results"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, rowid DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        with self._conn() as c:
            return [Result.from_dict(json.loads(row["body"])) for row in c.execute(sql, args)]

    def done_spec_keys(self, sweep_id: str) -> set[str]:
        """Specs of a sweep that already have a finished (not cancelled) row: a resume skips them."""
        with self._conn() as c:
            rows = c.execute(
                "SELECT spec_key FROM results WHERE sweep_id=? AND status IN ('ok','error','skipped')", (sweep_id,)
            )
            return {_current_key(row["spec_key"]) for row in rows}

    def delete_results(self, run_ids: list[str]) -> int:
        with self._conn() as c:
            cur = c.executemany("DELETE FROM results WHERE run_id=?", [(r,) for r in run_ids])
            return cur.rowcount

    # -- jobs --------------------------------------------------------------------------------------

    def submit_job(self, config: dict, specs: list[dict], kind: str = "sweep", total: int | None = None) -> str:
        """Queue a job of ``kind``; ``total`` steps (default: a sweep's, its specs plus the FP32 baseline)."""
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"kind={kind!r} is not allowed; allowed: a job kind such as 'sweep'")
        job_id = uuid.uuid4().hex[:10]
        with self._conn() as c:
            c.execute(
                "INSERT INTO jobs (job_id, created_at, state, config, specs, total, kind) VALUES (?,?,?,?,?,?,?)",
                (job_id, time.time(), "queued", json.dumps(config), json.dumps(specs),
                 len(specs) + 1 if total is None else total, kind),
            )  # fmt: skip
        return job_id

    def start_job(self, config: dict, specs: list[dict], pid: int, prefix: str = "cli-", kind: str = "sweep") -> Job:
        """Record a job that process ``pid`` runs itself (the CLI), so that it can be resumed if killed."""
        job_id = prefix + uuid.uuid4().hex[:8]
        now = time.time()
        with self._conn() as c:
            c.execute(
                "INSERT INTO jobs (job_id, created_at, state, config, specs, total, pid, started_at, message, kind, "
                "pid_start) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (job_id, now, "running", json.dumps(config), json.dumps(specs), len(specs) + 1, pid, now, "starting",
                 kind, process_start(pid)),
            )
        return self.job(job_id)

    def take_job(self, job_id: str, pid: int) -> Job:
        """Run job ``job_id`` in process ``pid`` from now on (``sweep --resume``); finished specs keep their
        rows. Raises ValueError when there is no such job or a live process runs it."""
        self.mark_interrupted()
        with self._write() as c:
            row = c.execute("SELECT state, pid FROM jobs WHERE job_id=?", (job_id,)).fetchone()
            if row is None:
                raise ValueError(f"there is no job {job_id!r} in {self.path}; 'python -m qcore runs --jobs' "
                                 "lists the sweeps")
            if row["state"] in ("queued", "running"):
                who = f"process {row['pid']}" if row["state"] == "running" else "the app's worker (queued)"
                raise ValueError(f"job {job_id} is {row['state']}: {who} runs it; cancel it first, or wait")
            c.execute(
                "UPDATE jobs SET state='running', pid=?, pid_start=?, heartbeat=NULL, cancel=0, error='', "
                "message='resuming', started_at=?, finished_at=NULL WHERE job_id=?",
                (pid, process_start(pid), time.time(), job_id),
            )  # fmt: skip
            c.execute("DELETE FROM results WHERE sweep_id=? AND status='cancelled'", (job_id,))
        return self.job(job_id)

    def _job(self, row: sqlite3.Row) -> Job:
        return Job(
            job_id=row["job_id"], created_at=row["created_at"], state=row["state"],
            config=json.loads(row["config"]), specs=json.loads(row["specs"]), done=row["done"],
            total=row["total"], message=row["message"], pid=row["pid"], started_at=row["started_at"],
            finished_at=row["finished_at"], cancel=bool(row["cancel"]), error=row["error"],
            kind=row["kind"], result=json.loads(row["result"]) if row["result"] else None,
        )  # fmt: skip

    def job(self, job_id: str) -> Job | None:
        self.mark_interrupted()
        with self._conn() as c:
            row = c.execute("SELECT * FROM jobs WHERE job_id=?", (job_id,)).fetchone()
            return self._job(row) if row else None

    def jobs(self, limit: int = 50, kind: str | None = None) -> list[Job]:
        """The newest jobs first; only those of ``kind`` when given."""
        self.mark_interrupted()
        where, args = ("WHERE kind=? ", (kind,)) if kind else ("", ())
        with self._conn() as c:
            rows = c.execute(f"SELECT * FROM jobs {where}ORDER BY created_at DESC LIMIT ?", (*args, limit)).fetchall()
            return [self._job(r) for r in rows]

    def queue_position(self, job_id: str) -> int | None:
        """0 when running, 1 for the next queued job, ...; None when the job is not waiting or running."""
        with self._conn() as c:
            row = c.execute("SELECT state, created_at FROM jobs WHERE job_id=?", (job_id,)).fetchone()
            if row is None or row["state"] not in ("queued", "running"):
                return None
            if row["state"] == "running":
                return 0
            ahead = c.execute(
                "SELECT COUNT(*) FROM jobs WHERE state='queued' AND created_at < ?", (row["created_at"],)
            ).fetchone()[0]
            return ahead + 1

    def claim_next_job(self, pid: int, job_id: str | None = None) -> Job | None:
        """Atomically move the oldest queued job (or queued job ``job_id``) to running under ``pid``; None when
        there is none."""
        with self._write() as c:
            row = c.execute("SELECT * FROM jobs WHERE state='queued'" + (" AND job_id=?" if job_id else "")
                            + " ORDER BY created_at LIMIT 1", (job_id,) if job_id else ()).fetchone()
            if row is None:
                return None
            c.execute("UPDATE jobs SET state='running', pid=?, pid_start=?, heartbeat=NULL, started_at=?, "
                      "message='starting' WHERE job_id=?",  # the claimer's start time (qcore.runs.liveness)
                      (pid, process_start(pid), time.time(), row["job_id"]))
        return self.job(row["job_id"])

    def beat(self, job_id: str, pid: int) -> None:
        """The worker ``pid`` still runs job ``job_id``: its heartbeat is now."""
        with self._conn() as c:
            c.execute("UPDATE jobs SET heartbeat=? WHERE job_id=? AND pid=? AND state='running'",
                      (time.time(), job_id, pid))

    def update_job(self, job_id: str, **fields: Any) -> None:
        allowed = {"state", "done", "total", "message", "pid", "finished_at", "cancel", "error", "result"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"cannot set {', '.join(sorted(bad))}; allowed: {', '.join(sorted(allowed))}")
        if "state" in fields and fields["state"] not in JOB_STATES:
            raise ValueError(f"state={fields['state']!r} is not allowed; allowed: {', '.join(JOB_STATES)}")
        if "result" in fields:
            fields["result"] = "" if fields["result"] is None else json.dumps(fields["result"])
        sets = ", ".join(f"{k}=?" for k in fields)
        with self._conn() as c:
            c.execute(f"UPDATE jobs SET {sets} WHERE job_id=?", (*fields.values(), job_id))
        after_update(self.path, fields)  # a finished job: a checkpoint and a backup (runs.sqlite.backup)

    def request_cancel(self, job_id: str) -> None:
        with self._conn() as c:
            c.execute("UPDATE jobs SET cancel=1 WHERE job_id=? AND state IN ('queued','running')", (job_id,))
            c.execute(
                "UPDATE jobs SET state='cancelled', finished_at=?, message='cancelled before it started' "
                "WHERE job_id=? AND state='queued'",
                (time.time(), job_id),
            )

    def cancel_requested(self, job_id: str) -> bool:
        with self._conn() as c:
            row = c.execute("SELECT cancel FROM jobs WHERE job_id=?", (job_id,)).fetchone()
            return bool(row and row["cancel"])

    def mark_interrupted(self) -> int:
        """Running jobs whose worker process is gone become ``interrupted``: its PID ended or was taken by another
        process, or its heartbeat stopped (:func:`qcore.runs.liveness.runner_alive`)."""
        with self._conn() as c:
            rows = c.execute("SELECT job_id, pid, pid_start, heartbeat FROM jobs WHERE state='running'").fetchall()
            dead = [r["job_id"] for r in rows if not runner_alive(r["pid"], r["pid_start"], r["heartbeat"])]
            for job_id in dead:
                c.execute(
                    "UPDATE jobs SET state='interrupted', message='the worker stopped before the job finished' "
                    "WHERE job_id=? AND state='running'",
                    (job_id,),
                )
            return len(dead)

    def resume_job(self, job_id: str) -> None:
        """Queue an interrupted (or cancelled) job again; finished specs are skipped when it runs."""
        with self._write() as c:
            c.execute(
                "UPDATE jobs SET state='queued', cancel=0, pid=NULL, message='queued to resume', error='', result='' "
                "WHERE job_id=? AND state IN ('interrupted','cancelled','error')",
                (job_id,),
            )
            c.execute("DELETE FROM results WHERE sweep_id=? AND status='cancelled'", (job_id,))
