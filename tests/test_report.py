"""qcore.present.report: one way to show a number that was not measured, the text table, the HTML report's reference."""

import pytest

from qcore.metrics.result import Result
from qcore.present.report import DASH, fmt, html_report, text_table
from qcore.quant.spec import FP32, QuantSpec


def test_fmt_gives_the_unit_or_one_dash():
    assert fmt(0.12345, ".2f", " ms") == "0.12 ms" and fmt(None, ".2f", " ms") == DASH == "–"
    assert fmt(0, "+.2f") == "+0.00"  # zero is a number, not a missing one


def test_the_text_table_aligns_and_dashes_the_missing():
    r = Result(QuantSpec("int8"), "resnet18", "fashion-mnist", status="error", error="boom")
    head, row = text_table([r]).splitlines()
    assert head.split()[:3] == ["label", "backend", "kernel"]
    assert row.split()[-11:] == [DASH] * 10 + ["error"]  # backend, kernel and eight numbers; no star, not busy
    assert len(head) == len(row) and head.index("status") + 6 == row.index("error") + 5  # right-aligned


def test_the_text_table_shows_the_fp32_reference_spread_and_busy():
    rows = _scaled_rows()
    lines = text_table(rows).splitlines()
    head = lines[0].split()
    assert head[head.index("p50"):head.index("speedup")] == ["p50", "ms", "fp32", "ms", "p90/50"]
    busy = lines[2].split()
    assert busy[-7:] == ["4.00", "10.00", "2.25", "2.50", "0.250", "!", "ok"]  # busy: p90 9 ms against p50 4


def test_the_html_report_names_the_fp32_run_each_row_was_measured_against():
    base = Result(FP32, "resnet18", "fashion-mnist", backend="float", kernel="native", top1=91.25, top1_delta=0.0,
                  agreement=100.0, latency_ms_p50=2.0, speedup=1.0, size_bytes=44_000_000, size_ratio=1.0,
                  run_id="base1", sweep_id="s1", baseline_run_id="base1")
    page = html_report([base])
    assert "FP32 run <code>base1</code>, top-1 91.25%" in page and ">baseline_run_id</th>" in page


def _scaled_rows():
    from qcore.metrics import scale
    from qcore.metrics.measure import Latency

    base = Result(FP32, "resnet18", "fashion-mnist", backend="float", kernel="native", top1=91.900003,
                  top1_delta=0.0, agreement=100.0, size_bytes=44_000_000, size_ratio=1.0, run_id="base1", speedup=1.0,
                  sweep_id="s1", baseline_run_id="base1", threads=2, created_at=1_700_000_000.0)
    scale.set_timing(base, Latency([10.0 + 0.01 * i for i in range(40)], load=0.1))
    scale.set_accuracy_scale(base, {"both": 1838, "lost": 0, "gained": 0, "neither": 162})
    q = Result(QuantSpec("int8"), "resnet18", "fashion-mnist", backend="fx", kernel="native", top1=91.85,
               top1_delta=-0.05, agreement=99.5, size_bytes=11_000_000, size_ratio=0.25, run_id="q1",
               sweep_id="s1", baseline_run_id="base1", threads=2, created_at=1_700_000_100.0)
    scale.set_timing(q, Latency([4.0] * 30 + [9.0] * 10, load=6.0), Latency([10.0] * 40, load=6.0))
    scale.set_accuracy_scale(q, {"both": 1835, "lost": 3, "gained": 2, "neither": 160})
    sim = Result(QuantSpec("int4", mode="weight-only", granularity="per-group", group_size=64), "resnet18",
                 "fashion-mnist", backend="weight-only", kernel="simulated", top1=90.0, top1_delta=-1.9,
                 agreement=97.0, size_bytes=6_000_000, size_ratio=0.14, run_id="s4", sweep_id="s1",
                 baseline_run_id="base1", threads=2, created_at=1_700_000_200.0)
    scale.set_timing(sim, Latency([1282.0] * 11, load=0.1), Latency([10.0] * 11, load=0.1))
    return [base, q, sim]


