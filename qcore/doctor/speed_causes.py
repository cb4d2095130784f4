"""Why a point is slow, from what was measured: the speed causes of :data:`qcore.doctor.fix.CAUSES`, each with its
evidence's numbers and fixes whose ``score`` is the speed-up factor they are expected to bring.

- ``slow-backend``: another backend measured at least :data:`SLOW_BACKEND` times faster here for the same point
  (:func:`qcore.doctor.speed.measured_here`); score: this point's p50 over that backend's.
- ``float-ops``: layers with no int8 kernel run in FP32 (at least :data:`FLOAT_SHARE` of the profiled time), or a
  dynamic spec on a network with convolutions (dynamic INT8 quantizes Linear layers only). Score: Amdahl's law,
  ``1 / ((1 - s) + s / g)`` for the share ``s`` in FP32 ops and the gain ``g`` of int8 over FP32, the middle of
  the published range for this CPU (:mod:`qcore.doctor.expected`; 2x where none is known).
- ``overhead``: quantize/dequantize, layout conversions and framework overhead take :data:`OVERHEAD_SHARE` of the
  time or more; the fixes are a compiled path (pt2e fuses the quantize/dequantize pairs into the kernels: the
  measured factor, else the share removed) and channels-last (the layout share removed).
- ``batch``: framework overhead (a fixed cost per call) takes :data:`BATCH_SHARE` or more at a batch below
  :data:`BATCH_TO`; score: per-image time now over per-image time at that batch with the same fixed cost.
- ``no-fast-math``: FP16 or BF16 on a CPU without native arithmetic for it (avx512_fp16/amx_fp16,
  avx512_bf16/amx_bf16): each op converts to FP32 and back. Fixes: INT8 (the low end of the published range),
  FP32 (this point's slowdown undone).
"""

from __future__ import annotations

from qcore.doctor.events import FP32, LAYOUT, OVERHEAD, QDQ
from qcore.doctor.expected import expected_speedup
from qcore.doctor.fix import Cause, Fix
from qcore.quant.spec import QuantSpec

__all__ = ["SLOW_BACKEND", "FLOAT_SHARE", "OVERHEAD_SHARE", "BATCH_SHARE", "BATCH_TO", "amdahl", "speed_causes"]

SLOW_BACKEND = 1.10
FLOAT_SHARE = 0.15
OVERHEAD_SHARE = 0.30
BATCH_SHARE = 0.25
BATCH_TO = 32
_CONV_WORDS = ("conv",)


def amdahl(share: float, gain: float) -> float:
    """The whole's speed-up when ``share`` of the time gets ``gain`` times faster."""
    share = min(max(share, 0.0), 1.0)
    return 1.0 / ((1.0 - share) + share / gain) if gain > 0 else 1.0


def _runnable(spec: QuantSpec, device: str) -> str | None:
    """Why no backend runs ``spec`` on ``device`` (None: one does)."""
    from qcore.backends import BackendUnavailable, resolve

    try:
        resolve(spec, device)
    except BackendUnavailable as exc:
        return str(exc)
    return None


def _slow_backend(row, measured: dict[str, float]) -> Cause | None:
    mine = row.latency_ms_p50
    others = {b: ms for b, ms in measured.items() if b != row.backend and ms > 0}
    if not mine or not others:
        return None
    fixes, refused = [], []
    for b, ms in sorted(others.items(), key=lambda kv: kv[1]):
        factor = mine / ms
        if factor < SLOW_BACKEND:
            continue
        spec = row.spec.replace(backend=b)
        problem = _runnable(spec, row.device)
        if problem:
            refused.append(f"{b} cannot run this spec ({problem})")
            continue
        fixes.append(Fix(f"run it on {b}", f"{b} measured {ms:.2f} ms here for this point, {row.backend} "
                         f"{mine:.2f} ms: {factor:.2f}x faster", "speed", factor, spec=spec, cause="slow-backend"))
    if not fixes:
        return None
    best = min(others, key=others.get)
    timed = ", ".join(f"{b} {ms:.2f} ms" for b, ms in sorted(measured.items(), key=lambda kv: kv[1]))
    evidence = (f"{row.backend} {mine:.2f} ms per call; measured here for {row.model} batch {row.batch_size} "
                f"({row.spec.kind}): {timed}" + "".join(f"; {r}" for r in refused))
    return Cause("slow-backend", "", evidence, {"this_ms": mine, "best_ms": others[best],
                                                "factor": mine / others[best]}, fixes)


