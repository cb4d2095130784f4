"""Committed results kept safe from a damaged log: a checkpoint after each commit, a backup after each job.

SQLite in WAL mode writes a commit to ``runs.sqlite-wal`` first; if that log is damaged before its frames are
copied into the database, SQLite drops the commits from the damaged frame on, silently. :func:`checkpoint`
copies the log into the database and empties it (``wal_checkpoint(TRUNCATE)``): the store calls it after each
result, so a damaged log loses nothing already measured. :func:`backup` copies the whole database with
SQLite's online backup API into ``runs.sqlite.backup`` (a temporary file renamed into place, checked before it
replaces the last good one): the store calls it after each finished job, and ``db salvage``
(:mod:`qcore.runs.db_salvage`) takes from it the rows the damaged file cannot give.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from qcore.env.space import NoSpace, ensure_free

__all__ = ["FINISHED", "backup_path", "checkpoint", "backup", "after_job", "after_update"]

FINISHED = ("done", "cancelled", "error", "interrupted")  # a job in one of these states has finished


def backup_path(db: Path | str) -> Path:
    """Where the backup of the database at ``db`` is kept: ``<db>.backup`` beside it."""
    return Path(f"{db}.backup")


def checkpoint(conn: sqlite3.Connection) -> bool:
    """Copy the log into the database and empty it; False when a reader or writer kept it from finishing (it
    waits at most a second: the next commit tries again)."""
    try:
        conn.execute("PRAGMA busy_timeout=1000")
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        conn.execute("PRAGMA busy_timeout=30000")
        return not busy
    except sqlite3.Error:
        return False


def backup(db: Path | str) -> Path | None:
    """Copy the database at ``db`` to :func:`backup_path` (atomically); the copy replaces the last backup only
    when SQLite's quick check finds it sound. Returns the backup's path, or None when none was written."""
    db = Path(db)
    target = backup_path(db)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    wal = Path(f"{db}-wal")
    ensure_free(db.parent, db.stat().st_size + (wal.stat().st_size if wal.exists() else 0), "the database backup")
    try:
        src = sqlite3.connect(db, timeout=30)
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
            sound = dst.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        finally:
            dst.close()
            src.close()
        if not sound:
            return None
        os.replace(tmp, target)
        return target
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def after_job(db: Path | str) -> str:
    """What the store does when a job finishes: a checkpoint, then :func:`backup`. Never raises: a backup that
    could not be made (a full disk, a damaged database) is said in the returned text ('' when all went well)."""
    try:
        conn = sqlite3.connect(db, timeout=30)
        try:
            checkpoint(conn)
        finally:
            conn.close()
        return "" if backup(db) else "the database did not pass SQLite's quick check: the last backup is kept"
    except (sqlite3.Error, NoSpace, OSError) as exc:
        return f"no backup of {db}: {exc}"


def after_update(db: Path | str, fields: dict) -> str:
    """:func:`after_job` when a job's update (``fields``) finishes it, else nothing."""
    return after_job(db) if fields.get("state") in FINISHED else ""
