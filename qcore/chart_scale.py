"""The Pareto chart's scale: axis values and units, intervals as error bars, busy and simulated marks, padding.

Applied by :func:`qcore.report.pareto_figure` (the app's chart and the HTML report's), so both show the same:

- the size axis in MB (``size_bytes / 1e6``, as the tables), log scale;
- the latency axis on a log scale when the slowest point is more than :data:`LOG_RATIO` times the fastest
  (a simulated INT4 kernel at 1282 ms next to 6 ms INT8 points would otherwise squash them into one pixel);
- error bars: the 95% Wilson interval of top-1 (:mod:`qcore.stats`) and, on the latency chart, the 95%
  interval of the median latency, so the axis shows how far apart two points really are;
- open markers for simulated kernels, diamonds for rows timed while the machine was busy
  (:func:`qcore.scale.busy_reason`), with legend entries saying so;
- padding, so that a single point (a sweep's first result) or points closer than the noise are not
  drawn on an axis spanning 1 ms or 0.2 points.

Plotly is imported by the caller; this module only builds dicts and lists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .scale import images_text, interval_text, latency_interval

__all__ = ["LOG_RATIO", "MB", "x_value", "x_title", "symbol", "decorate", "log_ticks", "scale_lines"]

LOG_RATIO = 4.0
MB = 1e6
_TITLES = {"latency_ms_p50": "latency p50 (ms, lower is better)", "size_bytes": "size (MB, lower is better)"}


def x_value(r, x: str) -> float | None:
    """The value a row is drawn at on the x axis (sizes in MB)."""
    v = getattr(r, x)
    return None if v is None else (v / MB if x == "size_bytes" else v)


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


def _x_interval(r, x: str) -> tuple[float, float] | None:
    if x == "latency_ms_p50":
        return latency_interval(r)
    v = x_value(r, x)
    return None if v is None else (v, v)


def _log_x(rows: Sequence, x: str) -> bool:
    if x == "size_bytes":
        return True
    vals = [v for r in rows if (v := x_value(r, x)) is not None and v > 0]
    return bool(vals) and max(vals) / min(vals) > LOG_RATIO


def decorate(fig, rows: Sequence, x: str) -> None:
    """Error bars, marker shapes, legend marks, axis type, title and padding for the rows drawn in ``fig``
    (traces whose ``customdata`` holds run ids)."""
    by_id = {r.run_id: r for r in rows}
    for trace in fig.data:
        ids = [c[0] for c in (trace.customdata or []) if c]
        drawn = [by_id[i] for i in ids if i in by_id]
        if not drawn or len(drawn) != len(ids):
            continue
        trace.marker.symbol = [symbol(r) for r in drawn]
        if any(r.top1_lo is not None for r in drawn):
            trace.error_y = dict(
                type="data", symmetric=False, thickness=1, width=3,
                array=[0 if r.top1_hi is None else max(0.0, r.top1_hi - r.top1) for r in drawn],
                arrayminus=[0 if r.top1_lo is None else max(0.0, r.top1 - r.top1_lo) for r in drawn],
            )  # fmt: skip
        if x == "latency_ms_p50":
            ivs = [_x_interval(r, x) or (r.latency_ms_p50, r.latency_ms_p50) for r in drawn]
            trace.error_x = dict(
                type="data", symmetric=False, thickness=1, width=3,
                array=[max(0.0, hi - r.latency_ms_p50) for r, (_, hi) in zip(drawn, ivs)],
                arrayminus=[max(0.0, r.latency_ms_p50 - lo) for r, (lo, _) in zip(drawn, ivs)],
            )  # fmt: skip
    _legend_marks(fig, rows)
    log = _log_x(rows, x)
    fig.update_xaxes(type="log" if log else "linear", title_text=x_title(x, log))
    _pad(fig, rows, x, log)
    if log:
        vals = [v for r in rows for v in (_x_interval(r, x) or ()) if v and v > 0]
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
        marks.append(("diamond", "timed while busy (time again)"))
    if any(r.kernel == "simulated" for r in rows):
        marks.append(("circle-open", "simulated kernel (latency not real)"))
    for sym, name in marks:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name, hoverinfo="skip",
                                 marker=dict(symbol=sym, size=10, color="#777777")))  # fmt: skip


def _pad(fig, rows: Sequence, x: str, log: bool) -> None:
    """Give points an axis wider than the noise: at least 20% of the x value (0.08 decades on a log axis)
    and 1 point of top-1 around them, the intervals included."""
    xs = [iv for r in rows if (iv := _x_interval(r, x)) is not None]
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
        lines.append(f"top-1 95% interval {top}" + (f"; change {change}, 95% interval {delta}" if change else ""))
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
        lines.append(f"<b>timed while the machine was busy</b>: {r.busy}; time it again")
    if r.kernel == "simulated":
        lines.append("simulated kernel: its latency is not what a real low-bit kernel would do")
    return lines
