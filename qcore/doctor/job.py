"""The worker's runner for a diagnosis (job kind ``"doctor"``) and the one way to ask for one.

A diagnosis builds the model several times (the split's halves, the suspects alone in FP32, the profile): long
work, so the app queues it and the worker runs it; the page polls the job and shows its stored result, which is
:meth:`qcore.doctor.diagnose.Diagnosis.to_dict`.
"""

from __future__ import annotations

from qcore.doctor.diagnose import LAYER_MODES, DoctorError, find_row
from qcore.runs.store import Job, Store

__all__ = ["DOCTOR_KIND", "doctor_config", "submit_doctor", "latest_doctor_job", "run_doctor_job"]

DOCTOR_KIND = "doctor"


def doctor_config(run_id: str, layers: str = "measure") -> dict:
    if layers not in LAYER_MODES:
        raise DoctorError(f"layers={layers!r} is not allowed; allowed: {', '.join(LAYER_MODES)}")
    return {"run_id": run_id, "layers": layers}


def submit_doctor(store: Store, run_id: str, layers: str = "measure") -> str:
    """Queue a diagnosis of ``run_id`` (checked first: DoctorError for a row that cannot be diagnosed); a queued
    or running diagnosis of the same row is joined instead of queued twice. Returns the job id."""
    find_row(store, run_id)
    current = latest_doctor_job(store, run_id)
    if current is not None and current.active:
        return current.job_id
    return store.submit_job(doctor_config(run_id, layers), [], kind=DOCTOR_KIND, total=5)


def latest_doctor_job(store: Store, run_id: str) -> Job | None:
    """The newest diagnosis job of ``run_id`` (any state), or None."""
    for job in store.jobs(limit=200, kind=DOCTOR_KIND):
        if job.config.get("run_id") == run_id:
            return job
    return None


def run_doctor_job(store: Store, job: Job) -> dict:
    from qcore.doctor.diagnose import diagnose

    def progress(d: int, t: int, message: str) -> None:
        store.update_job(job.job_id, done=d, total=t, message=message)

    d = diagnose(store, job.config["run_id"], layers=job.config.get("layers", "measure"), progress=progress,
                 cancel=lambda: store.cancel_requested(job.job_id))
    return d.to_dict()
