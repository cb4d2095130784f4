"""Runs: every result ever measured (kept in SQLite across restarts), jobs, filters, compare, delete,
downloads, and results imported from a CSV. The table is filtered, sorted and paged in SQLite (qcore.runs.query):
a session holds the page it shows, not every stored row."""

from __future__ import annotations

import time

import streamlit as st

from qcore.present.report import DASH
from qcore.runs import query
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
stored = query.total(s)
if not stored:
    st.info("No results yet: start a run from Home, Explore or Sweep, or import a CSV above.", icon=":material/info:")
    st.stop()

# Filters, order and paging are asked of SQLite (qcore.runs.query): only the page shown is read, however many rows
# are stored. Two filters a row: a chosen value stays readable at 1024 px ("mobilenet_v3_small", not "mob...").
f = [c for _ in range(3) for c in st.columns(2)]
filters = query.Filters(
    model=f[0].multiselect("Model", query.choices(s, "model"), key="f_model", bind="query-params",
                           placeholder="all"),
    dataset=f[1].multiselect("Dataset", query.choices(s, "dataset"), key="f_dataset", bind="query-params",
                             format_func=dataset_label, placeholder="all"),
    precision=f[2].multiselect("Precision", query.choices(s, "precision"), key="f_precision", bind="query-params",
                               format_func=label_of, placeholder="all"),
    status=f[3].multiselect("Status", query.choices(s, "status"), key="f_status", bind="query-params",
                            placeholder="all"),
    sweep_id=f[4].multiselect("Sweep / job", query.choices(s, "sweep_id"), key="f_sweep", bind="query-params",
                              placeholder="all"),
    text=f[5].text_input("Spec contains", key="f_text", bind="query-params", placeholder="e.g. per-group or MSE"),
)
# The order on a row of its own, wrapping rather than scrolling (in a column, "model" and "size" were scrolled out
# of sight at 1024 px); below, rows a page and the page number, its box wide enough for four digits
sort = st.segmented_control(
    "Sort by", list(query.SORTS), format_func=lambda k: query.SORTS[k][0], default="newest", required=True,
    key="f_sort", bind="query-params", wrap=True, help="every matching row, in the database: top-1 and speed-up "
    "highest first, p50 latency and size lowest first (rows without the number last), spec and model A to Z. A click "
    "on a column's name sorts the page shown only.",
)  # fmt: skip
sort = sort if sort in query.SORTS else "newest"  # a link's unknown value: the default order
paging = st.container(horizontal=True, vertical_alignment="bottom", gap="medium")
size = paging.segmented_control("Rows a page", query.PAGE_SIZES, default=query.PAGE_SIZES[1], required=True,
                                key="runs-size", wrap=True)  # fmt: skip
matching = query.count(s, filters)
pages = max(1, -(-matching // size))
if st.session_state.get("runs-query", (filters, sort, size)) != (filters, sort, size):
    st.session_state["runs-page"] = 1  # other rows: back to the first page
st.session_state["runs-query"] = (filters, sort, size)
st.session_state["runs-page"] = min(max(int(st.session_state.get("runs-page", 1)), 1), pages)  # rows deleted
shown_at = (filters, sort, size, st.session_state["runs-page"])
if st.session_state.get("runs-shown", shown_at) != shown_at:  # a selection by row number would point at other rows
    st.session_state.pop("runs-table", None)
st.session_state["runs-shown"] = shown_at
number = paging.number_input("Page", min_value=1, max_value=pages, step=1, key="runs-page", help=f"of {pages:,}",
                             width=170)  # fmt: skip
shown = query.page(s, filters, offset=(number - 1) * size, limit=size, sort=sort)
first = (number - 1) * size + 1
st.caption(
    f"{matching:,} of {stored:,} result(s) match; rows {first:,} to {first + len(shown) - 1:,} shown, "
    f"{query.SORTS[sort][1]} (page {number:,} of {pages:,}). Select rows to compare two, delete or export them."
    if shown else f"0 of {stored:,} result(s) match: no stored result has every value the filters ask for."
)
selected = results.table(shown, key="runs-table", multi=True, newest_first=False)
by_id = {r.run_id: r for r in shown}
chosen = [by_id[i] for i in selected if i in by_id]

if chosen:
    st.markdown(
        f"**Export** the selected {len(chosen)} result(s): CSV and JSON hold every column; the HTML report is one "
        "self-contained file with both charts and the manifest."
    )
    results.downloads(chosen, "qcore-runs", key="runs-dl")
else:
    st.markdown(
        f"**Export** the {matching:,} matching result(s), on every page: CSV and JSON hold every column; the HTML "
        "report is one self-contained file with both charts and the manifest. Each file is written when its button "
        "is clicked."
    )
    results.deferred_downloads(lambda: query.matching(s, filters, sort), "qcore-runs", key="runs-dl")
again, what = ([r.run_id for r in chosen], "the selected") if chosen else (query.busy_ids(s, filters),
                                                                            "the busy-flagged")  # fmt: skip
if again and st.button(f"Time again {what} {len(again)} result(s)", key="runs-retime", icon=":material/timer:",
                       help="time them again, timing only (accuracy and size are copied), with the settings of the "
                       "job that measured them; each new row is stored beside the old one and names it"):  # fmt: skip
    results.time_again(again)

st.subheader("Compare two runs")
pair = tuple(r.run_id for r in chosen)
if len(pair) == 2 and pair != st.session_state.get("cmp_seen"):  # a new pair of rows: compare them
    st.session_state["cmp_a"], st.session_state["cmp_b"] = pair
st.session_state["cmp_seen"] = pair
held = [st.session_state.get(k) for k in ("cmp_a", "cmp_b")]
# the rows of this page, and a row picked earlier on another page while the filters still keep it
by_id.update((r.run_id, r) for r in query.among(s, [i for i in held if i and i not in by_id], filters))
ids = list(by_id)
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
    gone = [r.run_id for r in chosen]
    others = query.measured_against(s, [r.run_id for r in chosen if r.spec.is_reference], excluding=gone)
    for base in (r for r in chosen if others.get(r.run_id)):
        st.warning(
            f"{base.run_id} is the FP32 row of job {base.sweep_id or DASH}: the top-1 changes, agreement and "
            f"speed-ups of its {others[base.run_id]} other row(s) were measured against it. Deleted, they keep their "
            "numbers but have no reference row, and the job's chart loses its FP32 point; the job's page then "
            "offers to measure FP32 again.",
            icon=":material/link_off:",
        )
    sure = st.checkbox(f"Delete the {len(chosen)} selected result(s) for good", key="delete_sure")
    if st.button("Delete", disabled=not sure, icon=":material/delete:"):
        n = s.delete_results(gone)
        st.session_state.pop("runs-table", None)
        st.toast(f"Deleted {n} result(s).")
        st.rerun()
