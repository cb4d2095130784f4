"""Where a row sits on the Pareto chart's x axis: size in MB, or latency against the FP32 timed beside it.

Every trace of the chart (the precisions' points, QAT's stars, the frontier, the calibration-draw bars, a
layer walk's line) takes its x from :func:`positions`, so a bar or a line never sits apart from its point.

Latency: a row's raw p50 was taken under whatever load the machine had at that moment, and its speed-up
against FP32 timed in turns with it, under the same load. Two raw p50s taken minutes apart can therefore
contradict the speed-ups (INT8 at 56 ms beside FP32 at 3.0 ms while the row says 3.27x faster). So the chart
draws each row at ``R / speedup``: ``R`` the p50 of the FP32 row the rows were measured against (the median
of those rows' p50s when the chart holds several sweeps of one setting, quiet ones preferred), the speed-up
the row's own. Rows of one setting (model, dataset, input, batch, threads, device, host) share ``R``, so
their order along the axis is the order of their speed-ups. The raw p50 stays in the table and the hover.
A row without a speed-up is drawn at its raw p50. The latency interval is the row's own, scaled alike.

>>> from qcore.metrics.result import Result
>>> from qcore.quant.spec import FP32, QuantSpec
>>> base = Result(FP32, "m", "d", latency_ms_p50=3.0, speedup=1.0, run_id="b", baseline_run_id="b")
>>> q = Result(QuantSpec("int8"), "m", "d", latency_ms_p50=56.0, speedup=3.2, run_id="q", baseline_run_id="b")
>>> round(positions([base, q], "latency_ms_p50")["q"].x, 4)
0.9375
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["LATENCY", "SIZE", "MB", "Position", "positions", "references", "axis_line"]

LATENCY, SIZE = "latency_ms_p50", "size_bytes"
MB = 1e6


@dataclass(frozen=True)
class Position:
    """A row on the x axis: where (``x``), its 95% interval (``lo``, ``hi``), the FP32 p50 it is drawn
    against (``ref``, latency only; None when drawn at its raw p50)."""

    x: float
    lo: float
    hi: float
    ref: float | None = None


def _setting(r) -> tuple:
    return (r.model, r.dataset, r.input_shape, r.batch_size, r.threads, r.device, r.host)


def _speedup(r) -> float | None:
    if r.speedup:
        return r.speedup
    return 1.0 if r.spec.is_reference else None


def references(rows: Sequence) -> dict[str, float]:
    """``run_id -> R``, the FP32 p50 each row is drawn against (rows of one setting share it)."""
    from qcore.metrics.result import baseline_of

    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault(_setting(r), []).append(r)
    out = {}
    every = list(rows)
    by_id = {r.run_id: r for r in every}

    def base(r):  # baseline_of(every, r), without building its index of every row for each row
        return by_id.get(r.baseline_run_id) if r.baseline_run_id else baseline_of(every, r)

    for group in groups.values():
        bases = {b.run_id: b for r in group if (b := base(r)) is not None and b.latency_ms_p50}
        quiet = [b.latency_ms_p50 for b in bases.values() if not b.busy]
        refs = quiet or [b.latency_ms_p50 for b in bases.values()]
        if not refs:  # no FP32 row among them: the FP32 p50s timed beside each row
            refs = [r.fp32_latency_ms_p50 for r in group if r.fp32_latency_ms_p50]
        if refs:
            ref = statistics.median(refs)
            out.update({r.run_id: ref for r in group})
    return out


def positions(rows: Sequence, x: str) -> dict[str, Position]:
    """``run_id -> Position`` of every row that has a value on ``x`` (``latency_ms_p50`` or ``size_bytes``;
    any other field is drawn as it is)."""
    from qcore.metrics.scale import latency_interval

    refs = references(rows) if x == LATENCY else {}
    out = {}
    for r in rows:
        v = getattr(r, x, None)
        if v is None:
            continue
        if x == SIZE:
            out[r.run_id] = Position(v / MB, v / MB, v / MB)
        elif x == LATENCY:
            lo, hi = latency_interval(r) or (v, v)
            ref, s = refs.get(r.run_id), _speedup(r)
            if ref is None or s is None or v <= 0:
                out[r.run_id] = Position(v, lo, hi)
            else:
                at = ref / s
                out[r.run_id] = Position(at, at * lo / v, at * hi / v, ref)
        else:
            out[r.run_id] = Position(v, v, v)
    return out


def axis_line(r, p: Position) -> str:
    """The hover line that says where a point is drawn on the latency axis, and why."""
    if p.ref is None:
        return f"on the axis at its own p50, {p.x:.2f} ms (no FP32 reference to draw it against)"
    return f"on the axis: {p.x:.2f} ms = FP32 p50 {p.ref:.2f} ms ÷ speed-up {_speedup(r):.2f}×"