def test_the_html_report_made_inside_the_app_keeps_its_colours(monkeypatch):
    """Streamlit sets plotly's default template to a placeholder whose colours the browser app swaps in;
    a report made in the app's process must not carry it (every marker was #000001, #000002, ...)."""
    import plotly.io as pio
    from streamlit.elements.lib.streamlit_plotly_theme import configure_streamlit_plotly_theme

    monkeypatch.setattr(pio.templates, "default", pio.templates.default)
    configure_streamlit_plotly_theme()
    assert pio.templates.default == "streamlit"
    page = html_report(_scaled_rows(), title="qcore: sweep s1")
    figures = page.split("<h2>Accuracy against latency</h2>")[1]  # after the inline plotly.js
    assert "#000001" not in figures and "#000002" not in figures
    assert '"color":"#d62728"' in figures and '"color":"#8c8c8c"' in figures and '"color":"#ff7f0e"' in figures
    assert "resnet18 on fashion-mnist · measured 2023-11-14" in page
    table = page.split("<h2>Results</h2>")[1].split("<h2>Manifest</h2>")[0]
    assert "<td>91.90</td>" in table and "91.900003" not in table
    assert "<td>-0.05</td>" in page and "<td>44,000,000</td>" in page
    assert ">fp32_latency_ms_p50</th>" in page and "<td>10.00</td>" in page  # the reference of each row
    assert "load 6.0 on the machine" in page  # the busy flag, in the table


def test_the_chart_shows_intervals_busy_and_simulated_points_on_a_log_latency_axis():
    from qcore.present.report import pareto_figure

    rows = _scaled_rows()
    fig = pareto_figure(rows)
    assert fig.layout.xaxis.type == "log"  # 1282 ms next to 4 ms
    int8 = next(t for t in fig.data if t.name == "INT8")
    assert list(int8.marker.symbol) == ["diamond"]  # timed while busy
    assert int8.error_y.arrayminus[0] == pytest.approx(91.85 - rows[1].top1_lo)
    assert int8.error_x.array[0] >= 0.0 and "-1 of 2000 images (lost 3, gained 2)" in int8.text[0]
    assert "FP32 p50 10.00 ms timed with it" in int8.text[0] and "timed while the machine was busy" in int8.text[0]
    int4 = next(t for t in fig.data if t.name == "INT4")
    assert list(int4.marker.symbol) == ["circle-open"]
    names = {t.name for t in fig.data}
    assert {"timed while busy: faded (time again)", "simulated kernel (latency not real)"} <= names
    size = pareto_figure(rows, "size_bytes")
    assert size.layout.xaxis.title.text.startswith("size (MB") and list(size.data[0].x) == [44.0]


def test_a_single_point_gets_an_axis_around_it():
    from qcore.present.report import pareto_figure

    base = _scaled_rows()[0]
    fig = pareto_figure([base])
    lo, hi = fig.layout.xaxis.range
    assert lo < base.latency_ms_p50 * 0.92 and hi > base.latency_ms_p50 * 1.08  # not a 164-165.5 ms axis
    ylo, yhi = fig.layout.yaxis.range
    assert ylo <= base.top1_lo and yhi >= base.top1_hi and yhi - ylo >= 2.0


def test_log_axes_read_in_round_numbers():
    from qcore.present.chart_scale import log_ticks
    from qcore.present.report import pareto_figure

    assert log_ticks(6.0, 44.0) == [5.0, 10.0, 20.0, 50.0]  # not "6 7 8 9 10 2 3 4 5"
    assert log_ticks(9.9, 10.5) == [8.0, 10.0, 12.0]
    size = pareto_figure(_scaled_rows(), "size_bytes")
    assert list(size.layout.xaxis.tickvals) == [5.0, 10.0, 20.0, 50.0] and size.layout.xaxis.tickformat == "~g"


def test_the_text_table_shows_whole_labels_that_differ_only_at_the_end():
    base = QuantSpec("int4", granularity="per-tensor", mode="weight-only", equalize=True)
    rows = [Result(s, "m", "d", status="ok") for s in (base, base.replace(bias_correction=True))]
    lines = text_table(rows).splitlines()
    assert lines[1].startswith(base.label() + " ") and lines[2].startswith(base.replace(bias_correction=True).label())
    width = len(base.replace(bias_correction=True).label())
    assert len({line.index("  ", width) for line in lines}) == 1  # one width for the column
