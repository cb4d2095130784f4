"""A damaged run database, named: the error the store raises, and ``python -m qcore db check``'s findings.

SQLite says "database disk image is malformed" or "file is not a database" when the file is cut, its header
overwritten or a page garbled; :func:`db_error` turns that into :class:`StoreDamaged`, which names the file and
the two commands that help (``db check``, ``db salvage``: :mod:`qcore.runs.db_salvage`), and a full disk into
:class:`~qcore.env.space.NoSpace`. :func:`wal_findings` reads the write-ahead log (``runs.sqlite-wal``) frame by
frame as SQLite would, because SQLite itself silently drops a WAL's commits from its first damaged frame on
(and its integrity check then says ok): a valid frame after a bad one, or a garbled header over frames, is the
sign that committed rows were lost. :func:`check` puts both together; it does not change the files.
"""

from __future__ import annotations

import shutil
import sqlite3
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from qcore.env.space import NoSpace, no_space_from

__all__ = ["TABLES", "StoreDamaged", "is_damage", "db_error", "wal_findings", "CheckReport", "check", "readable_copy",
           "open_db"]

TABLES = ("results", "jobs")  # with their primary keys: run_id, job_id
_WAL_MAGIC = (0x377F0682, 0x377F0683)  # the low bit: checksums over big-endian words


class StoreDamaged(RuntimeError):
    """The run database at ``path`` cannot be read (``detail``: SQLite's words)."""

    def __init__(self, path: Path | str, detail: str = "") -> None:
        self.path, self.detail = Path(path), detail
        super().__init__(
            f"the run database {self.path} is damaged ({detail or 'SQLite cannot read it'}): "
            "'python -m qcore db check' says what can still be read, and 'python -m qcore db salvage' copies it "
            "into a new database (the damaged file is kept beside it, renamed), or use Salvage on the app's Home page"
        )

    def __reduce__(self):
        return StoreDamaged, (self.path, self.detail)


