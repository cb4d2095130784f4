"""Time again: time stored rows once more, and only time them.

A latency taken while the machine was busy (:func:`qcore.metrics.scale.busy_reason`) is not a property of the model, but
its accuracy is: timing again needs neither calibration images nor an evaluation. :func:`submit_retime` queues a
sweep job whose config is the settings of the job that measured the rows (model, dataset, weights, input, batch,
seed, budget), plus ``retime_of`` (the rows) and ``retime_job`` (that job); the worker runs it with
:func:`execute_retime`:

- the FP32 model is loaded and timed eager, channels-last and compiled, interleaved, as a sweep's FP32 row
  (:func:`qcore.runs.sweep.time_baseline`): every speed-up is against an FP32 timing taken in the same process;
- each row's spec is quantized on the backend that ran it (a QAT row: its PTQ counterpart on its backend, the
  same int8 or INT4 kernels its trained model runs on), with the timing input as its only calibration batch:
  the ranges differ, the graph and the kernels, which are what is timed, do not;
- it is timed interleaved with FP32 eager (:func:`qcore.runs.sweep.latency_into`).

Each new row copies everything the original measured (accuracy and its intervals, draws, size, layers, QAT
figures), names it in ``retime_of`` and in a note, and has its own latency, speed-up and busy flag; the old rows
stay, so both can be compared.

>>> # submit_retime(Store(), ["3f2a91c04b1e"])  -> the new job's id; the worker times its rows
"""

from __future__ import annotations

from collections.abc import Callable

from qcore.metrics.result import Result
from qcore.runs.store import Job, Store

__all__ = ["RETIMED", "retime_request", "submit_retime", "copied", "execute_retime"]

# What Time again measures anew; every other field of a row is the original's (copied).
RETIMED = ("run_id", "sweep_id", "created_at", "baseline_run_id", "notes", "manifest", "pareto", "status", "error",
           "host", "cpu_model", "node_id", "retries", "threads", "best_fp32", "timed_from", "timed_to",
           "latency_ms_p50", "latency_ms_p90", "latency_samples_ms", "fp32_latency_ms_p50", "speedup",
           "speedup_vs_best_fp32", "timed_calls", "latency_spread", "latency_ms_lo", "latency_ms_hi", "load_avg",
           "busy", "build_seconds", "first_build_seconds", "device", "batch_size", "input_shape",
           "retime_of")  # fmt: skip


def retime_request(store: Store, run_ids: list[str]) -> tuple[dict, list[dict]]:
    """The config and specs of a job that times ``run_ids`` again. Raises ValueError naming what is wrong:
    no such rows, rows of several jobs with different settings, or a job no longer stored."""
    if not run_ids:
        raise ValueError("no rows chosen; choose the rows to time again")
    rows = []
    for run_id in dict.fromkeys(run_ids):
        found = store.results(run_id=run_id)
        if not found:
            raise ValueError(f"there is no result {run_id!r} in the run database")
        rows.append(found[0])
    configs = {}
    for r in rows:
        job = store.job(r.sweep_id) if r.sweep_id else None
        if job is None or job.kind != "sweep":
            raise ValueError(f"the job that measured {r.label} ({r.run_id}) is no longer stored, so its settings "
                             "are unknown; run the spec again from the Sweep page")  # fmt: skip
        configs[r.sweep_id] = {k: v for k, v in job.config.items() if k not in ("retime_of", "retime_job")}
    settings = list({tuple(sorted((k, repr(v)) for k, v in c.items())) for c in configs.values()})
    if len(settings) > 1:
        raise ValueError(f"the rows come from {len(configs)} jobs with different settings (model, dataset, input "
                         "...); time again the rows of one job at a time")  # fmt: skip
    config = dict(next(iter(configs.values())))
    config["retime_of"] = [r.run_id for r in rows]
    config["retime_job"] = ", ".join(configs)  # the job (or jobs of the same settings) the rows come from
    # one spec per row to time (the FP32 row needs none: FP32 is always timed first)
    return config, [r.spec.to_dict() for r in rows if not r.spec.is_reference]


def submit_retime(store: Store, run_ids: list[str]) -> str:
    """Queue the job of :func:`retime_request`; returns its id (the caller makes sure a worker runs)."""
    config, specs = retime_request(store, run_ids)
    return store.submit_job(config, specs)


def copied(original: Result, new: Result) -> Result:
    """``new`` (what was timed now) with every field of ``original`` that is not in :data:`RETIMED`."""
    body = original.to_dict()
    body.update({k: v for k, v in new.to_dict().items() if k in RETIMED or k == "spec"})
    out = Result.from_dict(body)
    out.retime_of = original.run_id
    return out


def _timing_spec(row: Result):
    """The spec to build for timing ``row``: its deployed form (a QAT row's PTQ counterpart) on the backend that
    ran it (``auto`` stays auto when the row names no registered backend), without its post-training algorithms:
    they choose weight values and biases, not the kernels, so the same build runs as fast (and AdaRound would need
    calibration images that timing does not load)."""
    from qcore.backends import list_backends
    from qcore.quant.spec_ptq import PTQ_DEFAULTS

    spec = row.spec.ptq_spec.replace(**PTQ_DEFAULTS)
    return spec.replace(backend=row.backend) if row.backend in list_backends() and not spec.is_float else spec


