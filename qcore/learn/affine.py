"""One scale and zero point on a real tensor: the staircase, the formula with its numbers, and the error.

Everything is computed with :mod:`qcore.quant.primitives` (``choose_qparams``, ``quantize``,
``fake_quantize``), the functions every backend uses. The mapping is::

    q = clamp(round(x / s) + z, qmin, qmax)        x_hat = (q - z) * s

Worked example (4 bits, asymmetric, range [-1, 3]): ``s = 4 / 15 = 0.2667``, ``z = 0 - round(-1 / s) =
4``. ``x = 1.0`` gives ``q = round(3.75) + 4 = 8`` and ``x_hat = (8 - 4) * 0.2667 = 1.0667``: a rounding
error of 0.067, less than half a step (0.133). ``x = 5.0`` gives ``round(18.75) + 4 = 23``, clamped to 15,
so ``x_hat = 11 * 0.2667 = 2.933``: a clipping error of 2.07.

**The error split.** Every value's error ``x - x_hat`` is either a *rounding* error (its integer was
inside ``[qmin, qmax]``: at most half a step, about ``s^2 / 12`` in mean square when values spread
evenly over a step) or a *clipping* error (its integer was clamped: as large as the value is far
outside). Both are given as mean squares over all values, so they add up to the total; the SQNR is
``10 log10(mean(x^2) / mean((x - x_hat)^2))`` dB, about 6 dB more per bit while rounding dominates.

**Wasted codes.** Codes below the code of the tensor's minimum or above that of its maximum are
never used by any value. A symmetric 8-bit range over a tensor with no negative values (after a
ReLU) wastes the 128 codes -128..-1 of 256: one bit. An asymmetric range puts ``z`` at 0 and wastes none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from qcore.learn.fmt import num
from qcore.learn.ranges import integer_range
from qcore.quant.primitives import choose_qparams, dequantize, fake_quantize, quantize

__all__ = ["WIDE", "Affine", "ErrorSplit", "sqnr_db", "error_parts", "split_of", "error_split", "affine_error",
           "CodeUsage", "code_usage", "staircase"]

WIDE = 2**24  # bounds far outside any integer range: quantize() with these does not clamp in practice


@dataclass(frozen=True)
class Affine:
    """One scale and zero point for a whole tensor."""

    lo: float  # the clipping range asked for
    hi: float
    bits: int
    symmetric: bool
    scale: float
    zero_point: int
    qmin: int
    qmax: int

    @classmethod
    def fit(cls, lo: float, hi: float, bits: int, symmetric: bool) -> Affine:
        """Scale and zero point that map ``[lo, hi]`` (widened to include 0) onto ``bits`` bits."""
        qmin, qmax = integer_range(bits, symmetric)
        scale, zp = choose_qparams(lo, hi, qmin, qmax, symmetric)
        return cls(float(lo), float(hi), bits, symmetric, float(scale), int(zp), qmin, qmax)

    @property
    def levels(self) -> int:
        return self.qmax - self.qmin + 1

    @property
    def grid_range(self) -> tuple[float, float]:
        """The values of the lowest and highest codes: what the staircase can reach."""
        return (self.qmin - self.zero_point) * self.scale, (self.qmax - self.zero_point) * self.scale

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        return quantize(x, self.scale, self.zero_point, self.qmin, self.qmax)

    def fake(self, x: torch.Tensor) -> torch.Tensor:
        """``dequantize(quantize(x))``: the staircase."""
        return fake_quantize(x, self.scale, self.zero_point, self.qmin, self.qmax)

    def formula(self, digits: int = 4) -> str:
        """``q = clamp(round(x / 0.2667) + 4, 0, 15)`` with this tensor's numbers."""
        z = self.zero_point
        shift = f" + {z}" if z > 0 else (f" - {-z}" if z < 0 else "")
        return f"q = clamp(round(x / {num(self.scale, digits)}){shift}, {self.qmin}, {self.qmax})"

    def inverse_formula(self, digits: int = 4) -> str:
        """``x_hat = (q - 4) * 0.2667``."""
        z = self.zero_point
        q = f"(q - {z})" if z > 0 else (f"(q + {-z})" if z < 0 else "q")
        return f"x̂ = {q} × {num(self.scale, digits)}"

    def worked(self, x: float, digits: int = 4) -> str:
        """One value through the formula: ``x = 1.0 → round(3.75) + 4 = 8 → (8 - 4) × 0.2667 = 1.067``."""
        raw = x / self.scale
        unclamped = int(quantize(torch.tensor([x]), self.scale, self.zero_point, -WIDE, WIDE)[0])
        q = int(self.quantize(torch.tensor([x]))[0])
        xhat = float(self.fake(torch.tensor([x]))[0])
        z = self.zero_point
        zs = f" + {z}" if z > 0 else (f" - {-z}" if z < 0 else "")
        clamp = f", clamped to {q}" if q != unclamped else ""
        back = f"({q} - {z})" if z > 0 else (f"({q} + {-z})" if z < 0 else f"{q}")
        return (f"x = {num(x, digits)} → round({num(raw, digits)}){zs} = {unclamped}{clamp} → "
                f"{back} × {num(self.scale, digits)} = {num(xhat, digits)}")