def _static_fix(row, static: QuantSpec, measured_static: dict[str, float] | None, fallback: float, what: str,
                why: str, cause: str) -> Fix | None:
    """Static INT8 in place of ``row``'s spec: on the backend measured fastest for it here (its measured factor),
    else on ``auto`` with the ``fallback`` score; None when no backend runs it."""
    timed = {b: ms for b, ms in (measured_static or {}).items() if ms and ms > 0
             and _runnable(static.replace(backend=b), row.device) is None}
    if timed and row.latency_ms_p50:
        b = min(timed, key=timed.get)
        factor = row.latency_ms_p50 / timed[b]
        return Fix(f"{what} on {b}", f"{why}; static INT8 measured here on {b}: {timed[b]:.2f} ms against "
                   f"{row.latency_ms_p50:.2f} ms ({factor:.2f}x)", "speed", factor, spec=static.replace(backend=b),
                   cause=cause)
    auto = static.replace(backend="auto")
    if _runnable(auto, row.device) is not None:
        return None
    return Fix(what, why, "speed", fallback, spec=auto, cause=cause)


def _gain(hw, device: str) -> tuple[float, str]:
    e = expected_speedup(hw, device) if hw is not None else None
    if e is None:
        return 2.0, "2x assumed (no published range for this machine)"
    return (e.low + e.high) / 2, f"{(e.low + e.high) / 2:.1f}x, the middle of {e.isa}'s published {e.low:.1f}-" \
                                 f"{e.high:.1f}x"


def _float_ops(row, prof, hw, measured_static: dict[str, float] | None = None) -> Cause | None:
    if row.spec.is_float:  # a float cast runs no int8 kernel by design
        return None
    dynamic_cnn = row.spec.mode == "dynamic" and (
        (row.total_layers or 0) > (row.quantized_layers or 0) or
        any(w in name.lower() for name, _ in (prof.float_ops if prof else []) for w in _CONV_WORDS))
    share = prof.share(FP32) if prof and prof.ms_per_call else 0.0
    if share < FLOAT_SHARE and not dynamic_cnn:
        return None
    gain, gain_why = _gain(hw, row.device)
    named = (prof.float_ops if prof else [])[:6]
    listed = ", ".join(f"{n} {ms:.2f} ms" for n, ms in named)
    numbers = {"fp32_share": share, "fp32_ms": prof.ms_per_call.get(FP32, 0.0) if prof else 0.0}
    parts = []
    if share:
        parts.append(f"{share:.0%} of the time per call is in ops still in FP32" + (f": {listed}" if listed else ""))
    fixes = []
    if dynamic_cnn:
        q, total = row.quantized_layers, row.total_layers
        parts.insert(0, "dynamic INT8 quantizes Linear layers only: the convolutions stay in FP32"
                     + (f" ({q} of {total} conv/linear layers are int8)" if total else ""))
        numbers.update({"quantized_layers": float(q or 0), "total_layers": float(total or 0)})
        static = row.spec.replace(mode="static")
        # the share in FP32 ops, or (not profiled) the share of layers left in FP32, a proxy for their time
        s = share or ((total - (q or 0)) / total if total else 0.5)
        fix = _static_fix(row, static, measured_static, amdahl(s, gain),
                          "static INT8 (int8 kernels for the convolutions too)", "; ".join(parts), "float-ops")
        if fix is not None:
            fixes.append(fix)
    kept = [n for n in row.spec.keep_float if any(name.startswith(n + " (") for name, _ in named)]
    if kept:
        kept_ms = sum(ms for name, ms in named if any(name.startswith(n + " (") for n in kept))
        rest = tuple(n for n in row.spec.keep_float if n not in kept)
        s = kept_ms / prof.total_ms if prof and prof.total_ms else 0.0
        fixes.append(Fix(f"quantize {', '.join(kept)} too (kept in FP32 by the spec: weigh the accuracy)",
                         f"{kept_ms:.2f} ms per call in layers the spec keeps in FP32", "speed", amdahl(s, gain),
                         spec=row.spec.replace(keep_float=rest), cause="float-ops"))
    others = [(name, ms) for name, ms in named if not any(name.startswith(n + " (") for n in kept)]
    if others and share >= FLOAT_SHARE and not dynamic_cnn:
        s = sum(ms for _, ms in others) / prof.total_ms if prof.total_ms else 0.0
        fixes.append(Fix(f"this layer type has no int8 kernel on {row.backend}: {', '.join(n for n, _ in others[:4])}",
                         "; ".join(parts) + f"; another backend may have one (gain {gain_why})", "speed",
                         amdahl(s, gain), cause="float-ops"))
    return Cause("float-ops", "", "; ".join(parts), numbers, fixes)


