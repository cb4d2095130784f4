"""Sweep & Pareto: many specs in one background job, streamed into a table and a trade-off chart."""

from __future__ import annotations

from collections import Counter

import streamlit as st

from qcore.backends import runnable_grid
from qcore.metrics.result import Result, baseline_of
from qcore.quant.spec import DEFAULT_GRID, FLOAT_PRECISIONS, QuantSpec
from qcore.runs.store import Job
from qcore.runs.sweep import SweepConfig
from ui import budget, cluster, grid_settings, jobs, keep_float, results, settings, spec_list
from ui.common import device_skips, job_label, store, sweep_cost
from ui.nav import SWEEP_PAGE, setup
from ui.text import plain

SESSION_KEY = "sweep_job"
AXES = {"latency_ms_p50": "accuracy vs latency", "size_bytes": "accuracy vs size"}
SOURCES = {"grid": "the grid", "list": "the spec list"}


def grid_specs(grid: dict, device: str, kept: tuple[str, ...] = ()) -> tuple[list[QuantSpec], list, list[str]]:
    """The grid's runnable specs (each quantized one with the layers ``kept`` in FP32), the skipped combinations
    with their reasons, and what is wrong with it."""
    empty = [name for name, values in grid.items() if not values and name not in ("group_size", "percentile")]
    if empty:
        return [], [], [f"choose at least one value for: {', '.join(empty)}"]
    grid = {**grid, "group_size": grid["group_size"] or list(DEFAULT_GRID["group_size"]),
            "percentile": grid["percentile"] or list(DEFAULT_GRID["percentile"])}  # fmt: skip
    try:
        specs, skipped = runnable_grid(**grid, device=[device])
    except ValueError as exc:
        return [], [], [str(exc)]
    if kept:
        specs, cannot = _keep(specs, kept)
        skipped = [*skipped, *cannot]
    measured = [s for s in specs if not s.is_reference]
    if not measured and skipped:  # (FP32 alone, asked for, is a run: the baseline only)
        return specs, skipped, ["no combination of these values is a valid spec (other than the FP32 baseline); see "
                                "the reasons below"]
    return specs, skipped, []


def _keep(specs: list[QuantSpec], kept: tuple[str, ...]) -> tuple[list[QuantSpec], list]:
    """Every quantized spec with ``kept`` in FP32; those whose backend cannot keep a layer skipped, with its reason."""
    out, cannot = [], []
    for s in specs:
        why = None if s.is_float else keep_float.backend_problem(s.backend)
        if why:
            cannot.append((s, why))
        else:
            out.append(s if s.is_float else s.replace(keep_float=kept))
    return out, cannot


setup("Sweep & Pareto")
st.title("Sweep & Pareto")
jid = jobs.current(SESSION_KEY)
link_problems = spec_list.from_url()

