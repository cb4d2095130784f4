"""How a Result is shown: the table, metric cards against FP32, the latency spread, the Pareto chart,
the details of one run and the downloads. Every number carries its unit and a tooltip saying what
it is measured against."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from qcore.metrics.columns import column, help_text
from qcore.metrics.result import Result
from qcore.metrics.scale import draw0_label, images_text, interval_text
from qcore.present import report
from qcore.present.explain import explain
from qcore.present.report import DASH, fmt

from .common import dataset_label, delta_style, no_paths, start_worker, store
from .compare import compare, compare_references  # noqa: F401  (Runs calls results.compare)
from .doctor_view import add_moves, why_panel
from .layers_view import add_walk_lines, layers_link, walk_strips
from .text import plain

__all__ = ["PRECISION_COLORS", "TIPS", "SHOWS", "COLUMNS", "frame", "table", "metric_cards", "latency_chart", "details",
           "draws_chart", "pareto", "qat_curve_chart", "downloads", "deferred_downloads", "compare"]

PRECISION_COLORS = report.PRECISION_COLORS  # one table for the app and the reports
# The help of the cards and the table reads the column key (qcore.metrics.columns): one table with the CSV's and the
# HTML report's, so the app says what the files say.
TIPS = {tip: column(name).meaning for tip, name in (
    ("top1", "top1"), ("delta", "top1_delta"), ("agreement", "agreement"), ("speedup", "speedup"),
    ("size", "size_ratio"), ("p50", "latency_ms_p50"), ("kernel", "kernel"), ("pareto", "pareto"),
    ("fp32_p50", "fp32_latency_ms_p50"), ("spread", "latency_spread"), ("calls", "timed_calls"), ("busy", "busy"),
)}  # fmt: skip


def frame(results: Sequence[Result], *, newest_first: bool = True) -> pd.DataFrame:
    """One row per result, newest first (as the CSV, the JSON and the store list them; ``newest_first=False``: in
    the order given, a page the store sorted), with its date."""
    rows = []
    for r in sorted(results, key=lambda r: r.created_at, reverse=True) if newest_first else results:
        rows.append({
            "spec": r.label, "status": r.status, "top-1 %": r.top1, "Δ top-1 pts": r.top1_delta,
            "agreement %": r.agreement, "p50 ms": r.latency_ms_p50, "speed-up ×": r.speedup,
            "size MB": None if r.size_bytes is None else r.size_bytes / 1e6, "size ×": r.size_ratio,
            "kernel": r.kernel, "backend": r.backend, "pareto": bool(r.pareto), "model": r.model,
            "dataset": dataset_label(r.dataset), "sweep": r.sweep_id, "run_id": r.run_id, "error": r.error,
            "measured": datetime.fromtimestamp(r.created_at),  # the server's local time, as the job list
        })  # fmt: skip
        rows[-1].update(scale_columns(r))
    return pd.DataFrame(rows, columns=COLUMNS)


def scale_columns(r: Result) -> dict:
    """The table's columns that give a row's numbers their scale (qcore.metrics.scale): the top-1 interval, the change
    in images, the FP32 p50 the speed-up was divided by, the spread and calls, and the busy flag."""
    return {
        "top-1 95% CI": _labelled(r, interval_text(r.top1_lo, r.top1_hi)), "Δ images": images_text(r).split(" (")[0],
        "Δ 95% CI pts": _labelled(r, interval_text(r.top1_delta_lo, r.top1_delta_hi, "+.2f")),
        "FP32 p50 ms": r.fp32_latency_ms_p50, "p90/p50": r.latency_spread, "calls": r.timed_calls,
        "busy": f"⚠ {r.busy}" if r.busy else "",
    }  # fmt: skip


def _labelled(r: Result, text: str) -> str:
    """``text`` with " in draw 0 of K" where a draw row stored before the intervals described the mean holds
    draw 0's."""
    return text + draw0_label(r) if text else text


COLUMNS = ["spec", "status", "top-1 %", "Δ top-1 pts", "agreement %", "p50 ms", "speed-up ×", "size MB", "size ×",
           "kernel", "backend", "pareto", "model", "dataset", "sweep", "measured", "run_id", "error"]  # fmt: skip
