"""The mixed-precision walk: keep layers in higher precision one at a time, each step a fully measured point.

Step 0 is the spec on every layer; step ``k`` keeps the first ``k`` layers of an order in FP32
(``QuantSpec.keep_float``), or under INT4 weight-only in INT8 if asked (``promote_to="int8"``,
``QuantSpec.keep_int8``), and is measured exactly like a sweep row (:func:`qcore.runs.sweep.measure_spec`: top-1 on
the whole evaluation set, latency on the real kernels interleaved with FP32, artifact size), so the walk is a
connected line of real points on the Pareto chart. A static INT8 walk on fx or pt2e may promote activation
quantizers too (``act:`` rows of the table: their producers kept in FP32). The order is a ranking from the
per-layer sensitivity (:func:`rank`: most sensitive first by one of :data:`qcore.layers.sensitivity.METRICS`)
or, as the control, a seeded random order (:func:`random_order`): the gap between the two is what the ranking buys.

A walk stops after ``steps`` steps, after ``minutes`` (checked between steps), when only one layer would be
left quantized, or when cancelled; finished points are stored rows, so a resumed walk measures only the rest.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable

from qcore.backends.layer_names import check_keep_float
from qcore.layers.row import METRICS, LayerRow
from qcore.metrics.result import Result
from qcore.quant.spec import QuantSpec, SpecError
from qcore.runs.sweep import ProgressFn, SweepConfig, _base_result, measure_baseline, measure_spec, prepare

__all__ = ["ORDERS", "PROMOTE_TO", "rank", "candidates", "random_order", "walk_specs", "check_promote", "check_budget",
           "run_walk"]

ORDERS = ("sensitivity", "random")
# The precision a walk keeps each promoted layer in -> the QuantSpec field that names it. INT8 only under INT4
# weight-only (QuantSpec.keep_int8): its 8-bit layers cost a quarter of FP32's bytes, not all of them.
PROMOTE_TO = {"fp32": "keep_float", "int8": "keep_int8"}


def rank(rows: list[LayerRow], metric: str) -> list[str]:
    """Row names (layers and activation quantizers), most sensitive first by ``metric``; rows without a value for
    it come last, in model order; rows no spec can keep in FP32 (``cannot_keep``: the model input's quantizer)
    are left out.

    >>> rows = [LayerRow("a", 0, "", 1, 40.0, 1e-4), LayerRow("b", 1, "", 1, 20.0, 1e-2)]
    >>> rank(rows, "weight_sqnr_db")
    ['b', 'a']
    """
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not allowed; allowed: {', '.join(METRICS)}")
    larger_worse = METRICS[metric][1]
    rows = [r for r in rows if not r.cannot_keep]
    valued = [r for r in rows if getattr(r, metric) is not None]
    rest = [r.layer for r in rows if getattr(r, metric) is None]
    valued.sort(key=lambda r: (-getattr(r, metric) if larger_worse else getattr(r, metric), r.position))
    return [r.layer for r in valued] + rest


def candidates(rows: list[LayerRow]) -> list[str]:
    """The names a walk may promote, in model order (layers, then activation quantizers): every row a spec can
    keep in FP32. The random control walks draw from these, as the ranking does."""
    return [r.layer for r in sorted(rows, key=lambda r: r.position) if not r.cannot_keep]


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


def check_promote(spec: QuantSpec, promote_to: str) -> None:
    """``promote_to`` must be one of :data:`PROMOTE_TO`, and ``"int8"`` needs an INT4 weight-only spec."""
    if promote_to not in PROMOTE_TO:
        raise ValueError(f"promote_to={promote_to!r} is not allowed; allowed: {', '.join(PROMOTE_TO)}")
    if promote_to == "int8" and (spec.precision != "int4" or spec.mode != "weight-only"):
        raise ValueError(f"promote_to='int8' is not allowed with {spec.label()}: only INT4 weight-only has a higher "
                         "integer precision to keep a layer in; allowed: fp32 (or an INT4 weight-only spec)")


def walk_specs(spec: QuantSpec, order: list[str], steps: int | None, promote_to: str = "fp32") -> list[QuantSpec]:
    """Step 0 (``spec`` on every layer) and steps 1..``steps``, never promoting every layer; step ``k`` keeps the
    first ``k`` layers of ``order`` in ``promote_to`` (:data:`PROMOTE_TO`: FP32, or INT8 under INT4)."""
    if spec.keep_float or spec.keep_int8:
        kept = ", ".join(spec.keep_float + spec.keep_int8)
        raise SpecError(f"a walk starts from the spec on every layer; drop keep_float and keep_int8 ({kept})")
    check_promote(spec, promote_to)
    last = len(order) - 1 if steps is None else min(steps, len(order) - 1)
    return [spec.replace(**{PROMOTE_TO[promote_to]: tuple(order[:k])}) for k in range(last + 1)]


def run_walk(
    config: SweepConfig,
    specs: list[QuantSpec],
    *,
    minutes: float | None = None,
    done_keys: set[str] | None = None,
    include_baseline: bool = True,
    baseline_run_id: str = "",
    sweep_id: str = "",
    promote_to: str = "",
    on_result: Callable[[Result], None] | None = None,
    progress: ProgressFn | None = None,
    cancel: Callable[[], bool] | None = None,
) -> list[Result]:
    """Measure the FP32 baseline (when asked) and each walk point not in ``done_keys`` (see the module).

    ``promote_to`` (:data:`PROMOTE_TO`; "" reads it from the specs) is written into each point's notes, step 0
    included, so a row says which walk it belongs to."""
    from qcore.runs.store import spec_key

    progress = progress or (lambda d, t, m: None)
    cancel = cancel or (lambda: False)
    done_keys = done_keys or set()
    start = time.monotonic()
    progress(0, len(specs) + 1, f"loading {config.model} and {config.dataset}")
    where = (promote_to or ("int8" if any(s.keep_int8 for s in specs) else "fp32")).upper()
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
        progress(k, len(specs), f"step {k}: {k} layer(s) in {where}")
        t0 = time.perf_counter()
        try:
            r = measure_spec(p, spec)
        except Exception as exc:  # one failing point must not lose the walk's other points
            r = _base_result(p, spec)
            r.status, r.error = "error", f"{type(exc).__name__}: {exc}"
        gc.collect()
        kept = ", ".join(spec.keep_int8 or spec.keep_float) or "none"
        r.notes.append(f"walk step {k}: kept in {where}, in order: {kept}; "
                       f"measured in {time.perf_counter() - t0:.1f} s")
        emit(r)
        progress(k + 1, len(specs), f"step {k} measured")
    return out
