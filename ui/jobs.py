"""Jobs from the pages' side: submit one, follow it, cancel or resume it.

The work itself runs in the worker process (:mod:`qcore.service.worker`), which calls no ``st.*``. A page
submits a job to the store, puts its id in the URL (``?job=``) and in the session, and an
``st.fragment`` polls the job's row while it is queued or running: progress, ETA, the queue position and
wait, Cancel. It reads one row a tick, every second while the progress moves and up to every
:data:`POLL_MAX_S` while it does not; the results are drawn by a fragment of their own, again whenever a
row is committed (the whole page reruns then). A reload or a second browser on the same URL finds the same
job; a job whose worker died shows as interrupted, with Resume. Home's and Sweep's requests join a queued or
running job of the same settings and specs (:mod:`qcore.runs.requests`), and offer results already stored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import streamlit as st

from qcore.metrics.result import Result, baseline_of
from qcore.quant.spec import QuantSpec
from qcore.runs import requests
from qcore.runs.estimate import duration_text
from qcore.runs.store import Job
from qcore.runs.sweep import SweepConfig

from .common import job_subject, measured_text, no_paths, query_job, start_worker, store
from .text import plain

__all__ = ["POLL_S", "POLL_MAX_S", "poll_interval", "submit", "remember", "current", "eta_text", "queue_text",
           "status", "stored_job_id", "pace", "resumable", "resume_button", "missing_baseline", "panel"]

POLL_S = 1.0  # a followed job's row is read this often while its progress changes,
POLL_MAX_S = 5.0  # and backs off to this once it has not changed for a while
_JOINED, _MINE = "jobs-joined", "jobs-mine"  # session state: jobs this session joined, and queued itself
_STATE_TEXT = {
    "queued": "queued", "running": "running", "done": "finished", "cancelled": "cancelled",
    "error": "failed", "interrupted": "interrupted: its worker stopped before it finished",
}  # fmt: skip


def submit(config: SweepConfig, specs: list[QuantSpec], session_key: str, join: bool = False) -> str:
    """Queue a job, start the worker if none runs, and remember the job in the URL and the session.

    The FP32 baseline is always measured first, so a plain FP32 spec is not queued twice. With ``join``, a queued
    or running job of the same settings and specs is followed instead of queueing another (the page says so).
    """
    specs = [s for s in specs if not s.is_reference]
    if join:
        jid, joined = requests.submit_or_join(store(), config.to_dict(), [s.to_dict() for s in specs])
    else:
        jid, joined = store().submit_job(config.to_dict(), [s.to_dict() for s in specs]), False
    st.session_state.setdefault(_JOINED if joined else _MINE, set()).add(jid)
    start_worker()
    remember(jid, session_key)
    return jid


@st.cache_data(ttl=10, show_spinner=False, max_entries=64)
def _stored(db: str, config: str, specs: str) -> str | None:
    job = requests.stored_job(store(), json.loads(config), json.loads(specs))
    return job.job_id if job else None


def stored_job_id(config: SweepConfig, specs: list[QuantSpec]) -> str | None:
    """The finished job whose stored ``ok`` rows already hold every one of ``specs`` with exactly these settings
    (:func:`qcore.runs.requests.stored_job`; shared by every session for 10 s), or None."""
    todo = [s.to_dict() for s in specs if not s.is_reference]
    return _stored(str(store().path), json.dumps(config.to_dict(), sort_keys=True), json.dumps(todo, sort_keys=True))


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
        st.warning(plain(where[0].upper() + where[1:] + "."))
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


@st.cache_data(show_spinner=False, max_entries=512)
def _steps(db: str, job_id: str) -> tuple[float, ...]:
    """A stored sweep job's estimated seconds per step (fixed once it is queued: shared by every session)."""
    from qcore.runs.estimate import job_steps

    job = store().job(job_id)
    return job_steps(job, store().jobs(limit=50, kind="sweep")) if job is not None and job.kind == "sweep" else ()


def queue_text(job: Job) -> tuple[int, str]:
    """A queued job's position (1: it runs next) and ``about 4 min`` until it starts (the running job's time left
    and the estimates of the jobs ahead: :func:`qcore.runs.requests.wait_seconds`); "" when not estimated."""
    queue = requests.queue(store())
    ids = [j.job_id for j in queue]
    if job.job_id not in ids:
        return 0, ""
    pos = sum(j.state == "queued" for j in queue[: ids.index(job.job_id)]) + 1
    wait = requests.wait_seconds(queue, job.job_id, lambda j: _steps(str(store().path), j.job_id))
    return pos, "" if wait is None else f"about {duration_text(wait)}"


def _joined_note(job: Job) -> None:
    if job.job_id not in st.session_state.get(_JOINED, ()):
        return
    who = "this session" if job.job_id in st.session_state.get(_MINE, ()) else "another session"
    where = "running now" if job.state == "running" else _STATE_TEXT.get(job.state, job.state)
    if job.state == "queued":
        pos, wait = queue_text(job)
        where = f"position {pos} in the queue" + (f", {wait} until it starts" if wait else "")
    st.info(f"Joined job {job.job_id}, started by {who}: {plain(job_subject(job))} ({where}). The same settings "
            "and specs are measured once; every session that asks for them follows that job.",
            icon=":material/group:")  # fmt: skip


