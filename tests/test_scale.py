"""qcore.metrics.scale: the busy flag, the latency and accuracy fields a Result carries, the Pareto tie on overlap."""

from __future__ import annotations

import pytest

from qcore.metrics import scale
from qcore.metrics.measure import Latency
from qcore.metrics.pareto import mark_pareto
from qcore.metrics.result import COLUMNS, SCALE_COLUMNS, Result
from qcore.quant.spec import QuantSpec


def test_busy_reason_names_load_and_spread():
    assert scale.busy_reason(0.5, 2, 1.05) == ""
    assert scale.busy_reason(2.4, 2, 1.05) == ""  # the timing's own two threads, plus a little
    assert "load 3.0" in scale.busy_reason(3.0, 2, 1.05)
    assert scale.busy_reason(None, 2, 1.31) == "spread p90/p50 1.31, above 1.3"


def test_set_timing_stores_reference_spread_calls_and_flags_busy():
    r = Result(QuantSpec("int8"), "m", "d", threads=2)
    variant = Latency([10.0] * 8 + [16.0, 17.0], load=0.2)  # p90 16 against p50 10: 1.6
    ref = Latency([20.0] * 10, load=0.3)
    scale.set_timing(r, variant, ref)
    assert r.latency_ms_p50 == 10.0 and r.fp32_latency_ms_p50 == 20.0 and r.speedup == 2.0
    assert r.timed_calls == 10 and r.latency_spread == pytest.approx(1.6) and r.load_avg == 0.3
    assert r.latency_ms_lo == 10.0 and r.latency_ms_hi >= 10.0
    assert r.busy == "spread p90/p50 1.60, above 1.3"
    quiet = Result(QuantSpec("int8"), "m", "d", threads=2)
    scale.set_timing(quiet, Latency([10.0] * 10, load=0.2), Latency([20.0] * 10, load=0.2))
    assert quiet.busy == ""


def test_set_accuracy_scale_counts_images_and_intervals():
    r = Result(QuantSpec("int8"), "m", "d")
    scale.set_accuracy_scale(r, {"both": 1835, "lost": 3, "gained": 2, "neither": 160})
    assert r.eval_images == 2000 and (r.images_lost, r.images_gained) == (3, 2)
    assert r.top1_lo < 91.85 < r.top1_hi and round(r.top1_lo, 2) == 90.57
    assert (round(r.top1_delta_lo, 2), round(r.top1_delta_hi, 2)) == (-0.32, 0.22)
    assert scale.images_text(r) == "-1 of 2000 images (lost 3, gained 2)"
    assert scale.images_text(Result(QuantSpec(), "m", "d")) == ""


def test_scale_columns_come_after_the_build_times_in_the_csv():
    start = COLUMNS.index("first_build_seconds") + 1  # then where the row ran (tests/test_result.py)
    assert COLUMNS[start : start + len(SCALE_COLUMNS)] == SCALE_COLUMNS
    row = Result(QuantSpec("int8"), "m", "d", busy="load 5.0", eval_images=10).row()
    assert row["busy"] == "load 5.0" and row["eval_images"] == 10


def test_old_rows_without_the_fields_load_and_get_an_interval_from_their_samples():
    d = Result(QuantSpec("int8"), "m", "d", latency_ms_p50=10.0, latency_samples_ms=list(range(1, 101))).to_dict()
    for k in SCALE_COLUMNS:
        d.pop(k)
    r = Result.from_dict(d)
    assert r.busy == "" and r.eval_images is None
    assert scale.latency_interval(r) == (40, 61)
    assert scale.latency_interval(Result(QuantSpec(), "m", "d", latency_ms_p50=3.0)) == (3.0, 3.0)


def test_the_pareto_flag_does_not_rank_rows_whose_latency_intervals_overlap():
    def row(top1, lo, p50, hi, size):
        return Result(QuantSpec("int8"), "m", "d", top1=top1, latency_ms_p50=p50, latency_ms_lo=lo,
                      latency_ms_hi=hi, size_bytes=size)

    a = row(90.0, 9.0, 10.0, 11.0, 100)
    b = row(90.0, 10.5, 11.0, 12.0, 100)  # slower by p50, but within a's interval: a tie, both kept
    c = row(90.0, 13.0, 14.0, 15.0, 100)  # slower beyond any overlap, same elsewhere: dominated
    mark_pareto([a, b, c])
    assert [a.pareto, b.pareto, c.pareto] == [True, True, False]
    b.latency_ms_lo, b.latency_ms_hi = 11.5, 12.0  # now clearly slower than a
    mark_pareto([a, b, c])
    assert [a.pareto, b.pareto, c.pareto] == [True, False, False]
