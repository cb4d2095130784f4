"""Issue 28, item 4: a full disk is named (the folder, MB free and needed, what is kept, ``--resume JOB``) before a
write and when one fails; shutil.disk_usage is patched to report little free space (the real disk is not filled)."""

from __future__ import annotations

import shutil
import sqlite3
from collections import namedtuple

import pytest

from qcore.env.space import NoSpace

Usage = namedtuple("Usage", "total used free")


@pytest.fixture
def nearly_full(monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10**9, 10**9 - 2 * 10**6, 2 * 10**6))


def test_a_build_is_refused_before_it_starts_with_the_space_named(tmp_path, nearly_full):
    from qcore.backends.buildcache import BuildCache

    built = []
    with pytest.raises(NoSpace) as info:
        BuildCache(tmp_path).get_or_build("aot", {"x": 1}, lambda p: built.append(p), lambda p: p,
                                          expected_bytes=50 * 10**6)
    assert not built
    text = str(info.value)
    assert f"no space left in {tmp_path}" in text and "2.0 MB free" in text and "58 MB needed" in text


def test_a_build_that_runs_out_of_space_is_named_not_the_compilers_words(tmp_path):
    from qcore.backends.buildcache import BuildCache

    def build(path):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 2432 vs 2318")

    with pytest.raises(NoSpace, match=f"no space left in {tmp_path}"):
        BuildCache(tmp_path).get_or_build("aot", {"x": 1}, build, lambda p: p, expected_bytes=0)


def test_files_and_results_are_refused_with_the_folder_named(tmp_path, nearly_full):
    from qcore.env.paths import atomic_write_bytes
    from qcore.metrics.result import Result
    from qcore.quant.spec import QuantSpec
    from qcore.runs.store import Store

    with pytest.raises(NoSpace, match="no space left in .* for big.bin: 2.0 MB free"):
        atomic_write_bytes(tmp_path / "big.bin", b"x" * (20 * 10**6))
    assert not list(tmp_path.iterdir())
    st = Store(tmp_path / "runs.sqlite")
    with pytest.raises(NoSpace, match=f"no space left in {tmp_path} for a result"):
        st.add_result(Result(QuantSpec(), "m", "d"))


def test_sqlite_full_is_named(tmp_path):
    from qcore.runs.db_check import db_error

    conn = sqlite3.connect(tmp_path / "runs.sqlite")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("PRAGMA max_page_count=3")
    with pytest.raises(sqlite3.OperationalError) as info:
        for _ in range(100):
            conn.execute("INSERT INTO t VALUES (?)", ("x" * 4000,))
    named = db_error(info.value, tmp_path / "runs.sqlite")
    assert isinstance(named, NoSpace) and str(tmp_path) in str(named)


def test_a_sweep_stopped_by_a_full_disk_says_how_to_resume(monkeypatch):
    from qcore.runs import sweep

    def full(*a, **k):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(sweep, "_run_sweep", full)
    with pytest.raises(NoSpace) as info:
        sweep.run_sweep(sweep.SweepConfig(), [], sweep_id="cli-1234abcd")
    text = str(info.value)
    assert "no space left in" in text and "results so far are kept" in text and "--resume cli-1234abcd" in text


def test_cli_sweep_on_a_full_disk_prints_the_message_and_keeps_a_resumable_job(monkeypatch, capsys, tmp_path):
    from qcore.cli import main
    from qcore.runs.store import Store
    from qcore.service import worker

    def full(store, job, **kw):
        raise NoSpace(tmp_path, 1_000_000, 50_000_000, "a result")

    monkeypatch.setattr(worker, "execute_job", full)
    assert main(["sweep", "--spec", "FP16"]) == 1
    err = capsys.readouterr().err
    job = Store().jobs(limit=1)[0]
    assert f"no space left in {tmp_path} for a result: 1.0 MB free, 50 MB needed" in err
    assert f"--resume {job.job_id}" in err and "Traceback" not in err
    assert job.state == "interrupted"
