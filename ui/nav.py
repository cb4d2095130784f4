"""Page set-up shared by every page: the browser title, the layout, and the sidebar (navigation with
readable names, and the worker queue at a glance)."""

from __future__ import annotations

import streamlit as st

from .common import measured_text, store
from .db_damage import guard

__all__ = ["PAGES", "SWEEP_PAGE", "setup", "queue"]

PAGES = [  # (script, label, icon); Streamlit's own list would call Home "app"
    ("app.py", "Home", ":material/home:"),
    ("pages/explore.py", "Explore", ":material/tune:"),
    ("pages/sweep.py", "Sweep & Pareto", ":material/scatter_plot:"),
    ("pages/runs.py", "Runs", ":material/history:"),
    ("pages/learn.py", "Learn", ":material/school:"),
    ("pages/layers.py", "Layers", ":material/layers:"),
]
SWEEP_PAGE = "pages/sweep.py"
LEARN_PAGE = "pages/learn.py"
LAYERS_PAGE = "pages/layers.py"
# where each kind of job is shown
JOB_PAGES = {"sweep": SWEEP_PAGE, "learn-layer": LEARN_PAGE, "layers": LAYERS_PAGE, "mixed-walk": LAYERS_PAGE}


def job_page(job) -> str:
    return JOB_PAGES.get(job.kind, SWEEP_PAGE)


def setup(title: str) -> None:
    # an emoji, drawn by the browser: a ":material/...:" icon would be fetched from a font host (fails offline)
    st.set_page_config(page_title=f"{title} · qcore", page_icon="🧮", layout="wide")
    guard(title)  # a damaged run database: said (Home offers Salvage), and the page stops there
    with st.sidebar:
        st.markdown("**qcore** · quantization explorer")
        for script, label, icon in PAGES:
            st.page_link(script, label=label, icon=icon)
        st.divider()
        queue()


QUEUE_POLL_S = (3.0, 15.0)  # the sidebar's queue: read every 3 s while it changes, backing off to 15 s


def queue() -> None:
    """Running and waiting jobs, each a link to its page; refreshed every few seconds while any (less often
    while the queue stands still: every session on every page polls it)."""
    from qcore.runs.requests import queue as active_jobs

    first = [active_jobs(store())]  # this run's read: the fragment's first run uses it, its reruns read again

    def sidebar_queue() -> None:
        full = bool(first)
        _queue(first.pop() if full else active_jobs(store()), full)

    st.fragment(sidebar_queue, run_every=QUEUE_POLL_S[0] if first[0] else None)()


def _queue(active: list, full: bool) -> None:
    from .jobs import pace

    if active:
        pace("sidebar-queue", [(j.job_id, j.state, int(j.done)) for j in active], QUEUE_POLL_S[0] if full else None,
             *QUEUE_POLL_S)  # fmt: skip
    if not active:
        st.caption("Worker queue: empty")
        return
    running = sum(j.state == "running" for j in active)
    st.caption(f"Worker queue: {running} running, {len(active) - running} waiting")
    for j in sorted(active, key=lambda j: j.created_at)[:4]:
        st.page_link(
            job_page(j),
            label=f"{j.job_id} · {j.state} {measured_text(j)}",
            query_params={"job": j.job_id},
            icon=":material/pending:",
        )
