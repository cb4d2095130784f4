"""The worker's runners for per-layer sensitivity (kind ``"layers"``) and the walk (kind ``"mixed-walk"``).

Both are registered in :data:`qcore.service.worker.JOB_RUNNERS`; their job config is built by :func:`layers_config` and
:func:`walk_config` (which check everything first, so a bad request is refused before it is queued). A
sensitivity job commits each layer's row as it is measured (:class:`qcore.layers.rows.LayerRows`) and keeps
the plan (builds, evaluations, estimated time) in its message and result; a walk stores its order before its
first step and each point as a Result row of the job (``sweep_id`` = the job id), like a sweep's.
"""

from __future__ import annotations

from qcore.layers.row import DEFAULT_METRIC
from qcore.layers.rows import LayerRows
from qcore.layers.sensitivity import METRICS, LayerRow, measure_layers
from qcore.layers.walk import ORDERS, candidates, check_budget, check_promote, random_order, rank, run_walk, walk_specs
from qcore.quant.spec import QuantSpec
from qcore.runs.sweep import SweepConfig

__all__ = ["LAYERS_KIND", "WALK_KIND", "layers_config", "walk_config", "run_layers_job", "run_walk_job"]

LAYERS_KIND = "layers"
WALK_KIND = "mixed-walk"


def layers_config(config: SweepConfig, spec: QuantSpec, *, accuracy: bool = True, error_images: int = 256,
                  only: tuple[str, ...] = ()) -> dict:
    """The stored config of a sensitivity job; raises ValueError/SpecError for a request that cannot run."""
    if spec.is_float:
        raise ValueError(f"{spec.label()} quantizes nothing; per-layer sensitivity needs an INT8 or INT4 spec")
    if spec.keep_float or spec.keep_int8:
        raise ValueError("per-layer sensitivity starts from the spec on every layer; drop keep_float and keep_int8")
    if not isinstance(error_images, int) or not 1 <= error_images <= 10000:
        raise ValueError(f"error_images={error_images!r} is not allowed; allowed: 1 to 10000")
    return {"sweep": config.to_dict(), "spec": spec.to_dict(), "accuracy": bool(accuracy),
            "error_images": error_images, "only": list(only)}


def walk_config(config: SweepConfig, spec: QuantSpec, *, order: str = "sensitivity", metric: str = DEFAULT_METRIC,
                seed: int = 0, steps: int | None = 3, minutes: float | None = None, ranking_images: int = 1000,
                layers_job: str = "", promote_to: str = "fp32") -> dict:
    """The stored config of a walk; raises ValueError for a bad order, metric, budget or ``promote_to``
    (:data:`qcore.layers.walk.PROMOTE_TO`: fp32, or int8 for an INT4 weight-only spec)."""
    if order not in ORDERS:
        raise ValueError(f"order={order!r} is not allowed; allowed: {', '.join(ORDERS)}")
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not allowed; allowed: {', '.join(METRICS)}")
    check_budget(steps, minutes)
    if spec.is_float or spec.keep_float or spec.keep_int8:
        raise ValueError("a walk starts from an INT8 or INT4 spec on every layer (no keep_float or keep_int8)")
    check_promote(spec, promote_to)
    return {"sweep": config.to_dict(), "spec": spec.to_dict(), "order": order, "metric": metric, "seed": seed,
            "steps": steps, "minutes": minutes, "ranking_images": ranking_images, "layers_job": layers_job,
            "promote_to": promote_to}


