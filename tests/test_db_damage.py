"""Issue 28, item 3: a damaged run database is named (the file, the commands), checked, salvaged; committed rows
survive a damaged log. Every damage is crafted here on a database of the test's own."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from qcore.cli import main
from qcore.metrics.result import Result
from qcore.quant.spec import QuantSpec
from qcore.runs.store import Store

N = 80
# One garbled page loses the rows whose cells it holds: a leaf of the results table holds the first ~800 bytes of a
# few rows (the rest of each ~4.8 kB row overflows to a page of its own), an overflow page the end of one row. Which
# one the middle page is depends on the file's layout (the indexes it has, ...): at most this many rows.
PAGE_ROWS = 5


def _filled(path, n=N) -> Store:
    st = Store(path)
    for i in range(n):
        st.add_result(Result(QuantSpec(), "m", "d", sweep_id="s1", notes=[f"row {i} " + "x" * 3000]))
    return st


def _damage(path, kind: str) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        if kind == "half":
            fh.truncate(size // 2)
        elif kind == "header":
            fh.write(b"garbage!" * 12)  # the 100-byte header's first 96
        else:  # one page in the middle
            page = 4096
            fh.seek(page * (size // page // 2))
            fh.write(bytes((i * 37 + 11) % 256 for i in range(page)))


def _results(path) -> int:
    return len(Store(path).results())


@pytest.mark.parametrize("kind", ["half", "header", "page"])
def test_damage_is_named_with_the_file_and_the_commands(tmp_path, kind):
    from qcore.runs.db_check import StoreDamaged

    path = tmp_path / "runs.sqlite"
    _filled(path)
    _damage(path, kind)
    with pytest.raises(StoreDamaged) as info:
        _results(path)
    assert str(path) in str(info.value) and "db salvage" in str(info.value) and "db check" in str(info.value)


@pytest.mark.parametrize("kind,least", [("half", 30), ("header", N), ("page", N - PAGE_ROWS)])
def test_cli_names_damage_checks_and_salvages(tmp_path, monkeypatch, capsys, kind, least):
    path = tmp_path / "runs.sqlite"
    monkeypatch.setenv("QCORE_DB", str(path))
    _filled(path)
    _damage(path, kind)
    assert main(["runs"]) == 1  # no traceback: one named line
    err = capsys.readouterr().err
    assert str(path) in err and "python -m qcore db salvage" in err and "Traceback" not in err
    assert main(["db", "check"]) == 1
    assert "DAMAGED" in capsys.readouterr().out
    assert main(["db", "salvage"]) == 0
    out = capsys.readouterr().out
    saved = _results(path)
    assert saved >= least and f"results: {saved} row(s) saved" in out
    kept = [p.name for p in tmp_path.iterdir() if p.name.startswith("runs.sqlite.damaged-")]
    assert len(kept) == 1 and kept[0] in out  # the damaged file is kept beside the new one
    assert main(["db", "check"]) == 0


def test_salvage_takes_what_the_damaged_file_cannot_give_from_the_backup(tmp_path):
    from qcore.runs.db_backup import backup_path
    from qcore.runs.db_salvage import salvage

    path = tmp_path / "runs.sqlite"
    st = _filled(path)
    job = st.submit_job({"model": "m"}, [])
    st.update_job(job, state="done")  # a finished job: a checkpoint and a backup
    assert backup_path(path).exists()
    _damage(path, "half")
    report = salvage(path)
    assert _results(path) == N and report.from_backup["results"] == N - report.read["results"] > 0
    assert Store(path).job(job).state == "done"
    assert "taken from the backup" in report.text()


def _flip(wal):
    blob = bytearray(wal.read_bytes())
    if blob:
        for i in range(len(blob) // 2, min(len(blob), len(blob) // 2 + 64)):
            blob[i] ^= 0xFF
    wal.write_bytes(bytes(blob))


def _cut(wal):
    wal.write_bytes(wal.read_bytes()[: wal.stat().st_size // 2])


def _garble(wal):
    blob = bytearray(wal.read_bytes())
    blob[:32] = b"\x5a" * min(32, len(blob))
    wal.write_bytes(bytes(blob))


@pytest.mark.parametrize("damage", [_flip, _cut, _garble])
def test_committed_results_survive_a_damaged_log(tmp_path, damage):
    path = tmp_path / "runs.sqlite"
    st = Store(path)
    other = sqlite3.connect(path)  # another process's connection: closing the store's does not checkpoint
    other.execute("SELECT count(*) FROM results").fetchone()
    ids = []
    for _ in range(20):
        r = Result(QuantSpec(), "m", "d", sweep_id="s1", notes=["x" * 2000])
        st.add_result(r)
        ids.append(r.run_id)
    # the files as a crash leaves them (the log not checkpointed, no index beside it), then the log damaged
    (tmp_path / "after").mkdir()
    for name in ("runs.sqlite", "runs.sqlite-wal"):
        if (tmp_path / name).exists():
            shutil.copyfile(tmp_path / name, tmp_path / "after" / name)
    other.close()
    if (tmp_path / "after" / "runs.sqlite-wal").exists():
        damage(tmp_path / "after" / "runs.sqlite-wal")
    assert sorted(r.run_id for r in Store(tmp_path / "after" / "runs.sqlite").results()) == sorted(ids)


def test_a_damaged_log_is_found_and_the_loss_said(tmp_path):
    """Rows committed without a checkpoint (here: jobs, by a writer that holds the log) and a frame garbled in the
    middle: SQLite's own check says ok; db check names the log's damage and salvage says what was lost."""
    from qcore.runs.db_check import check, wal_findings
    from qcore.runs.db_salvage import salvage

    path = tmp_path / "runs.sqlite"
    st = Store(path)
    first = st.submit_job({"model": "m"}, [])
    st.update_job(first, state="done")  # checkpointed and backed up
    other = sqlite3.connect(path)
    other.execute("PRAGMA wal_autocheckpoint=0")
    other.execute("SELECT count(*) FROM jobs").fetchone()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    for i in range(20):
        conn.execute("INSERT INTO jobs (job_id, created_at, state, config, specs) VALUES (?,?,?,?,?)",
                     (f"j{i}", float(i), "done", "{}", "[]"))
    conn.close()
    wal = tmp_path / "runs.sqlite-wal"
    blob = bytearray(wal.read_bytes())
    page = int.from_bytes(blob[8:12], "big")
    frame = 32 + 3 * (24 + page) + 24 + 100  # inside the fourth frame's page
    blob[frame] ^= 0xFF
    wal.write_bytes(bytes(blob))
    found = wal_findings(path)
    assert found and "frame 4" in found[0] and "lost" in found[0]
    report = check(path)
    assert not report.ok and any("frame 4" in p for p in report.problems)
    saved = salvage(path)  # before the last connection closes: closing replays what is valid and drops the log
    other.close()
    assert any("frame 4" in n for n in saved.notes)
    assert Store(path).job(first) is not None


def test_damage_in_the_app_home_offers_salvage_other_pages_point_home(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.apptest import APP

    path = tmp_path / "runs.sqlite"
    monkeypatch.setenv("QCORE_DB", str(path))
    _filled(path)
    _damage(path, "page")
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(str(path) in e.value and "damaged" in e.value for e in at.error)
    at.switch_page("pages/runs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("damaged" in e.value and "Home" in e.value for e in at.error)
    at.switch_page("app.py").run()
    next(b for b in at.button if b.label == "Salvage").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not [e.value for e in at.error if "damaged" in e.value]
    assert any("salvaged" in s.value for s in at.success)
    assert N - PAGE_ROWS <= _results(path) < N


def test_a_second_salvage_in_the_same_second_keeps_the_first_damaged_copy(tmp_path, monkeypatch):
    from qcore.env import paths
    from qcore.runs.db_salvage import salvage

    monkeypatch.setattr(paths.time, "strftime", lambda fmt, *a: "20261205-120000")
    path = tmp_path / "runs.sqlite"
    _filled(path)
    _damage(path, "page")
    first = salvage(path).damaged
    Path(f"{path}-wal").write_bytes(b"garbage log")  # a log left beside the new file
    second = salvage(path).damaged
    assert first != second and first.exists() and second.exists()
    assert Path(f"{second}-wal").read_bytes() == b"garbage log" and not Path(f"{first}-wal").exists()
