"""The Layers page's charts and tables: the per-layer heat map, the table frame, and the walk's line on the
Pareto chart (:func:`add_walk_lines`, also drawn on the Sweep & Pareto page). Plotly and pandas only, no torch."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from qcore.layers.row import METRICS, LayerRow
from qcore.metrics.result import Result

__all__ = ["HEAT_METRICS", "frame", "heatmap", "clicked_layer", "add_walk_lines", "walk_groups", "strip_cells",
           "precision_strip", "walk_strips", "layers_link"]

# the heat map's columns: each coloured by its rank among the layers (1 = the most sensitive), since dB, ratios
# and points share no scale; the cell's text is the measured value
HEAT_METRICS = {"weight_sqnr_db": "weight SQNR dB", "output_sqnr_db": "output SQNR dB",
                "output_cosine": "output cosine", "gain_only_float": "gain pts, only it FP32",
                "loss_only_quant": "loss pts, only it quantized"}


def frame(rows: Sequence[LayerRow]) -> pd.DataFrame:
    """One row per layer or activation quantizer (``kind``), the columns the page's sortable table shows; an
    activation row has no weight columns, and its output error is its quantizer's own."""
    return pd.DataFrame([{
        "layer": r.layer, "kind": r.kind, "op": r.op, "params": r.params, "weight SQNR dB": r.weight_sqnr_db,
        "weight rel. MSE": r.weight_rel_mse, "output SQNR dB": r.output_sqnr_db, "output rel. MSE": r.output_rel_mse,
        "output cosine": r.output_cosine, "top-1 only this FP32 %": r.top1_only_float,
        "gain pts (only this FP32)": r.gain_only_float, "top-1 only this quantized %": r.top1_only_quant,
        "loss pts (only this quantized)": r.loss_only_quant, "note": r.cannot_keep,
    } for r in rows])  # fmt: skip


def _severity(values: list[float | None], larger_worse: bool) -> list[float | None]:
    """0 (least sensitive) .. 1 (most) by rank; None stays None."""
    known = sorted({v for v in values if v is not None}, reverse=not larger_worse)
    if len(known) < 2:
        return [None if v is None else 0.5 for v in values]
    pos = {v: i / (len(known) - 1) for i, v in enumerate(known)}
    return [None if v is None else pos[v] for v in values]


def heatmap(rows: Sequence[LayerRow]) -> go.Figure:
    """Layers, then activation quantizers (rows, in model order) x metrics; colour: rank among the rows, text: the
    value ("–" where a row has none: an activation quantizer has no weight)."""
    metrics = [m for m in HEAT_METRICS if any(getattr(r, m) is not None for r in rows)]
    cols = [_severity([getattr(r, m) for r in rows], METRICS[m][1]) for m in metrics]
    z = [[cols[j][i] for j in range(len(metrics))] for i in range(len(rows))]
    text = [[_fmt(getattr(r, m)) for m in metrics] for r in rows]
    fig = go.Figure(go.Heatmap(
        z=z, x=[HEAT_METRICS[m] for m in metrics], y=_labels(rows), text=text,
        texttemplate="%{text}", colorscale="Reds", zmin=0, zmax=1, customdata=[[r.layer] * len(metrics) for r in rows],
        colorbar=dict(title="sensitivity<br>rank", tickvals=[0, 1], ticktext=["least", "most"]), hoverinfo="skip",
    ))  # fmt: skip
    # plotly selects points of scatter traces only: an invisible square over each cell makes a click choose its
    # layer (the chart's selection event), and carries the hover
    ys = _labels(rows)
    fig.add_trace(go.Scatter(
        x=[HEAT_METRICS[m] for _ in rows for m in metrics], y=[y for y in ys for _ in metrics], mode="markers",
        marker=dict(symbol="square", size=18, color="#000", opacity=0), showlegend=False,
        customdata=[r.layer for r in rows for _ in metrics], text=[t for row in text for t in row],
        hovertemplate="%{y}<br>%{x}: %{text}<br>click: its weight histogram<extra></extra>",
        selected=dict(marker=dict(opacity=0.25)), unselected=dict(marker=dict(opacity=0)),
    ))  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=max(320, 22 * len(rows) + 140), margin=dict(l=10, r=10, t=30, b=10),
                      clickmode="event+select", hoverdistance=-1)  # the nearest marker: the cell under the mouse
    return fig