SCALE_TABLE_COLUMNS = ["top-1 95% CI", "Δ images", "Δ 95% CI pts", "FP32 p50 ms", "p90/p50", "calls", "busy"]
COLUMNS[COLUMNS.index("Δ top-1 pts") + 1 : COLUMNS.index("Δ top-1 pts") + 1] = SCALE_TABLE_COLUMNS[:3]
COLUMNS[COLUMNS.index("speed-up ×") : COLUMNS.index("speed-up ×")] = SCALE_TABLE_COLUMNS[3:6]
COLUMNS.insert(COLUMNS.index("speed-up ×"), "busy")
# The CSV columns (qcore.metrics.columns) each column of the table shows; its help is theirs, with their units.
SHOWS = {
    "spec": ("label",), "status": ("status",), "top-1 %": ("top1",), "Δ top-1 pts": ("top1_delta",),
    "top-1 95% CI": ("top1_lo", "top1_hi"), "Δ images": ("images_gained", "images_lost", "eval_images"),
    "Δ 95% CI pts": ("top1_delta_lo", "top1_delta_hi"), "agreement %": ("agreement",), "p50 ms": ("latency_ms_p50",),
    "FP32 p50 ms": ("fp32_latency_ms_p50",), "p90/p50": ("latency_spread",), "calls": ("timed_calls",),
    "busy": ("busy",), "speed-up ×": ("speedup",), "size MB": ("size_bytes",), "size ×": ("size_ratio",),
    "kernel": ("kernel",), "backend": ("backend",), "pareto": ("pareto",), "model": ("model",),
    "dataset": ("dataset",), "sweep": ("sweep_id",), "measured": ("created_at",), "run_id": ("run_id",),
    "error": ("error",),
}  # fmt: skip
_HELP = {name: help_text(*cols) for name, cols in SHOWS.items()}
_HELP["measured"] += " (shown here in the server's local time; the CSV and JSON write UTC)"
_HELP["Δ images"] = "images_gained - images_lost, of eval_images · " + _HELP["Δ images"]
_FORMATS = {"top-1 %": "%.2f", "Δ top-1 pts": "%+.2f", "agreement %": "%.1f", "p50 ms": "%.2f", "speed-up ×": "%.2f",
            "size MB": "%.2f", "size ×": "%.3f", "FP32 p50 ms": "%.2f", "p90/p50": "%.2f", "calls": "%d"}  # fmt: skip
COLUMN_CONFIG = {
    **{name: st.column_config.TextColumn(help=_HELP[name]) for name in SHOWS},
    **{name: st.column_config.NumberColumn(format=f, help=_HELP[name]) for name, f in _FORMATS.items()},
    "pareto": st.column_config.CheckboxColumn(help=_HELP["pareto"]),
    "measured": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss", help=_HELP["measured"]),
    "busy": st.column_config.TextColumn(help=_HELP["busy"], width="small"),
}


def table(results: Sequence[Result], key: str, *, multi: bool = False, hide: Sequence[str] = (),
          newest_first: bool = True) -> list[str]:
    """The results table; returns the run ids of the selected rows."""
    df = frame(results, newest_first=newest_first)
    event = st.dataframe(
        df, key=key, hide_index=True, on_select="rerun", selection_mode="multi-row" if multi else "single-row",
        column_order=[c for c in COLUMNS if c not in hide], column_config=COLUMN_CONFIG,
    )  # fmt: skip
    rows = event.selection.rows if event is not None else []
    return [df["run_id"].iloc[i] for i in rows if i < len(df)]


def metric_cards(r: Result) -> None:
    """Top-1 (and its change), agreement, speed-up and size ratio against FP32."""
    c = st.columns(4)
    c[0].metric(
        "Top-1",
        fmt(r.top1, ".2f", " %"),
        delta=fmt(None if r.top1_delta is None else round(r.top1_delta, 2) or 0.0, "+.2f", " pts vs FP32"),  # no -0.00
        **delta_style(r.top1_delta),
        help=f"{TIPS['top1']}; the change: {TIPS['delta']}",
        border=True,
    )
    c[1].metric("Agreement with FP32", fmt(r.agreement, ".1f", " %"), help=TIPS["agreement"], border=True)
    best = ""
    if r.speedup_vs_best_fp32 is not None and (r.best_fp32 or "fp32 eager") != "fp32 eager":
        best = f"{r.speedup_vs_best_fp32:.2f}× vs {r.best_fp32.replace('fp32', 'FP32')}"
    c[2].metric(
        "Speed-up vs FP32",
        fmt(r.speedup, ".2f", "×"),
        delta=best or f"{fmt(r.latency_ms_p50, '.2f')} ms p50",
        delta_color="off",
        delta_arrow="off",
        help=f"{TIPS['speedup']}; {fmt(r.latency_ms_p50, '.2f')} ms against "
        f"{fmt(r.fp32_latency_ms_p50, '.2f')} ms for FP32",
        border=True,
    )
    mb = fmt(None if r.size_bytes is None else r.size_bytes / 1e6, ".2f", " MB")
    c[3].metric(
        "Size vs FP32",
        fmt(r.size_ratio, ".3f", "×"),
        delta=mb,
        delta_color="off",
        delta_arrow="off",
        help=TIPS["size"],
        border=True,
    )