@dataclass(frozen=True)
class ErrorSplit:
    """Where the error of ``x -> x_hat`` comes from, as mean squares over all ``n`` values."""

    n: int
    clipped: int  # values whose integer was clamped
    rounding_mse: float
    clipping_mse: float
    signal_power: float  # mean(x^2)

    @property
    def total_mse(self) -> float:
        return self.rounding_mse + self.clipping_mse

    @property
    def clipped_fraction(self) -> float:
        return self.clipped / self.n if self.n else 0.0

    @property
    def clipping_share(self) -> float:
        """The part of the total squared error that clipping causes (0..1)."""
        return self.clipping_mse / self.total_mse if self.total_mse > 0 else 0.0

    @property
    def sqnr_db(self) -> float:
        """Signal-to-quantization-noise ratio in dB (inf when nothing was lost)."""
        return sqnr_db(self.signal_power, self.total_mse)


def sqnr_db(signal_power: float, noise_power: float) -> float:
    if noise_power <= 0:
        return math.inf
    if signal_power <= 0:
        return -math.inf
    return 10.0 * math.log10(signal_power / noise_power)


def error_parts(x: torch.Tensor, scale, zero_point, qmin: int, qmax: int, axis: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each value's squared error and whether its integer was clamped (clipped).

    The integer before the clamp says which is which; the clamp and the way back are the formula's
    (``fake_quantize`` computes the same ``x_hat``, tested)."""
    x = x.float()
    unclamped = quantize(x, scale, zero_point, -WIDE, WIDE, axis)
    clipped = (unclamped < qmin) | (unclamped > qmax)
    err2 = (x - dequantize(unclamped.clamp(qmin, qmax), scale, zero_point, axis)) ** 2
    return err2, clipped


def split_of(x: torch.Tensor, err2: torch.Tensor, clipped: torch.Tensor) -> ErrorSplit:
    """The :class:`ErrorSplit` of values ``x`` with squared errors ``err2`` and clip flags ``clipped``."""
    x = x.float()
    n = x.numel()
    total = float(err2.sum(dtype=torch.float64))
    clip_sum = float(err2[clipped].sum(dtype=torch.float64))
    return ErrorSplit(n=n, clipped=int(clipped.sum()), rounding_mse=(total - clip_sum) / n,
                      clipping_mse=clip_sum / n, signal_power=float((x * x).sum(dtype=torch.float64)) / n)


def error_split(x: torch.Tensor, scale, zero_point, qmin: int, qmax: int, axis: int | None = None) -> ErrorSplit:
    """Split the error of fake-quantizing ``x`` into rounding and clipping (per-tensor or along ``axis``)."""
    return split_of(x, *error_parts(x, scale, zero_point, qmin, qmax, axis))


def affine_error(x: torch.Tensor, a: Affine) -> ErrorSplit:
    return error_split(x, a.scale, a.zero_point, a.qmin, a.qmax)


@dataclass(frozen=True)
class CodeUsage:
    """How many of the ``levels`` codes the tensor can reach, and how many it uses."""

    levels: int
    wasted_below: int  # codes under the code of min(x)
    wasted_above: int  # codes over the code of max(x)
    used: int  # distinct codes the tensor's values land on

    @property
    def wasted(self) -> int:
        return self.wasted_below + self.wasted_above


def code_usage(x: torch.Tensor, a: Affine) -> CodeUsage:
    ends = a.quantize(torch.stack([x.min(), x.max()]).float())
    used = int(torch.unique(a.quantize(x)).numel())
    return CodeUsage(a.levels, int(ends[0]) - a.qmin, a.qmax - int(ends[1]), used)


def staircase(a: Affine, x_from: float, x_to: float, points: int = 2001) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, x_hat)`` on an even grid over ``[x_from, x_to]``."""
    x = torch.linspace(x_from, x_to, points)
    return x, a.fake(x)
