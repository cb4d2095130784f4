"""One stored point diagnosed: why it lost accuracy or speed, and the fixes in the order to try them.

:func:`diagnose` reads the row and its FP32 reference from the run database, rebuilds what its sweep measured on
(:func:`config_of`, :func:`qcore.runs.sweep.prepare`: the same model, weights, calibration and evaluation images),
and measures:

1. accuracy (a quantized spec): the split of the loss between weights and activations (:mod:`.split`), the layers
   and activation quantizers that cost it (:mod:`.where`: from a Layers measurement of this spec, the cached one,
   or one made now on the most suspect layers), and at those places the cause with its evidence (:mod:`.causes`);
2. speed: where the time goes (:mod:`.speed`, refused for a row timed on another machine), what this CPU's
   instruction set should give (:mod:`.expected`), the backends measured faster here.

The suggestions are one list: the kind of loss the point shows first (``focus``: accuracy when it lost at least
:data:`LOST_POINTS` points and its interval excludes no loss, else speed), each kind by its fixes' scores.
``Diagnosis.to_dict`` is what the doctor job stores and the app and ``python -m qcore doctor`` show.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from qcore.doctor.fix import Cause, Fix
from qcore.metrics.result import Result, baseline_of
from qcore.runs.store import Store
from qcore.runs.sweep_config import SweepConfig

__all__ = ["LOST_POINTS", "LAYER_MODES", "DoctorError", "Diagnosis", "find_row", "config_of",
           "focus_of", "diagnose"]

LOST_POINTS = 0.2  # a point that lost at least this many points of top-1 (its interval below 0) is an accuracy case
LAYER_MODES = ("measure", "cached", "skip")  # measure when none is cached / only a cached one / none

ProgressFn = Callable[[int, int, str], None]


class DoctorError(ValueError):
    """A point the doctor cannot diagnose, with why and what it can do instead."""


@dataclass
class Diagnosis:
    run_id: str
    label: str
    model: str
    dataset: str
    backend: str
    focus: str  # "accuracy" | "speed" | "" (neither lost)
    fp32_top1: float | None
    top1: float | None
    lost_points: float | None  # FP32 top-1 minus this point's
    lost_interval: tuple[float, float] | None  # the drop's 95% interval (points)
    speedup: float | None
    expected: dict | None = None  # qcore.doctor.expected.Expected as a dict
    standing: str = ""
    split: dict | None = None
    layers_job: str = ""
    layers_source: str = ""  # "cached" | "measured now (N layers)" | why none
    culprits: list[dict] = field(default_factory=list)
    causes: list[Cause] = field(default_factory=list)
    suggestions: list[Fix] = field(default_factory=list)
    profile: dict | None = None
    refused: list[str] = field(default_factory=list)  # parts not measured, each with its reason
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["causes"] = [c.to_dict() for c in self.causes]
        d["suggestions"] = [f.to_dict() for f in self.suggestions]
        d["lost_interval"] = list(self.lost_interval) if self.lost_interval else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Diagnosis:
        d = dict(d)
        d["causes"] = [Cause.from_dict(c) for c in d.get("causes") or []]
        d["suggestions"] = [Fix.from_dict(f) for f in d.get("suggestions") or []]
        d["lost_interval"] = tuple(d["lost_interval"]) if d.get("lost_interval") else None
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def find_row(store: Store, run_id: str) -> tuple[Result, Result]:
    """The row ``run_id`` and its FP32 reference; DoctorError for a row the doctor cannot diagnose."""
    if not isinstance(run_id, str) or not run_id.strip():
        raise DoctorError("no run id given; allowed: a run id from 'python -m qcore runs' or the Runs page")
    found = store.results(run_id=run_id.strip())
    if not found:
        raise DoctorError(f"there is no run {run_id!r} in {store.path}; 'python -m qcore runs' lists the runs")
    row = found[0]
    if row.status != "ok":
        raise DoctorError(f"run {row.run_id} ({row.label}) is {row.status}: nothing was measured to diagnose"
                          + (f"; its error: {row.error}" if row.error else ""))
    if row.spec.is_reference:
        raise DoctorError(f"run {row.run_id} is FP32, every point's reference: the doctor diagnoses the others")
    peers = store.results(sweep_id=row.sweep_id) if row.sweep_id else []
    base = baseline_of(peers, row) if peers else None
    if base is None and row.baseline_run_id:
        ref = store.results(run_id=row.baseline_run_id)
        base = ref[0] if ref and ref[0].ok else None
    if base is None:
        raise DoctorError(f"run {row.run_id} ({row.label}) has no FP32 row to compare with (its sweep's reference "
                          "is missing or failed): measure the sweep again with FP32, then ask again")
    return row, base


def config_of(store: Store, row: Result) -> SweepConfig:
    """The settings ``row`` was measured with: its sweep job's, else read from the row itself."""
    job = store.job(row.sweep_id) if row.sweep_id else None
    if job is not None and job.kind == "sweep" and not job.config.get("retime_of"):
        return SweepConfig.from_dict(job.config)
    side = int(row.input_shape.split("x")[-1]) if row.input_shape else None
    return SweepConfig(model=row.model, dataset=row.dataset, weights=row.weights or "auto", batch_size=row.batch_size,
                       input_size=side, eval_limit=row.eval_images or 2000,
                       calib_size=int(row.manifest.get("calib_size") or 256))


