"""How the error moves with the calibration method, the bits and the scheme, on one captured tensor.

Each method's range (:mod:`qcore.learn.ranges`) becomes one scale and zero point
(:class:`qcore.learn.affine.Affine`), and the tensor's error under it is split into rounding and
clipping. On tensors of more than :data:`ERROR_VALUES` values the errors are computed on a seeded
uniform sample of that many (the ranges always see every value), so that a slider move stays fast;
:func:`error_values` says which.

Reading a row: min-max never clips (clipping error 0) but spreads the levels over the outliers, so its
rounding error is the largest; percentile, entropy and MSE cut the tail and trade clipping error for
finer steps. Example, the 101 values 0, 0.01, ..., 0.99 and 10, at 4 bits asymmetric: min-max
([0, 10], step 0.667) gives a rounding MSE of 0.0361 and an SQNR of 15.6 dB; clipping at 1 (step
0.0667) cuts the rounding MSE to 0.00037 but the one clipped value costs 0.802, so the SQNR falls to
2.1 dB, while the 100 ordinary values go from 9.5 to 29.5 dB. Which is better depends on whether the
outlier matters: that is the choice between the methods.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from qcore.learn.affine import Affine, CodeUsage, ErrorSplit, affine_error, code_usage
from qcore.learn.capture import Captured
from qcore.learn.ranges import BITS

__all__ = ["ERROR_VALUES", "error_values", "MethodError", "by_method", "sqnr_by_bits", "SchemeView", "schemes"]

ERROR_VALUES = 2**18  # errors on at most this many values (a seeded uniform sample beyond)


def error_values(captured: Captured, limit: int = ERROR_VALUES, seed: int = 0) -> torch.Tensor:
    """Every value, or a seeded uniform sample of ``limit`` of them."""
    x = captured.values()
    if x.numel() <= limit:
        return x
    idx = torch.randperm(x.numel(), generator=torch.Generator().manual_seed(seed))[:limit]
    return x[idx]


@dataclass(frozen=True)
class MethodError:
    method: str
    affine: Affine
    split: ErrorSplit


Ranges = dict[str, tuple[float, float]]  # {method: (lo, hi)}, as ranges.all_ranges gives them


def by_method(ranges: Ranges, bits: int, symmetric: bool, values: torch.Tensor) -> list[MethodError]:
    """Each method's range at ``bits`` as a scale and zero point, and its error split on ``values``."""
    out = []
    for method, (lo, hi) in ranges.items():
        a = Affine.fit(lo, hi, bits, symmetric)
        out.append(MethodError(method, a, affine_error(values, a)))
    return out


def sqnr_by_bits(ranges_at: Callable[[int], Ranges], symmetric: bool, values: torch.Tensor
                 ) -> dict[str, list[ErrorSplit]]:
    """``{method: [ErrorSplit at 2 bits, ..., at 8 bits]}``; ``ranges_at(bits)`` gives the ranges at each
    width (entropy's and MSE's move with it)."""
    out: dict[str, list[ErrorSplit]] = {}
    for bits in BITS:
        for m in by_method(ranges_at(bits), bits, symmetric, values):
            out.setdefault(m.method, []).append(m.split)
    return out


@dataclass(frozen=True)
class SchemeView:
    """One scheme on the tensor: its mapping, its error and how it uses the codes."""

    affine: Affine
    split: ErrorSplit
    codes: CodeUsage


def schemes(sym: tuple[float, float], asym: tuple[float, float], bits: int, values: torch.Tensor,
            x_all: torch.Tensor) -> dict[str, SchemeView]:
    """``{"symmetric": ..., "asymmetric": ...}``: one method's symmetric and asymmetric ranges at ``bits``, side
    by side (errors on ``values``, codes counted on every value ``x_all``)."""
    out = {}
    for name, symmetric, (lo, hi) in (("symmetric", True, sym), ("asymmetric", False, asym)):
        a = Affine.fit(lo, hi, bits, symmetric)
        out[name] = SchemeView(a, affine_error(values, a), code_usage(x_all, a))
    return out