def _labels(rows: Sequence[LayerRow]) -> list[str]:
    """The heat map's row labels: ``layer1.0.conv1 (Conv2d 3x3 64->64)``, ``act:layer1.0.relu (add + ReLU)``."""
    return [f"{r.layer} ({r.op})" for r in rows]


def clicked_layer(event) -> str | None:
    """The layer of a clicked heat-map cell (Streamlit's selection event), None when nothing is selected."""
    points = (event.selection.points if event is not None and hasattr(event, "selection") else None) or []
    for p in points:
        cd = p.get("customdata")
        if isinstance(cd, list):
            cd = cd[0] if cd else None
        if cd:
            return str(cd)
        if p.get("y"):
            return str(p["y"]).split(" (")[0]  # the row's label: "layer1.0.conv1 (Conv2d 3x3 64->64)"
    return None


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.3g}" if abs(v) < 1 else f"{v:.2f}"


def _kept(r: Result) -> tuple[str, ...]:
    """The layers a point keeps in higher precision: FP32 (``keep_float``) or, under INT4, INT8 (``keep_int8``)."""
    return r.spec.keep_float + r.spec.keep_int8


def _kept_text(r: Result) -> str:
    parts = [f"{len(r.spec.keep_float)} in FP32"] + ([f"{len(r.spec.keep_int8)} in INT8"] if r.spec.keep_int8 else [])
    return ", ".join(parts)


def walk_groups(results: Sequence[Result]) -> list[list[Result]]:
    """Rows of one spec with and without layers kept in higher precision (a walk, promoting to FP32 or INT8), each
    ordered by layers kept; only groups with at least one kept layer."""
    groups: dict[tuple, list[Result]] = {}
    for r in results:
        if r.ok and r.top1 is not None and not r.spec.is_float:
            groups.setdefault((r.model, r.dataset, r.spec.replace(keep_float=(), keep_int8=())), []).append(r)
    out = []
    for rows in groups.values():
        if any(_kept(r) for r in rows):
            out.append(sorted(rows, key=lambda r: (len(_kept(r)), r.created_at)))
    return out


def add_walk_lines(fig: go.Figure, results: Sequence[Result], x: str = "latency_ms_p50") -> go.Figure:
    """A connected line through each walk's points (see :func:`walk_groups`); each hover lists the layers kept.
    The line goes through the points where the chart draws them (:func:`qcore.present.chart_x.positions`)."""
    from qcore.present.chart_x import positions

    drawn = [r for r in results if getattr(r, x) is not None]
    at = positions(drawn, x)
    for rows in walk_groups(drawn):
        xs = [at[r.run_id].x for r in rows]
        hover = [f"{len(r.spec.keep_float)} layer(s) in FP32: {', '.join(r.spec.keep_float) or 'none'}<br>"
                 + (f"{len(r.spec.keep_int8)} in INT8: {', '.join(r.spec.keep_int8)}<br>" if r.spec.keep_int8 else "")
                 + f"top-1 {r.top1:.2f}%" for r in rows]
        fig.add_trace(go.Scatter(x=xs, y=[r.top1 for r in rows], mode="lines+markers", name=f"walk: {rows[0].label}",
                                 line=dict(dash="dot", width=1.5), marker=dict(size=6, symbol="diamond"),
                                 hovertext=hover, hoverinfo="text", customdata=[r.run_id for r in rows]))
    return fig


FP32_COLOR = "#d9d9d9"  # kept in float: light, so the quantized layers (the precision's own colour) stand out


def strip_cells(walk: Sequence[Result], layers: Sequence[str]) -> list[list[str]]:
    """Per walk point (in walk order), per layer (in model order): ``"FP32"`` where the point keeps the layer in
    float, ``"INT8"`` where it keeps it in INT8 under INT4, else the spec's precision (``"INT8"``, ``"INT4"``). A
    kept name the list lacks gets a column at the end."""
    names = _names(walk, layers)
    return [["FP32" if n in r.spec.keep_float else "INT8" if n in r.spec.keep_int8 else r.spec.precision.upper()
             for n in names] for r in walk]


