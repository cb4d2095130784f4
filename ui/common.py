"""Cached look-ups the pages share: the run database, the hardware, the model registry.

Everything heavy (torchvision's model list, the hardware probe) is cached for the life of the
server; the database handle is cached per path, so tests that point ``QCORE_HOME`` elsewhere get
their own.
"""

from __future__ import annotations

import importlib
import os
import re
import threading

import streamlit as st

from qcore.runs.store import Job, Store, default_db
from qcore.service.uploads import dataset_label, no_paths

__all__ = ["NO_WORKER_ENV", "store", "start_worker", "hardware", "prewarm", "model_names", "model_info",
           "input_problem", "spec_problem", "dataset_image_size", "baseline_status", "sweep_cost", "dataset_label",
           "no_paths", "job_label", "job_subject", "query_job", "count_text", "measured_text", "label_of",
           "delta_style"]

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
    from qcore.service.worker import ensure_worker

    ensure_worker()


@st.cache_resource(show_spinner="Looking at this machine's CPU and GPU ...")
def hardware() -> tuple:
    """``(Hardware, int8 engine name)``; the probe imports torch once per server."""
    from qcore.env import hardware as hw

    try:
        engine = hw.quantized_engine()
    except RuntimeError as exc:
        engine = f"none ({exc})"
    return hw.detect(), engine


@st.cache_resource(show_spinner=False)
def prewarm(*modules: str) -> None:
    """Import torchvision's model registry and ``modules`` (the pages' own) in a background thread, once per
    server, so that the Explore and Sweep pages open quickly after Home: otherwise the first session to open one
    pays the imports (seconds), and every session that opens it meanwhile waits behind them."""

    def load() -> None:
        from qcore.nets import models

        models.list_models()
        for name in modules:
            importlib.import_module(name)

    threading.Thread(target=load, name="qcore-prewarm", daemon=True).start()


@st.cache_resource(show_spinner="Reading torchvision's model registry ...")
def model_names() -> list[str]:
    from qcore.nets import models

    return models.list_models()


@st.cache_data(show_spinner=False)
def model_info(name: str) -> dict | None:
    from qcore.nets import models

    try:
        info = models.model_info(name)
    except (ValueError, AttributeError):
        return None
    return {"params": info.params, "gflops": info.gflops, "default_input_size": info.default_input_size}


@st.cache_data(show_spinner="Checking that the model takes this input size ...")
def input_problem(model: str, size: int) -> str | None:
    """The reason ``model`` cannot classify ``size`` x ``size`` images, or None when it can."""
    from qcore.nets import models

    try:
        models.check_input_size(model, size)
    except ValueError as exc:
        return str(exc).split(". Load the dataset")[0]
    return None


@st.cache_data(show_spinner=False)
def spec_problem(spec: dict) -> str | None:
    """Why no backend can ever run this spec (``backend='fx' does not run fp16; allowed: ...``), or None."""
    from qcore import backends
    from qcore.quant.spec import QuantSpec

    return backends.kind_problem(QuantSpec.from_dict(spec))


def device_skips(specs: list, device: str) -> tuple[list[str], list]:
    """``(lines, runnable)``: what Run will skip on ``device`` because the backend a spec names cannot run it there
    (TensorRT on a CPU, an engine that is not installed), one line per backend and reason with how many specs it
    costs; and the specs that will run (what the estimate counts)."""
    from qcore import backends
    from qcore.env.hardware import resolve_device

    try:
        device = resolve_device(device)
    except ValueError:  # cuda without a GPU: the page's own error says so
        return [], list(specs)
    counts: dict[tuple[str, str], int] = {}
    runnable = []
    for spec in specs:
        why = None
        if spec.backend != "auto" and not spec.is_reference and not backends.kind_problem(spec):
            why = backends.get_backend(spec.backend).problem(spec, device)
        if why:
            counts[(spec.backend, why)] = counts.get((spec.backend, why), 0) + 1
        else:
            runnable.append(spec)
    return [f"{n} spec{'s' if n != 1 else ''} on {b} will be skipped on {device}: {why}"
            for (b, why), n in counts.items()], runnable


@st.cache_data(show_spinner=False)
def dataset_image_size(dataset: str) -> int:
    from qcore import data

    return data.default_image_size(dataset)