with st.expander("Sweep settings", expanded=jid is None, icon=":material/tune:"):
    st.caption(
        "A sweep measures many specs against one FP32 baseline, in one job. Pick values per setting for a grid "
        "(every valid combination), or gather exact specs in a list: the grid's, one from Explore ('Add to the "
        "sweep list'), or typed. The URL keeps these settings."
    )
    config_kwargs, problems = settings.config_widgets()
    st.markdown("##### Quantization grid")
    grid = grid_settings.spec_grid()
    kept, kept_problems = (), []
    if any(p not in FLOAT_PRECISIONS for p in grid["precision"] or []):
        kept, kept_problems = keep_float.field(st, config_kwargs["model"], list(grid["backend"] or []),
                                               what="every quantized spec of the grid")
    from_grid, skipped, grid_problems = grid_specs(grid, config_kwargs["device"], kept)
    grid_problems += kept_problems
    from_grid = [s for s in from_grid if not s.is_reference]
    g1, g2 = st.columns(2, vertical_alignment="center")
    g1.markdown(
        f"The grid: **{len(from_grid)} spec{'' if len(from_grid) == 1 else 's'}**"
        + (f"; {len(skipped)} combination(s) skipped as impossible." if skipped else ".")
    )
    g2.button(f"Add the grid ({len(from_grid)}) to the list", disabled=not from_grid, on_click=spec_list.add,
              args=(from_grid, "grid"), icon=":material/playlist_add:", key="add-grid")  # fmt: skip
    if skipped:
        with st.expander("Why combinations were skipped"):
            for reason, n in Counter(reason for _, reason in skipped).most_common():
                st.markdown(f"- {n} × {plain(reason)}")

    listed = spec_list.entries()
    st.markdown(f"##### Spec list ({len(listed)})")
    for p in link_problems:
        st.warning(plain(p), icon=":material/link_off:")
    if listed:
        l1, l2 = st.columns(2, vertical_alignment="center")
        l1.caption(plain(", ".join(QuantSpec.from_dict(e["spec"]).label() for e in listed)))
        l2.button("Clear the list", on_click=spec_list.clear, icon=":material/clear_all:", key="clear-list")
    else:
        st.caption("Empty. Add the grid above (several grids make a union), a spec from the Explore page, or type "
                   "specs below.")
    with st.expander("Type specs", expanded=False, icon=":material/keyboard:"):
        spec_list.typed("sweep-typed")

    st.markdown("##### Run")
    st.session_state.setdefault(spec_list.SOURCE_KEY, "list" if listed else "grid")
    source = st.segmented_control(
        "Measure", list(SOURCES), format_func=lambda k: f"{SOURCES[k]} ({len(from_grid if k == 'grid' else listed)})",
        key=spec_list.SOURCE_KEY, required=True, persist_state="session",
        help="what Run measures; the preview below lists it exactly, with a box to leave a spec out",
    )  # fmt: skip
    if source == "list":
        rows = [(QuantSpec.from_dict(e["spec"]), e["from"]) for e in listed]
        if not rows:
            problems.append("the spec list is empty: add the grid, a spec from Explore, or type specs")
    else:
        rows = [(spec, "grid") for spec in from_grid]
        problems += grid_problems
    kept = spec_list.preview(rows, key=f"preview-{source}")
    dropped = len(rows) - len(kept)
    if rows and not kept:
        problems.append("every spec is unticked: keep at least one")
    config = None
    try:
        config = SweepConfig(**config_kwargs)
    except ValueError as exc:
        problems.append(str(exc))
    st.markdown(
        f"**{spec_list.count_text(len(kept))}** to measure, the baseline first"
        + (f"; {dropped} left out." if dropped else ".")
    )
    skips, runnable = device_skips(kept, config.device) if config is not None else ([], kept)
    for line in skips:
        st.warning(plain(line), icon=":material/skip_next:")
    if config is not None and kept and not problems:  # what Run will cost, from these settings and specs
        cost = sweep_cost(config.to_dict(), [s.replace(device=config.device) for s in runnable])
        if cost:
            st.caption(f"**This sweep takes {cost}**, once its baseline exists.")
        stored = jobs.stored_job_id(config, [s.replace(device=config.device) for s in kept])
        if stored and stored != jid:  # offered instead of measuring again; Run still measures again
            st.page_link(SWEEP_PAGE, label=f"Already measured with these settings: open the stored results (job "
                         f"{stored}); Run measures them again", query_params={"job": stored},
                         icon=":material/inventory_2:")  # fmt: skip
    for p in problems:
        st.error(plain(p), icon=":material/block:")
    if st.button("Run sweep", type="primary", disabled=bool(problems), icon=":material/play_arrow:"):
        try:
            jid = jobs.submit(config, [s.replace(device=config.device) for s in kept], SESSION_KEY, join=True)
        except (ValueError, OSError) as exc:
            st.error(plain(f"Could not start the sweep: {exc}"))
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
st.markdown(f"##### {plain(job_label(job0))}")
for timed in filter(None, str(job0.config.get("retime_job") or "").split(", ")):  # Time again: the job it times
    st.page_link(SWEEP_PAGE, label=f"Timing only: these rows time again rows of job {timed} (open it)",
                 query_params={"job": timed}, icon=":material/link:")
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
    jobs.missing_baseline(job, rows, key=f"sweep-{job.job_id}")
    detail_key = f"detail-{job.job_id}"
    decision = budget.Decision(rows, budget.inputs())  # the budgets above the chart, shaded on it, a line under it
    clicked = results.pareto(rows, key=f"pareto-{job.job_id}-{x}", x=x or "latency_ms_p50", extra=decision.draw)
    decision.show()
    if clicked is None and any(r.ok for r in rows):
        st.caption("Hover a point for its full spec; click it (or a table row) for the details.")
    # newest first: while rows stream in, a selection would move to another row; a new key per row count drops it
    selected = results.table(rows, key=f"table-{job.job_id}-{len(rows) if job.active else 'all'}",
                             hide=("model", "dataset", "sweep"))
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
    results.downloads(rows, f"qcore-sweep-{job.job_id}", key=f"dl-{job.job_id}", html=not job.active,
                      budget=decision.budget)


jobs.panel(jid, key=f"sweep-{jid}", render=render)
