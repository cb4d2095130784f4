"""Jobs from the pages' side: submit one, follow it, cancel or resume it.

The work itself runs in the worker process (:mod:`qcore.service.worker`), which calls no ``st.*``. A page
submits a job to the store, puts its id in the URL (``?job=``) and in the session, and an
``st.fragment`` polls the store every second while the job is queued or running: progress, ETA,
the queue position, Cancel, and the results as they are committed. A reload or a second browser
on the same URL finds the same job; a job whose worker died shows as interrupted, with Resume.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import streamlit as st

from qcore.metrics.result import Result, baseline_of
from qcore.quant.spec import QuantSpec
from qcore.runs.store import Job
from qcore.runs.sweep import SweepConfig

from .common import measured_text, no_paths, query_job, start_worker, store

__all__ = ["POLL_S", "submit", "remember", "current", "eta_text", "status", "resumable", "resume_button",
           "missing_baseline", "panel"]

POLL_S = 1.0
_STATE_TEXT = {
    "queued": "queued", "running": "running", "done": "finished", "cancelled": "cancelled",
    "error": "failed", "interrupted": "interrupted: its worker stopped before it finished",
}  # fmt: skip


def submit(config: SweepConfig, specs: list[QuantSpec], session_key: str) -> str:
    """Queue a job, start the worker if none runs, and remember the job in the URL and the session.

    The FP32 baseline is always measured first, so a plain FP32 spec is not queued twice.
    """
    specs = [s for s in specs if not s.is_reference]
    jid = store().submit_job(config.to_dict(), [s.to_dict() for s in specs])
    start_worker()
    remember(jid, session_key)
    return jid


def remember(jid: str, session_key: str) -> None:
    st.session_state[session_key] = jid
    st.query_params["job"] = jid


def current(session_key: str, kind: str = "sweep") -> str | None:
    """The job of ``kind`` this page shows: the URL's ``?job=``, else the last one of this session."""
    jid = query_job() or st.session_state.get(session_key)
    if not jid:
        return None
    job = store().job(jid)
    if job is None or job.kind != kind:
        where = (f"there is no job {jid} in {store().path}; it may have been made on another machine" if job is None
                 else f"job {jid} is a {job.kind} job, shown on its own page")
        st.warning(where[0].upper() + where[1:] + ".")
        st.session_state.pop(session_key, None)
        return None
    remember(jid, session_key)
    return jid


def eta_text(job: Job, now: float | None = None) -> str:
    """Time elapsed and left. Each step (FP32, then each spec) weighs what the job's estimate says it costs
    (:func:`qcore.runs.estimate.job_steps`: a QAT fine-tune or a first C++ build weighs minutes, a plain spec seconds),
    and ``job.done`` counts a running spec's finished phases as fractions. The time left is made when ``done``
    last changed (the estimate of the steps left, scaled by how long the steps done took against theirs) and then
    counts down, instead of growing with every second the current phase takes; before the first step ends it is
    the estimate less the time elapsed."""
    if job.state != "running" or not job.started_at:
        return ""
    from qcore.runs.estimate import job_steps, seconds_left

    now = time.time() if now is None else now
    elapsed = now - job.started_at
    weights = st.session_state.setdefault("eta-steps", {})
    if job.job_id not in weights:  # once per job: its own settings, and what had finished before it
        weights[job.job_id] = job_steps(job, store().jobs(limit=50, kind="sweep")) if job.kind == "sweep" else ()
    steps = weights[job.job_id] or (1.0,) * max(job.total, 1)  # not estimated: every step weighs the same
    memo = st.session_state.setdefault("eta", {})
    seen = memo.get(job.job_id)
    if seen is None or seen[0] != job.done:
        seen = memo[job.job_id] = (job.done, elapsed, seconds_left(steps, job.done, elapsed))
    left = seen[2] - (elapsed - seen[1])
    if job.done <= 0 and (not weights[job.job_id] or left < 1):  # nothing to go by yet
        return f"{elapsed:.0f} s elapsed, estimating the time left after the first result"
    return f"{elapsed:.0f} s elapsed, " + (f"about {left:.0f} s left" if left >= 1 else "finishing the current step")


