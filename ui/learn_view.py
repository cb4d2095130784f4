"""The Learn page's sections: each draws its charts from ``ui.learn_data`` and puts the sentence of
:mod:`qcore.learn.words` next to them, with the chart's own numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import streamlit as st

from qcore.learn import words
from qcore.learn.one_layer import STEPS
from qcore.learn.setting import SIMULATED, LayerSetting
from qcore.quant.spec import GROUP_SIZES
from qcore.runs.store import Job
from qcore.service import uploads

from . import jobs
from . import learn_charts as charts
from . import learn_data as data
from .common import dataset_label, delta_style, query_job, start_worker, store
from .text import plain

SESSION_KEY = "learn_job"
JOB_KIND = "learn-layer"
EVAL_SIZES = [500, 1000, 2000, 5000, 10000]
PLOT = {"displaylogo": False}


def job_query(config: dict) -> dict | None:
    """The URL of the Learn page showing a ``learn-layer`` job's setting (None when its weights are a file
    the URL cannot name: only uploads can be named)."""
    weights, extra = config["weights"], {}
    if weights not in ("baseline", "pretrained"):
        name = Path(weights).name
        if uploads.checkpoint_path(name) != Path(weights):
            return None
        weights, extra = "upload", {"ckpt": name}
    return {"model": config["model"], "dataset": dataset_label(config["dataset"]), "weights": weights, **extra,
            "layer": config["layer"], "kind": config["kind"], "bits": str(config["bits"]), "scheme": config["scheme"],
            "method": config["method"], "pct": str(config["percentile"]), "gran": config["granularity"],
            "group": str(config["group_size"]), "mode": config["mode"], "fold": str(config["fold_bn"]).lower(),
            "eval": str(config["eval_limit"] or 10000)}  # fmt: skip


def open_job_setting() -> None:
    """A URL that names only a job (a link from Runs, Home or the queue) opens on that job's setting."""
    jid = query_job()
    if not jid or set(st.query_params) != {"job"}:
        return
    job = store().job(jid)
    if job is not None and job.kind == JOB_KIND and (query := job_query(job.config)):
        st.switch_page("pages/learn.py", query_params={**query, "job": jid})


def _split_rows(rows) -> list[dict]:
    return [{"method": m.method, "lo": m.affine.lo, "hi": m.affine.hi, "scale": m.affine.scale,
             "zero_point": m.affine.zero_point, "rounding": m.split.rounding_mse, "clipping": m.split.clipping_mse,
             "clipped": m.split.clipped, "n": m.split.n, "sqnr": m.split.sqnr_db} for m in rows]  # fmt: skip


def the_map(key, method: str, bits: int, symmetric: bool, pct: float, stats: dict) -> None:
    """1. The histogram with every method's range, the staircase, scale and zero point."""
    st.subheader("1 · The map: clipping range, scale and zero point")
    ranges = data.method_ranges(key, bits, symmetric, pct)
    edges, counts = data.histogram(key)
    left, right = st.columns([3, 2])
    log_y = left.toggle("log scale", value=True, key="logy", help="rare values (the tails) are visible on a log scale")
    left.plotly_chart(charts.histogram(edges, counts, ranges, method, log_y), key="hist", config=PLOT)
    right.markdown(words.ranges_sentence(ranges, stats, pct))
    if len(ranges) < 5:
        right.caption("Weights get the three methods the sweeps apply to weights (min-max, percentile, MSE): they are "
                      "known exactly, nothing streams in. Moving-average and entropy follow batches of activations: "
                      "look at the layer's activations to see all five.")
    a = data.affine(key, method, bits, symmetric, pct)
    split = next(m.split for m in data.by_method(key, bits, symmetric, pct) if m.method == method)
    # the three numbers in a row of their own: in the narrow right column they were cut to "0.…" at 1024 px
    m = st.columns(3)
    m[0].metric("scale s", words.num(a.scale), help="the size of one step: real value per integer code")
    m[1].metric("zero point z", a.zero_point, help="the integer code that stands for the real value 0")
    m[2].metric("codes", f"{a.qmin}..{a.qmax}", help=f"{a.levels} integers of {bits} bits")
    left, right = st.columns([3, 2])
    x, y = data.staircase(key, method, bits, symmetric, pct)
    left.plotly_chart(charts.staircase(x, y, a), key="stairs", config=PLOT)
    right.markdown("**The formula with these numbers**")
    right.code(f"{a.formula()}\n{a.inverse_formula()}", language=None, wrap_lines=True)
    right.markdown("**Three values of this tensor through it** (largest, mean, smallest)")
    right.code("\n".join(data.worked(key, method, bits, symmetric, pct)), language=None, wrap_lines=True)
    right.markdown(words.step_sentence(a, split, method))


