"""qcore.service.worker and the CLI's stored sweeps: a measured job is never failed by a Pareto flag update."""

from __future__ import annotations

import csv
import sqlite3

from qcore.metrics.result import Result
from qcore.quant.spec import FP32, QuantSpec
from qcore.runs.store import Store
from qcore.service import worker


def _rows(job_id: str) -> list[Result]:
    return [Result(FP32, "resnet18", "fashion-mnist", sweep_id=job_id, backend="float", top1=90.0, latency_ms_p50=2.0,
                   notes=["FP32 eager p50 2 ms", "3 unreadable file(s) skipped"]),
            Result(QuantSpec("int8"), "resnet18", "fashion-mnist", sweep_id=job_id, top1=89.0, latency_ms_p50=1.0)]


def _locked(*_a, **_k):
    raise sqlite3.OperationalError("database is locked")


def test_worker_marks_a_measured_job_done_when_the_flags_cannot_be_stored(tmp_path, monkeypatch):
    store = Store(tmp_path / "runs.sqlite")
    jid = store.submit_job({}, [QuantSpec("int8").to_dict()])
    job = store.claim_next_job(1)
    monkeypatch.setattr(worker, "execute_job", lambda s, j, **kw: _rows(j.job_id))
    monkeypatch.setattr(Store, "set_pareto", _locked)
    worker.run_job(store, job)
    done = store.job(jid)
    assert done.state == "done" and done.error == ""
    assert done.message == ("finished; the Pareto column was not stored (OperationalError: database is locked): "
                            "every result is, and the chart draws the frontier from them")


def test_cli_writes_its_csv_before_the_flags_and_still_succeeds(tmp_path, monkeypatch, capsys):
    from qcore.cli import main

    monkeypatch.setenv("QCORE_DB", str(tmp_path / "runs.sqlite"))
    monkeypatch.setattr(worker, "execute_job", lambda s, j, **kw: _rows(j.job_id))
    monkeypatch.setattr(Store, "set_pareto", _locked)
    out = tmp_path / "r.csv"
    assert main(["sweep", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert ("warning: the Pareto flags were not stored in the run database (OperationalError: database is locked); "
            "the CSV/JSON and the table above have them") in err
    assert "note: 3 unreadable file(s) skipped" in err  # the data's notes reach the CLI's output
    assert [r["precision"] for r in csv.DictReader(out.open())] == ["fp32", "int8"]
    (job,) = Store().jobs()
    assert job.job_id.startswith("cli-") and job.state == "done"
