"""Rows of the post-training algorithms (issue 25) in the files and the words: a row with equalize, bias correction
and AdaRound, calibration draws and layers kept in FP32 survives the CSV (export, then import into the run database)
and the JSON; its label reads back; the HTML report and the explanation name the algorithms and their time."""

from __future__ import annotations

import csv
import io
import json

from qcore.metrics.result import Result
from qcore.present.csv_load import csv_results
from qcore.present.explain import explain
from qcore.present.report import csv_text, html_report, json_text
from qcore.quant.spec import FP32, QuantSpec
from qcore.quant.spec_text import parse_spec

ADA = QuantSpec("int4", mode="weight-only", rounding="adaround", adaround_iters=300, adaround_images=64,
                bias_correction=True, equalize=True, keep_float=("fc",), backend="weight-only")
CLE = QuantSpec("int8", granularity="per-tensor", equalize=True, backend="fx")


def _rows() -> list[Result]:
    common = dict(model="resnet18", dataset="fashion-mnist", sweep_id="s1", baseline_run_id="b", status="ok")
    base = Result(FP32, run_id="b", backend="float", top1=91.25, top1_delta=0.0, created_at=1_700_000_000.0,
                  **common)
    ada = Result(ADA, run_id="a", backend="weight-only", top1=90.5, top1_delta=-0.75, ptq_algorithm_seconds=123.4,
                 calib_draws=2, top1_std=0.1, top1_min=90.4, top1_max=90.6, calib_seeds=[0, 1],
                 draws_top1=[90.4, 90.6], created_at=1_700_000_100.0, **common)
    cle = Result(CLE, run_id="c", backend="fx", top1=91.0, top1_delta=-0.25, ptq_algorithm_seconds=0.8,
                 created_at=1_700_000_200.0, **common)
    return [base, ada, cle]


def test_the_label_reads_back():
    assert ADA.label() == "INT4 per-channel min-max asym weight-only [weight-only] adaround(300 it, 64 img) +cle +bc " \
        "+fp32(fc)"
    plain = ADA.replace(keep_float=())  # (a kept layer's label, +fp32(fc), is not read back: keep_float=fc is)
    assert parse_spec(plain.label()) == plain and parse_spec(CLE.label()) == CLE


def test_a_row_with_the_algorithms_survives_csv_and_json():
    rows = _rows()
    text = csv_text(rows)
    cells = list(csv.DictReader(io.StringIO(text)))
    assert [(c["equalize"], c["bias_correction"], c["rounding"], c["adaround_iters"], c["adaround_images"])
            for c in cells] == [("", "", "", "", ""), ("true", "true", "adaround", "300", "64"),
                                ("true", "false", "nearest", "", "")]  # fmt: skip
    assert [c["ptq_algorithm_seconds"] for c in cells] == ["", "123.4", "0.8"]
    back = csv_results(text)
    assert [r.spec for r in back] == [r.spec for r in rows]
    assert [r.ptq_algorithm_seconds for r in back] == [None, 123.4, 0.8]
    assert back[1].calib_draws == 2 and back[1].draws_top1 == [90.4, 90.6] and back[1].spec.keep_float == ("fc",)
    assert csv_text(back) == text  # read back, written again: the same file
    records = json.loads(json_text(rows))
    assert records[1]["spec"]["rounding"] == "adaround" and records[1]["spec"]["adaround_iters"] == 300
    assert records[1]["ptq_algorithm_seconds"] == 123.4
    assert [Result.from_dict(d).spec for d in records] == [r.spec for r in rows]


def test_a_csv_with_the_algorithms_imports_into_the_run_database(tmp_path):
    from qcore.runs.store import Store
    from ui.csv_import import import_bytes

    store = Store(tmp_path / "runs.sqlite")
    assert import_bytes(store, "ptq.csv", csv_text(_rows()).encode()).added == 3
    stored = {r.run_id: r for r in store.results()}
    assert stored["a"].spec == ADA and stored["a"].ptq_algorithm_seconds == 123.4 and stored["c"].spec == CLE


def test_the_html_report_and_the_words_name_them():
    rows = _rows()
    page = html_report(rows)
    assert ">ptq_algorithm_seconds</th>" in page and "<td>123.4</td>" in page and "adaround(300 it, 64 img)" in page
    words = explain(rows[1])
    assert "Before quantizing, cross-layer equalization, bias correction and AdaRound (300 steps a layer on 64 " \
           "calibration images) ran, in 123.4 s" in words
    assert "Before quantizing" not in explain(rows[0])
