"""qcore.report: one way to show a number that was not measured, the text table, the HTML report's reference."""

from qcore.report import DASH, fmt, html_report, text_table
from qcore.result import Result
from qcore.spec import FP32, QuantSpec


def test_fmt_gives_the_unit_or_one_dash():
    assert fmt(0.12345, ".2f", " ms") == "0.12 ms" and fmt(None, ".2f", " ms") == DASH == "–"
    assert fmt(0, "+.2f") == "+0.00"  # zero is a number, not a missing one


def test_the_text_table_aligns_and_dashes_the_missing():
    r = Result(QuantSpec("int8"), "resnet18", "fashion-mnist", status="error", error="boom")
    head, row = text_table([r]).splitlines()
    assert head.split()[:3] == ["label", "backend", "kernel"]
    assert row.split()[-9:] == [DASH] * 8 + ["error"]  # backend, kernel and six numbers; no pareto star
    assert len(head) == len(row) and head.index("status") + 6 == row.index("error") + 5  # right-aligned


def test_the_html_report_names_the_fp32_run_each_row_was_measured_against():
    base = Result(FP32, "resnet18", "fashion-mnist", backend="float", kernel="native", top1=91.25, top1_delta=0.0,
                  agreement=100.0, latency_ms_p50=2.0, speedup=1.0, size_bytes=44_000_000, size_ratio=1.0,
                  run_id="base1", sweep_id="s1", baseline_run_id="base1")
    page = html_report([base])
    assert "FP32 run <code>base1</code>, top-1 91.25%" in page and "<th>baseline_run_id</th>" in page
