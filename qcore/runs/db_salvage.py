"""``python -m qcore db salvage``: what can be read of a damaged run database, copied into a new one.

Each table is read from a copy of the damaged file (and its log) row by row in rowid order; where SQLite stops
("database disk image is malformed": a garbled or missing page) the rest is looked up one rowid at a time, so
the rows on sound pages after a damaged one are kept too. The rows go into a fresh database with today's schema;
rows the damaged file cannot give but the last backup (``runs.sqlite.backup``, :mod:`qcore.runs.db_backup`) has
are taken from it, and the report says which. The damaged file is kept beside the new one, renamed
``runs.sqlite.damaged-<time>`` (its log too), never deleted.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from qcore.env.paths import damaged_name
from qcore.runs.db_backup import backup_path
from qcore.runs.db_check import TABLES, readable_copy, wal_findings
from qcore.runs.store import SCHEMA

__all__ = ["KEYS", "SalvageReport", "read_rows", "salvage"]

KEYS = {"results": "run_id", "jobs": "job_id"}
_MISSES = 2000  # rowids in a row with no row (or an error) after which a table's lookup stops, its end unknown


@dataclass
class SalvageReport:
    """What :func:`salvage` saved: per table, rows read from the damaged file and rows taken from the backup."""

    path: Path
    damaged: Path | None = None  # where the damaged file now is
    read: dict[str, int] = field(default_factory=dict)
    from_backup: dict[str, int] = field(default_factory=dict)
    unreadable: dict[str, int] = field(default_factory=dict)  # rowids (or the whole table: 1) SQLite refused
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        lines = [f"salvaged {self.path}" + (f"; the damaged file is kept as {self.damaged}" if self.damaged else "")]
        for t in TABLES:
            got, old, bad = self.read.get(t, 0), self.from_backup.get(t, 0), self.unreadable.get(t, 0)
            lines.append(f"  {t}: {got + old} row(s) saved ({got} read from the damaged file, {old} from the backup)"
                         + ("; part of the damaged file could not be read" if bad else ""))
        return "\n".join(lines + [f"  - {n}" for n in self.notes])


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def read_rows(conn: sqlite3.Connection, table: str) -> tuple[list[dict], int]:
    """``(rows, unreadable)``: every row of ``table`` SQLite can still give, as dicts, and how many spots (a
    rowid, or the table itself) it refused."""
    try:
        cols = _columns(conn, table)
    except sqlite3.DatabaseError:
        return [], 1
    if not cols:
        return [], 1
    rows: dict[int, dict] = {}
    last, bad = -(1 << 62), 0
    try:
        for r in conn.execute(f"SELECT rowid, * FROM {table} WHERE rowid > ? ORDER BY rowid", (last,)):
            rows[r[0]] = dict(zip(cols, r[1:], strict=True))
            last = r[0]
        return list(rows.values()), 0
    except sqlite3.DatabaseError:
        bad += 1
    try:  # where the table's end is, if its rightmost pages are sound
        top = conn.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0
    except sqlite3.DatabaseError:
        top = None
    rid, misses = max(last, 0) + 1, 0
    while (top is None or rid <= top) and misses < _MISSES:
        try:
            r = conn.execute(f"SELECT rowid, * FROM {table} WHERE rowid=?", (rid,)).fetchone()
        except sqlite3.DatabaseError:
            bad, misses = bad + 1, misses + 1
        else:
            misses = 0 if r else misses + 1
            if r:
                rows[r[0]] = dict(zip(cols, r[1:], strict=True))
        rid += 1
    return list(rows.values()), bad


def _new_header(copy: Path) -> bool:
    """Give ``copy`` a sound 100-byte header in place of a garbled one (SQLite says "file is not a database"):
    a fresh database's, for the page size whose schema page then reads; True when one did."""
    blob = copy.read_bytes()
    for page in (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512):
        fresh = copy.with_name(f"fresh-{page}")
        c = sqlite3.connect(fresh)
        c.execute(f"PRAGMA page_size={page}")
        c.execute("CREATE TABLE t (x)")
        c.close()
        head = bytearray(fresh.read_bytes()[:100])
        head[28:32] = (len(blob) // page).to_bytes(4, "big")  # the pages there are; the free list: none
        head[32:40] = bytes(8)
        copy.write_bytes(bytes(head) + blob[100:])
        try:
            probe = sqlite3.connect(copy)
            probe.execute("PRAGMA writable_schema=ON")
            probe.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()
            probe.execute("SELECT * FROM results LIMIT 1").fetchall()
            probe.close()
            return True
        except sqlite3.DatabaseError:
            probe.close()
    copy.write_bytes(blob)
    return False


def _read_db(path: Path, notes: list[str]) -> tuple[dict[str, list[dict]], dict[str, int]]:
    with tempfile.TemporaryDirectory(prefix="qcore-salvage-") as tmp:
        copy = readable_copy(path, Path(tmp))
        try:
            sqlite3.connect(copy).execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc) and _new_header(copy):
                notes.append(f"{path.name}'s header was garbled: it was read with a new one")
        conn = sqlite3.connect(copy)
        try:
            # as sqlite3's .dump does: a file shorter than its header says is then read up to its end, not refused
            with contextlib.suppress(sqlite3.DatabaseError):
                conn.execute("PRAGMA writable_schema=ON")
            got = {t: read_rows(conn, t) for t in TABLES}
        finally:
            conn.close()
    return {t: v[0] for t, v in got.items()}, {t: v[1] for t, v in got.items()}