def the_error(key, method: str, bits: int, symmetric: bool, pct: float, stats: dict) -> None:
    """2. Rounding against clipping per method, SQNR against bits, symmetric against asymmetric."""
    st.subheader("2 · Where the error comes from")
    rows = _split_rows(data.by_method(key, bits, symmetric, pct))
    curves = data.sqnr_curves(key, symmetric, pct)
    if stats["error_values"] < stats["numel"]:
        st.caption(f"Errors on a seeded uniform sample of {stats['error_values']:,} of the {stats['numel']:,} values "
                   "(the ranges see every value).")
    left, mid, right = st.columns([2, 2, 2])
    left.plotly_chart(charts.error_split(rows), key="split", config=PLOT)
    mid.plotly_chart(charts.sqnr_bits(curves, bits), key="sqnr-bits", config=PLOT)
    right.markdown(words.error_sentence(rows, method, curves, bits))
    table = pd.DataFrame([{"method": r["method"], "lo": r["lo"], "hi": r["hi"], "scale": r["scale"],
                           "zero point": r["zero_point"], "rounding MSE": r["rounding"], "clipping MSE": r["clipping"],
                           "clipped values": r["clipped"], "SQNR dB": r["sqnr"]} for r in rows])  # fmt: skip
    st.dataframe(table, hide_index=True, key="split-table", column_config={
        "lo": st.column_config.NumberColumn(format="%.4g"), "hi": st.column_config.NumberColumn(format="%.4g"),
        "scale": st.column_config.NumberColumn(format="%.4g"),
        "rounding MSE": st.column_config.NumberColumn(format="%.3e"),
        "clipping MSE": st.column_config.NumberColumn(format="%.3e"),
        "SQNR dB": st.column_config.NumberColumn(format="%.2f"),
    })  # fmt: skip

    st.markdown(f"##### Symmetric against asymmetric ({words.NAMES[method]}, {bits} bits)")
    views = data.schemes(key, method, bits, pct)
    cols = st.columns(3)
    for col, name in zip(cols, ("symmetric", "asymmetric")):
        v = views[name]
        sq = "∞" if math.isinf(v.split.sqnr_db) else f"{v.split.sqnr_db:.1f} dB"
        col.markdown(f"**{name}**: s = {words.num(v.affine.scale)}, z = {v.affine.zero_point} · wasted codes "
                     f"**{v.codes.wasted} / {v.codes.levels}** · SQNR **{sq}**",
                     help="wasted codes: below the code of the tensor's minimum or above that of its maximum, where "
                          "no value can land")  # fmt: skip
        x, y = data.staircase(key, method, bits, name == "symmetric", pct)
        col.plotly_chart(charts.staircase(x, y, v.affine, height=300), key=f"stairs-{name}", config=PLOT)
    cols[2].markdown(words.scheme_sentence(views["symmetric"], views["asymmetric"], stats["nonneg"]))


def the_granularity(key, kind: str, method: str, bits: int, symmetric: bool, pct: float) -> tuple[str, int]:
    """3. Per-channel ranges and SQNR against the per-tensor scale; group sizes for weights."""
    st.subheader("3 · Granularity: one scale per tensor, per channel, or per group")
    options = ["per-tensor", "per-channel"] + (["per-group"] if kind == "weights" else [])
    c1, c2, _ = st.columns([2, 1, 2])
    gran = c1.segmented_control("Granularity (used by the model measurement below)", options, default="per-tensor",
                                key="gran", bind="query-params", required=True,
                                help="per-group applies to weights: activations take one scale per tensor in "
                                     "the int8 kernels")  # fmt: skip
    group = 64
    if gran == "per-group":
        group = c2.selectbox("Group size", GROUP_SIZES, index=GROUP_SIZES.index(64), key="group", bind="query-params",
                             help="consecutive input weights of one output channel that share a scale")
    view = data.channels(key, method, bits, symmetric, pct)
    if view.method != method:
        st.caption(f"Per-channel ranges use min-max: {words.NAMES[method]} follows one stream of batches and has "
                   "no per-channel form here.")
    if view.sampled:
        st.caption(f"Per-channel errors on a seeded sample of {view.values_per_channel:,} values per channel.")
    left, mid, right = st.columns([2, 2, 2])
    left.plotly_chart(charts.channel_ranges(view), key="ch-ranges", config=PLOT)
    mid.plotly_chart(charts.channel_sqnr(view), key="ch-sqnr", config=PLOT)
    right.markdown(words.channel_sentence(view, kind))
    if kind == "weights":
        costs, sampled = data.costs(key, method, bits, symmetric, pct)
        st.markdown("##### What the scales cost, per group size")
        st.dataframe(pd.DataFrame([{
            "granularity": c.label, "weights per scale": c.group_size, "scales": c.scales,
            "scale bits / weight": c.scale_bits, "zero-point bits / weight": c.zero_point_bits,
            "bits / weight": c.bits_per_weight(bits), "SQNR dB": c.split.sqnr_db,
        } for c in costs]), hide_index=True, key="costs", column_config={
            "scale bits / weight": st.column_config.NumberColumn(format="%.4f"),
            "zero-point bits / weight": st.column_config.NumberColumn(format="%.4f"),
            "bits / weight": st.column_config.NumberColumn(format="%.3f"),
            "SQNR dB": st.column_config.NumberColumn(format="%.2f"),
        })  # fmt: skip
        total = data.stats(key)["channels"]
        st.caption(("Scales stored as the weight-only artifact stores them: FP16 per tensor or channel, 8.25 bits "
                    "per group (8-bit codes plus a float32 span per 256). ") + (
            f"SQNR on a seeded sample of {sampled} of the {total} output channels (the per-tensor range from all)."
            if sampled < total else ""))
        st.markdown(words.cost_sentence(costs, bits))
    return gran, group


