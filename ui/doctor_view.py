"""The "Why?" panel of a quantized point (the doctor, :mod:`qcore.doctor`), and its measured fixes drawn as arrows
on the Pareto chart.

The diagnosis is long work (several builds), so the panel queues a ``doctor`` job that the background worker runs,
polls it while it runs, and shows its stored result. Each suggested fix that is a spec has "Try it": the spec joins
the point's own sweep job (:func:`qcore.runs.moves.queue_fix`), and once measured the chart draws an arrow from the
point to the fix whose hover says what changed and what it bought.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import plotly.graph_objects as go
import streamlit as st

from qcore.doctor.diagnose import Diagnosis, DoctorError
from qcore.doctor.job import latest_doctor_job, submit_doctor
from qcore.metrics.result import Result
from qcore.present.doctor_text import fix_line, headline, move_text, speed_lines, split_lines

from .common import no_paths, start_worker, store
from .text import plain

__all__ = ["why_panel", "add_moves"]

POLL_S = 2.0
COST = ("the split (two simulated builds), the most suspect layers alone in FP32 (unless a Layers measurement of "
        "this spec is cached), the causes there, auto's timing of the INT8 backends where none is recorded, and a "
        "profile: 5 to 90 s for the small baselines on a 2-core machine")


def why_panel(r: Result, key: str) -> None:
    """Under a quantized point's details: ask for a diagnosis, follow it, show it with its fixes."""
    if not r.ok or r.spec.is_reference:
        return
    with st.expander("Why? What cost accuracy or speed here, and what to try", icon=":material/stethoscope:"):
        job = latest_doctor_job(store(), r.run_id)
        if job is not None and job.active:
            _follow(job.job_id)
        elif job is not None and job.state == "done" and job.result:
            _show(r, Diagnosis.from_dict(job.result), key)
            _ask(r, key, "Diagnose again", f"measured {_when(job.finished_at)}")
        else:
            if job is not None and job.state == "error":
                st.error(plain(no_paths(f"The last diagnosis failed: {job.error}")))
            _ask(r, key, "Diagnose this point", COST)


def _when(t: float | None) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M") if t else "earlier"


def _ask(r: Result, key: str, label: str, caption: str) -> None:
    c1, c2 = st.columns([2, 3], vertical_alignment="center")
    if c1.button(label, key=f"{key}-doctor", icon=":material/stethoscope:"):
        try:
            submit_doctor(store(), r.run_id)
        except DoctorError as exc:
            st.error(plain(no_paths(str(exc))))
            return
        start_worker()
        st.rerun()
    c2.caption(plain(caption))


def _follow(job_id: str) -> None:
    @st.fragment(run_every=POLL_S)
    def poll() -> None:
        job = store().job(job_id)
        if job is None or not job.active:
            st.rerun()  # the whole page: the result, once
        st.progress(min(1.0, job.done / max(job.total, 1)), text=plain(f"Diagnosing: {job.message or job.state}"))

    poll()


def _show(r: Result, d: Diagnosis, key: str) -> None:
    st.markdown(plain(headline(d)))
    if d.split:
        st.markdown("**Weights or activations**")
        st.markdown("\n".join(f"- {plain(x)}" for x in split_lines(d)))
    if d.culprits or d.layers_source:
        st.markdown(f"**Where** (Layers measurement: {plain(d.layers_source or 'none')})")
        st.dataframe([{"layer": c["name"], "kind": c["role"],
                       "gain alone in FP32 (pts)": None if c.get("gain") is None else round(c["gain"], 2)}
                      for c in d.culprits], hide_index=True, width="stretch")
    if d.causes:
        st.markdown("**Why**")
        st.markdown("\n".join(f"- `{plain(c.cause)}`{' at ' + plain(c.where) if c.where else ''}: "
                              f"{plain(c.evidence)}" for c in d.causes))
    if lines := speed_lines(d):
        st.markdown("**Where the time goes**")
        st.markdown("\n".join(f"- {plain(x)}" for x in lines))
    if d.refused:
        st.caption(plain("Not measured: " + "; ".join(d.refused)))
    st.markdown("**Fixes, in the order to try them**")
    if not d.suggestions:
        st.caption("The doctor has no fix to suggest for this point.")
    for i, fix in enumerate(d.suggestions, 1):
        c1, c2 = st.columns([5, 1], vertical_alignment="center")
        c1.markdown(plain(fix_line(i, fix)))
        if fix.queueable:
            if c2.button("Try it", key=f"{key}-try-{i}", help="measure this spec in the same job; the chart draws "
                         "an arrow from this point to it"):
                _try(r, fix)
        elif fix.spec is not None:
            c2.caption(plain(f"new sweep: python -m qcore doctor {r.run_id} --try {i}"))
    st.caption(plain("Cost: " + ", ".join(f"{k} {v:.1f} s" for k, v in d.seconds.items())))


def _try(r: Result, fix) -> None:
    from qcore.runs.moves import queue_fix

    try:
        message = queue_fix(store(), r, fix.spec, fix.what)
    except ValueError as exc:
        st.error(plain(no_paths(str(exc))))
        return
    start_worker()
    st.success(plain(message))
    st.page_link("pages/sweep.py", label="Follow it on the Sweep page: the chart draws the move as an arrow",
                 query_params={"job": r.sweep_id}, icon=":material/arrow_forward:")


def add_moves(fig: go.Figure, rows: Sequence[Result], x: str) -> None:
    """An arrow from each point to each of its measured fixes (moves of the rows' jobs), hover: the move."""
    from qcore.present.chart_x import positions
    from qcore.runs.moves import Moves, arrows

    jobs = sorted({r.sweep_id for r in rows if r.sweep_id})
    if not jobs:
        return
    moves = Moves(store().path).of_jobs(jobs)
    drawn = [r for r in rows if getattr(r, x, None) is not None]
    at = positions(drawn, x)
    for origin, fix, what in arrows(drawn, moves):
        if origin.run_id not in at or fix.run_id not in at:
            continue
        xs = [at[origin.run_id].x, at[fix.run_id].x]
        text = html.escape(move_text(origin, fix, what))
        fig.add_trace(go.Scatter(x=xs, y=[origin.top1, fix.top1], mode="lines+markers", name=f"fix: {what}",
                                 line=dict(width=1.5, color="rgba(90,90,90,0.8)"),
                                 marker=dict(symbol=["circle-open", "arrow"], size=[4, 12], angleref="previous",
                                             color="rgba(90,90,90,0.9)"),
                                 hovertext=[text, text], hoverinfo="text", showlegend=False))
