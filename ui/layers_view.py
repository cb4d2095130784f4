"""The Layers page's charts and tables: the per-layer heat map, the table frame, and the walk's line on the
Pareto chart (:func:`add_walk_lines`, also drawn on the Sweep & Pareto page). Plotly and pandas only, no torch."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from qcore.layers.row import METRICS, LayerRow
from qcore.result import Result

__all__ = ["HEAT_METRICS", "frame", "heatmap", "clicked_layer", "add_walk_lines", "walk_groups", "layers_link"]

# the heat map's columns: each coloured by its rank among the layers (1 = the most sensitive), since dB, ratios
# and points share no scale; the cell's text is the measured value
HEAT_METRICS = {"weight_sqnr_db": "weight SQNR dB", "output_sqnr_db": "output SQNR dB",
                "output_cosine": "output cosine", "gain_only_float": "gain pts, only it FP32",
                "loss_only_quant": "loss pts, only it quantized"}


def frame(rows: Sequence[LayerRow]) -> pd.DataFrame:
    """One row per layer, the columns the page's sortable table shows."""
    return pd.DataFrame([{
        "layer": r.layer, "kind": r.kind, "params": r.params, "weight SQNR dB": r.weight_sqnr_db,
        "weight rel. MSE": r.weight_rel_mse, "output SQNR dB": r.output_sqnr_db, "output rel. MSE": r.output_rel_mse,
        "output cosine": r.output_cosine, "top-1 only this FP32 %": r.top1_only_float,
        "gain pts (only this FP32)": r.gain_only_float, "top-1 only this quantized %": r.top1_only_quant,
        "loss pts (only this quantized)": r.loss_only_quant,
    } for r in rows])  # fmt: skip


def _severity(values: list[float | None], larger_worse: bool) -> list[float | None]:
    """0 (least sensitive) .. 1 (most) by rank; None stays None."""
    known = sorted({v for v in values if v is not None}, reverse=not larger_worse)
    if len(known) < 2:
        return [None if v is None else 0.5 for v in values]
    pos = {v: i / (len(known) - 1) for i, v in enumerate(known)}
    return [None if v is None else pos[v] for v in values]


def heatmap(rows: Sequence[LayerRow]) -> go.Figure:
    """Layers (rows, in model order) x metrics; colour: rank among the layers, text: the value."""
    metrics = [m for m in HEAT_METRICS if any(getattr(r, m) is not None for r in rows)]
    cols = [_severity([getattr(r, m) for r in rows], METRICS[m][1]) for m in metrics]
    z = [[cols[j][i] for j in range(len(metrics))] for i in range(len(rows))]
    text = [[_fmt(getattr(r, m)) for m in metrics] for r in rows]
    fig = go.Figure(go.Heatmap(
        z=z, x=[HEAT_METRICS[m] for m in metrics], y=[f"{r.layer} ({r.kind})" for r in rows], text=text,
        texttemplate="%{text}", colorscale="Reds", zmin=0, zmax=1, customdata=[[r.layer] * len(metrics) for r in rows],
        colorbar=dict(title="sensitivity<br>rank", tickvals=[0, 1], ticktext=["least", "most"]),
        hovertemplate="%{y}<br>%{x}: %{text}<extra></extra>",
    ))  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=max(320, 22 * len(rows) + 140), margin=dict(l=10, r=10, t=30, b=10),
                      clickmode="event+select")
    return fig


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


def walk_groups(results: Sequence[Result]) -> list[list[Result]]:
    """Rows of one spec with and without layers kept in FP32 (a walk), each ordered by layers kept; only groups
    with at least one kept layer."""
    groups: dict[tuple, list[Result]] = {}
    for r in results:
        if r.ok and r.top1 is not None and not r.spec.is_float:
            groups.setdefault((r.model, r.dataset, r.spec.replace(keep_float=())), []).append(r)
    out = []
    for rows in groups.values():
        if any(r.spec.keep_float for r in rows):
            out.append(sorted(rows, key=lambda r: (len(r.spec.keep_float), r.created_at)))
    return out


def add_walk_lines(fig: go.Figure, results: Sequence[Result], x: str = "latency_ms_p50") -> go.Figure:
    """A connected line through each walk's points (see :func:`walk_groups`); each hover lists the layers kept."""
    for rows in walk_groups(results):
        xs = [getattr(r, x) for r in rows]
        hover = [f"{len(r.spec.keep_float)} layer(s) in FP32: {', '.join(r.spec.keep_float) or 'none'}<br>"
                 f"top-1 {r.top1:.2f}%" for r in rows]
        fig.add_trace(go.Scatter(x=xs, y=[r.top1 for r in rows], mode="lines+markers", name=f"walk: {rows[0].label}",
                                 line=dict(dash="dot", width=1.5), marker=dict(size=6, symbol="diamond"),
                                 hovertext=hover, hoverinfo="text", customdata=[r.run_id for r in rows]))
    return fig


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