def _overhead(row, prof, measured) -> list[Cause]:
    if not prof or not prof.ms_per_call:
        return []
    out = []
    fixed = prof.share(QDQ, LAYOUT, OVERHEAD)
    ms = {k: prof.ms_per_call.get(k, 0.0) for k in (QDQ, LAYOUT, OVERHEAD)}
    numbers = {"share": fixed, **{f"{k}_ms": v for k, v in ms.items()}}
    evidence = (f"{fixed:.0%} of {prof.total_ms:.2f} ms per call: quantize/dequantize {ms[QDQ]:.2f} ms, layout "
                f"{ms[LAYOUT]:.2f} ms, overhead {ms[OVERHEAD]:.2f} ms")
    if fixed >= OVERHEAD_SHARE:
        fixes = []
        compiled = row.spec.replace(backend="pt2e")
        if row.backend != "pt2e" and _runnable(compiled, row.device) is None:
            factor = (row.latency_ms_p50 / measured["pt2e"] if measured.get("pt2e") and row.latency_ms_p50
                      else amdahl(prof.share(QDQ, OVERHEAD), 1e9))
            how = "measured" if measured.get("pt2e") else "if fusion removed the quantize/dequantize and overhead"
            fixes.append(Fix("a compiled path (pt2e: AOTInductor fuses quantize/dequantize into the int8 kernels)",
                             f"{evidence}; {factor:.2f}x {how}", "speed", factor, spec=compiled, cause="overhead"))
        if prof.share(LAYOUT) >= 0.05:
            fixes.append(Fix("channels-last input and weights (no layout conversion per layer)",
                             f"layout conversions take {prof.share(LAYOUT):.0%} of the time", "speed",
                             amdahl(prof.share(LAYOUT), 1e9), cause="overhead"))
        out.append(Cause("overhead", "", evidence, numbers, fixes))
    share = prof.share(OVERHEAD)
    if share >= BATCH_SHARE and row.batch_size < BATCH_TO:
        f_ms, v_ms = ms[OVERHEAD], prof.total_ms - ms[OVERHEAD]
        b = max(row.batch_size, 1)
        factor = (f_ms / b + v_ms / b) / (f_ms / BATCH_TO + v_ms / b)
        out.append(Cause("batch", "", f"framework overhead, a fixed cost per call, is {share:.0%} of the time at "
                         f"batch {row.batch_size} ({f_ms:.2f} of {prof.total_ms:.2f} ms)",
                         {"overhead_share": share, "overhead_ms": f_ms, "batch_size": float(row.batch_size)},
                         [Fix(f"batch size {BATCH_TO}", f"the {f_ms:.2f} ms per call shared by {BATCH_TO} images: "
                              f"{factor:.2f}x per image (throughput, not one call's latency)", "speed", factor,
                              config={"batch_size": BATCH_TO}, cause="batch")]))
    return out


def _no_fast_math(row, hw, measured_static: dict[str, float] | None = None) -> Cause | None:
    p = row.spec.precision
    if row.device != "cpu" or p not in ("fp16", "bf16") or hw is None:
        return None
    native = hw.has_native_fp16 if p == "fp16" else hw.has_native_bf16
    slower = row.speedup is not None and 0 < row.speedup < 1
    if native and not slower:
        return None
    flags = "avx512_fp16/amx_fp16" if p == "fp16" else "avx512_bf16/amx_bf16"
    evidence = (f"{p.upper()} on a CPU without {flags}: each op converts to FP32 and back" if not native else
                f"{p.upper()} measured slower than FP32 although this CPU has {flags}: torch's CPU kernels for "
                "these ops do not use them")
    numbers = {"speedup": row.speedup} if row.speedup is not None else {}
    if row.speedup is not None:
        evidence += f" ({row.speedup:.2f}x FP32's speed)"
    fixes = []
    e = expected_speedup(hw, "cpu")
    int8 = QuantSpec("int8", device=row.spec.device)
    fix = _static_fix(row, int8, measured_static, e.low if e else 1.0,
                      "INT8 static instead (this CPU has int8 instructions)" if e else "INT8 static instead",
                      f"{evidence}; INT8 published at {e.low:.1f}-{e.high:.1f}x on {e.isa}" if e else evidence,
                      "no-fast-math")
    if fix is not None:
        fixes.append(fix)
    if row.speedup is not None and 0 < row.speedup < 1:
        fixes.append(Fix("FP32 (the cast is slower here)", evidence, "speed", 1 / row.speedup,
                         spec=QuantSpec("fp32", backend="float", device=row.spec.device), cause="no-fast-math"))
    return Cause("no-fast-math", "", evidence, numbers, fixes)


def speed_causes(row, prof, hw, measured: dict[str, float], measured_static: dict[str, float] | None = None
                 ) -> list[Cause]:
    """The speed causes of ``row`` (a Result) from its profile ``prof`` (a SpeedProfile, or None), this machine's
    ``hw`` (:class:`qcore.env.hardware.Hardware`), ``measured`` (backend -> best p50 ms here for the row's kind of
    spec) and ``measured_static`` (the same for static INT8 at this point: what a dynamic or float row would
    move to), the cause whose best fix is expected to bring the most first; each cause's fixes highest first."""
    if row.status != "ok" or row.spec.is_reference:
        return []
    causes = [c for c in (_slow_backend(row, measured or {}), _float_ops(row, prof, hw, measured_static),
                          _no_fast_math(row, hw, measured_static)) if c is not None]
    causes += _overhead(row, prof, measured or {})
    for c in causes:
        c.fixes.sort(key=lambda f: -f.score)
    return sorted(causes, key=lambda c: -max((f.score for f in c.fixes), default=0.0))
