"""The mixed-precision walk: keep layers in FP32 one at a time, each step a fully measured point.

Step 0 is the spec on every layer; step ``k`` keeps the first ``k`` layers of an order in FP32
(``QuantSpec.keep_float``) and is measured exactly like a sweep row (:func:`qcore.sweep.measure_spec`: top-1 on
the whole evaluation set, latency on the real kernels interleaved with FP32, artifact size), so the walk is a
connected line of real points on the Pareto chart. The order is a ranking from the per-layer sensitivity
(:func:`rank`: most sensitive first by one of :data:`qcore.layers.sensitivity.METRICS`) or, as the control,
a seeded random order (:func:`random_order`): the gap between the two is what the ranking buys.

A walk stops after ``steps`` steps, after ``minutes`` (checked between steps), when only one layer would be
left quantized, or when cancelled; finished points are stored rows, so a resumed walk measures only the rest.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable

from ..result import Result
from ..spec import QuantSpec, SpecError
from ..sweep import ProgressFn, SweepConfig, _base_result, measure_baseline, measure_spec, prepare
from .names import check_keep_float
from .row import METRICS, LayerRow

__all__ = ["ORDERS", "rank", "random_order", "walk_specs", "check_budget", "run_walk"]

ORDERS = ("sensitivity", "random")


def rank(rows: list[LayerRow], metric: str) -> list[str]:
    """Layer names, most sensitive first by ``metric``; layers without a value for it come last, in model order.

    >>> rows = [LayerRow("a", 0, "", 1, 40.0, 1e-4), LayerRow("b", 1, "", 1, 20.0, 1e-2)]
    >>> rank(rows, "weight_sqnr_db")
    ['b', 'a']
    """
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not allowed; allowed: {', '.join(METRICS)}")
    larger_worse = METRICS[metric][1]
    valued = [r for r in rows if getattr(r, metric) is not None]
    rest = [r.layer for r in rows if getattr(r, metric) is None]
    valued.sort(key=lambda r: (-getattr(r, metric) if larger_worse else getattr(r, metric), r.position))
    return [r.layer for r in valued] + rest


def random_order(names: list[str], seed: int) -> list[str]:
    """``names`` shuffled by ``random.Random(seed)``: the same seed always gives the same order."""
    out = list(names)
    random.Random(seed).shuffle(out)
    return out


def check_budget(steps: int | None, minutes: float | None) -> None:
    """A walk needs at least one step and a positive time budget (None: no limit of that kind)."""
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps={steps!r} is not allowed; allowed: an integer of at least 1 (one layer kept in FP32)")
    if minutes is not None and not minutes > 0:
        raise ValueError(f"minutes={minutes!r} is not allowed; allowed: a number above 0")


def walk_specs(spec: QuantSpec, order: list[str], steps: int | None) -> list[QuantSpec]:
    """Step 0 (``spec`` on every layer) and steps 1..``steps``, never keeping every layer in FP32."""
    if spec.keep_float:
        raise SpecError(f"a walk starts from the spec on every layer; drop keep_float ({', '.join(spec.keep_float)})")
    last = len(order) - 1 if steps is None else min(steps, len(order) - 1)
    return [spec.replace(keep_float=tuple(order[:k])) for k in range(last + 1)]


def run_walk(
    config: SweepConfig,
    specs: list[QuantSpec],
    *,
    minutes: float | None = None,
    done_keys: set[str] | None = None,
    include_baseline: bool = True,
    baseline_run_id: str = "",
    sweep_id: str = "",
    on_result: Callable[[Result], None] | None = None,
    progress: ProgressFn | None = None,
    cancel: Callable[[], bool] | None = None,
) -> list[Result]:
    """Measure the FP32 baseline (when asked) and each walk point not in ``done_keys`` (see the module)."""
    from ..store import spec_key

    progress = progress or (lambda d, t, m: None)
    cancel = cancel or (lambda: False)
    done_keys = done_keys or set()
    start = time.monotonic()
    progress(0, len(specs) + 1, f"loading {config.model} and {config.dataset}")
    p = prepare(config, progress, cancel)
    names_ok = check_keep_float(specs[-1], p.loaded.model)  # every step's names are in the last one's
    del names_ok
    baseline = measure_baseline(p)
    p.baseline_run_id = baseline.run_id if include_baseline else baseline_run_id
    out: list[Result] = []

    def emit(r: Result) -> None:
        r.sweep_id = sweep_id
        out.append(r)
        if on_result:
            on_result(r)

    if include_baseline:
        emit(baseline)
    for k, spec in enumerate(specs):
        if spec_key(spec.to_dict()) in done_keys:
            continue
        if cancel():
            break
        if minutes is not None and time.monotonic() - start > 60 * minutes:
            progress(k, len(specs), f"stopped: the budget of {minutes:g} min is spent; resume to go on")
            break
        progress(k, len(specs), f"step {k}: {k} layer(s) in FP32")
        t0 = time.perf_counter()
        try:
            r = measure_spec(p, spec)
        except Exception as exc:  # one failing point must not lose the walk's other points
            r = _base_result(p, spec)
            r.status, r.error = "error", f"{type(exc).__name__}: {exc}"
        gc.collect()
        r.notes.append(f"walk step {k}: kept in FP32, in order: {', '.join(spec.keep_float) or 'none'}; "
                       f"measured in {time.perf_counter() - t0:.1f} s")
        emit(r)
        progress(k + 1, len(specs), f"step {k} measured")
    return out
