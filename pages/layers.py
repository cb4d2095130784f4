"""Layers: which layers cost the accuracy (per-layer sensitivity of one spec), keep one in FP32 and re-run, and
the mixed-precision walk (each step a measured point) against a seeded random walk."""

from __future__ import annotations

import streamlit as st

from qcore.layers.job import LAYERS_KIND, WALK_KIND, layers_config, walk_config
from qcore.layers.row import DEFAULT_METRIC, METRICS
from qcore.layers.rows import LayerRows
from qcore.layers.walk import candidates
from qcore.quant.spec import QuantSpec
from qcore.runs.store import Job
from qcore.runs.sweep import SweepConfig
from ui import jobs, layer_hist, results, settings
from ui.common import start_worker, store
from ui.layers_view import clicked_layer, frame, heatmap
from ui.nav import SWEEP_PAGE, setup
from ui.text import plain

SESSION_KEY = "layers_job"

setup("Layers")
st.title("Layers: where the accuracy goes")
st.caption(
    "For one quantized spec, every Conv and Linear layer: the error of its weights as the kernels hold them "
    "(BatchNorm folded in; SQNR, relative MSE), the error of its output against FP32 on the same images (SQNR, "
    "relative MSE, cosine), and optionally top-1 with only this layer left in FP32 and with only this layer "
    "quantized, each a real build on the spec's own backend. The output error of a deep layer carries every "
    "error before it. Static INT8 on fx or pt2e also lists each activation quantizer between the layers (kind "
    "activation: the input, residual additions, activation functions) with its own output error; keeping one in "
    "FP32 runs the ops that write its tensor in FP32 (an int8 layer that reads it still quantizes its input)."
)


def _submit(kind: str, config: dict) -> None:
    jid = store().submit_job(config, [], kind=kind, total=1)
    start_worker()
    jobs.remember(jid, SESSION_KEY)
    st.rerun()


jid = st.query_params.get("job") or st.session_state.get(SESSION_KEY)
job0 = store().job(jid) if jid else None
with st.expander("Measure a spec layer by layer", expanded=job0 is None, icon=":material/tune:"):
    config_kwargs, problems = settings.config_widgets()
    fields = settings.spec_single()
    c1, c2 = st.columns(2)
    with_accuracy = c1.toggle("Accuracy columns (2 builds and evaluations per layer)", value=False,
                              key="accuracy", bind="query-params")
    error_images = c2.number_input("Images for the output errors", 1, 10000, 256, key="error_images")
    request = None
    try:
        spec = QuantSpec(**fields)
        request = layers_config(SweepConfig(**config_kwargs), spec, accuracy=with_accuracy,
                                error_images=int(error_images))
    except ValueError as exc:
        problems.append(str(exc))
    for p in problems:
        st.error(plain(p), icon=":material/block:")
    if st.button("Measure every layer", type="primary", disabled=bool(problems), icon=":material/play_arrow:"):
        _submit(LAYERS_KIND, request)

if job0 is None or job0.kind not in (LAYERS_KIND, WALK_KIND):
    if job0 is not None:
        st.warning(f"Job {job0.job_id} is a {job0.kind} job, shown on its own page.")
    st.info("No per-layer job yet in this session: choose a spec above and press **Measure every layer**.",
            icon=":material/info:")
    st.stop()


