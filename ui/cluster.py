"""The cluster in the app: what the worker last saw of it (Home) and where each spec of a sweep is (Sweep).

Nothing here talks to Ray: the worker process is the Ray driver and writes what it sees (the cluster in
``data_home()/cluster.json``, each spec's node and queue state on its job); these panels read that."""

from __future__ import annotations

import time

import streamlit as st

from qcore.cluster import BENCH, ENV, configured_address, declare_hint, read_snapshot
from qcore.runs.store import Job

from .common import no_paths, start_worker
from .text import plain

__all__ = ["home_panel", "spec_states"]


def home_panel() -> None:
    """Nodes, CPUs and bench slots of the configured cluster; nothing when none is configured."""
    try:
        address = configured_address()
    except ValueError as exc:
        st.subheader("Cluster")
        st.error(plain(f"{ENV}: {exc}"), icon=":material/error:")
        return
    if not address:
        return
    st.subheader("Cluster")
    snap = read_snapshot()
    if snap is None or snap.get("address") != address:
        start_worker()  # the worker connects and records what the cluster has
        st.info(f"Sweeps run on the Ray cluster at {plain(address)} ({ENV}). The worker is connecting to it; this "
                "shows its nodes once it has.", icon=":material/hub:")
        return
    age = time.time() - snap.get("checked_at", 0)
    if snap.get("error"):
        st.error(f"The worker could not reach the cluster at {plain(address)} {age:.0f} s ago: "
                 f"{plain(no_paths(snap['error']))}. "
                 "Sweeps submitted now end with that error.", icon=":material/error:")
        return
    c = st.columns(3)
    c[0].metric("Nodes", len(snap["nodes"]), border=True)
    c[1].metric("CPUs", snap["cpus"], border=True, help="accuracy work (calibrate, quantize, evaluate) packs on these")
    c[2].metric("Bench slots", snap["bench_slots"], border=True,
                help=f"{BENCH} slots: each node with one times one spec at a time, with all its CPUs")
    st.dataframe([{"host": n["host"], "address": n["ip"], "CPUs": n["cpus"], "bench slot": n["bench"],
                   "node id": n["node_id"][:12]} for n in snap["nodes"]], hide_index=True)
    st.caption(f"Ray cluster at {plain(address)}, as the worker saw it {age:.0f} s ago.")
    if snap["bench_slots"] < 1:
        st.warning(f"No node can time a spec: sweeps are refused. {declare_hint()}", icon=":material/timer_off:")


def spec_states(job: Job) -> None:
    """Each spec's queue state and node while a sweep runs on a cluster (the worker writes them on the job)."""
    specs = (job.result or {}).get("specs")
    if not specs:
        return
    done = sum(s["state"].startswith(("done", "timed on")) for s in specs)
    with st.expander(f"On the cluster: {done} of {len(specs)} specs timed; node and queue state of each",
                     expanded=job.active):
        st.dataframe([{"spec": s["label"], "state": s["state"], "host": s["host"], "node": s["node_id"][:12],
                       "retries": s["retries"]} for s in specs], hide_index=True)
