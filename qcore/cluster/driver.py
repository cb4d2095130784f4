"""Run a sweep's specs on a Ray cluster from this process (the driver, the only writer of the database).

The order of work, and why:

1. The driver loads the model and the data and evaluates FP32 once (:func:`qcore.runs.sweep.prepare`, as the
   local worker does), then puts that :class:`~qcore.runs.sweep.Prepared` in the object store once.
2. Every spec's accuracy task (calibrate, quantize, evaluate; one CPU) is submitted; Ray packs them on
   all nodes. A failed or skipped spec becomes its row at once.
3. When all accuracy work is done (so no accuracy task shares a CPU with a timing), the FP32 baseline and
   each spec's latency task are submitted; each claims one ``qcore_bench`` slot, so a node times one thing at
   a time. A spec's row (accuracy, plus the latency and where it was timed) is committed the moment its latency
   arrives (``ray.wait``), once the baseline's (whose best-FP32 ratio the speed-ups use) has.

A task lost with its node (``NodeDiedError``, a killed worker, an object lost with its node) is submitted
again up to ``max_retries`` times by the driver, which counts it in the row's ``retries``; after that the
spec gets an error row. A spec that fails on a node gets an error row naming the node. A cancel request,
checked every half second, cancels what is in flight and leaves ``cancelled`` rows.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator

from qcore.cluster.session import cluster_info, connect, ray, require_bench
from qcore.cluster.status import write_snapshot
from qcore.cluster.tasks import LATENCY_FIELDS, accuracy_task, latency_task
from qcore.metrics.pareto import mark_pareto
from qcore.metrics.result import Result
from qcore.quant.spec import QuantSpec
from qcore.runs.store import spec_key
from qcore.runs.sweep import ProgressFn, SweepConfig, _base_result, prepare

__all__ = ["MAX_RETRIES", "run_cluster_sweep"]

MAX_RETRIES = 2  # resubmissions of a task whose node or worker process was lost
BASE = -1  # the index of the FP32 baseline among the tasks


def run_cluster_sweep(
    address: str,
    config: SweepConfig,
    specs: list[QuantSpec],
    *,
    progress: ProgressFn | None = None,
    cancel: Callable[[], bool] | None = None,
    on_result: Callable[[Result], None] | None = None,
    on_state: Callable[[dict], None] | None = None,
    sweep_id: str = "",
    include_baseline: bool = True,
    baseline_run_id: str = "",
    max_retries: int = MAX_RETRIES,
) -> list[Result]:
    """:func:`qcore.runs.sweep.run_sweep` on the cluster at ``address``: the same rows, plus where each ran.

    ``on_state({"cluster": ..., "specs": [{"label", "state", "host", "node_id", "retries"}, ...]})`` is
    called whenever a spec changes state (the app's worker stores it on the job for the Sweep page)."""
    progress = progress or (lambda d, t, m: None)
    cancel = cancel or (lambda: False)
    todo = [s for s in specs if not s.is_reference]
    total = len(todo) + (1 if include_baseline else 0)

    connect(address)
    info = cluster_info(address)
    write_snapshot(info)
    require_bench(info)

    states = [{"label": s.label(), "state": "waiting for the data", "host": "", "node_id": "", "retries": 0}
              for s in todo]
    base_state = {"label": "fp32 (baseline)", "state": "waiting for the data", "host": "", "node_id": "", "retries": 0}

    def state(i: int, text: str, here: dict | None = None, retries: int | None = None) -> None:
        s = base_state if i == BASE else states[i]
        s["state"] = text
        if here:
            s["host"], s["node_id"] = here.get("host", ""), here.get("node_id", "")
        if retries is not None:
            s["retries"] = retries
        if on_state:
            on_state({"cluster": info, "specs": ([base_state] if include_baseline else []) + states})

    results: list[Result] = []
    done = 0

    def emit(r: Result) -> None:
        nonlocal done
        r.sweep_id = sweep_id
        results.append(r)
        if on_result:
            on_result(r)
        done += 1
        progress(done, total, r.label)

    progress(0, total, f"loading {config.model} and {config.dataset} on the driver ({socket.gethostname()})")
    p = prepare(config, progress, cancel)
    p.baseline_run_id = baseline_run_id or uuid.uuid4().hex[:12]  # known before it is measured: every row names it
    p_ref = ray.put(p)  # once: each node fetches it the first time one of its tasks needs it
    driver = {"host": socket.gethostname(), "node_id": ray.get_runtime_context().get_node_id()}

    pending: dict = {}  # ObjectRef -> (kind, index, attempt)

    def submit(kind: str, i: int, attempt: int = 0) -> None:
        spec = None if i == BASE else todo[i].to_dict()
        ref = accuracy_task.remote(p_ref, spec) if kind == "accuracy" else latency_task.remote(p_ref, spec)
        pending[ref] = (kind, i, attempt)
        state(i, "queued for accuracy (any node)" if kind == "accuracy" else "queued for a bench slot")

    def drain() -> Iterator[tuple[str, int, dict]]:
        """Each finished task's output as it arrives; a lost task is submitted again or becomes an error."""
        while pending:
            if cancel():
                raise _Cancelled
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in ready:
                kind, i, attempt = pending.pop(ref)
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the task never returned: its node or process was lost
                    why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
                    if attempt < max_retries:
                        submit(kind, i, attempt + 1)
                        state(i, f"{kind} task lost ({why}); submitted again", retries=attempt + 1)
                        continue
                    out = {"error": f"{kind} task lost {attempt + 1} time(s), last: {why}", "where": {}}
                out["attempt"] = attempt
                yield kind, i, out

    def error_row(i: int, out: dict, retries: int) -> Result:
        r = _base_result(p, todo[i])
        r.status, r.error, r.retries = "error", out["error"], retries
        here = out.get("where") or {}  # empty for a task lost with its node: Ray's message names the node
        r.node_id, r.host, r.cpu_model = here.get("node_id", ""), here.get("host", ""), here.get("cpu_model", "")
        return r

    acc_rows: dict[int, tuple[Result, dict]] = {}
    try:
        for i in range(len(todo)):
            submit("accuracy", i)
        for _, i, out in drain():
            if "error" in out:
                emit(error_row(i, out, out["attempt"]))
                state(i, "error", out.get("where"), out["attempt"])
                continue
            r = Result.from_dict(out["row"])
            r.retries = out["attempt"]
            if r.status != "ok":  # skipped: no backend runs it there
                r.node_id = out["where"]["node_id"]
                emit(r)
                state(i, r.status, out["where"], r.retries)
                continue
            acc_rows[i] = (r, out["where"])
            state(i, f"evaluated on {out['where']['host']}; waiting to be timed", out["where"], r.retries)

        submit("latency", BASE)
        for i in acc_rows:
            submit("latency", i)
        base: dict | None = None
        waiting: list[tuple[int, dict]] = []  # latencies that came before the baseline's
        for _, i, out in drain():
            if i == BASE:
                if "error" in out:
                    raise RuntimeError(f"the FP32 baseline could not be measured: {out['error']}")
                base = out
                row = Result.from_dict(out["row"])
                row.run_id = row.baseline_run_id = p.baseline_run_id
                _place(row, out["where"], driver["host"], out["attempt"])
                state(BASE, f"timed on {out['where']['host']}", out["where"], out["attempt"])
                if include_baseline:
                    emit(row)
                ready, waiting = waiting, []
            else:
                ready = [(i, out)]
                if base is None:
                    waiting.append((i, out))
                    state(i, "timed; waiting for the FP32 baseline", out.get("where"))
                    continue
            for j, lat in ready:
                row, acc_where = acc_rows[j]
                retries = row.retries + lat["attempt"]
                if "error" in lat:
                    emit(error_row(j, lat, retries))
                    state(j, "error", lat.get("where"), retries)
                    continue
                _merge(row, Result.from_dict(lat["row"]), base, lat["where"], retries)
                emit(row)
                state(j, f"done: timed on {lat['where']['host']}", lat["where"], retries)
    except _Cancelled:
        for ref in pending:
            ray.cancel(ref, force=True)
        finished = {spec_key(r.spec.to_dict()) for r in results}
        for i, spec in enumerate(todo):
            if spec_key(spec.to_dict()) not in finished:
                r = _base_result(p, spec)
                r.status, r.error = "cancelled", "the sweep was cancelled before this spec finished"
                results.append(r)
                r.sweep_id = sweep_id
                if on_result:
                    on_result(r)
                state(i, "cancelled")
    mark_pareto(results)
    return results


class _Cancelled(Exception):
    pass


def _place(row: Result, here: dict, accuracy_host: str, retries: int) -> None:
    row.node_id, row.host, row.cpu_model = here["node_id"], here["host"], here["cpu_model"]
    row.accuracy_host, row.retries = accuracy_host, retries


def _merge(row: Result, lat: Result, base: dict, here: dict, retries: int) -> None:
    """The spec's accuracy row takes the latency measured on ``here`` and the baseline's best-FP32 ratio."""
    for name in LATENCY_FIELDS:
        setattr(row, name, getattr(lat, name))
    row.best_fp32 = base["best_fp32"]
    row.speedup_vs_best_fp32 = row.speedup / base["ratio"]
    _place(row, here, row.accuracy_host, retries)
    row.notes += lat.notes
    row.notes.append(f"evaluated on {row.accuracy_host}; timed on {here['host']} (Ray node {here['node_id'][:12]}) "
                     f"with {lat.threads} torch thread(s), the node's CPUs")
    if base["where"]["node_id"] != here["node_id"]:
        row.notes.append(f"speed-up vs best FP32 uses the best-FP32 ratio measured on {base['where']['host']} "
                         f"(Ray node {base['where']['node_id'][:12]}); the speed-up vs FP32 eager is this node's own")
    row.created_at = time.time()
