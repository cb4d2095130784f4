"""bench/doctor.py's measuring: one point, its diagnosis (twice), its first suggestion and the blind catalogue."""

from __future__ import annotations

import os
import time

from qcore.doctor.diagnose import diagnose
from qcore.metrics.paired_rows import paired_change
from qcore.runs.moves import queue_fix
from qcore.runs.store import Store, spec_key
from qcore.runs.sweep_config import SweepConfig
from qcore.service.worker import execute_job


def _per_image(r) -> float | None:
    return r.latency_ms_p50 / r.batch_size if r.ok and r.latency_ms_p50 else None


def _measure(store: Store, origin, spec, config_change: dict, base_config: SweepConfig, what: str):
    """Measure ``spec`` as a move from ``origin``: in its job, or a new sweep when the settings change."""
    if config_change:
        config = SweepConfig.from_dict({**base_config.to_dict(), **config_change})
        job = store.start_job(config.to_dict(), [spec.to_dict()], os.getpid())
    else:
        queue_fix(store, origin, spec, what)
        job = store.job(origin.sweep_id)
        if job.state == "queued":
            job = store.claim_next_job(os.getpid(), job.job_id)
    try:
        if job is not None and job.state == "running":
            execute_job(store, job)
    except Exception as exc:  # one fix failing is a row of the table, not the end of the bench
        return {"what": what, "label": spec.label(), "error": f"{type(exc).__name__}: {exc}"}
    finally:
        if job is not None:
            store.update_job(job.job_id, state="done", finished_at=time.time())
    key = spec_key(spec.to_dict())
    rows = [r for r in store.results(sweep_id=job.job_id)
            if spec_key(r.spec.to_dict()) == key or (spec.is_reference and r.spec.is_reference)]
    if not rows or not rows[0].ok:
        return {"what": what, "label": spec.label(), "error": rows[0].error if rows else "no row"}
    r = rows[0]
    change = paired_change(origin, r)
    return {"what": what, "label": r.label, "top1": r.top1, "top1_delta": r.top1_delta,
            "vs_point": change.text() if change else None, "latency_ms_p50": r.latency_ms_p50,
            "batch": r.batch_size, "ms_per_image": _per_image(r), "size_bytes": r.size_bytes,
            "seconds": r.ptq_algorithm_seconds}


def run_point(db, name, model, spec, batch, eval_limit, catalogue) -> dict:
    store = Store(db)
    config = SweepConfig(model=model, batch_size=batch, eval_limit=eval_limit or None)
    job = store.start_job(config.to_dict(), [spec.to_dict()], os.getpid())
    t = time.perf_counter()
    execute_job(store, job)
    store.update_job(job.job_id, state="done", finished_at=time.time())
    point_s = time.perf_counter() - t
    rows = store.results(sweep_id=job.job_id)
    point = next(r for r in rows if not r.spec.is_reference)
    fp32 = next(r for r in rows if r.spec.is_reference)
    t = time.perf_counter()
    d = diagnose(store, point.run_id, layers="measure")
    cold = time.perf_counter() - t
    t = time.perf_counter()
    d = diagnose(store, point.run_id, layers="cached")
    warm = time.perf_counter() - t
    first = next((f for f in d.suggestions if f.spec is not None and f.spec.mode != "qat"), None)
    results = []
    seen = set()
    tried = ([(first.what, first.spec, first.config)] if first else []) + [
        (f.what, f.spec, f.config) for f in d.suggestions if f.spec is not None and f.spec.mode != "qat"] + catalogue(
        spec, [c["name"] for c in d.culprits], d.focus)
    for what, s, cfg in tried:
        key = (spec_key(s.to_dict()), tuple(sorted(cfg.items())))
        if key in seen:
            continue
        seen.add(key)
        results.append(_measure(store, point, s, cfg, config, what))
    ok = [r for r in results if "error" not in r]
    acc = d.focus == "accuracy"
    if acc:
        best = max(ok, key=lambda r: r["top1"]) if ok else None
        passed = bool(ok) and results[0].get("top1") is not None and best["top1"] - results[0]["top1"] <= 0.2
    else:  # one call's latency at the point's batch: a larger batch is another question (throughput)
        timed = [r for r in ok if r["latency_ms_p50"] and r["batch"] == batch]
        best = min(timed, key=lambda r: r["latency_ms_p50"]) if timed else None
        passed = bool(timed) and results[0].get("batch") == batch and \
            results[0]["latency_ms_p50"] <= 1.10 * best["latency_ms_p50"]
    skipped = [f.what for f in d.suggestions if f.spec is not None and f.spec.mode == "qat"]
    first_rank = next((i for i, f in enumerate(d.suggestions, 1) if f.spec is not None and f.spec.mode != "qat"), None)
    return {"qat_not_measured": skipped, "first_rank": first_rank,
            "model": model, "spec": spec.label(), "focus": d.focus, "fp32_top1": fp32.top1, "top1": point.top1,
            "latency_ms_p50": point.latency_ms_p50, "ms_per_image": _per_image(point),
            "fp32_ms_per_image": _per_image(fp32), "point_s": round(point_s, 1),
            "diagnosis_s_cold": round(cold, 1), "diagnosis_s_cached": round(warm, 1), "layers": d.layers_source,
            "first": results[0] if results else None, "best": best, "passed": passed, "fixes": results,
            "suggestions": [f.to_dict() for f in d.suggestions], "split": d.split, "causes": [c.to_dict() for c in
                                                                                                d.causes]}
