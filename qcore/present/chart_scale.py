"""The Pareto chart's scale: axis values and units, intervals as error bars, busy and simulated marks, padding.

Applied by :func:`qcore.present.report.pareto_figure` (the app's chart and the HTML report's), so both show the same:

- every trace's x from :func:`qcore.present.chart_x.positions`: the size in MB (``size_bytes / 1e6``, as the tables),
log
  scale; the latency as the FP32 row's p50 divided by the row's speed-up, so the axis never contradicts the
  speed-up column (the raw p50, timed under the load of its moment, stays in the hover and the table);
- the latency axis on a log scale when the slowest point is more than :data:`LOG_RATIO` times the fastest
  (a simulated INT4 kernel at 1282 ms next to 6 ms INT8 points would otherwise squash them into one pixel);
- error bars: the 95% Wilson interval of top-1 (:mod:`qcore.metrics.stats`) and, on the latency chart, the 95%
  interval of the median latency, so the axis shows how far apart two points really are;
- open markers for simulated kernels, faded diamonds (opacity :data:`BUSY_OPACITY`) for rows timed while the
  machine was busy (:func:`qcore.metrics.scale.busy_reason`), with legend entries saying so;
- padding, so that a single point (a sweep's first result) or points closer than the noise are not
  drawn on an axis spanning 1 ms or 0.2 points.

Plotly is imported by the caller; this module only builds dicts and lists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from qcore.metrics.scale import draw0_label, images_text, interval_text
from qcore.present.chart_x import LATENCY, MB, Position, axis_line, positions

__all__ = ["LOG_RATIO", "MB", "BUSY_OPACITY", "x_title", "symbol", "decorate", "log_ticks", "scale_lines"]

LOG_RATIO = 4.0
BUSY_OPACITY = 0.4  # a point timed while the machine was busy is drawn faded: its latency is not to be trusted
_TITLES = {LATENCY: "latency (ms) = FP32 p50 ÷ speed-up, lower is better", "size_bytes": "size (MB, lower is better)"}


def x_title(x: str, log: bool) -> str:
    return _TITLES.get(x, x) + (", log scale" if log else "")


def symbol(r) -> str:
    """Marker shape: a circle (a star for a QAT row); a diamond (a star-diamond) when timed while busy; open
    when the kernel is simulated."""
    busy = bool(getattr(r, "busy", ""))
    if r.spec.mode == "qat":
        base = "star-diamond" if busy else "star"
    else:
        base = "diamond" if busy else "circle"
    return base + "-open" if r.kernel == "simulated" else base


def _log_x(pos: dict[str, Position], x: str) -> bool:
    if x == "size_bytes":
        return True
    vals = [p.x for p in pos.values() if p.x > 0]
    return bool(vals) and max(vals) / min(vals) > LOG_RATIO


def decorate(fig, rows: Sequence, x: str, pos: dict[str, Position] | None = None) -> None:
    """x values, error bars, marker shapes and fading, legend marks, axis type, title and padding for the rows
    drawn in ``fig`` (traces whose ``customdata`` holds run ids); ``pos``: the rows' :func:`positions`, when the
    caller has them."""
    by_id = {r.run_id: r for r in rows}
    pos = positions(rows, x) if pos is None else pos
    for trace in fig.data:
        ids = [c[0] for c in (trace.customdata or []) if c]
        drawn = [by_id[i] for i in ids if i in by_id]
        if not drawn or len(drawn) != len(ids) or any(r.run_id not in pos for r in drawn):
            continue
        at = [pos[r.run_id] for r in drawn]
        trace.x = [p.x for p in at]
        trace.marker.symbol = [symbol(r) for r in drawn]
        trace.marker.opacity = [BUSY_OPACITY if getattr(r, "busy", "") else 1.0 for r in drawn]
        if x == LATENCY and trace.text is not None and trace.hoverinfo != "skip":
            trace.text = [t + "<br>" + axis_line(r, p) for t, r, p in zip(trace.text, drawn, at)]
        if any(r.top1_lo is not None for r in drawn):
            trace.error_y = dict(
                type="data", symmetric=False, thickness=1, width=3,
                array=[0 if r.top1_hi is None else max(0.0, r.top1_hi - r.top1) for r in drawn],
                arrayminus=[0 if r.top1_lo is None else max(0.0, r.top1 - r.top1_lo) for r in drawn],
            )  # fmt: skip
        if x == LATENCY:
            trace.error_x = dict(
                type="data", symmetric=False, thickness=1, width=3,
                array=[max(0.0, p.hi - p.x) for p in at], arrayminus=[max(0.0, p.x - p.lo) for p in at],
            )  # fmt: skip
    _legend_marks(fig, rows)
    log = _log_x(pos, x)
    fig.update_xaxes(type="log" if log else "linear", title_text=x_title(x, log))
    _pad(fig, rows, pos, log)
    if log:
        vals = [v for p in pos.values() for v in (p.lo, p.hi) if v and v > 0]
        if vals:
            fig.update_xaxes(tickvals=log_ticks(min(vals), max(vals)), tickformat="~g")


def log_ticks(lo: float, hi: float) -> list[float]:
    """Tick values 1, 2, 5 x 10^k covering [lo, hi] (one more each side; finer steps within a factor of 3), so a
    log axis reads "5 10 20 50" and not plotly's minor digits "6 7 8 9 10 2 3 4 5".

    >>> log_ticks(6.0, 44.0)
    [5.0, 10.0, 20.0, 50.0]
    """
    steps = (1.0, 2.0, 5.0) if hi / lo > 3 else (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)
    ticks = [m * 10.0**k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1) for m in steps]
    first = max((t for t in ticks if t <= lo), default=ticks[0])
    last = min((t for t in ticks if t >= hi), default=ticks[-1])
    return [t for t in ticks if first <= t <= last]


def _legend_marks(fig, rows: Sequence) -> None:
    """Legend entries that explain the shapes, only for shapes that are drawn."""
    import plotly.graph_objects as go

    marks = []
    if any(getattr(r, "busy", "") for r in rows):
        marks.append(("diamond", "timed while busy: faded (time again)"))
    if any(r.kernel == "simulated" for r in rows):
        marks.append(("circle-open", "simulated kernel (latency not real)"))
    for sym, name in marks:
        opacity = BUSY_OPACITY if sym == "diamond" else 1.0
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name, hoverinfo="skip",
                                 marker=dict(symbol=sym, size=10, color="#777777", opacity=opacity)))  # fmt: skip


WIDE_INTERVAL = 2.0  # the axis follows the points when an interval reaches past twice the slowest point


def _points_range(fig, pos: dict[str, Position], log: bool) -> bool:
    """When an interval (a latency timed under load can span seconds) reaches past :data:`WIDE_INTERVAL` times
    the slowest point, set the axis to the points with a margin (a quarter of their span, at least a quarter of
    the slowest on a linear axis and 0.15 decades on a log one): the wide bars run off the plot's edge instead
    of squashing every point into a corner. True when it did."""
    pts = [p.x for p in pos.values() if not log or p.x > 0]
    if not pts or max(p.hi for p in pos.values()) <= WIDE_INTERVAL * max(pts):
        return False
    lo, hi = min(pts), max(pts)
    if log:
        a, b = math.log10(lo), math.log10(hi)
        pad = max(0.25 * (b - a), 0.15)
        fig.update_xaxes(range=[a - pad, b + pad])
    else:
        pad = max(0.25 * (hi - lo), 0.25 * hi)
        fig.update_xaxes(range=[max(0.0, lo - pad), hi + pad])
    return True


def _pad(fig, rows: Sequence, pos: dict[str, Position], log: bool) -> None:
    """Give points an axis wider than the noise: at least 20% of the x value (0.08 decades on a log axis)
    and 1 point of top-1 around them, the intervals included."""
    xs = [(p.lo, p.hi) for p in pos.values()]
    if xs and _points_range(fig, pos, log):
        xs = []
    ys = [(r.top1 if r.top1_lo is None else r.top1_lo, r.top1 if r.top1_hi is None else r.top1_hi)
          for r in rows if r.top1 is not None]  # fmt: skip
    if xs:
        lo, hi = min(v[0] for v in xs), max(v[1] for v in xs)
        if log and lo > 0:
            a, b = math.log10(lo), math.log10(hi)
            if b - a < 0.16:
                mid = (a + b) / 2
                fig.update_xaxes(range=[mid - 0.08 - (b - a) / 2, mid + 0.08 + (b - a) / 2])
        elif hi - lo < 0.2 * max(abs(hi), 1e-9):
            mid, half = (lo + hi) / 2, max(0.1 * abs(hi), (hi - lo) / 2 * 1.2, 1e-6)
            fig.update_xaxes(range=[max(0.0, mid - half), mid + half])
    if ys:
        lo, hi = min(v[0] for v in ys), max(v[1] for v in ys)
        if hi - lo < 2.0:
            mid = (lo + hi) / 2
            fig.update_yaxes(range=[mid - 1.0 - 0.1, mid + 1.0 + 0.1])
        else:
            pad = 0.08 * (hi - lo)
            fig.update_yaxes(range=[lo - pad, hi + pad])


def scale_lines(r) -> list[str]:
    """Hover lines that give a point's numbers their scale (each only when measured)."""
    lines = []
    top = interval_text(r.top1_lo, r.top1_hi, ".2f", "%")
    if top:
        change = images_text(r)
        delta = interval_text(r.top1_delta_lo, r.top1_delta_hi, "+.2f", " pts")
        lines.append(f"top-1 95% interval {top}{draw0_label(r)}"
                     + (f"; change {change}, 95% interval {delta}{draw0_label(r)}" if change else ""))
    lat = []
    if r.latency_ms_lo is not None:
        lat.append(f"95% interval {interval_text(r.latency_ms_lo, r.latency_ms_hi)} ms")
    if r.latency_spread is not None:
        lat.append(f"p90/p50 {r.latency_spread:.2f} over {r.timed_calls} calls")
    if r.fp32_latency_ms_p50 is not None and not r.spec.is_reference:
        lat.append(f"FP32 p50 {r.fp32_latency_ms_p50:.2f} ms timed with it")
    if lat:
        lines.append("latency " + ", ".join(lat))
    if getattr(r, "busy", ""):
        lines.append(f"<b>timed while the machine was busy</b> (time it again):<br>{r.busy}")  # 2 lines: fits 1024 px
    if r.kernel == "simulated":
        lines.append("simulated kernel: its latency is not what a real low-bit kernel would do")
    return lines
