"""qcore.result: a Result knows the FP32 row it was measured against (baseline_run_id), rows stored before
that field existed still load, and the baseline is never an FP32 row of another engine."""

import json
import sqlite3

from qcore.report import csv_text
from qcore.result import COLUMNS, Result, baseline_of
from qcore.spec import FP32, QuantSpec
from qcore.store import Store


def _rows() -> list[Result]:
    base = Result(FP32, "resnet18", "fashion-mnist", backend="float", top1=91.0, run_id="torchfp32", sweep_id="s",
                  created_at=1.0)
    base.baseline_run_id = base.run_id
    ort = Result(QuantSpec("fp32", backend="ort"), "resnet18", "fashion-mnist", backend="ort", top1=91.0,
                 run_id="ortfp32", sweep_id="s", created_at=2.0, baseline_run_id="torchfp32")
    int8 = Result(QuantSpec("int8"), "resnet18", "fashion-mnist", backend="fx", top1=90.5, run_id="int8",
                  sweep_id="s", created_at=3.0, baseline_run_id="torchfp32")
    return [base, ort, int8]


def test_the_baseline_of_a_sweep_with_an_ort_fp32_row_is_the_torch_fp32_row(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    for r in _rows():
        store.add_result(r)
    rows = store.results(sweep_id="s")  # newest first: the ORT FP32 row comes before torch's
    assert [r.run_id for r in rows] == ["int8", "ortfp32", "torchfp32"]
    assert baseline_of(rows).run_id == "torchfp32"
    assert {baseline_of(rows, r).run_id for r in rows} == {"torchfp32"}
    assert baseline_of([r for r in rows if r.run_id != "torchfp32"]) is None  # not among them: no guess


def test_rows_stored_before_baseline_run_id_load_and_fall_back_to_torch_fp32(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    for r in _rows():
        store.add_result(r)
    with sqlite3.connect(store.path) as conn:  # rewrite the bodies as an older qcore stored them
        for run_id, body in conn.execute("SELECT run_id, body FROM results").fetchall():
            old = json.loads(body)
            del old["baseline_run_id"]
            conn.execute("UPDATE results SET body=? WHERE run_id=?", (json.dumps(old), run_id))
    rows = store.results(sweep_id="s")
    assert len(rows) == 3 and all(r.baseline_run_id == "" for r in rows)
    assert baseline_of(rows).run_id == "torchfp32"  # the first ok FP32 row would have been ORT's
    assert baseline_of(rows, rows[0]).run_id == "torchfp32"


def test_the_csv_has_the_columns_of_before_then_baseline_run_id_then_the_build_times():
    assert COLUMNS[-3:] == ("baseline_run_id", "build_seconds", "first_build_seconds")
    assert COLUMNS[-6:-3] == ("run_id", "sweep_id", "created_at")
    header, base, ort, int8 = csv_text(_rows()).splitlines()
    assert header.split(",") == list(COLUMNS)
    # nothing was compiled for these rows: the build times are empty, after the FP32 row's run id
    assert [line.rsplit(",", 3)[1:] for line in (base, ort, int8)] == [["torchfp32", "", ""]] * 3
    assert Result.from_dict(_rows()[2].to_dict()).baseline_run_id == "torchfp32"
