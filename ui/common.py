"""Cached look-ups the pages share: the run database, the hardware, the model registry.

Everything heavy (torchvision's model list, the hardware probe) is cached for the life of the
server; the database handle is cached per path, so tests that point ``QCORE_HOME`` elsewhere get
their own.
"""

from __future__ import annotations

import os
import re
import threading

import streamlit as st

from qcore.store import Job, Store, default_db
from qcore.uploads import dataset_label, no_paths

__all__ = ["NO_WORKER_ENV", "store", "start_worker", "hardware", "prewarm", "model_names", "model_info",
           "input_problem", "spec_problem", "dataset_image_size", "baseline_status", "dataset_label", "no_paths",
           "job_label", "query_job"]

# Set by tests that run jobs in-process: the pages then never start a worker process.
NO_WORKER_ENV = "QCORE_APP_NO_WORKER"
_JOB_ID = re.compile(r"^(cli-)?[0-9a-f]{6,32}$")  # app jobs, and sweeps the CLI ran


@st.cache_resource(show_spinner=False)
def _store(path: str) -> Store:
    return Store(path)


def store() -> Store:
    """The run database (``$QCORE_DB`` or ``<data home>/runs.sqlite``)."""
    return _store(str(default_db()))


def start_worker() -> None:
    """Make sure one background worker process is alive to run queued jobs."""
    if os.environ.get(NO_WORKER_ENV):
        return
    from qcore.worker import ensure_worker

    ensure_worker()


@st.cache_resource(show_spinner="Looking at this machine's CPU and GPU ...")
def hardware() -> tuple:
    """``(Hardware, int8 engine name)``; the probe imports torch once per server."""
    from qcore import hardware as hw

    try:
        engine = hw.quantized_engine()
    except RuntimeError as exc:
        engine = f"none ({exc})"
    return hw.detect(), engine


@st.cache_resource(show_spinner=False)
def prewarm() -> None:
    """Import torchvision's model registry in a background thread, once per server, so that the
    Explore and Sweep pages open quickly after Home (the import takes seconds)."""

    def load() -> None:
        from qcore import models

        models.list_models()

    threading.Thread(target=load, name="qcore-prewarm", daemon=True).start()


@st.cache_resource(show_spinner="Reading torchvision's model registry ...")
def model_names() -> list[str]:
    from qcore import models

    return models.list_models()


@st.cache_data(show_spinner=False)
def model_info(name: str) -> dict | None:
    from qcore import models

    try:
        info = models.model_info(name)
    except (ValueError, AttributeError):
        return None
    return {"params": info.params, "gflops": info.gflops, "default_input_size": info.default_input_size}


@st.cache_data(show_spinner="Checking that the model takes this input size ...")
def input_problem(model: str, size: int) -> str | None:
    """The reason ``model`` cannot classify ``size`` x ``size`` images, or None when it can."""
    from qcore import models

    try:
        models.check_input_size(model, size)
    except ValueError as exc:
        return str(exc).split(". Load the dataset")[0]
    return None


@st.cache_data(show_spinner=False)
def spec_problem(spec: dict) -> str | None:
    """Why no backend can ever run this spec (``backend='fx' does not run fp16; allowed: ...``), or None."""
    from qcore import backends
    from qcore.spec import QuantSpec

    return backends.kind_problem(QuantSpec.from_dict(spec))


@st.cache_data(show_spinner=False)
def dataset_image_size(dataset: str) -> int:
    from qcore import data

    return data.default_image_size(dataset)


def baseline_status(model: str, dataset: str, image_size: int | None = None) -> str:
    """Whether qcore has a trained baseline of ``model`` on ``dataset`` (at ``image_size``, None: the
    dataset's) cached ("" when unknown)."""
    try:
        from qcore import train

        found = train.find_baseline(model, dataset, train.recipe_for(model, dataset, image_size=image_size))
    except Exception:  # an unknown pair or an unreadable folder: the run itself will say more
        return ""
    return "a trained baseline is cached" if found else "no baseline yet: the first run trains one (minutes)"


def job_label(job: Job) -> str:
    c = job.config
    what = f"{len(job.specs)} spec(s)" if job.kind == "sweep" else f"{job.kind}: {c.get('layer')} {c.get('kind')}"
    return f"{job.job_id} · {c.get('model')} on {dataset_label(str(c.get('dataset')))} · {what}"


def query_job() -> str | None:
    """The ``?job=`` of the URL when it looks like a job id."""
    jid = st.query_params.get("job")
    return jid if jid and _JOB_ID.match(jid) else None
