"""The charts agree with the table (issue 24, item 4), on every chart: the app's Sweep page (through AppTest),
the report's figure and the HTML report's.

The rows are made to contradict: the busy INT8 row's raw p50 (56 ms) was taken while FP32, timed in turns
with it, took 183 ms (speed-up 3.27x); the FP32 row itself took 3.0 ms in a quiet moment. Drawn at their raw
p50s the INT8 row sits 18x to the right of FP32 while the table says it is 3.27x faster. The oracle: along the
latency axis the points are in the order of their speed-ups (faster left), and every calibration-draw bar
and walk line sits at its point's x, on the size chart too (MB, as the points, never bytes).
"""

from __future__ import annotations

import json
import re

import pytest

from qcore.metrics.result import Result
from qcore.quant.spec import FP32, QuantSpec
from qcore.runs.store import Store
from qcore.runs.sweep import SweepConfig

BASE = "base00000001"
INT8 = QuantSpec("int8", granularity="per-tensor", mode="static")


def _row(spec, run_id, top1, p50, fp32_p50, speedup, mb, jid, **kw) -> Result:
    return Result(spec, "resnet18", "fashion-mnist", backend="fx", kernel="x86", top1=top1, top1_delta=top1 - 91.0,
                  agreement=95.0, latency_ms_p50=p50, latency_ms_p90=p50 * 1.1, latency_ms_lo=p50 * 0.95,
                  latency_ms_hi=p50 * 1.05, fp32_latency_ms_p50=fp32_p50, speedup=speedup, size_bytes=int(mb * 1e6),
                  size_ratio=mb / 44.7, run_id=run_id, sweep_id=jid, baseline_run_id=BASE, threads=2,
                  created_at=1_700_000_000.0 + len(run_id) + top1, **kw)  # fmt: skip


def rows(jid: str = "s1") -> list[Result]:
    """FP32; a busy INT8 row whose raw p50 contradicts its speed-up, with 3 calibration draws; two quiet INT8 rows
    (one of them with draws); FP16; a QAT row; a two-point layer walk (keep_float)."""
    draws = dict(calib_draws=3, top1_std=0.3, top1_min=89.8, top1_max=90.5)
    return [
        _row(FP32, BASE, 91.0, 3.0, 3.0, 1.0, 44.7, jid),
        _row(INT8.replace(calibration="minmax"), "busy0000int8", 90.2, 56.0, 183.1, 3.27, 11.2, jid,
             busy="load 5.2 on the machine, above the 2 threads timed with", **draws),
        _row(INT8.replace(calibration="entropy"), "quiet000int8", 90.6, 1.9, 3.1, 1.63, 11.3, jid,
             **{**draws, "top1_min": 90.3, "top1_max": 90.8}),
        _row(INT8.replace(calibration="percentile", percentile=99.99), "pct00000int8", 88.0, 1.4, 2.9, 2.07, 11.1, jid),
        _row(QuantSpec("fp16"), "fp16000000aa", 91.0, 4.5, 3.0, 0.67, 22.4, jid),
        _row(QuantSpec("int8", mode="qat", granularity="per-channel"), "qat000000int", 90.9, 30.0, 60.0, 2.0, 11.4, jid,
             ptq_top1=90.2, control_top1=91.1, recovered=0.78),
        _row(INT8.replace(keep_float=("fc",)), "walk0000fc01", 90.4, 2.5, 3.4, 1.36, 11.9, jid),
        _row(INT8.replace(keep_float=("fc", "layer4.1.conv2")), "walk0000fc02", 90.5, 9.0, 10.0, 1.11, 12.6, jid),
    ]  # fmt: skip


def _points(fig: dict) -> dict[str, float]:
    """run id -> x of every point (the traces that are not bars, walk lines, the frontier or legend marks)."""
    out = {}
    for t in fig["data"]:
        name = t.get("name") or ""
        if name.startswith(("calibration draws", "walk:")) or not t.get("customdata"):
            continue
        for cd, x in zip(t["customdata"], t["x"]):
            out[cd[0] if isinstance(cd, list) else cd] = x
    return out


def _extra(fig: dict, prefix: str) -> list[tuple[str, float]]:
    return [(cd[0] if isinstance(cd, list) else cd, x) for t in fig["data"] if (t.get("name") or "").startswith(prefix)
            for cd, x in zip(t["customdata"], t["x"])]  # fmt: skip


def check_latency_axis(fig: dict, by_id: dict[str, Result]) -> None:
    xs = _points(fig)
    assert set(xs) == set(by_id), set(by_id) ^ set(xs)
    order = sorted(xs, key=xs.get)  # left to right
    assert [by_id[i].speedup for i in order] == sorted((r.speedup for r in by_id.values()), reverse=True)
    assert xs[BASE] == pytest.approx(3.0)  # the FP32 row at its own p50
    assert xs["busy0000int8"] == pytest.approx(3.0 / 3.27)  # the FP32 row's p50 over the row's speed-up
    title = fig["layout"]["xaxis"]["title"]["text"]
    assert "FP32 p50" in title and "speed-up" in title
    check_extras_at_their_points(fig, xs)


def check_extras_at_their_points(fig: dict, xs: dict[str, float]) -> None:
    bars, walk = _extra(fig, "calibration draws"), _extra(fig, "walk:")
    assert sorted(i for i, _ in bars) == ["busy0000int8", "quiet000int8"]
    for run_id, x in bars + walk:
        assert x == pytest.approx(xs[run_id]), run_id


def _by_id(rs) -> dict[str, Result]:
    return {r.run_id: r for r in rs}