def _insert(conn: sqlite3.Connection, table: str, rows: list[dict]) -> int:
    cols = set(_columns(conn, table))
    n = 0
    for row in rows:
        row = {k: v for k, v in row.items() if k in cols}
        with contextlib.suppress(sqlite3.IntegrityError):  # a row missing a required field is not a row
            n += conn.execute(f"INSERT OR IGNORE INTO {table} ({', '.join(row)}) VALUES "
                              f"({', '.join('?' * len(row))})", tuple(row.values())).rowcount
    return n


def salvage(path: Path | str) -> SalvageReport:
    """Copy what can be read of the database at ``path`` (then its backup) into a new database at ``path``; the
    damaged one is renamed ``<path>.damaged-<time>`` beside it. Stop the app's worker and any sweep first."""
    path = Path(path)
    report = SalvageReport(path)
    report.notes += wal_findings(path)
    tables, bad = _read_db(path, report.notes) if path.exists() else ({t: [] for t in TABLES}, {t: 1 for t in TABLES})
    report.read = {t: 0 for t in TABLES}
    report.unreadable = {t: n for t, n in bad.items() if n}
    backup = backup_path(path)
    old: dict[str, list[dict]] = {t: [] for t in TABLES}
    if backup.exists():
        old, old_bad = _read_db(backup, [])
        if any(old_bad.values()):
            report.notes.append(f"the backup {backup} is damaged too: only what could be read of it was used")
    else:
        report.notes.append(f"there is no backup ({backup}): rows the damaged file cannot give are lost")
    tmp = path.with_name(f".{path.name}.salvage-{os.getpid()}")
    with contextlib.suppress(OSError):
        tmp.unlink()
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        conn.executescript(SCHEMA)
        conn.execute("BEGIN")
        for t in TABLES:
            report.read[t] = _insert(conn, t, tables[t])
            report.from_backup[t] = _insert(conn, t, old[t])  # OR IGNORE: the damaged file's rows come first
        conn.execute("COMMIT")
    finally:
        conn.close()
    for t in TABLES:
        if report.from_backup[t]:
            report.notes.append(f"{report.from_backup[t]} {t} row(s) were taken from the backup {backup.name}")
        if report.unreadable.get(t) and backup.exists():
            report.notes.append(f"{t} rows committed after the last backup (made "
                                f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(backup.stat().st_mtime))}) "
                                "that were on the damaged pages are lost")
    if path.exists():
        report.damaged = damaged_name(path, "-wal", "-journal")
        os.replace(path, report.damaged)
        for suffix in ("-wal", "-journal"):
            if Path(f"{path}{suffix}").exists():
                os.replace(f"{path}{suffix}", f"{report.damaged}{suffix}")
        with contextlib.suppress(OSError):
            Path(f"{path}-shm").unlink()  # an index of the old log: it must not meet the new file
    os.replace(tmp, path)
    return report
