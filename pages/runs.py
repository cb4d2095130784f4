"""Runs: every result ever measured (kept in SQLite across restarts), jobs, filters, compare, delete,
downloads, and results imported from a CSV."""

from __future__ import annotations

import time

import streamlit as st

from qcore.present.report import DASH
from ui import csv_import, results
from ui.common import dataset_label, job_label, label_of, measured_text, no_paths, store
from ui.jobs import resumable, resume_button
from ui.nav import job_page, setup
from ui.text import plain

setup("Runs")
st.title("Runs")
s = store()
st.caption(
    f"Every result is committed to **{s.path}** the moment it is measured, and kept across restarts. "
    "Set QCORE_DB (or QCORE_HOME) to use another file."
)

st.subheader("Jobs")
recent = s.jobs(limit=10)
if not recent:
    st.caption("No jobs yet.")
for job in recent:
    c1, c2, c3 = st.columns([6, 2, 2], vertical_alignment="center")
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(job.created_at))
    c1.markdown(
        f"`{job.state}` {plain(job_label(job))} · {measured_text(job)} · {when}"
        + (f" · {plain(no_paths(job.error))}" if job.error else "")
    )
    c2.page_link(job_page(job), label="Open", query_params={"job": job.job_id}, icon=":material/open_in_new:")
    if resumable(job):
        resume_button(c3, job, f"resume-{job.job_id}")
    elif job.active and c3.button("Cancel", key=f"cancel-{job.job_id}", icon=":material/stop_circle:"):
        s.request_cancel(job.job_id)
        st.rerun()

st.subheader("Results")
if csv_import.panel(s):  # new rows: a selection by row number would point at other rows
    st.session_state.pop("runs-table", None)
everything = s.results()
if not everything:
    st.info("No results yet: start a run from Home, Explore or Sweep, or import a CSV above.", icon=":material/info:")
    st.stop()


def _choices(attr: str) -> list[str]:
    return sorted({str(getattr(r, attr) if attr != "precision" else r.spec.precision) for r in everything})


# two filters a row: a chosen value stays readable at 1024 px ("mobilenet_v3_small", not "mob..."); empty is all
f = [c for _ in range(3) for c in st.columns(2)]
filters = {
    "model": f[0].multiselect("Model", _choices("model"), key="f_model", bind="query-params", placeholder="all"),
    "dataset": f[1].multiselect("Dataset", _choices("dataset"), key="f_dataset", bind="query-params",
                                format_func=dataset_label, placeholder="all"),
    "precision": f[2].multiselect("Precision", _choices("precision"), key="f_precision", bind="query-params",
                                  format_func=label_of, placeholder="all"),
    "status": f[3].multiselect("Status", _choices("status"), key="f_status", bind="query-params", placeholder="all"),
    "sweep_id": f[4].multiselect("Sweep / job", _choices("sweep_id"), key="f_sweep", bind="query-params",
                                 placeholder="all"),
}
text = f[5].text_input("Spec contains", key="f_text", bind="query-params", placeholder="e.g. per-group or MSE")


def _keep(r) -> bool:
    for attr, wanted in filters.items():
        value = r.spec.precision if attr == "precision" else getattr(r, attr)
        if wanted and str(value) not in wanted:
            return False
    return not text or text.lower() in r.label.lower()


shown = [r for r in everything if _keep(r)]
st.caption(f"{len(shown)} of {len(everything)} result(s). Select rows to compare two, delete or export them.")
selected = results.table(shown, key="runs-table", multi=True)
by_id = {r.run_id: r for r in everything}
chosen = [by_id[i] for i in selected if i in by_id]

export = chosen or shown
st.markdown(
    f"**Export** {'the selected' if chosen else 'the filtered'} {len(export)} result(s): CSV and JSON "
    "hold every column; the HTML report is one self-contained file with both charts and the manifest."
)
results.downloads(export, "qcore-runs", key="runs-dl")
busy = [r for r in shown if r.busy]
if chosen or busy:
    again = chosen or busy
    what = "the selected" if chosen else "the busy-flagged"
    if st.button(f"Time again {what} {len(again)} result(s)", key="runs-retime", icon=":material/timer:",
                 help="time them again, timing only (accuracy and size are copied), with the settings of the job "
                 "that measured them; each new row is stored beside the old one and names it"):  # fmt: skip
        results.time_again([r.run_id for r in again])

st.subheader("Compare two runs")
ids = [r.run_id for r in shown]
pair = tuple(r.run_id for r in chosen)
if len(pair) == 2 and pair != st.session_state.get("cmp_seen"):  # a new pair of rows: compare them
    st.session_state["cmp_a"], st.session_state["cmp_b"] = pair
st.session_state["cmp_seen"] = pair
c1, c2 = st.columns(2)
for k in ("cmp_a", "cmp_b"):
    if st.session_state.get(k) not in ids:
        st.session_state.pop(k, None)
label = lambda i: f"{by_id[i].label} · {by_id[i].model} · {i}"
a = c1.selectbox("A", ids, index=None, key="cmp_a", format_func=label, placeholder="select two rows, or pick")
b = c2.selectbox("B", ids, index=None, key="cmp_b", format_func=label, placeholder="select two rows, or pick")
if a and b:
    results.compare(by_id[a], by_id[b])

st.subheader("Delete")
if not chosen:
    st.caption("Select rows in the table to delete them.")
else:
    gone = {r.run_id for r in chosen}
    for base in (r for r in chosen if r.spec.is_reference):
        others = [r for r in everything if r.run_id not in gone and r.baseline_run_id == base.run_id]
        if others:
            st.warning(
                f"{base.run_id} is the FP32 row of job {base.sweep_id or DASH}: the top-1 changes, agreement and "
                f"speed-ups of its {len(others)} other row(s) were measured against it. Deleted, they keep their "
                "numbers but have no reference row, and the job's chart loses its FP32 point; the job's page then "
                "offers to measure FP32 again.",
                icon=":material/link_off:",
            )
    sure = st.checkbox(f"Delete the {len(chosen)} selected result(s) for good", key="delete_sure")
    if st.button("Delete", disabled=not sure, icon=":material/delete:"):
        n = s.delete_results([r.run_id for r in chosen])
        st.session_state.pop("runs-table", None)
        st.toast(f"Deleted {n} result(s).")
        st.rerun()