def focus_of(row: Result, base: Result) -> str:
    """"accuracy" when the point lost at least LOST_POINTS and its drop's interval excludes no loss; else "speed"
    when it is not faster than FP32 (or has no speed-up); else ""."""
    lost = (base.top1 or 0.0) - (row.top1 or 0.0)
    significant = row.top1_delta_hi is None or row.top1_delta_hi < 0
    if lost >= LOST_POINTS and significant:
        return "accuracy"
    if row.speedup is None or row.speedup < 1.0:
        return "speed"
    return ""


def _order(focus: str, accuracy: list[Fix], speed: list[Fix]) -> list[Fix]:
    first, second = (speed, accuracy) if focus == "speed" else (accuracy, speed)
    seen, out = set(), []
    for f in sorted(first, key=lambda f: -f.score) + sorted(second, key=lambda f: -f.score):
        key = (f.spec.to_dict().__repr__() if f.spec is not None else f.what, tuple(sorted(f.config.items())))
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def diagnose(store: Store, run_id: str, *, layers: str = "measure", profile: bool = True,
             progress: ProgressFn | None = None, cancel: Callable[[], bool] | None = None) -> Diagnosis:
    """Diagnose stored run ``run_id`` (see the module); ``layers`` one of :data:`LAYER_MODES`."""
    from qcore.doctor import expected, speed
    from qcore.env import hardware

    if layers not in LAYER_MODES:
        raise DoctorError(f"layers={layers!r} is not allowed; allowed: {', '.join(LAYER_MODES)}")
    say = progress or (lambda d, t, m: None)
    cancel = cancel or (lambda: False)
    row, base = find_row(store, run_id)
    lost = (base.top1 or 0.0) - (row.top1 or 0.0)
    d = Diagnosis(run_id=row.run_id, label=row.label, model=row.model, dataset=row.dataset, backend=row.backend,
                  focus=focus_of(row, base), fp32_top1=base.top1, top1=row.top1, lost_points=lost,
                  lost_interval=(-row.top1_delta_hi, -row.top1_delta_lo) if row.top1_delta_lo is not None else None,
                  speedup=row.speedup)
    hw = hardware.detect()
    e = expected.expected_speedup(hw, row.device)
    d.expected = e.__dict__ if e is not None else None
    d.standing = expected.standing(row.speedup, e) if not row.spec.is_float else ""
    elsewhere = speed.same_machine(row)
    t0 = time.perf_counter()
    say(0, 5, f"loading {row.model} and {row.dataset} as the sweep measured them")
    from qcore.runs.sweep import prepare

    p = prepare(config_of(store, row), say, cancel)
    d.seconds["prepare"] = time.perf_counter() - t0
    acc_fixes: list[Fix] = []
    if not row.spec.is_float:
        acc_fixes = _accuracy(d, store, p, row, layers, say, cancel)
    if cancel():
        return d
    speed_prof = None
    if elsewhere:
        d.refused.append(f"profile: {elsewhere}; the doctor profiles only rows timed on this machine")
    elif profile:
        t = time.perf_counter()
        say(4, 5, "profiling where the time goes, the quantized model and FP32")
        try:
            speed_prof = speed.profile(p, row.spec.replace(backend=row.backend) if row.backend else row.spec)
            d.profile = speed_prof.to_dict()
        except Exception as exc:  # a backend that cannot be profiled here: the rest of the diagnosis stands
            d.refused.append(f"profile: {type(exc).__name__}: {exc}")
        d.seconds["profile"] = time.perf_counter() - t
    measured, measured_static = ({}, {}) if elsewhere else _measured(store, p, row, say, cancel, d)
    speed_causes = speed.speed_causes(row, speed_prof, hw, measured, measured_static)
    d.causes += speed_causes
    d.suggestions = _order(d.focus, acc_fixes, [f for c in speed_causes for f in c.fixes])
    d.seconds["total"] = time.perf_counter() - t0
    say(5, 5, "diagnosed")
    return d


