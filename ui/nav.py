"""Page set-up shared by every page: the browser title, the layout, and the sidebar (navigation with
readable names, and the worker queue at a glance)."""

from __future__ import annotations

import streamlit as st

from .common import store

__all__ = ["PAGES", "SWEEP_PAGE", "setup", "queue"]

PAGES = [  # (script, label, icon); Streamlit's own list would call Home "app"
    ("app.py", "Home", ":material/home:"),
    ("pages/explore.py", "Explore", ":material/tune:"),
    ("pages/sweep.py", "Sweep & Pareto", ":material/scatter_plot:"),
    ("pages/runs.py", "Runs", ":material/history:"),
    ("pages/learn.py", "Learn", ":material/school:"),
]
SWEEP_PAGE = "pages/sweep.py"
LEARN_PAGE = "pages/learn.py"
JOB_PAGES = {"sweep": SWEEP_PAGE, "learn-layer": LEARN_PAGE}  # where each kind of job is shown


def job_page(job) -> str:
    return JOB_PAGES.get(job.kind, SWEEP_PAGE)


def setup(title: str) -> None:
    st.set_page_config(page_title=f"{title} · qcore", page_icon=":material/speed:", layout="wide")
    with st.sidebar:
        st.markdown("**qcore** · quantization explorer")
        for script, label, icon in PAGES:
            st.page_link(script, label=label, icon=icon)
        st.divider()
        queue()


def queue() -> None:
    """Running and waiting jobs, each a link to its page; refreshed every few seconds while any."""
    busy = any(j.active for j in store().jobs(limit=20))
    st.fragment(_queue, run_every=3.0 if busy else None)()


def _queue() -> None:
    active = [j for j in store().jobs(limit=20) if j.active]
    if not active:
        st.caption("Worker queue: empty")
        return
    running = sum(j.state == "running" for j in active)
    st.caption(f"Worker queue: {running} running, {len(active) - running} waiting")
    for j in sorted(active, key=lambda j: j.created_at)[:4]:
        st.page_link(
            job_page(j),
            label=f"{j.job_id} · {j.state} {j.done}/{j.total}",
            query_params={"job": j.job_id},
            icon=":material/pending:",
        )