def the_batches(key, kind: str, method: str, bits: int, symmetric: bool, pct: float) -> str:
    """4. The static range against each batch's own (activations)."""
    st.subheader("4 · Static or dynamic ranges")
    if kind != "activations":
        st.caption("Weights are fixed: their range is chosen once, so there is nothing dynamic about them. Choose "
                   "the layer's input activations above to compare a static range with each batch's own.")
        return "static"
    mode = st.segmented_control("Mode (used by the model measurement below)", ["static", "dynamic"],
                                default="static", key="mode", bind="query-params", required=True,
                                help="static: the range calibrated ahead; dynamic: each batch's own min and max")
    br = data.batch_ranges(key, method, bits, symmetric, pct)
    left, mid, right = st.columns([2, 2, 2])
    left.plotly_chart(charts.batches(br), key="batches", config=PLOT)
    mid.plotly_chart(charts.batch_sqnr(br), key="batch-sqnr", config=PLOT)
    right.markdown(words.dynamic_sentence(br, method))
    return mode


def the_model(setting_kwargs: dict, problems: list[str]) -> None:
    """5. One click: the model with only this layer quantized, measured in the background."""
    st.subheader("5 · What it does to the model")
    c1, c2 = st.columns([1, 3])
    n = c1.select_slider("Test images", EVAL_SIZES, value=LayerSetting.eval_limit, key="eval", bind="query-params",
                         help="a seeded subset of the test split (the sweeps' own, for the same size)")
    setting = None
    try:
        setting = LayerSetting(**setting_kwargs, eval_limit=None if n >= 10000 else int(n))
    except ValueError as exc:
        problems = [*problems, str(exc)]
    for p in problems:
        st.error(p, icon=":material/block:")
    if setting is not None:
        c2.markdown(f"Measures the model on {n:,} test images twice: in FP32, and with only **{setting.label()}** "
                    "quantized as shown above (every other layer stays FP32).")
        c2.caption(f"This is {SIMULATED}: 2..8 bits on any CPU, the numbers of the integers, not their speed.")
    if st.button("Measure the model with only this layer quantized", type="primary", key="measure",
                 disabled=setting is None or bool(problems), icon=":material/play_arrow:"):
        jid = store().submit_job(setting.to_dict(), [], kind=JOB_KIND, total=STEPS)
        start_worker()
        jobs.remember(jid, SESSION_KEY)
    jid = jobs.current(SESSION_KEY, kind=JOB_KIND)
    if jid:
        jobs.panel(jid, key=f"learn-{jid}", render=lambda job, _rows: _result(job, setting))


def _result(job: Job, current: LayerSetting | None) -> None:
    r = job.result
    if not r:
        return
    if current is not None and r["setting"] != current.to_dict():
        st.info(plain(f"This result is for {r['label']} ({r['setting']['model']}, {r['setting']['weights']}); press "
                      "Measure for the setting shown above."), icon=":material/info:")
    c = st.columns(4)
    c[0].metric("Top-1", f"{r['top1']:.2f} %",
                delta=f"{round(r['top1_delta'], 2) or 0.0:+.2f} pts vs FP32 ({r['top1_fp32']:.2f} %)",
                **delta_style(r["top1_delta"]), border=True,
                help="share of the test images whose top class is the true one; the change is against the same "
                     "model in FP32 on the same images")  # fmt: skip
    c[1].metric("Agreement with FP32", f"{r['agreement']:.1f} %", border=True,
                help="share of images where the model picks the same class as in FP32 (right or wrong)")
    c[2].metric("Images that flip class", f"{r['flips']:,}", delta=f"of {r['n']:,}", delta_color="off",
                delta_arrow="off", border=True)
    c[3].metric("FP32 right → now wrong", f"{r['broke']:,}", delta=f"{r['fixed']:,} the other way",
                delta_color="off", delta_arrow="off", border=True)
    st.markdown(words.result_sentence(r))
    if r["examples"]:
        st.markdown("**Flipped images** (those FP32 had right first)")
        shown = data.images(r["setting"]["model"], r["setting"]["dataset"], r["setting"]["weights"],
                            tuple(e["index"] for e in r["examples"]))
        cols = st.columns(len(shown))
        names = r["classes"]
        for col, img, e in zip(cols, shown, r["examples"]):
            col.image(img, width=96, clamp=True)
            col.caption(f"#{e['index']} · true **{plain(names[e['label']])}** · FP32 {plain(names[e['fp32']])} · "
                        f"quantized **{plain(names[e['quantized']])}**")
    captured = f" Calibrated on {r['captured']}." if r.get("captured") else ""
    st.caption(plain(f"Weights: {r['weights_source']}. " + " ".join(r.get("notes", [])) + captured
                     + f" Took {r['seconds']:.1f} s."))