def _measured(store: Store, p, row: Result, say, cancel, d: Diagnosis) -> tuple[dict, dict]:
    """What the other INT8 backends take here for this point (backend -> p50 ms): for the row's kind, and for static
    INT8 when the row is dynamic or a float cast (what it would move to). Where nothing is recorded, ``auto``'s probe
    measures them first (:mod:`qcore.runs.auto_probe`, a process of its own; off with ``QCORE_AUTO_PROBE=off``)."""
    import dataclasses

    from qcore.doctor import speed
    from qcore.quant.spec import QuantSpec
    from qcore.runs.auto_probe import PROBED_KINDS, probe_auto

    static = QuantSpec("int8", mode="static") if row.spec.kind in ("dynamic", "float") else None
    asked = [s for s in (row.spec.replace(backend="auto") if row.spec.kind in PROBED_KINDS else None, static) if s]
    t = time.perf_counter()
    if asked:
        probe_auto(p, asked, lambda m: say(4, 5, f"timing the INT8 backends here: {m}"), cancel)
    d.seconds["probe"] = time.perf_counter() - t
    static_row = dataclasses.replace(row, spec=static) if static is not None else None
    return speed.measured_here(store, row), speed.measured_here(store, static_row) if static_row else {}


def _accuracy(d: Diagnosis, store: Store, p, row: Result, layers: str, say, cancel) -> list[Fix]:
    """The accuracy half of :func:`diagnose`: split, where, why; returns the accuracy fixes, ranked."""
    from qcore.doctor import causes, split, where
    from qcore.doctor.layers_pass import layer_rows

    spec = row.spec
    t = time.perf_counter()
    say(1, 5, "splitting the loss: only the weights quantized, then only the activations")
    s = split.split(p, spec, cancel=cancel)
    d.split = s.to_dict()
    d.seconds["split"] = time.perf_counter() - t
    t = time.perf_counter()
    say(2, 5, "finding the layers that cost the accuracy")
    rows, d.layers_job, d.layers_source = layer_rows(store, p.config, spec, layers, say, cancel)
    found = where.culprits(rows, p.loaded.model) if rows else []
    d.culprits = [c.to_dict() for c in found]
    d.seconds["layers"] = time.perf_counter() - t
    t = time.perf_counter()
    say(3, 5, "measuring the causes at those layers")
    share = s.share_weights(d.fp32_top1 or 0.0)
    d.causes = causes.find_causes(p, spec, found, row=row, weights_share=share) if found else []
    general = causes.general_fixes(spec, d.lost_points or 0.0, share)
    d.seconds["causes"] = time.perf_counter() - t
    return causes.rank_fixes(d.causes, general)