def _figure_dict(fig) -> dict:
    return json.loads(fig.to_json())


def test_the_report_figure_orders_latency_as_the_speedups_and_keeps_the_raw_p50_in_the_hover():
    from qcore.present.report import pareto_figure

    rs = rows()
    fig = pareto_figure(rs)
    check_latency_axis(_figure_dict(fig), _by_id(rs))
    int8 = next(t for t in fig.data if t.name == "INT8")
    i = [c[0] for c in int8.customdata].index("busy0000int8")
    assert "latency p50 56.00 ms" in int8.text[i] and "FP32 p50 3.00 ms ÷ speed-up 3.27×" in int8.text[i]
    assert int8.marker.opacity[i] < 1.0 and all(o == 1.0 for j, o in enumerate(int8.marker.opacity) if j != i)
    lo, hi = int8.error_x.arrayminus[i], int8.error_x.array[i]  # the row's own interval, scaled with it
    assert lo == pytest.approx(3.0 / 3.27 * 0.05) and hi == pytest.approx(3.0 / 3.27 * 0.05)


def test_a_latency_interval_timed_under_load_does_not_squash_the_points():
    """A row timed while the machine was busy can have a latency interval of seconds: the axis follows the points
    (with a margin) and the bar runs off the plot's edge, instead of every point sitting in the first tenth."""
    from qcore.present.report import pareto_figure

    rs = [r for r in rows() if r.spec.mode != "qat"]  # the QAT row at 30 ms would set a wider axis anyway
    wide = next(r for r in rs if r.run_id == "busy0000int8")
    wide.latency_ms_hi = 56.0 * 60  # p50 56 ms, interval up to 3.4 s
    fig = _figure_dict(pareto_figure(rs))
    xs = _points(fig)
    assert fig["layout"]["xaxis"]["type"] == "log"  # 0.92 to 4.5 ms: a log axis, its range in decades
    lo, hi = (10**v for v in fig["layout"]["xaxis"]["range"])
    assert lo <= min(xs.values()) and max(xs.values()) < hi <= 2 * max(xs.values())
    int8 = next(t for t in fig["data"] if t.get("name") == "INT8")
    i = [c[0] for c in int8["customdata"]].index("busy0000int8")
    assert xs["busy0000int8"] + int8["error_x"]["array"][i] > hi  # the bar is drawn, past the edge
    wide.latency_ms_hi = 56.0 * 1.05  # an ordinary interval: the axis is plotly's own again
    assert "range" not in _figure_dict(pareto_figure(rs))["layout"]["xaxis"]
    linear = [r for r in rs if r.run_id != "busy0000int8"]  # 1.45 to 4.5 ms: a linear axis
    next(r for r in linear if r.run_id == "quiet000int8").latency_ms_hi = 1.9 * 40
    fig = _figure_dict(pareto_figure(linear))
    xs = _points(fig)
    assert fig["layout"]["xaxis"]["type"] == "linear"
    lo, hi = fig["layout"]["xaxis"]["range"]
    assert lo <= min(xs.values()) and max(xs.values()) < hi <= 1.5 * max(xs.values())


def test_draw_bars_and_walk_lines_sit_at_their_points_on_the_size_chart():
    from qcore.present.report import pareto_figure
    from ui.layers_view import add_walk_lines

    rs = rows()
    fig = pareto_figure(rs, "size_bytes")
    add_walk_lines(fig, rs, "size_bytes")
    d = _figure_dict(fig)
    xs = _points(d)
    check_extras_at_their_points(d, xs)
    assert xs[BASE] == pytest.approx(44.7) and xs["qat000000int"] == pytest.approx(11.4)  # MB, QAT's star too
    lat = pareto_figure(rs)
    add_walk_lines(lat, rs)
    check_latency_axis(_figure_dict(lat), _by_id(rs))


def html_figures(page: str) -> list[dict]:
    """The figures of an HTML report, as plotly.js receives them."""
    dec, out = json.JSONDecoder(), []
    for m in re.finditer(r"Plotly\.newPlot\(\s*", page):
        i = m.end()
        _, i = dec.raw_decode(page, i)  # the div id
        data, i = dec.raw_decode(page, page.index("[", i))
        layout, _ = dec.raw_decode(page, page.index("{", i))
        out.append({"data": data, "layout": layout})
    return out


def test_the_html_report_charts_agree_with_its_table():
    from qcore.present.report import html_report

    rs = rows()
    lat, size = html_figures(html_report(rs))
    check_latency_axis(lat, _by_id(rs))
    check_extras_at_their_points(size, _points(size))
    assert _points(size)["busy0000int8"] == pytest.approx(11.2)


def test_the_sweep_pages_charts_agree_with_its_table():
    from tests.apptest import open_page

    store = Store()
    jid = store.submit_job(SweepConfig(model="resnet18").to_dict(), [r.spec.to_dict() for r in rows()[1:]])
    rs = rows(jid)
    for r in rs:
        store.add_result(r)
    store.update_job(jid, state="done", done=len(rs))
    at = open_page("pages/sweep.py", timeout=240, job=jid)
    (fig,) = [f for c in at.get("plotly_chart") if (f := json.loads(c.proto.spec))["data"]
              and f["data"][0].get("type") == "scatter"]  # fmt: skip
    check_latency_axis(fig, _by_id(rs))
    legend = fig["layout"]["legend"]
    assert legend["yref"] == "container" and legend["orientation"] == "h"  # above the plot, pushing it down
    assert fig["layout"]["xaxis"]["tickfont"]["size"] >= 13 and fig["layout"]["font"]["size"] >= 14
