"""The clipping range ``[lo, hi]`` each calibration method picks on a captured tensor.

Activations go through the sweeps' calibrators (:func:`qcore.quant.observers.get_calibrator`), fed one
calibration batch at a time as a static observer is, then solved for the integer range at hand:
entropy and MSE depend on the number of levels, so their range moves with the bits. Weights go
through :func:`qcore.quant.observers.weight_range`, the function the weight-only backend calls: weights are
known exactly, so only min-max, percentile and MSE apply to them (``qcore.quant.spec.WEIGHT_CALIBRATIONS``).

The integer range follows the weight-only backend: symmetric uses signed integers with the zero point
at 0 (int4: -8..7), asymmetric unsigned ones (uint4: 0..15). The int8 kernels' symmetric activations
are uint8 with the zero point at 128: the same 256 levels at the same values, shifted by 128.
"""

from __future__ import annotations

from qcore.learn.capture import Captured
from qcore.quant.observers import Calibrator, get_calibrator, weight_range
from qcore.quant.primitives import qrange
from qcore.quant.spec import CHOICES, WEIGHT_CALIBRATIONS

__all__ = ["BITS", "methods_for", "integer_range", "fit_calibrators", "method_range", "all_ranges"]

BITS = tuple(range(2, 9))  # what the page teaches: 2..8 bits, fake-quantized


def methods_for(kind: str) -> tuple[str, ...]:
    """Calibration methods that apply to ``kind`` ("weights" or "activations")."""
    if kind == "weights":
        return WEIGHT_CALIBRATIONS
    if kind == "activations":
        return CHOICES["calibration"]
    raise ValueError(f"kind={kind!r} is not allowed; allowed: weights, activations")


def integer_range(bits: int, symmetric: bool) -> tuple[int, int]:
    """``(qmin, qmax)``: signed for symmetric (``(4, True)`` -> ``(-8, 7)``), unsigned otherwise (``(0, 15)``)."""
    if bits not in BITS:
        raise ValueError(f"bits={bits!r} is not allowed; allowed: {BITS[0]}..{BITS[-1]}")
    return qrange(bits, signed=symmetric)


def fit_calibrators(captured: Captured, percentile: float, methods: tuple[str, ...] | None = None
                    ) -> dict[str, Calibrator]:
    """Activation calibrators (default: every one), fed the captured batches in order: the expensive
    part, done once; solving for a range afterwards is cheap and leaves them unchanged."""
    if captured.kind != "activations":
        raise ValueError("calibrators are fed activation batches; weights use weight_range")
    out = {}
    for name in methods or methods_for("activations"):
        cal = get_calibrator(name, percentile)
        for batch in captured.batches:
            cal.update(batch)
        out[name] = cal
    return out


def method_range(captured: Captured, method: str, bits: int, symmetric: bool, percentile: float,
                 calibrators: dict[str, Calibrator] | None = None) -> tuple[float, float]:
    """The per-tensor ``(lo, hi)`` that ``method`` picks on ``captured`` for ``bits`` and the scheme."""
    if method not in methods_for(captured.kind):
        raise ValueError(f"calibration={method!r} does not apply to {captured.kind}; allowed: "
                         f"{', '.join(methods_for(captured.kind))}")
    qmin, qmax = integer_range(bits, symmetric)
    if captured.kind == "weights":
        lo, hi = weight_range(captured.values()[None, :], method, qmin, qmax, symmetric, percentile)
        return float(lo[0]), float(hi[0])
    cal = (calibrators or {}).get(method)
    if cal is None or (method == "percentile" and cal.p != percentile):
        cal = fit_calibrators(captured, percentile, (method,))[method]
    lo, hi = cal.solve(qmin, qmax, symmetric)
    return float(lo), float(hi)


def all_ranges(captured: Captured, bits: int, symmetric: bool, percentile: float,
               calibrators: dict[str, Calibrator] | None = None) -> dict[str, tuple[float, float]]:
    """``{method: (lo, hi)}`` for every method that applies to the tensor."""
    if captured.kind == "activations" and calibrators is None:
        calibrators = fit_calibrators(captured, percentile)
    return {m: method_range(captured, m, bits, symmetric, percentile, calibrators)
            for m in methods_for(captured.kind)}
