"""qcore's app: the Home page (Streamlit's entry point; the other pages are in ``pages/``).

Run with ``streamlit run app.py`` (it listens on 127.0.0.1 only: see ``.streamlit/config.toml`` and the
README for serving a classroom). Pages: Home (here), Explore (one spec in detail), Sweep & Pareto
(many specs, the trade-off chart), Runs (everything measured, kept in SQLite) and Learn (quantization
on one layer's real tensor). Long work runs in a background worker process (``python -m qcore worker``),
never in this script.
"""

from __future__ import annotations

import streamlit as st

from qcore.env.gpu import ability_text, detect_gpu
from qcore.quant.spec import QuantSpec
from qcore.runs.auto_status import status_text
from qcore.runs.sweep import SweepConfig
from ui import cluster, jobs
from ui.common import (
    baseline_status,
    count_text,
    dataset_label,
    hardware,
    job_subject,
    measured_text,
    prewarm,
    store,
    sweep_cost,
)
from ui.nav import LEARN_PAGE, SWEEP_PAGE, job_page, setup
from ui.text import plain

# The offline default: a small model on Fashion-MNIST (no download; its trained baseline ships with qcore), three
# kinds of quantization.
DEFAULT_SPECS = [
    QuantSpec("fp32"),
    QuantSpec("int8", granularity="per-channel", calibration="minmax", mode="static"),
    QuantSpec("int4", granularity="per-group", group_size=64, calibration="mse", mode="weight-only"),
]
INFO = dict(delta_color="off", delta_arrow="off", border=True)


def _flag(ok: bool, yes: str, no: str) -> str:
    return f":green-badge[{yes}]" if ok else f":gray-badge[{no}]"


def home() -> None:
    st.title("qcore: what quantization costs and saves")
    st.markdown(
        "qcore quantizes a torchvision image classifier in many ways (FP16, BF16, INT8 static or dynamic, "
        "INT4 weights) and measures each against the FP32 model on the same images and the same CPU. "
        "It shows what you gain in latency and size and what you lose in accuracy, and says when a number "
        "comes from a simulated kernel rather than real low-precision arithmetic. "
        "Sweeps run in the background, every result is kept, and a Pareto chart shows which settings pay off."
    )
    # the Sweep page's modules (the click below opens it) and the Explore page's: imported while this page is read
    prewarm("pandas", "plotly.graph_objects", "qcore.backends", "ui.results", "ui.settings", "ui.grid_settings",
            "ui.spec_list", "ui.budget", "ui.keep_float", "ui.upload_panel")
    hw, engine = hardware()
    st.subheader("This machine")
    c = st.columns(4)
    # short values: a quarter of a 1024 px page shows about four large characters (the full name is below)
    vendor = (hw.cpu.replace("(R)", " ").replace("(TM)", " ").split() or ["?"])[0]
    c[0].metric("CPU", vendor, delta=hw.machine, **INFO, help=hw.cpu)
    c[1].metric(
        "Threads",
        hw.threads,
        delta=f"of {hw.cores} cores",
        **INFO,
        help=f"torch's intra-op threads, of {hw.cores} logical cores: latency is measured with these",
    )
    c[2].metric("GPU", "yes" if hw.gpu else "none", delta=hw.gpu or "CPU only", **INFO)
    c[3].metric(
        "INT8 engine",
        engine,
        delta="torch.ao",
        **INFO,
        help="the torch.ao quantized engine that runs the int8 kernels",
    )
    st.markdown(
        f"**{hw.cpu}** · "
        + " ".join(
            [
                _flag(hw.has_vnni, "VNNI: int8 dot products", "no VNNI: int8 activations use 7 bits"),
                _flag(hw.has_native_bf16, "native BF16", "BF16 emulated"),
                _flag(hw.has_native_fp16, "native FP16", "FP16 emulated"),
            ]
        )
    )
    st.caption(
        f"CPU flags that matter here: {', '.join(hw.flags) or 'none of note'}. "
        "Emulated formats are smaller but not faster on this CPU; the results say so."
    )
    st.caption(plain(status_text()))  # whether auto has measured which INT8 backend is fastest here
    st.caption(plain(ability_text(detect_gpu())))  # the GPU's tensor-core formats (FP8? INT8?), or that there is none
    cluster.home_panel()

    st.subheader("Start")
    cfg = SweepConfig()
    data = dataset_label(cfg.dataset)
    n = sum(not s.is_reference for s in DEFAULT_SPECS)
    st.markdown(
        f"The offline default: **{cfg.model}** on **{data}**, measured as "
        + ", ".join(f"**{s.label()}**" for s in DEFAULT_SPECS)
        + f" ({count_text(n)}), on {cfg.eval_limit or 'all':,} test images."
    )
    note = baseline_status(cfg.model, cfg.dataset, cfg.image_size)
    cost = sweep_cost(cfg.to_dict(), DEFAULT_SPECS)  # this job's own settings: qcore.runs.estimate.job_seconds
    st.markdown(
        "**What the first start costs on this machine.** "
        + (f"Baseline ({cfg.model} on {data}): {note}. " if note else "")
        + (f"The sweep: {cost}." if cost else "")
    )
    stored = jobs.stored_job_id(cfg, DEFAULT_SPECS)
    if stored:  # offered instead of measuring again; the button below still measures again
        st.page_link(SWEEP_PAGE, label=f"Already measured with these settings: open the stored results (job {stored})",
                     query_params={"job": stored}, icon=":material/inventory_2:")  # fmt: skip
    b1, b2 = st.columns([1, 2])
    # a short label: a third of a 1024 px page holds about 20 characters beside the icon
    if b1.button("Start the default", type="primary", icon=":material/play_arrow:",
                 help="measure the offline default above as a sweep, in the background (a session that asks "
                      "while the same sweep is queued or running follows that job)"):  # fmt: skip
        try:
            jid = jobs.submit(cfg, DEFAULT_SPECS, "sweep_job", join=True)
        except (ValueError, OSError) as exc:
            st.error(plain(f"Could not start: {exc}"))
        else:
            st.switch_page(SWEEP_PAGE, query_params={"job": jid})
    b2.page_link("pages/explore.py", label="or explore one setting in detail", icon=":material/tune:")
    b2.page_link(LEARN_PAGE, label="or watch quantization happen on one layer of the model (Learn)",
                 icon=":material/school:")

    s = store()
    recent = s.jobs(limit=5)
    if recent:
        st.subheader("Recent jobs")
        for job in recent:
            label = plain(f"{job.job_id} · {job.state} · {measured_text(job)} · {job_subject(job)}")  # any kind of job
            st.page_link(job_page(job), label=label, help=label, query_params={"job": job.job_id},
                         icon=":material/history:")
    st.caption(f"Results are kept in {s.path}.")


setup("Home")
home()
