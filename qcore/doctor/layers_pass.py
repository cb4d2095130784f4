"""The Layers measurement the doctor reads: the cached one for this spec, or one made now on the suspects.

A full Layers measurement with accuracy columns costs ``2 N + 1`` builds and evaluations (mobilenet_v3_small: 54
layers and its activation quantizers, over a hundred). Without a cached one, the doctor measures the cheap part for
every row first (weight and output errors: one build), then the accuracy columns only for the
:data:`LAYER_CANDIDATES` most suspect rows (the lowest weight SQNR among the layers, the
lowest output SQNR among the activation quantizers), as a Layers job of its own (``only``), which the Layers page
lists and the next diagnosis of the same spec reads from the cache.
"""

from __future__ import annotations

import os
import time

from qcore.layers.job import LAYERS_KIND, layers_config, run_layers_job
from qcore.layers.row import LayerRow
from qcore.layers.rows import LayerRows
from qcore.layers.sensitivity import measure_layers
from qcore.layers.walk import rank
from qcore.quant.spec import QuantSpec, SpecError
from qcore.runs.store import Store
from qcore.runs.sweep_config import SweepConfig

__all__ = ["LAYER_CANDIDATES", "ACTIVATION_SUSPECTS", "suspects", "layer_rows"]

LAYER_CANDIDATES = 6  # without a cached Layers measurement: the rows measured alone in FP32
ACTIVATION_SUSPECTS = 2  # of the candidates, how many are activation quantizers (when the spec has them)


def suspects(rows: list[LayerRow], k: int) -> list[str]:
    """The ``k`` rows to measure alone in FP32: layers by weight SQNR (lowest first), and up to
    :data:`ACTIVATION_SUSPECTS` activation quantizers by output SQNR, in that order; rows no spec can keep are out.

    >>> rows = [LayerRow("a", 0, "", 1, 40.0, 1e-4), LayerRow("b", 1, "", 1, 20.0, 1e-2),
    ...         LayerRow("act:x", 2, "", 0, None, None, output_sqnr_db=9.0, kind="activation")]
    >>> suspects(rows, 2)
    ['b', 'act:x']
    """
    layer_rows_ = [r for r in rows if r.kind == "layer"]
    acts = [r for r in rows if r.kind == "activation" and not r.cannot_keep]
    n_acts = min(ACTIVATION_SUSPECTS, len(acts), max(k - 1, 0))
    picked = rank(layer_rows_, "weight_sqnr_db")[: k - n_acts]
    return picked + rank(acts, "output_sqnr_db")[:n_acts]


def layer_rows(store: Store, config: SweepConfig, spec: QuantSpec, mode: str, say, cancel
               ) -> tuple[list[LayerRow], str, str]:
    """``(rows, layers_job_id, source)``: the rows the doctor ranks its culprits from, the job that holds them and
    where they came from in words (or why there are none)."""
    from qcore.doctor.where import find_layers_job

    if mode == "skip":
        return [], "", "not measured (layers=skip)"
    if spec.keep_float or spec.keep_int8:
        return [], "", ("not measured: per-layer sensitivity starts from the spec on every layer, and this one "
                        f"keeps {', '.join(spec.keep_float + spec.keep_int8)} out")
    cached = find_layers_job(store, config, spec)
    if cached:
        return LayerRows(store.path).rows(cached), cached, f"cached (Layers job {cached})"
    if mode == "cached":
        return [], "", "no Layers measurement of this spec is cached (layers=measure makes one)"
    say(2, 5, "measuring every layer's weight and output error (one build)")
    try:
        errors = measure_layers(config, spec, accuracy_columns=False, cancel=cancel).rows
    except SpecError as exc:
        return [], "", f"not measured: {exc}"
    names = suspects(errors, LAYER_CANDIDATES)
    if not names or cancel():
        return [], "", "not measured: no layer can be kept in FP32"
    job = store.start_job(layers_config(config, spec, accuracy=True, only=tuple(names)), [], os.getpid(),
                          prefix="doc-", kind=LAYERS_KIND)

    def progress(d: int, t: int, m: str) -> None:
        say(2, 5, f"the {len(names)} most suspect layers alone in FP32: {m}")

    try:
        result = run_layers_job(store, job, progress)
    except Exception as exc:
        store.update_job(job.job_id, state="error", finished_at=time.time(), error=f"{type(exc).__name__}: {exc}",
                         message="failed")
        raise
    store.update_job(job.job_id, state="cancelled" if cancel() else "done", finished_at=time.time(),
                     message="measured for the doctor", result=result)
    return LayerRows(store.path).rows(job.job_id), job.job_id, f"measured now ({len(names)} suspects, job {job.job_id})"
