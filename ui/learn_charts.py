"""The Learn page's charts, drawn from plain numbers (lists, floats) that ``ui.learn_data`` computed."""

from __future__ import annotations

import math

import plotly.graph_objects as go

from qcore.learn.affine import Affine
from qcore.learn.dynamic import BatchRanges
from qcore.learn.granularity import ChannelView
from qcore.learn.ranges import BITS

METHOD_COLORS = {"minmax": "#1f77b4", "moving-average": "#17becf", "percentile": "#2ca02c", "entropy": "#9467bd",
                 "mse": "#d62728"}  # fmt: skip
ROUNDING, CLIPPING = "#4c78a8", "#e45756"
TENSOR, CHANNEL = "#8c8c8c", "#f58518"
MARGIN = dict(l=50, r=20, t=30, b=45)
LEGEND = dict(orientation="h", y=1.02, yanchor="bottom", x=0)
FONT = dict(size=13)


def _layout(fig: go.Figure, height: int, x: str, y: str) -> go.Figure:
    fig.update_layout(height=height, margin=MARGIN, xaxis_title=x, yaxis_title=y, legend=LEGEND, font=FONT)
    fig.update_xaxes(tickfont=FONT)  # Streamlit's theme sets 12 px ticks: too small when projected
    fig.update_yaxes(tickfont=FONT)
    return fig


def histogram(edges: list[float], counts: list[int], ranges: dict[str, tuple[float, float]], chosen: str,
              log_y: bool) -> go.Figure:
    """The tensor's histogram with each method's clipping range as a pair of vertical lines."""
    centers = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    fig = go.Figure(go.Bar(x=centers, y=counts, width=edges[1] - edges[0], marker_color="#9ecae1",
                           name="values", hovertemplate="x ≈ %{x:.4g}<br>%{y:,} values<extra></extra>"))
    for method, (lo, hi) in ranges.items():
        width = 3.5 if method == chosen else 1.5
        color = METHOD_COLORS.get(method, "#555")
        for j, v in enumerate((lo, hi)):
            fig.add_trace(go.Scatter(
                x=[v, v], y=[0, 1], yaxis="y2", mode="lines", line=dict(color=color, width=width,
                                                                          dash="solid" if method == chosen else "dash"),
                name=f"{method} [{lo:.4g}, {hi:.4g}]", legendgroup=method, showlegend=j == 0,
                hovertemplate=f"{method}: {'lo' if j == 0 else 'hi'} = {v:.4g}<extra></extra>",
            ))  # fmt: skip
    # the lines live on a second, linear 0..1 axis, so they span the plot whatever the counts' scale
    fig.update_layout(yaxis2=dict(overlaying="y", range=[0, 1], visible=False, type="linear"), bargap=0,
                      yaxis_type="log" if log_y else "linear")
    return _layout(fig, 340, "value", "values per bin" + (" (log)" if log_y else ""))


