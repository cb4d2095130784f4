"""Sweep & Pareto: many specs in one background job, streamed into a table and a trade-off chart."""

from __future__ import annotations

from collections import Counter

import streamlit as st

from qcore.backends import runnable_grid
from qcore.result import Result, baseline_of
from qcore.spec import DEFAULT_GRID
from qcore.store import Job
from qcore.sweep import SweepConfig
from ui import cluster, jobs, results, settings
from ui.common import job_label, store
from ui.nav import setup

SESSION_KEY = "sweep_job"
AXES = {"latency_ms_p50": "accuracy vs latency", "size_bytes": "accuracy vs size"}

setup("Sweep & Pareto")
st.title("Sweep & Pareto")
jid = jobs.current(SESSION_KEY)

with st.expander("Sweep settings", expanded=jid is None, icon=":material/tune:"):
    st.caption(
        "Pick one or more values per setting: the sweep measures every valid combination, after the "
        "FP32 baseline. The URL keeps these settings."
    )
    config_kwargs, problems = settings.config_widgets()
    st.markdown("##### Quantization grid")
    grid = settings.spec_grid()
    specs, skipped = [], []
    empty = [name for name, values in grid.items() if not values and name not in ("group_size", "percentile")]
    if empty:
        problems.append(f"choose at least one value for: {', '.join(empty)}")
    else:
        grid["group_size"] = grid["group_size"] or list(DEFAULT_GRID["group_size"])
        grid["percentile"] = grid["percentile"] or list(DEFAULT_GRID["percentile"])
        try:
            specs, skipped = runnable_grid(**grid, device=[config_kwargs["device"]])
        except ValueError as exc:
            problems.append(str(exc))
    config = None
    try:
        config = SweepConfig(**config_kwargs)
    except ValueError as exc:
        problems.append(str(exc))
    measured = [s for s in specs if not s.is_reference]
    if not empty and not specs:
        problems.append("no combination of these values is a valid spec; see the reasons below")
    st.markdown(
        f"**{len(measured)} spec(s)** to measure after the FP32 baseline"
        + (f"; {len(skipped)} combination(s) skipped as impossible." if skipped else ".")
    )
    if skipped:
        with st.expander("Why combinations were skipped"):
            for reason, n in Counter(reason for _, reason in skipped).most_common():
                st.markdown(f"- {n} × {reason}")
    for p in problems:
        st.error(p, icon=":material/block:")
    if st.button("Run sweep", type="primary", disabled=bool(problems), icon=":material/play_arrow:"):
        try:
            jid = jobs.submit(config, specs, SESSION_KEY)
        except (ValueError, OSError) as exc:
            st.error(f"Could not start the sweep: {exc}")
        else:
            st.rerun()

if jid is None:
    st.info(
        "No sweep yet in this session. Choose settings above and press **Run sweep**, or open a job "
        "from the Runs page.",
        icon=":material/info:",
    )
    st.stop()

job0 = store().job(jid)
st.markdown(f"##### {job_label(job0)}")
x = st.segmented_control(
    "Chart",
    list(AXES),
    format_func=AXES.get,
    default="latency_ms_p50",
    key="x",
    bind="query-params",
    required=True,
    help="size is on a log axis; marker size is the model size, colour the precision",
)


def _pick(name: str, value: str | None, detail_key: str) -> None:
    """A new click on the chart or the table chooses the run shown in the details."""
    seen = f"{detail_key}-{name}-seen"
    if value and value != st.session_state.get(seen):
        st.session_state[detail_key] = value
    st.session_state[seen] = value


def render(job: Job, rows: list[Result]) -> None:
    cluster.spec_states(job)
    if not rows:
        st.caption("Results appear here as each spec is measured.")
        return
    detail_key = f"detail-{job.job_id}"
    clicked = results.pareto(rows, key=f"pareto-{job.job_id}-{x}", x=x or "latency_ms_p50")
    if clicked is None and any(r.ok for r in rows):
        st.caption("Hover a point for its full spec; click it (or a table row) for the details.")
    selected = results.table(rows, key=f"table-{job.job_id}", hide=("model", "dataset", "sweep"))
    _pick("chart", clicked, detail_key)
    _pick("table", selected[0] if selected else None, detail_key)
    by_id = {r.run_id: r for r in rows}
    if st.session_state.get(detail_key) not in by_id:
        st.session_state.pop(detail_key, None)
    ids = [r.run_id for r in sorted(rows, key=lambda r: r.created_at)]
    run_id = st.selectbox(
        "Details of",
        ids,
        index=None,
        key=detail_key,
        placeholder="click a point or a row",
        format_func=lambda i: f"{by_id[i].label} ({by_id[i].status})",
    )
    if run_id:
        results.details(by_id[run_id], baseline_of(rows, by_id[run_id]), key=f"details-{run_id}")
    results.downloads(rows, f"qcore-sweep-{job.job_id}", key=f"dl-{job.job_id}", html=not job.active)


jobs.panel(jid, key=f"sweep-{jid}", render=render)