def render_layers(job: Job, _rows) -> None:
    rows = LayerRows(store().path).rows(job.job_id)
    if job.result and job.result.get("plan"):
        st.caption(f"Plan: {job.result['plan']}")
    if job.result and job.result.get("note"):  # what the measurement could not do as asked, and where it measured
        st.caption(plain(f"Notes: {job.result['note']}"))
    if not rows:
        st.caption("Rows appear here as each layer is measured.")
        return
    if job.result and "top1_quantized" in job.result:
        r = job.result
        st.markdown(f"FP32 top-1 **{r['top1_fp32']:.2f}%**, the spec on every layer **{r['top1_quantized']:.2f}%** "
                    f"on {r['eval_images']} images ({r['backend']}).")
    st.dataframe(frame(rows), hide_index=True, key=f"tbl-{job.job_id}")
    event = st.plotly_chart(heatmap(rows), key=f"heat-{job.job_id}", config={"displaylogo": False},
                            on_select="rerun", selection_mode="points")
    layer_key = f"layer-{job.job_id}"
    clicked = clicked_layer(event)
    if clicked and clicked != st.session_state.get(f"{layer_key}-clicked"):  # a new click chooses the layer
        st.session_state[layer_key] = clicked
    st.session_state[f"{layer_key}-clicked"] = clicked
    spec = QuantSpec.from_dict(job.config["spec"])
    config = SweepConfig.from_dict(job.config["sweep"])
    st.caption("Click a cell (or choose the layer below) for its weight histogram and clipping range.")
    c1, c2 = st.columns([3, 2], vertical_alignment="bottom")
    layer = c1.selectbox("Layer", [r.layer for r in rows], key=layer_key)
    row = next(r for r in rows if r.layer == layer)
    if c2.button("Keep in FP32 and re-run", key=f"keep-{job.job_id}", icon=":material/replay:",
                 disabled=bool(row.cannot_keep), help=row.cannot_keep or "queues the spec with this one left in "
                 "FP32 as a sweep point, measured like any other"):
        jobs.submit(config, [spec.replace(keep_float=(layer,))], "sweep_job")
        st.switch_page(SWEEP_PAGE)
    if row.kind == "layer":
        layer_hist.section(config.model, config.dataset, config.weights, layer, spec, key=f"hist-{job.job_id}")
    else:
        st.caption(f"{layer} is an activation quantizer ({row.op}): no weight to draw. Its output error is the "
                   "quantizer's own (the FP32 tensor there against it quantized with the calibrated range)."
                   + (f" It cannot be kept in FP32: {row.cannot_keep}." if row.cannot_keep else ""))
    st.markdown("##### Mixed-precision walk")
    w1, w2, w3 = st.columns(3)
    measured = [m for m in METRICS if any(getattr(r, m) is not None for r in rows)]
    metric = w1.selectbox("Rank by", measured, index=measured.index(DEFAULT_METRIC) if DEFAULT_METRIC in measured
                          else 0, format_func=lambda m: METRICS[m][0], key=f"metric-{job.job_id}",
                          help=f"default: {METRICS[DEFAULT_METRIC][0]}, the measured metric that best predicts the "
                               "gain of keeping one layer in FP32 (docs/benchmarks.md, issue 24)")
    n = len(candidates(rows))
    steps = w2.number_input("Steps (rows kept)", 1, max(1, n - 1), min(3, max(1, n - 1)), key=f"steps-{job.job_id}")
    seed = w3.number_input("Random walk seed", 0, 10**6, 1, key=f"seed-{job.job_id}")
    b1, b2 = st.columns(2)  # a row of their own: their labels fit at 1024 px
    if b1.button("Walk by this ranking", key=f"walk-{job.job_id}", icon=":material/trending_up:"):
        _submit(WALK_KIND, walk_config(config, spec, metric=metric, steps=int(steps), layers_job=job.job_id))
    if b2.button("Random control walk", key=f"rwalk-{job.job_id}", icon=":material/shuffle:"):
        _submit(WALK_KIND, walk_config(config, spec, order="random", seed=int(seed), steps=int(steps),
                                       layers_job=job.job_id))


def render_walk(job: Job, rows) -> None:
    walk = LayerRows(store().path).walk(job.job_id)
    if walk:
        how = f"ranked by {METRICS[walk['metric']][0]}" if walk["kind"] == "sensitivity" else f"seed {walk['seed']}"
        st.caption(f"Order ({how}): {', '.join(walk['order'][:8])}{' …' if len(walk['order']) > 8 else ''}")
    if not rows:
        st.caption("Each step appears here as it is measured.")
        return
    results.pareto(rows, key=f"walk-pareto-{job.job_id}", x="latency_ms_p50")
    results.table(rows, key=f"walk-table-{job.job_id}", hide=("model", "dataset", "sweep"))


jobs.panel(job0.job_id, key=f"layers-{job0.job_id}", render=render_layers if job0.kind == LAYERS_KIND else render_walk)