def staircase(x: list[float], y: list[float], a: Affine, height: int = 340) -> go.Figure:
    """x → dequantize(quantize(x)) with the identity, the clipping range and the reachable range."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[x[0], x[-1]], y=[x[0], x[-1]], mode="lines", name="x (no quantization)",
                             line=dict(color="#bbbbbb", dash="dot")))
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line_shape="hv", name=f"x̂ with {a.levels} levels",
                             line=dict(color="#1f77b4", width=2),
                             hovertemplate="x = %{x:.4g} → x̂ = %{y:.4g}<extra></extra>"))
    g_lo, g_hi = a.grid_range
    for v, label in ((g_lo, f"code {a.qmin} → {g_lo:.4g}"), (g_hi, f"code {a.qmax} → {g_hi:.4g}")):
        fig.add_vline(x=v, line=dict(color="#e45756", dash="dash", width=1), annotation_text=label,
                      annotation_position="top right" if v == g_lo else "bottom left", annotation_font_size=12)
    fig.add_trace(go.Scatter(x=[0], y=[0], mode="markers", marker=dict(size=9, color="#000"),
                             name=f"0 is code z = {a.zero_point}", hoverinfo="skip"))
    return _layout(fig, height, "x (real value)", "x̂ = (q − z) · s")


def error_split(rows: list[dict]) -> go.Figure:
    """Rounding and clipping mean squared error per method, stacked."""
    names = [r["method"] for r in rows]
    fig = go.Figure([
        go.Bar(x=names, y=[r["rounding"] for r in rows], name="rounding (inside the range)", marker_color=ROUNDING),
        go.Bar(x=names, y=[r["clipping"] for r in rows], name="clipping (outside, clamped)", marker_color=CLIPPING),
    ])  # fmt: skip
    fig.update_layout(barmode="stack")
    for r in rows:
        sq = "∞" if math.isinf(r["sqnr"]) else f"{r['sqnr']:.1f} dB"
        fig.add_annotation(x=r["method"], y=r["rounding"] + r["clipping"], text=sq, showarrow=False, yshift=10)
    return _layout(fig, 320, "calibration method", "mean squared error")


def sqnr_bits(curves: dict[str, list[float]], bits: int) -> go.Figure:
    fig = go.Figure()
    for method, values in curves.items():
        fig.add_trace(go.Scatter(x=list(BITS), y=[v if math.isfinite(v) else None for v in values],
                                 mode="lines+markers", name=method, line=dict(color=METHOD_COLORS.get(method))))
    fig.add_vline(x=bits, line=dict(color="#888", dash="dot"), annotation_text=f"{bits} bits")
    return _layout(fig, 320, "bits", "SQNR (dB)")


def channel_ranges(view: ChannelView) -> go.Figure:
    """Each channel's [lo, hi] as a floating bar, against the one per-tensor range."""
    idx = list(range(view.channels))
    fig = go.Figure(go.Bar(x=idx, y=[h - lo for lo, h in zip(view.lo, view.hi)], base=view.lo, name="channel range",
                           marker_color=CHANNEL,
                           hovertemplate="channel %{x}: [%{base:.4g}, %{y:.4g} wide]<extra></extra>"))
    t = view.tensor
    for v, label in ((t.lo, "per-tensor lo"), (t.hi, "per-tensor hi")):
        fig.add_hline(y=v, line=dict(color=TENSOR, dash="dash"), annotation_text=f"{label} {v:.4g}")
    fig.update_layout(bargap=0.1 if view.channels < 100 else 0)
    return _layout(fig, 320, "channel", "range [lo, hi]")


def channel_sqnr(view: ChannelView) -> go.Figure:
    idx = list(range(view.channels))

    def clean(values: list[float]) -> list[float | None]:
        return [v if math.isfinite(v) else None for v in values]

    fig = go.Figure([
        go.Scatter(x=idx, y=clean(view.sqnr_tensor), mode="markers", name="one scale per tensor",
                   marker=dict(color=TENSOR, size=6)),
        go.Scatter(x=idx, y=clean(view.sqnr_channel), mode="markers", name="one scale per channel",
                   marker=dict(color=CHANNEL, size=6, symbol="diamond")),
    ])  # fmt: skip
    return _layout(fig, 320, "channel", "SQNR of the channel (dB)")


def batches(br: BatchRanges) -> go.Figure:
    """Each batch's own [min, max] (dynamic) against the static range."""
    idx = [i + 1 for i in range(len(br.batch_lo))]
    fig = go.Figure([
        go.Scatter(x=idx, y=br.batch_hi, mode="lines+markers", name="batch max (dynamic hi)",
                   line=dict(color=CHANNEL)),
        go.Scatter(x=idx, y=br.batch_lo, mode="lines+markers", name="batch min (dynamic lo)",
                   line=dict(color=CHANNEL, dash="dot")),
    ])  # fmt: skip
    for v, label in ((br.static.lo, "static lo"), (br.static.hi, "static hi")):
        fig.add_hline(y=v, line=dict(color=TENSOR, dash="dash"), annotation_text=f"{label} {v:.4g}")
    fig.update_xaxes(dtick=1)
    return _layout(fig, 300, "calibration batch", "range")


def batch_sqnr(br: BatchRanges) -> go.Figure:
    idx = [i + 1 for i in range(len(br.batch_lo))]

    def db(splits) -> list[float | None]:
        return [s.sqnr_db if math.isfinite(s.sqnr_db) else None for s in splits]

    fig = go.Figure([
        go.Bar(x=idx, y=db(br.static_splits), name="static range", marker_color=TENSOR),
        go.Bar(x=idx, y=db(br.dynamic_splits), name="the batch's own range (dynamic)", marker_color=CHANNEL),
    ])  # fmt: skip
    fig.update_xaxes(dtick=1)
    return _layout(fig, 300, "calibration batch", "SQNR (dB)")
