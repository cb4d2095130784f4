"""The budget in the HTML report and on the Pareto figure (qcore.present.budget_chart): the report states the budget
and names the point to ship (or none, and the closest budget); the charts shade the region that meets both as a
layout shape, ring the points that meet both in traces of their own names, and keep the points' axis."""

from __future__ import annotations

import pytest

from qcore.metrics.budget import Budget, choose
from qcore.metrics.result import Result
from qcore.present.budget_chart import MEETS, SHADE, SHIP, shade
from qcore.present.report import html_report, pareto_figure
from qcore.quant.spec import FP32, QuantSpec
from tests.test_chart_axes import html_figures

INT8 = QuantSpec("int8", granularity="per-channel", mode="static")
INT4 = QuantSpec("int4", granularity="per-group", mode="weight-only")


def _row(spec, delta, lo, ms, mb, run_id, status="ok") -> Result:
    return Result(spec, "resnet18", "fashion-mnist", backend="fx", kernel="x86", top1=91.0 + delta, top1_delta=delta,
                  top1_delta_lo=lo, top1_delta_hi=2 * delta - lo, agreement=95.0, latency_ms_p50=ms,
                  latency_ms_p90=ms, fp32_latency_ms_p50=10.0, speedup=10.0 / ms, size_bytes=int(mb * 1e6),
                  size_ratio=mb / 44, run_id=run_id, baseline_run_id="fp32", sweep_id="s", status=status)


ROWS = [_row(FP32, 0.0, 0.0, 10.0, 44.0, "fp32"), _row(INT8, -0.4, -0.8, 4.0, 11.0, "i8"),
        _row(INT4, -1.5, -2.5, 3.0, 6.0, "i4"), _row(INT8.replace(calibration="mse"), -0.1, -0.3, 3.5, 11.0, "bad",
                                                     status="error")]  # fmt: skip


def test_the_report_states_the_budget_and_names_the_point_to_ship():
    page = html_report(ROWS, budget=Budget(sla_ms=5, max_drop=1))
    assert "<h2>The decision</h2>" in page
    assert "Budget: p50 at most 5 ms and a drop of at most 1 point of top-1, its 95% interval included; the " \
           "smallest first." in page
    assert "<b>Ship INT8 per-channel min-max asym static (p50 4.00 ms" in page
    assert "1 row left out, never chosen: 1 not measured" in page
    lat, size = html_figures(page)
    for fig in (lat, size):
        names = [t.get("name") for t in fig["data"]]
        assert MEETS in names and SHIP in names
        ring = next(t for t in fig["data"] if t.get("name") == MEETS)
        assert ring["hoverinfo"] == "skip" and "customdata" not in ring  # never taken for a point by the helpers
        (shape,) = fig["layout"]["shapes"]
        assert shape["name"] == SHADE and shape["y0"] == pytest.approx(90.0)
    assert lat["layout"]["shapes"][0]["x1"] == 5.0
    assert size["layout"]["shapes"][0]["xref"] == "paper"  # the latency budget has no place on the size axis


def test_the_report_says_when_no_point_meets_and_which_budget_is_closest():
    page = html_report(ROWS, budget=Budget(sla_ms=3.5, max_drop=1))
    assert "No point meets both budgets" in page and "the closest to being met is the latency budget" in page
    assert all(SHIP not in [t.get("name") for t in f["data"]] for f in html_figures(page))


def test_without_a_budget_the_report_is_as_before():
    page = html_report(ROWS)
    assert "The decision" not in page
    assert all(not f["layout"].get("shapes") for f in html_figures(page))


def test_the_shade_keeps_the_points_axis_and_brings_a_near_edge_into_view():
    ok = [r for r in ROWS if r.ok]
    fig = pareto_figure(ok, "latency_ms_p50")
    said = shade(fig, ok, "latency_ms_p50", choose(ok, Budget(sla_ms=12.0)))
    lo, hi = fig.layout.xaxis.range
    assert hi >= 12.0 and lo < 3.0  # the edge, just past the slowest point, shown
    assert said.startswith("Shaded: x at most 12.00 ms.")
    fig = pareto_figure(ok, "latency_ms_p50")
    shade(fig, ok, "latency_ms_p50", choose(ok, Budget(sla_ms=5000.0)))
    assert fig.layout.xaxis.range[1] < 50  # a budget far past every point does not squash them


def test_a_speedup_budget_sits_at_fp32_over_it_on_the_latency_axis():
    ok = [r for r in ROWS if r.ok]
    fig = pareto_figure(ok, "latency_ms_p50")
    said = shade(fig, ok, "latency_ms_p50", choose(ok, Budget(sla_speedup=2.0, max_drop=3)))
    assert fig.layout.shapes[0].x1 == pytest.approx(5.0)  # FP32's 10 ms over 2x
    assert "(FP32's p50 over 2×)" in said and "top-1 at least 88.00%" in said
