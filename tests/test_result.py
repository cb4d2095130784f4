"""qcore.metrics.result: a Result knows the FP32 row it was measured against (baseline_run_id), rows stored before
that field existed still load, and the baseline is never an FP32 row of another engine."""

import json
import sqlite3

from qcore.metrics.result import COLUMNS, SCALE_COLUMNS, Result, baseline_of
from qcore.present.report import csv_text
from qcore.quant.spec import FP32, QuantSpec
from qcore.runs.store import Store


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


WHERE = ("node_id", "host", "cpu_model", "retries", "accuracy_host", "timed_from", "timed_to")
QAT = ("ptq_top1", "control_top1", "recovered", "finetune_seconds", "qat_epochs")  # issue 18
DRAWS = ("calib_draws", "top1_std", "top1_min", "top1_max", "calib_seeds")  # issue 17
ISSUE24 = ("qat_images_won", "qat_images_lost", "qat_vs_ptq_lo", "qat_vs_ptq_hi", "retime_of")  # issue 24
LAST = (*ISSUE24, "draws_top1")  # issue 29: each draw's top-1
PTQ = ("equalize", "bias_correction", "rounding", "adaround_iters", "adaround_images", "ptq_algorithm_seconds")  # 25


def test_the_csv_has_the_columns_of_before_then_the_build_times_then_scale_where_kept_qat_draws_int8():
    at = COLUMNS.index("baseline_run_id")
    assert COLUMNS[at - 3 : at + 3] == ("run_id", "sweep_id", "created_at", "baseline_run_id", "build_seconds",
                                        "first_build_seconds")  # fmt: skip
    rest = COLUMNS[at + 3 :]
    assert rest == (*SCALE_COLUMNS, *WHERE, "keep_float", *QAT, *DRAWS, "keep_int8", *LAST, *PTQ)  # each appended
    header, base, ort, int8 = csv_text(_rows()).splitlines()
    assert header.split(",") == list(COLUMNS)
    # nothing was compiled for these rows: the build times are empty, after the FP32 row's run id
    cut = 3 + len(rest)
    assert [line.rsplit(",", cut)[1:4] for line in (base, ort, int8)] == [["torchfp32", "", ""]] * 3
    after = len(WHERE) + 1 + len(QAT) + len(DRAWS) + 1 + len(LAST) + len(PTQ)
    where = [line.rsplit(",", after)[1 : 1 + len(WHERE) + 1] for line in (base, ort, int8)]
    assert where == [["", "", "", "0", "", "", "", ""]] * 3
    tail = len(DRAWS) + 1 + len(LAST) + len(PTQ)
    assert [line.rsplit(",", tail)[1 : 1 + len(DRAWS) + 1] for line in (base, ort, int8)] == \
        [["1", "", "", "", "", ""]] * 3
    assert [line.rsplit(",", len(LAST) + len(PTQ))[1:1 + len(LAST)] for line in (base, ort, int8)] == \
        [[""] * len(LAST)] * 3
    # FP32 has no post-training algorithm (empty); the INT8 rows asked for none (false, nearest, no AdaRound numbers)
    assert [line.rsplit(",", len(PTQ))[1:] for line in (base, ort, int8)] == \
        [[""] * 6, ["", "", "", "", "", ""], ["false", "false", "nearest", "", "", ""]]
    assert Result.from_dict(_rows()[2].to_dict()).baseline_run_id == "torchfp32"


def test_rows_stored_before_the_where_fields_load_with_empty_ones_and_new_rows_keep_them(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    rows = _rows()
    rows[2].node_id, rows[2].host, rows[2].cpu_model, rows[2].retries = "ab" * 28, "node-2", "Xeon", 1
    rows[2].timed_from, rows[2].timed_to = 10.0, 12.5
    for r in rows:
        store.add_result(r)
    with sqlite3.connect(store.path) as conn:  # the first two as a database of before would hold them
        for run_id in ("torchfp32", "ortfp32"):
            old = json.loads(conn.execute("SELECT body FROM results WHERE run_id=?", (run_id,)).fetchone()[0])
            for name in WHERE:
                del old[name]
            conn.execute("UPDATE results SET body=? WHERE run_id=?", (json.dumps(old), run_id))
    by_id = {r.run_id: r for r in store.results(sweep_id="s")}
    assert [(by_id[i].node_id, by_id[i].host, by_id[i].retries, by_id[i].timed_from)
            for i in ("torchfp32", "ortfp32")] == [("", "", 0, None)] * 2
    new = by_id["int8"]
    assert (new.node_id, new.host, new.cpu_model, new.retries, new.timed_to) == ("ab" * 28, "node-2", "Xeon", 1, 12.5)
    assert new.row()["host"] == "node-2" and new.row()["retries"] == 1


def test_a_row_keeping_layers_in_int8_fills_its_column_and_loads_back(tmp_path):
    spec = QuantSpec("int4", mode="weight-only", keep_float=("conv1",), keep_int8=("fc", "layer1.0.conv1"))
    r = Result(spec, "resnet18", "fashion-mnist", backend="weight-only", top1=90.0, run_id="mixed", sweep_id="s")
    header, line = csv_text([r]).splitlines()
    assert header.endswith(",calib_seeds,keep_int8," + ",".join(LAST) + "," + ",".join(PTQ))
    assert line.endswith(",fc;layer1.0.conv1" + "," * len(LAST) + ",false,false,nearest,,,")
    assert r.row()["keep_float"] == "conv1"
    store = Store(tmp_path / "runs.sqlite")
    store.add_result(r)
    (back,) = store.results(sweep_id="s")
    assert back.spec == spec and back.label.endswith("+fp32(conv1) +int8(2 layers #" + back.label[-5:])
