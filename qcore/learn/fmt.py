"""How the Learn page writes numbers: significant digits without exponents for everyday sizes, dB, percent."""

from __future__ import annotations

import math

__all__ = ["num", "db", "pct"]


def num(v: float, digits: int = 4) -> str:
    """``v`` with ``digits`` significant digits, without an exponent for everyday sizes: 0.2667, 18.75."""
    v = float(v)
    if v == 0 or not math.isfinite(v):
        return f"{v:g}"
    if 1e-4 <= abs(v) < 1e6:
        decimals = max(0, digits - 1 - math.floor(math.log10(abs(v))))
        return f"{v:.{decimals}f}"
    return f"{v:.{digits - 1}e}"


def db(v: float) -> str:
    return "∞ dB (no error)" if math.isinf(v) and v > 0 else f"{v:.1f} dB"


def pct(part: float, digits: int = 2) -> str:
    return f"{100 * part:.{digits}f}%"
