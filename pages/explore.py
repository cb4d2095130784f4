"""Explore: one model, one quantization spec, measured against FP32 and explained."""

from __future__ import annotations

import streamlit as st

from qcore.metrics.result import Result, baseline_of
from qcore.quant.spec import FLOAT_PRECISIONS, FP32, QuantSpec
from qcore.runs.store import Job
from qcore.runs.sweep import SweepConfig
from ui import jobs, keep_float, ptq_settings, results, settings, spec_list
from ui.common import baseline_status, dataset_label, spec_problem
from ui.nav import SWEEP_PAGE, setup
from ui.text import plain

SESSION_KEY = "explore_job"
SCROLL_TO_RESULTS = """<script>(() => { let n = 0; const t = setInterval(() => {
  const e = document.getElementById("results");
  if (e) { e.scrollIntoView({behavior: "smooth", block: "start"}); clearInterval(t); }
  else if (++n > 50) clearInterval(t);
}, 100); })();</script>"""

setup("Explore")
st.title("Explore one setting")
st.caption(
    "Pick a model and one way to quantize it; the run measures it against FP32 on the same images. "
    "Every setting is kept in the URL: copy the address to share this exact setup."
)
top = st.container()  # a link down to the results, once there is a run to show

config_kwargs, problems = settings.config_widgets()
st.markdown("##### Quantization")
spec_kwargs = settings.spec_single()
# CLE, bias correction, AdaRound: integer precisions, not QAT
ptq_kwargs, ptq_problems = ptq_settings.single(spec_kwargs["precision"], spec_kwargs["mode"],
                                               config_kwargs["calib_size"])
spec_kwargs |= ptq_kwargs
problems += ptq_problems
if spec_kwargs["precision"] not in FLOAT_PRECISIONS:  # (a float cast quantizes nothing, so keeps nothing out)
    static_int8 = spec_kwargs["precision"] == "int8" and spec_kwargs.get("mode") == "static"  # activation quantizers
    spec_kwargs["keep_float"], kept_problems = keep_float.field(st, config_kwargs["model"], [spec_kwargs["backend"]],
                                                                acts=static_int8)
    problems += kept_problems

config = spec = None
try:
    config = SweepConfig(**config_kwargs)
except ValueError as exc:
    problems.append(str(exc))
try:
    spec = QuantSpec(device=config_kwargs["device"], **spec_kwargs)
except ValueError as exc:
    problems.append(f"This spec is impossible: {exc}")
else:
    if why := spec_problem(spec.to_dict()):
        problems.append(f"This spec is impossible: {why}")
for p in problems:
    st.error(plain(p), icon=":material/block:")


if config_kwargs["weights"] in ("baseline", "auto") and not problems:
    if note := baseline_status(config_kwargs["model"], config_kwargs["dataset"], config_kwargs["image_size"]):
        subject = f"{config_kwargs['model']} on {dataset_label(config_kwargs['dataset'])}"
        st.caption(plain(f"Baseline for {subject}: {note}."))

row = st.container(horizontal=True, vertical_alignment="center")  # buttons keep their labels, wrapping if narrow
run = row.button(
    "Run",
    type="primary",
    disabled=bool(problems),
    icon=":material/play_arrow:",
    help="measures FP32 first, then this spec, in the background worker",
)
train = row.button(
    "Train baseline only",
    disabled=bool(problems) or config_kwargs["weights"] != "baseline",
    icon=":material/model_training:",
    help="an FP32-only job with weights = baseline",
)
row.button(
    "Add to the sweep list",
    disabled=spec is None or bool(problems) or spec.is_reference,
    icon=":material/playlist_add:",
    on_click=lambda: st.toast(f"{spec.label()}: " + ("added to the sweep list" if spec_list.add([spec], "Explore")
                                                     else "already in the sweep list")),
    help="gathers exact specs for one sweep (one job, FP32 measured once); the Sweep page previews and runs them",
)
if n := len(spec_list.entries()):
    row.page_link(SWEEP_PAGE, label=f"Sweep list: {spec_list.count_text(n)}", icon=":material/list:")
started = False
if (run or train) and config is not None and spec is not None:
    try:
        jobs.submit(config, [] if train else [spec], SESSION_KEY)
        started = True
    except (ValueError, OSError) as exc:
        st.error(plain(f"Could not start the run: {exc}"))


def render(job: Job, rows: list[Result]) -> None:
    if not rows:
        return
    jobs.missing_baseline(job, rows, key=f"explore-{job.job_id}")
    wanted = QuantSpec.from_dict(job.specs[0]) if job.specs else FP32
    main = next((r for r in rows if r.spec == wanted), None) or baseline_of(rows)
    if main is None:
        st.warning("The FP32 baseline did not produce a result; see the job's message.")
        return
    cfg = job.config
    st.caption(
        f"Job settings: calibration on {cfg.get('calib_size')} images, evaluation on "
        f"{cfg.get('eval_limit') or 'all'} images, seed {cfg.get('seed')}, timing budget "
        f"{cfg.get('latency_budget_s')} s per spec."
    )
    results.details(main, baseline_of(rows, main), key=f"explore-{job.job_id}")
    results.table(rows, key=f"explore-table-{job.job_id}", hide=("model", "dataset", "sweep", "error"))
    results.downloads(rows, f"qcore-explore-{job.job_id}", key=f"explore-dl-{job.job_id}", html=not job.active)


jid = jobs.current(SESSION_KEY)
if jid:
    top.markdown(f":material/arrow_downward: [Results of run {jid}, below the settings](#results)")
    st.divider()
    st.subheader("Results", anchor="results")
    if started:  # the results are below the fold: take the reader there (our own constant script, no input)
        st.html(SCROLL_TO_RESULTS, unsafe_allow_javascript=True)
    jobs.panel(jid, key=f"explore-{jid}", render=render)