def status(job: Job, key: str) -> None:
    """Progress bar, message, ETA, queue position; Cancel while active, Resume when interrupted."""
    s = store()
    frac = job.done / job.total if job.total else 0.0
    head = f"Job {job.job_id}: {_STATE_TEXT.get(job.state, job.state)} · {measured_text(job)}"
    if job.state == "queued":
        pos = s.queue_position(job.job_id)
        ahead = "it runs next" if pos == 1 else f"{(pos or 1) - 1} job(s) ahead of it"
        st.info(
            f"{head}. Position {pos} in the queue ({ahead}); one job runs at a time so that timings "
            "are not distorted by another sweep.",
            icon=":material/hourglass_top:",
        )
        start_worker()  # a queued job needs a live worker (e.g. after a restart)
    elif job.state == "running":
        st.progress(min(1.0, frac), text=f"{head} · {job.message} · {eta_text(job)}")
    elif job.state == "done":
        took = f" in {job.finished_at - job.started_at:.0f} s" if job.finished_at and job.started_at else ""
        st.success(f"{head}{took}.", icon=":material/check_circle:")
    elif job.state == "error":
        st.error(f"{head}. {no_paths(job.error)}", icon=":material/error:")
    else:
        st.warning(f"{head}. {no_paths(job.message)}", icon=":material/pause_circle:")
    if job.active:
        if job.cancel:
            st.caption("Cancelling: the spec being measured finishes first.")
        elif st.button("Cancel", key=f"{key}-cancel", icon=":material/stop_circle:"):
            s.request_cancel(job.job_id)
            st.rerun()
    else:
        resume_button(st, job, f"{key}-resume", "Resume the rest")


def resumable(job: Job) -> bool:
    return job.state in ("interrupted", "cancelled", "error") and job.done < job.total


def resume_button(where, job: Job, key: str, label: str = "Resume") -> None:
    """A Resume button in ``where`` (st or a column) for a job that stopped before its end."""
    if not resumable(job):
        return
    if where.button(
        label, key=key, icon=":material/play_circle:", help="finished specs keep their rows; only the rest are measured"
    ):
        store().resume_job(job.job_id)
        start_worker()
        st.rerun()


def missing_baseline(job: Job, rows: list[Result], key: str) -> bool:
    """When a finished sweep has rows but its FP32 row is gone (deleted on the Runs page): say that its deltas,
    agreement and speed-ups have no reference row now, and offer to measure FP32 again (the job is queued once
    more; its other rows are kept, so only FP32 is measured). Returns True when the warning was shown."""
    if job.kind != "sweep" or job.active or not rows or baseline_of(rows) is not None:
        return False
    if not any(r.spec.is_reference for r in rows) and all(not r.baseline_run_id for r in rows):
        return False  # rows of before baseline_run_id existed, and no FP32 among them: nothing to say
    st.warning(
        f"The FP32 row of job {job.job_id} was deleted: the top-1 changes, agreement and speed-ups of its "
        f"{len(rows)} other row(s) were measured against it, and the chart and table have no reference point now. "
        "Their numbers stay as measured; measuring FP32 again gives the job a reference row (top-1 on the same "
        "images; its latency is timed again).",
        icon=":material/link_off:",
    )
    if st.button("Measure FP32 again", key=f"{key}-refp32", icon=":material/replay:"):
        store().update_job(job.job_id, state="queued", pid=None, cancel=0, error="", finished_at=None,
                           message="queued to measure FP32 again")  # fmt: skip
        start_worker()
        st.rerun()
    return True


def panel(jid: str, key: str, render: Callable[[Job, list[Result]], None]) -> None:
    """Follow job ``jid``: a fragment that reruns every second while the job is queued or running."""
    first = store().job(jid)
    if first is None:
        return
    was_active = first.active

    @st.fragment(run_every=POLL_S if was_active else None)
    def follow() -> None:
        job = store().job(jid)
        if job is None:
            st.warning(f"Job {jid} was deleted.")
            return
        status(job, key)
        render(job, store().results(sweep_id=jid))
        if was_active and not job.active:
            st.rerun()  # the whole page once more, and the polling stops

    follow()