def _names(walk: Sequence[Result], layers: Sequence[str]) -> list[str]:
    return list(layers) + sorted({n for r in walk for n in _kept(r)} - set(layers))


def precision_strip(walk: Sequence[Result], layers: Sequence[str], colors: dict[str, str],
                    selected: str | None = None) -> go.Figure:
    """A walk's per-layer precision: one row per point (the walk's order, as its line on the chart), one cell
    per quantizable layer in model order, FP32 light and the quantized layers in their precision's colour; the
    clicked point's row is outlined."""
    cells = strip_cells(walk, layers)
    names = _names(walk, layers)
    quant = walk[0].spec.precision.upper()
    level = {"FP32": 0.0, "INT8": 0.5, quant: 1.0}  # under INT8 specs "INT8" is the quantized colour
    z = [[level[c] for c in row] for row in cells]
    ys = [f"{_kept_text(r)} · {r.top1:.2f}%" if r.top1 is not None else _kept_text(r) for r in walk]
    text = [[f"{n}: {c}" for n, c in zip(names, row)] for row in cells]
    c8, cq = colors.get("INT8", "#ff7f0e"), colors.get(quant, "#1f77b4")
    fig = go.Figure(go.Heatmap(
        z=z, x=names, y=ys, text=text, hovertemplate="%{y}<br>%{text}<extra></extra>", zmin=0, zmax=1, xgap=1,
        ygap=2, showscale=False, colorscale=[[0, FP32_COLOR], [0.25, FP32_COLOR], [0.25, c8], [0.75, c8], [0.75, cq],
                                             [1, cq]],
    ))  # fmt: skip
    fig.update_yaxes(autorange="reversed", tickfont=dict(size=10))
    fig.update_xaxes(showticklabels=len(names) <= 40, tickangle=-60, tickfont=dict(size=9))
    ids = [r.run_id for r in walk]
    if selected in ids:
        i = ids.index(selected)
        fig.add_shape(type="rect", x0=-0.5, x1=len(names) - 0.5, y0=i - 0.5, y1=i + 0.5,
                      line=dict(color="#222", width=2))
    spec = walk[0].spec.replace(keep_float=(), keep_int8=()).label()
    kept = "INT8" if any(r.spec.keep_int8 for r in walk) else "FP32 (light)"
    title = f"Walk of {spec}: each layer in <b>{quant}</b> or <b>{kept}</b>"
    fig.update_layout(height=60 + 22 * len(walk) + (110 if len(names) <= 40 else 0),
                      margin=dict(l=10, r=10, t=28, b=4), title=dict(text=title, font=dict(size=12)))
    return fig


def walk_strips(results: Sequence[Result], key: str, colors: dict[str, str], selected: str | None = None) -> None:
    """Under the chart, each mixed-precision walk's per-layer precision strip (one row per point), the model's
    Conv and Linear layers in model order (:func:`ui.keep_float.model_layers`)."""
    import streamlit as st

    from .keep_float import model_layers
    from .text import plain

    for i, walk in enumerate(walk_groups(results)):
        layers, problem = model_layers(walk[0].model)
        if problem:
            st.caption(plain(f"No per-layer strip for {walk[0].model}: {problem}"))
            continue
        st.plotly_chart(precision_strip(walk, layers, colors, selected), key=f"{key}-strip-{i}",
                        config={"displaylogo": False, "displayModeBar": False})


def layers_link(r: Result) -> None:
    """A link from a measured point to the Layers page with its model, data and spec filled in (the page's
    widgets read them from the URL); none for float rows, which quantize nothing."""
    import streamlit as st

    if not r.ok or r.spec.is_float:
        return
    s = r.spec
    query = {"model": r.model, "dataset": r.dataset, "precision": s.precision, "granularity": s.granularity,
             "calibration": s.calibration, "scheme": s.scheme, "mode": s.mode, "backend": s.backend}
    if s.granularity == "per-group":
        query["group"] = str(s.group_size)
    if s.calibration == "percentile":
        query["pct"] = str(s.percentile)
    st.page_link("pages/layers.py", label="Which layers cost the accuracy? Open in Layers",
                 query_params=query, icon=":material/layers:")