def _prepare(config, progress: Callable[[float, int, str], None], total: int):
    """What timing needs: the FP32 model, the timing input (the sweep's own, from its seed); no calibration images,
    no evaluation images (a :class:`qcore.runs.sweep.Prepared` with those empty)."""
    import torch

    from qcore.env import hardware
    from qcore.metrics.measure import size_bytes
    from qcore.metrics.result import manifest
    from qcore.nets import weights
    from qcore.runs.sweep import Prepared

    device = hardware.resolve_device(config.device)
    progress(0, total, f"loading {config.model} (timing only: no calibration or evaluation images)")
    bundle = weights.load_dataset_for(config.model, config.dataset, config.image_size)
    loaded = weights.load_model(config.model, bundle, config.weights)
    side = config.input_size or bundle.image_size
    example = torch.randn(config.batch_size, 3, side, side, generator=torch.Generator().manual_seed(config.seed))
    m = manifest(seed=config.seed, dataset=config.dataset, image_size=bundle.image_size, weights=loaded.weights,
                 device=device, batch_size=config.batch_size, input_shape=list(example.shape), timed_only=True)
    return Prepared(config, device, loaded, [example], [], example, torch.empty(0), torch.empty(0, dtype=torch.long),
                    size_bytes(loaded.model.state_dict()), m, bundle=bundle)


def _time_row(p, original: Result, baseline_id: str) -> Result:
    from qcore.backends import BackendUnavailable, resolve
    from qcore.runs.sweep import _base_result, finish_notes, latency_into

    r = _base_result(p, original.spec)
    try:
        spec = _timing_spec(original)
        choice = resolve(spec, p.device, model=p.config.model, batch_size=p.config.batch_size)
        q = choice.backend.quantize(p.loaded.model, spec, [p.example], p.example, p.device)
        latency_into(r, p, q, choice)
        finish_notes(r, q, choice)
    except Exception as exc:  # one row that cannot be timed here does not end the job
        r.status = "skipped" if isinstance(exc, BackendUnavailable) else "error"
        r.error = f"{type(exc).__name__}: {exc}"
    r.baseline_run_id = baseline_id
    out = copied(original, r)
    out.notes = [f"timed again only: accuracy, size and layers copied from run {original.run_id} of job "
                 f"{original.sweep_id or '-'}; quantized for timing with the timing input as its calibration batch "
                 "(the same graph and kernels)"] + r.notes
    return out


def execute_retime(store: Store, job: Job) -> list[Result]:
    """Time the rows ``job.config["retime_of"]`` names again (see the module): an FP32 row, then one row per
    original, each committed as it is timed (a resumed job skips the rows already timed); returns the job's rows,
    oldest first, with their Pareto flags set (in memory, as :func:`qcore.service.worker.execute_job`)."""
    from qcore.metrics.pareto import mark_pareto
    from qcore.runs.sweep import SweepConfig, time_baseline

    config = SweepConfig.from_dict(job.config)
    originals = [found[0] for i in job.config.get("retime_of", []) if (found := store.results(run_id=i))]
    fp32_original = next((r for r in originals if r.spec.is_reference), None)
    if fp32_original is None:  # the FP32 row the rows were measured against: its accuracy is the new FP32 row's
        ids = [r.baseline_run_id for r in originals if r.baseline_run_id]
        fp32_original = next((found[0] for i in ids if (found := store.results(run_id=i))), None)
    todo = [r for r in originals if not r.spec.is_reference]
    stored = store.results(sweep_id=job.job_id)
    total = len(todo) + 1

    def progress(done: float, _total: int, message: str) -> None:
        store.update_job(job.job_id, done=done, total=total, message=message)

    p = _prepare(config, progress, total)
    progress(0, total, "FP32 (eager, channels-last, compiled) · timing only")
    base = time_baseline(p)  # always: every speed-up is against FP32 timed in this process
    old_base = next((r for r in stored if r.spec.is_reference), None)
    if old_base is None:
        if fp32_original is not None:
            base = copied(fp32_original, base)
            base.notes.insert(0, f"timed again only: accuracy copied from run {fp32_original.run_id}")
        base.baseline_run_id, base.sweep_id = base.run_id, job.job_id
        store.add_result(base)
    baseline_id = old_base.run_id if old_base else base.run_id
    done_ids = {r.retime_of for r in stored}
    for n, original in enumerate(todo, start=1):
        if store.cancel_requested(job.job_id):
            break
        if original.run_id not in done_ids:
            progress(n, total, f"{original.label} · timing against FP32 (timing only)")
            r = _time_row(p, original, baseline_id)
            r.sweep_id = job.job_id
            store.add_result(r)
    else:
        progress(total, total, "timed")
    rows = sorted(store.results(sweep_id=job.job_id), key=lambda r: r.created_at)
    mark_pareto(rows)
    return rows