def latency_chart(r: Result, base: Result | None, key: str) -> None:
    """Histogram of the timed forward passes, with the FP32 baseline's for comparison."""
    fig = go.Figure()
    series = [(r.label, r)] + ([("FP32 (baseline block)", base)] if base and base.run_id != r.run_id else [])
    for name, row in series:
        if row.latency_samples_ms:
            color = "#8c8c8c" if row is not r else PRECISION_COLORS.get(r.spec.precision.upper(), "#1f77b4")
            fig.add_trace(go.Histogram(x=row.latency_samples_ms, name=name, opacity=0.7, nbinsx=40,
                                       marker_color=color))  # fmt: skip
    if not fig.data:
        st.caption("No latency samples were kept for this run.")
        return
    fig.update_layout(barmode="overlay", height=260, margin=dict(l=40, r=20, t=10, b=40),
                      xaxis_title="latency of one forward pass (ms)", yaxis_title="passes",
                      legend=dict(orientation="h", y=1.12))  # fmt: skip
    st.plotly_chart(fig, key=key, config={"displaylogo": False})
    st.caption(
        f"{len(r.latency_samples_ms)} timed passes after warm-up; p50 {fmt(r.latency_ms_p50, '.2f')} ms, "
        f"p90 {fmt(r.latency_ms_p90, '.2f')} ms. The FP32 spread is from the baseline measurement; the "
        "speed-up itself comes from FP32 timed in turns with this run."
    )


def draws_chart(r: Result, base: Result | None, key: str) -> None:
    """Each calibration draw's top-1 as a dot around their mean (and FP32's top-1, when known)."""
    k = len(r.draws_top1)
    if k < 2:
        return
    seeds = r.calib_seeds if len(r.calib_seeds) == k else [None] * k
    # spread the dots sideways so equal values stay visible; the offset means nothing
    xs = [(i - (k - 1) / 2) / max(k - 1, 1) * 0.5 for i in range(k)]
    color = PRECISION_COLORS.get(r.spec.precision.upper(), "#1f77b4")
    fig = go.Figure(go.Scatter(
        x=xs, y=r.draws_top1, mode="markers", name="one calibration draw",
        marker=dict(size=11, color=color, line=dict(width=1, color="rgba(128,128,128,0.9)")),
        text=[f"draw {i} (seed {s}): top-1 {t:.2f}%" for i, (s, t) in enumerate(zip(seeds, r.draws_top1))],
        hovertemplate="%{text}<extra></extra>",
    ))  # fmt: skip
    fig.add_hline(y=r.top1, line=dict(color=color, width=2), annotation_text=f"mean {r.top1:.2f}%",
                  annotation_position="top right")  # fmt: skip
    if base is not None and base.top1 is not None and base.run_id != r.run_id:
        fig.add_hline(y=base.top1, line=dict(color="#8c8c8c", dash="dot"), annotation_text=f"FP32 {base.top1:.2f}%",
                      annotation_position="top left")  # fmt: skip
    fig.update_layout(height=240, margin=dict(l=40, r=20, t=10, b=20), showlegend=False,
                      yaxis_title="top-1 (%)", xaxis=dict(visible=False, range=[-0.6, 0.6]))  # fmt: skip
    st.plotly_chart(fig, key=key, config={"displaylogo": False})
    st.caption(
        f"{k} calibrations of {r.manifest.get('calib_size', '?')} training images each, disjoint (seeds "
        f"{seeds[0]} to {seeds[-1]}), every one evaluated on the same {r.manifest.get('eval_size', '?')} images: "
        f"std {fmt(r.top1_std, '.2f')}, range {fmt(r.top1_min, '.2f')} to {fmt(r.top1_max, '.2f')} %. "
        "The headline top-1 is their mean; the spread is what the choice of calibration images alone changes."
    )


