"""The two Ray tasks of a spec: accuracy (packable, one CPU) and latency (one ``qcore_bench`` slot). Imports Ray.

Both receive the sweep's :class:`~qcore.runs.sweep.Prepared` (model weights, calibration and evaluation tensors,
the FP32 logits) as one object put in the object store by the driver: Ray copies it to a node once, when a
task there first needs it; nothing is downloaded, trained or read from disk on a node. Both quantize the
spec from it (the same calibration tensors, the same seeds: the same quantized model; a quantized model is
not sent between processes, since some backends hold engine sessions that cannot be pickled). A task never
raises for a spec that fails: it returns the error with the node it happened on, so the row names it.
"""

from __future__ import annotations

import os
import socket

import ray

from qcore.cluster import BENCH
from qcore.env import hardware

__all__ = ["where", "accuracy_task", "latency_task", "LATENCY_FIELDS"]

# What a latency task measures; the driver copies these onto the spec's accuracy row.
LATENCY_FIELDS = ("latency_ms_p50", "latency_ms_p90", "fp32_latency_ms_p50", "latency_samples_ms", "speedup",
                  "speedup_vs_best_fp32", "threads", "timed_from", "timed_to", "build_seconds",
                  "first_build_seconds")


def where() -> dict:
    """This task's node: Ray node id, host name, CPU model, the node's CPUs (its ``CPU`` resource)."""
    node_id = ray.get_runtime_context().get_node_id()
    cpus = next((int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n["NodeID"] == node_id), 0)
    return {"node_id": node_id, "host": socket.gethostname(), "cpu_model": hardware.detect().cpu,
            "cpus": cpus or len(os.sched_getaffinity(0))}


def _failed(exc: BaseException, here: dict) -> dict:
    return {"error": f"{type(exc).__name__} on node {here['host']} ({here['node_id'][:12]}): {exc}", "where": here}


@ray.remote(num_cpus=1, max_retries=0)
def accuracy_task(p, spec_dict: dict) -> dict:
    """Quantize and evaluate one spec; ``{"row": Result dict, "where": ...}`` or ``{"error": ..., "where": ...}``."""
    from qcore.quant.spec import QuantSpec
    from qcore.runs.sweep import accuracy_into, quantize_spec

    here = where()
    try:
        r, choice, q = quantize_spec(p, QuantSpec.from_dict(spec_dict))
        if q is not None:
            accuracy_into(r, p, q)
        return {"row": r.to_dict(), "where": here}
    except Exception as exc:  # the row names the node; the sweep goes on
        return _failed(exc, here)


@ray.remote(num_cpus=1, resources={BENCH: 1}, max_retries=0)
def latency_task(p, spec_dict: dict | None) -> dict:
    """Time one spec against FP32 eager, or (``spec_dict`` None) measure the FP32 baseline row, with torch's
    threads set to the node's CPUs (Ray sets OMP_NUM_THREADS=1 in tasks: left alone, a silent one-thread
    benchmark)."""
    import torch

    from qcore.env.malloc import keep_freed_memory
    from qcore.quant.spec import QuantSpec
    from qcore.runs.sweep import finish_notes, latency_into, measure_baseline, quantize_spec

    here = where()
    torch.set_num_threads(here["cpus"])
    keep_freed_memory()  # as a local sweep times (qcore.env.malloc)
    here["threads"] = torch.get_num_threads()
    try:
        if spec_dict is None:
            r = measure_baseline(p)
            return {"row": r.to_dict(), "where": here, "best_fp32": p.best_fp32, "ratio": p.best_fp32_ratio}
        r, choice, q = quantize_spec(p, QuantSpec.from_dict(spec_dict))
        if q is None:  # the accuracy task ran it; a node without that backend says so
            return {"error": f"skipped on node {here['host']}: {r.error}", "where": here}
        latency_into(r, p, q, choice)
        r.notes = []
        finish_notes(r, q, choice)
        return {"row": r.to_dict(), "where": here}
    except Exception as exc:
        return _failed(exc, here)