def status(job: Job, key: str) -> None:
    """Progress bar, message, ETA, queue position and wait; Cancel while active, Resume when interrupted."""
    s = store()
    frac = job.done / job.total if job.total else 0.0
    head = f"Job {job.job_id}: {_STATE_TEXT.get(job.state, job.state)} · {measured_text(job)}"
    if job.state == "queued":
        pos, wait = queue_text(job)
        ahead = "it runs next" if pos == 1 else f"{max(pos, 1) - 1} job(s) ahead of it"
        st.info(
            f"{head}. Position {pos} in the queue ({ahead})" + (f"; it starts in {wait}" if wait else "")
            + "; one job runs at a time so that timings are not distorted by another sweep.",
            icon=":material/hourglass_top:",
        )
        start_worker()  # a queued job needs a live worker (e.g. after a restart)
    elif job.state == "running":
        st.progress(min(1.0, frac), text=f"{head} · {plain(job.message)} · {eta_text(job)}")
    elif job.state == "done":
        took = f" in {job.finished_at - job.started_at:.0f} s" if job.finished_at and job.started_at else ""
        st.success(f"{head}{took}.", icon=":material/check_circle:")
    elif job.state == "error":
        st.error(f"{head}. {plain(no_paths(job.error))}", icon=":material/error:")
    else:
        st.warning(f"{head}. {plain(no_paths(job.message))}", icon=":material/pause_circle:")
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


def poll_interval(quiet_s: float, fastest: float = POLL_S, slowest: float = POLL_MAX_S) -> float:
    """Seconds between two reads of something that has not changed for ``quiet_s`` seconds: ``fastest`` for the
    first 5 s, then twice that (at most ``slowest``), and ``slowest`` once 20 s have passed."""
    return fastest if quiet_s < 5 else min(2 * fastest, slowest) if quiet_s < 20 else slowest


def _set_rate(seconds: float) -> bool:
    """Have this session's browser rerun the running fragment every ``seconds`` from now on.

    ``st.fragment(run_every=)`` tells the browser its rate only when the whole page runs; the browser keeps one
    timer per fragment and replaces it when the same message comes with another interval, so the fragment
    sends that message itself. False (the rate stays) where Streamlit's internals differ."""
    try:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
        from streamlit.runtime.scriptrunner_utils.script_run_context import ThreadState, get_script_run_ctx

        ctx, fragment = get_script_run_ctx(), ThreadState.get().fragment_id
    except (ImportError, AttributeError, RuntimeError):
        return False
    if ctx is None or not fragment:
        return False
    msg = ForwardMsg()
    msg.auto_rerun.interval = seconds
    msg.auto_rerun.fragment_id = fragment
    ctx.enqueue(msg)
    return True


def pace(name: str, seen_now: object, registered: float | None, fastest: float = POLL_S,
         slowest: float = POLL_MAX_S) -> None:
    """In a fragment that polls: back its rate off (:func:`poll_interval`) while what it shows (``seen_now``)
    stands still, back to ``fastest`` when it changes. ``registered``: the rate the fragment was just declared
    with (in a run of the whole page), else None. ``name``: what is polled, one memo per session."""
    memo = st.session_state.setdefault("jobs-poll", {})
    now, seen = time.monotonic(), memo.get(name)
    if seen is None or seen[0] != seen_now:
        seen = memo[name] = [seen_now, now, seen[2] if seen else fastest]
    if registered is not None:
        seen[2] = registered
    rate = poll_interval(now - seen[1], fastest, slowest)
    if rate != seen[2] and _set_rate(rate):
        seen[2] = rate


def _shown(job: Job | None) -> tuple:
    """What the rest of the page draws from a job: its state, its committed rows (whole steps) and its result."""
    return (None,) if job is None else (job.state, int(job.done), json.dumps(job.result, sort_keys=True))


def panel(jid: str, key: str, render: Callable[[Job, list[Result]], None]) -> None:
    """Follow job ``jid``: its status in a fragment that polls while the job is queued or running (one row a
    tick, backing off while nothing changes), its results in a fragment of their own. When a row is committed or
    the state changes, the whole page runs again (and the polling stops once the job has ended)."""
    first = store().job(jid)
    if first is None:
        return
    reads = {"status": [first], "results": [first]}  # this run's read, used once by each fragment's first run
    rate = POLL_S if first.active else None

    @st.fragment(run_every=rate)
    def follow() -> None:
        full = bool(reads["status"])
        job = reads["status"].pop() if full else store().job(jid)
        if job is None:
            st.warning(f"Job {jid} was deleted.")
            return
        _joined_note(job)
        status(job, key)
        if _shown(job) != _shown(first):
            st.rerun()  # a new row or state: the whole page once more (its results; no polling after the end)
        if job.active:
            pace(f"job-{jid}", (job.state, job.done, job.message, job.cancel), rate if full else None)

    @st.fragment
    def results() -> None:
        job = reads["results"].pop() if reads["results"] else store().job(jid)
        if job is not None:
            render(job, store().results(sweep_id=jid))

    follow()
    results()