def details(r: Result, base: Result | None, key: str) -> None:
    """Everything about one run: cards, the explanation, the latency spread, notes, spec, manifest."""
    st.markdown(f"#### {plain(r.label)}")
    st.caption(plain(
        f"run {r.run_id} · {r.model} on {dataset_label(r.dataset)} · backend {r.backend or DASH} · kernel "
        f"{r.kernel or DASH} · {r.device} · batch {r.batch_size} · input {r.input_shape} · "
        f"{r.threads} threads · weights {r.weights or DASH}"
        + (f" · measured against FP32 run {base.run_id}" if base is not None and base.run_id != r.run_id else "")
    ))
    if r.ok:
        metric_cards(r)
        scale_note(r, key=f"{key}-scale")
        st.info(plain(explain(r)), icon=":material/lightbulb:")
        if r.calib_draws > 1:
            draws_chart(r, base, key=f"{key}-draws")
        latency_chart(r, base, key=f"{key}-lat")
        layers_link(r)
        why_panel(r, key=f"{key}-why")
        if r.spec.mode == "qat" and r.qat_curve:
            qat_curve_chart(r, key=f"{key}-qat")
    elif r.status == "error":
        st.error(plain(explain(r)))
    else:
        st.warning(plain(explain(r)))
    if r.notes:
        st.markdown("\n".join(f"- {plain(n)}" for n in r.notes))
    with st.expander("Full spec and manifest"):
        st.json({"spec": r.spec.to_dict(), "manifest": r.manifest}, expanded=False)


def scale_note(r: Result, key: str) -> None:
    """What the cards' numbers are worth: images and intervals for accuracy; the FP32 timing the speed-up was
    divided by, the spread and calls for latency; a warning and Time again when the machine was busy."""
    acc, lat = [], []
    if r.top1_lo is not None:
        acc.append(f"top-1 95% interval {interval_text(r.top1_lo, r.top1_hi, '.2f', ' %')}{draw0_label(r)} on "
                   f"{r.eval_images} images" + (_over_draws(r) if not draw0_label(r) else ""))  # fmt: skip
    if images_text(r) and not r.spec.is_reference:
        acc.append(f"change {images_text(r)}, 95% interval "
                   f"{_labelled(r, interval_text(r.top1_delta_lo, r.top1_delta_hi, '+.2f', ' pts'))}")  # fmt: skip
    if r.timed_calls:
        lat.append(f"p50 {fmt(r.latency_ms_p50, '.2f')} ms (95% interval "
                   f"{interval_text(r.latency_ms_lo, r.latency_ms_hi)} ms), p90/p50 {fmt(r.latency_spread, '.2f')} "
                   f"over {r.timed_calls} calls")  # fmt: skip
    if r.fp32_latency_ms_p50 is not None and not r.spec.is_reference:
        lat.append(f"against FP32 p50 {fmt(r.fp32_latency_ms_p50, '.2f')} ms timed in turns with it "
                   f"(speed-up {fmt(r.speedup, '.2f')}×)")  # fmt: skip
    if acc or lat:
        st.caption(" · ".join(x[0].upper() + x[1:] for x in ("; ".join(acc), "; ".join(lat)) if x) + ".")
    if r.busy:
        c1, c2 = st.columns([4, 1], vertical_alignment="center")
        c1.warning(f"Timed while the machine was busy ({plain(r.busy)}): this latency is not a property of the model.",
                   icon=":material/warning:")  # fmt: skip
    else:
        c2 = st
    if c2.button("Time again", key=key, icon=":material/timer:",
                 help="time this row again, timing only (accuracy and size are copied); the new row names it"):
        time_again([r.run_id])


def _over_draws(r: Result) -> str:
    k = r.calib_draws or 1
    return f" and {k} calibration draws (their mean; the spread between them included)" if k > 1 else ""


def time_again(run_ids: list[str]) -> None:
    """Queue the rows to be timed again, timing only (qcore.service.retime), start the worker and open that job."""
    from qcore.service.retime import submit_retime

    from .nav import SWEEP_PAGE

    try:
        jid = submit_retime(store(), run_ids)
    except ValueError as exc:
        st.error(plain(no_paths(str(exc))))
        return
    start_worker()
    st.switch_page(SWEEP_PAGE, query_params={"job": jid})
def qat_curve_chart(r: Result, key: str) -> None:
    """A QAT row's fine-tune: top-1 of the QAT model and of its FP32 control, their losses, the PTQ start."""
    from qcore.qat.charts import curve_figure, qat_hover_line

    st.plotly_chart(curve_figure(r), key=key, config={"displaylogo": False})
    steps = r.qat_curve.get("steps")
    st.caption(
        f"{qat_hover_line(r)}. recovered = (QAT - PTQ) / (control - PTQ): the share of what PTQ lost against an "
        f"FP32 model fine-tuned the same way ({steps} steps, same images, order and schedule) that QAT won back. "
        "Fine-tune seconds are training steps only, on this machine under whatever load it had."
    )