def baseline_status(model: str, dataset: str, image_size: int | None = None) -> str:
    """Whether qcore has a trained baseline of ``model`` on ``dataset`` (at ``image_size``, None: the dataset's):
    shipped with qcore, cached, being trained by another process right now, or missing (then what training
    one will cost, as an estimate); "" when unknown."""
    try:
        from qcore.nets import train
        from qcore.runs import estimate

        recipe = train.recipe_for(model, dataset, image_size=image_size)
        found = train.find_baseline(model, dataset, recipe)
        if found is not None:
            meta = train.baseline_meta(found)
            score = f"{meta['test_accuracy']:.2%} top-1 on {meta['test_images']:,} test images"
            if found.parent == train.SHIPPED:
                return f"the trained baseline shipped with qcore is used ({score}): nothing to train"
            return f"a trained baseline is cached ({score})"
        if train.training_elsewhere(model, dataset, recipe):
            return "being trained by another process right now (a job or the CLI): a run waits for it, then loads it"
        cost = estimate.training_seconds(model, dataset, image_size)
    except Exception:  # an unknown pair or an unreadable folder: the run itself will say more
        return ""
    return "no baseline yet: the first run trains one first" + (f", {cost.text()}" if cost else " (minutes)")


def sweep_cost(config: dict, specs: list) -> str:
    """What a sweep job of ``specs`` with ``config`` will take, from its own settings, as an estimate
    (:func:`qcore.runs.estimate.job_seconds`: what Home's start, the Sweep page before Run and the ETA read)."""
    from qcore.runs import estimate

    try:
        return estimate.job_seconds(config, specs, store().jobs(limit=50, kind="sweep")).text()
    except Exception:  # no record to go by: say nothing rather than guess
        return ""


def label_of(value) -> str:
    """How a spec's value is named to a user, on every page: ``FP32``, ``min-max``, ``entropy (KL)`` (from
    :data:`qcore.quant.spec.LABELS`); a value without a label as it is (``per-channel``, ``64``)."""
    from qcore.quant.spec import LABELS

    return LABELS.get(value, str(value)) if isinstance(value, str) else str(value)


def delta_style(delta: float | None, colour: str = "normal", digits: int = 2) -> dict:
    """``st.metric``'s delta colour and arrow: none for a change that shows as zero at ``digits`` decimals
    (+0.00 points is no change, not a red or green arrow); ``colour`` ("normal", "inverse") otherwise."""
    if delta is None or round(delta, digits) == 0:
        return {"delta_color": "off", "delta_arrow": "off"}
    return {"delta_color": colour}


def count_text(n: int) -> str:
    """How every page counts a sweep: ``4 specs + the FP32 baseline`` (the baseline is always measured first,
    so a sweep of 4 specs shows 5 steps of progress)."""
    return f"{n} spec{'' if n == 1 else 's'} + the FP32 baseline"


def measured_text(job: Job) -> str:
    """``2/5 measured``: whole specs done (a running spec's finished phases count in the progress bar only)."""
    return f"{int(job.done)}/{job.total} {'measured' if job.kind == 'sweep' else 'steps'}"


def job_label(job: Job) -> str:
    """``3f2a91c04b · mobilenet_v3_small on Fashion-MNIST · 2 specs + the FP32 baseline``: every kind of job, as
    Runs and the Sweep page name it."""
    return f"{job.job_id} · {job_subject(job)}"


def job_subject(job: Job) -> str:
    """``mobilenet_v3_small on Fashion-MNIST · 2 specs + the FP32 baseline``: what any kind of job measures (a
    layers or walk job's model is in its ``sweep`` settings; a Time again job names the job it times)."""
    c = job.config
    what = count_text(len(job.specs)) if job.kind == "sweep" else f"{job.kind}: {c.get('layer')} {c.get('kind')}"
    if job.kind == "sweep" and c.get("retime_of"):
        what = f"time again of job {c.get('retime_job') or '?'} ({len(c['retime_of'])} row(s))"
    if job.kind in ("layers", "mixed-walk"):  # qcore.layers jobs: a SweepConfig and one spec
        from qcore.quant.spec import QuantSpec

        try:
            what = f"{job.kind}: {QuantSpec.from_dict(c['spec']).label()}"
        except (KeyError, TypeError, ValueError):
            what = job.kind
        c = c.get("sweep") or {}
    return f"{c.get('model', '?')} on {dataset_label(str(c.get('dataset', '?')))} · {what}"


def query_job() -> str | None:
    """The ``?job=`` of the URL when it looks like a job id."""
    jid = st.query_params.get("job")
    return jid if jid and _JOB_ID.match(jid) else None
