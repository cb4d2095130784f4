"""Time again: queue stored rows' specs as a new sweep with the settings that measured them.

A latency taken while the machine was busy (:func:`qcore.scale.busy_reason`) is not a property of the model.
Timing it again needs the quantized model, so the worker quantizes the same specs again, under the same
settings (the model, dataset, weights, input, batch, seed and budget of the job that measured the rows),
measures a fresh FP32 reference beside them and stores new rows; the old rows stay, so both can be compared.
The new job's config names the rows it times again (``retime_of``), which the sweep itself ignores.

>>> # submit_retime(Store(), ["3f2a91c04b1e"])  -> the new job's id; the worker runs it like any sweep
"""

from __future__ import annotations

from .store import Store, spec_key

__all__ = ["retime_request", "submit_retime"]


def retime_request(store: Store, run_ids: list[str]) -> tuple[dict, list[dict]]:
    """The config and specs of a sweep that times ``run_ids`` again. Raises ValueError naming what is wrong:
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
        configs[r.sweep_id] = {k: v for k, v in job.config.items() if k != "retime_of"}
    settings = list({tuple(sorted((k, repr(v)) for k, v in c.items())) for c in configs.values()})
    if len(settings) > 1:
        raise ValueError(f"the rows come from {len(configs)} jobs with different settings (model, dataset, input "
                         "...); time again the rows of one job at a time")  # fmt: skip
    config = dict(next(iter(configs.values())))
    config["retime_of"] = [r.run_id for r in rows]
    specs: dict[str, dict] = {}  # the FP32 row needs no spec: every sweep measures FP32 first
    for r in rows:
        if not r.spec.is_reference:
            specs.setdefault(spec_key(r.spec.to_dict()), r.spec.to_dict())
    return config, list(specs.values())


def submit_retime(store: Store, run_ids: list[str]) -> str:
    """Queue the sweep of :func:`retime_request`; returns its job id (the caller makes sure a worker runs)."""
    config, specs = retime_request(store, run_ids)
    return store.submit_job(config, specs)