def is_damage(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite finding the file damaged (not busy, locked, full or misused)."""
    name = getattr(exc, "sqlite_errorname", "")
    if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or name.startswith(("SQLITE_CORRUPT_", "SQLITE_IOERR_SHORT_READ")):
        return True
    text = str(exc).lower()
    return isinstance(exc, sqlite3.DatabaseError) and any(
        w in text for w in ("malformed", "not a database", "could not decode to utf-8"))  # the last: a garbled row


def db_error(exc: BaseException, path: Path | str) -> StoreDamaged | NoSpace | None:
    """The named error for a SQLite error on the database at ``path`` (damage, a full disk), or None."""
    if is_damage(exc):
        return StoreDamaged(path, str(exc))
    return no_space_from(exc, Path(path).parent, what="the run database")


@contextmanager
def open_db(path: Path | str) -> Iterator[sqlite3.Connection]:
    """A connection to the run database at ``path`` as the store uses it (autocommit, WAL, a 30 s busy timeout,
    rows by name), closed after; damage raises :class:`StoreDamaged` and a full disk :class:`NoSpace`."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.row_factory = sqlite3.Row
        yield conn
    except sqlite3.DatabaseError as exc:  # named (the file, what to do), not SQLite's words
        if (named := db_error(exc, path)) is None:
            raise
        raise named from exc
    finally:
        conn.close()


def _checksum(data: bytes, s0: int, s1: int, big: bool) -> tuple[int, int]:
    words = struct.unpack((">" if big else "<") + f"{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def wal_findings(db: Path | str) -> list[str]:
    """What is wrong with ``db``'s write-ahead log, in words (empty: nothing, or no log).

    SQLite uses the log's frames up to its last valid commit and ignores the rest; that is right after a crash
    mid-write (the rest was never committed) but loses committed rows when a frame in the middle is damaged.
    Damage shows as a frame of this log (its salt) that fails its checksum with valid frames after it, a header
    that fails its checksum over a log with frames, or a last frame cut short after commits."""
    wal = Path(f"{db}-wal")
    try:
        blob = wal.read_bytes()
    except OSError:
        return []
    if len(blob) == 0:
        return []
    if len(blob) < 32:
        return [f"{wal.name} is cut short ({len(blob)} bytes, less than its header): whatever it held is lost"]
    magic, _version, page, _seq, salt1, salt2, c1, c2 = struct.unpack(">8I", blob[:32])
    frame = 24 + page
    frames = (len(blob) - 32) // frame if page else 0
    if magic not in _WAL_MAGIC or page < 512 or page & (page - 1) or _checksum(blob[:24], 0, 0, magic & 1) != (c1, c2):
        return [f"{wal.name}'s header is damaged, so SQLite ignores its {frames} frame(s): the rows committed in "
                "them since the last checkpoint are lost (salvage takes them from the backup where it has them)"]
    s, good, commits, bad_at = (c1, c2), 0, 0, None
    for i in range(frames):
        off = 32 + i * frame
        head = blob[off : off + 24]
        _pg, commit, f1, f2, k1, k2 = struct.unpack(">6I", head)
        if (f1, f2) != (salt1, salt2):
            break  # an older log's frame: the end of this one
        s = _checksum(head[:8] + blob[off + 24 : off + frame], *s, magic & 1)
        if s != (k1, k2):
            bad_at = i
            break
        good += 1
        commits += bool(commit)
    out = []
    if bad_at is not None:
        later = sum(struct.unpack(">II", blob[32 + j * frame + 8 : 32 + j * frame + 16]) == (salt1, salt2)
                    for j in range(bad_at + 1, frames))
        if later or struct.unpack(">I", blob[32 + bad_at * frame + 4 : 32 + bad_at * frame + 8])[0]:
            out.append(f"{wal.name}'s frame {bad_at + 1} of {frames} is damaged: SQLite keeps the {commits} "
                       f"commit(s) before it and drops {frames - bad_at} frame(s) from it on, rows committed in them "
                       "are lost (salvage takes them from the backup where it has them)")
    tail = (len(blob) - 32) % frame
    if tail and bad_at is None and commits and good == frames:
        out.append(f"{wal.name} ends in a cut frame ({tail} of {frame} bytes): a commit written after its "
                   f"{commits} complete one(s) may be lost")
    return out


@dataclass
class CheckReport:
    """What :func:`check` found: ``ok`` only when SQLite reads the whole file and its log has no damage."""

    path: Path
    ok: bool
    problems: list[str] = field(default_factory=list)
    rows: dict[str, int | None] = field(default_factory=dict)  # table -> rows readable (None: cannot count)

    def text(self) -> str:
        counts = ", ".join(f"{t}: {'unreadable' if n is None else n}" for t, n in self.rows.items())
        head = f"{self.path}: {'ok' if self.ok else 'DAMAGED'}" + (f" ({counts})" if counts else "")
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])


def check(path: Path | str) -> CheckReport:
    """Check the database at ``path`` (SQLite's integrity check, each table read whole) and its log."""
    path = Path(path)
    report = CheckReport(path, True)
    if not path.exists():
        report.ok, report.problems = False, [f"there is no database at {path}"]
        return report
    report.problems += wal_findings(path)  # first: opening the database replays the log and may drop it
    with tempfile.TemporaryDirectory(prefix="qcore-check-") as tmp:
        conn = sqlite3.connect(readable_copy(path, Path(tmp)), timeout=30)
        _read_all(conn, report)
    report.ok = not report.problems
    return report


def readable_copy(path: Path, folder: Path) -> Path:
    """A copy of the database at ``path`` and its log in ``folder``, to read without changing the originals
    (opening a database replays its log into it, and closing it may drop the log)."""
    out = folder / path.name
    shutil.copyfile(path, out)
    if Path(f"{path}-wal").exists():
        shutil.copyfile(f"{path}-wal", f"{out}-wal")
    return out


def _read_all(conn: sqlite3.Connection, report: CheckReport) -> None:
    try:
        try:
            found = [row[0] for row in conn.execute("PRAGMA integrity_check(20)")]
        except sqlite3.DatabaseError as exc:
            found = [str(exc)]
        if found != ["ok"]:
            report.problems += [f"integrity check: {f}" for f in found]
        for table in TABLES:
            try:
                report.rows[table] = sum(1 for _ in conn.execute(f"SELECT * FROM {table}"))
            except sqlite3.DatabaseError as exc:
                report.rows[table] = None
                report.problems.append(f"the {table} table cannot be read whole: {exc}")
    finally:
        conn.close()