def pareto(results: Sequence[Result], key: str, x: str, extra: Callable | None = None) -> str | None:
    """The accuracy/latency (or size) chart; returns the run id of a clicked point. ``extra(fig, ok_rows, x)``
    draws over the points before the chart is shown (a budget's shade and rings: ui.budget)."""
    ok = [r for r in results if r.ok and r.top1 is not None]
    if not ok:
        return None
    fig = report.pareto_figure(ok, x=x)
    add_walk_lines(fig, ok, x)  # mixed-precision walks (qcore.layers) as connected lines
    add_moves(fig, ok, x)  # the doctor's fixes measured from a point: an arrow from it to each
    fig.update_layout(clickmode="event+select")  # size, fonts and the legend above the plot: report.CHART_LAYOUT
    for trace in fig.data:  # one colour per precision, the same while a sweep streams in
        if trace.name in PRECISION_COLORS:
            trace.marker.color = PRECISION_COLORS[trace.name]
    # Readable on light and dark backgrounds: a mid-grey outline, and points not clicked stay visible.
    fig.update_traces(
        marker_line=dict(width=1, color="rgba(128,128,128,0.9)"),
        unselected=dict(marker=dict(opacity=0.55)),
        selector=dict(mode="markers"),
    )
    if extra is not None:
        extra(fig, ok, x)
    event = st.plotly_chart(fig, key=key, on_select="rerun", selection_mode="points",
                            config={"displaylogo": False})  # fmt: skip
    points = event.selection.points if event is not None else []
    clicked = None
    for p in points:
        cd = p.get("customdata")
        if cd:
            clicked = cd[0] if isinstance(cd, list) else cd
            break
    walk_strips(ok, key, PRECISION_COLORS, clicked)
    return clicked



@st.cache_data(max_entries=8, show_spinner="Writing the HTML report ...")
def _html_report(_rows: list[Result], key: tuple, title: str, _budget=None) -> str:
    return report.html_report(_rows, title=title, budget=_budget)


def downloads(results: Sequence[Result], name: str, key: str, *, html: bool = True, budget=None) -> None:
    """CSV, JSON and the self-contained HTML report (both charts, plotly.js inline, the manifest).

    The files are made here rather than when clicked: Streamlit forgets a deferred download when the
    page reruns, which a polling page does all the time. The report is cached per set of rows, and
    offered once the job has finished (``html=False`` until then); with a ``budget``, it names the point to ship.
    """
    rows = list(results)
    c = st.columns(3)
    c[0].download_button("Download CSV", report.csv_text(rows), file_name=f"{name}.csv", mime="text/csv",
                         key=f"{key}-csv", on_click="ignore", icon=":material/table:")  # fmt: skip
    c[1].download_button("Download JSON", report.json_text(rows), file_name=f"{name}.json",
                         mime="application/json", key=f"{key}-json", on_click="ignore",
                         icon=":material/data_object:")  # fmt: skip
    if not html:
        c[2].caption("The HTML report is offered when the job has finished.")
        return
    ident = (*((r.run_id, r.pareto, r.status) for r in rows), repr(budget))
    c[2].download_button("Download HTML report", _html_report(rows, ident, f"qcore: {name}", budget),
                         file_name=f"{name}.html", mime="text/html", key=f"{key}-html", on_click="ignore",
                         icon=":material/description:")  # fmt: skip


def deferred_downloads(rows: Callable[[], Iterable[Result]], name: str, key: str) -> None:
    """CSV, JSON and the HTML report of results read only when a button is clicked: ``rows()`` is called then (in
    Streamlit's download thread, so it calls no ``st.*``), from the store, and nothing is held between clicks.
    The CSV is written as the rows stream in; the JSON and the report hold them all while they are written. For a
    page that does not rerun while the user reads it (a full rerun forgets the deferred file): the Runs page."""
    c = st.columns(3)
    c[0].download_button("Download CSV", lambda: report.csv_text(rows()), file_name=f"{name}.csv", mime="text/csv",
                         key=f"{key}-csv", on_click="ignore", icon=":material/table:")  # fmt: skip
    c[1].download_button("Download JSON", lambda: report.json_text(rows()), file_name=f"{name}.json",
                         mime="application/json", key=f"{key}-json", on_click="ignore",
                         icon=":material/data_object:")  # fmt: skip
    c[2].download_button("Download HTML report", lambda: report.html_report(list(rows()), title=f"qcore: {name}"),
                         file_name=f"{name}.html", mime="text/html", key=f"{key}-html", on_click="ignore",
                         icon=":material/description:")  # fmt: skip