def run_layers_job(store, job, progress_to=None) -> dict:
    """Measure (or resume) a sensitivity job; every row is committed the moment it is measured. ``progress_to``
    (the CLI's bar) gets each progress report too."""
    cfg = job.config
    rows_db = LayerRows(store.path)
    done = {r.layer: r for r in rows_db.rows(job.job_id)}
    plan_text = []

    def progress(d: int, t: int, message: str) -> None:
        store.update_job(job.job_id, done=d, total=t, message=message)
        if progress_to:
            progress_to(d, t, message)

    def on_plan(plan) -> None:
        plan_text.append(plan.text())
        store.update_job(job.job_id, result={"plan": plan.text(), "builds": plan.builds,
                                             "evaluations": plan.evaluations, "seconds": plan.seconds})

    sens = measure_layers(SweepConfig.from_dict(cfg["sweep"]), QuantSpec.from_dict(cfg["spec"]),
                          accuracy_columns=cfg["accuracy"], error_images=cfg["error_images"],
                          only=tuple(cfg.get("only") or ()), done=done, progress=progress,
                          cancel=lambda: store.cancel_requested(job.job_id),
                          on_row=lambda r: rows_db.add(job.job_id, r), on_plan=on_plan)
    return {"plan": plan_text[0] if plan_text else "", "top1_fp32": sens.top1_fp32,
            "top1_quantized": sens.top1_quantized, "agreement_quantized": sens.agreement_quantized,
            "eval_images": sens.eval_images, "backend": sens.backend, "layers": len(sens.rows),
            "note": "; ".join(sens.notes)}


def _order(store, job, rows_db: LayerRows) -> list[str]:
    """The walk's order: stored at its first run, else computed (and stored) now."""
    stored = rows_db.walk(job.job_id)
    if stored:
        return stored["order"]
    cfg = job.config
    config = SweepConfig.from_dict(cfg["sweep"])
    spec = QuantSpec.from_dict(cfg["spec"])
    rows: list[LayerRow] = rows_db.rows(cfg["layers_job"]) if cfg.get("layers_job") else []
    if not rows:
        needs_accuracy = cfg["metric"] in ("gain_only_float", "loss_only_quant") and cfg["order"] == "sensitivity"
        small = SweepConfig.from_dict({**cfg["sweep"], "eval_limit": cfg["ranking_images"]})

        def progress(d, t, m):
            store.update_job(job.job_id, message=f"ranking the layers: {m}")

        rows = measure_layers(small, spec, accuracy_columns=needs_accuracy, progress=progress,
                              cancel=lambda: store.cancel_requested(job.job_id)).rows
    del config
    names = candidates(rows)
    order = rank(rows, cfg["metric"]) if cfg["order"] == "sensitivity" else random_order(names, cfg["seed"])
    rows_db.set_walk(job.job_id, {"order": order, "metric": cfg["metric"], "kind": cfg["order"], "seed": cfg["seed"]})
    return order


def run_walk_job(store, job, progress_to=None) -> dict | None:
    """Measure (or resume) a walk: its order first (stored), then each point not yet stored."""
    from qcore.service.worker import store_pareto

    cfg = job.config
    rows_db = LayerRows(store.path)
    order = _order(store, job, rows_db)
    if store.cancel_requested(job.job_id):
        return None
    promote_to = cfg.get("promote_to", "fp32")  # walks stored before INT8 promotion existed kept FP32
    specs = walk_specs(QuantSpec.from_dict(cfg["spec"]), order, cfg["steps"], promote_to)
    done_keys = store.done_spec_keys(job.job_id)
    stored = store.results(sweep_id=job.job_id, status="ok")
    base = next((r for r in stored if r.spec.is_reference), None)

    def progress(d: int, t: int, message: str) -> None:
        store.update_job(job.job_id, done=d, total=t, message=message)
        if progress_to:
            progress_to(d, t, message)

    run_walk(SweepConfig.from_dict(cfg["sweep"]), specs, minutes=cfg.get("minutes"), done_keys=done_keys,
             include_baseline=base is None, baseline_run_id=base.run_id if base else "", sweep_id=job.job_id,
             promote_to=promote_to, on_result=store.add_result, progress=progress,
             cancel=lambda: store.cancel_requested(job.job_id))
    rows = sorted(store.results(sweep_id=job.job_id), key=lambda r: r.created_at)
    from qcore.metrics.pareto import mark_pareto

    mark_pareto(rows)
    problem = store_pareto(store, rows)
    return {"order": order, "promote_to": promote_to,
            "points": sum(1 for r in rows if r.ok and not r.spec.is_reference),
            **({"note": f"the Pareto column was not stored ({problem})"} if problem else {})}
