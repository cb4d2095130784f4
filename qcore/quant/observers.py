"""Calibration methods: how the clipping range of a tensor is chosen.

Each method is a small class that accumulates statistics in ``update(x)`` and solves for a
range ``(lo, hi)`` in ``solve(...)``; the mapping from range to scale and zero point is
:func:`qcore.quant.primitives.choose_qparams`, written once. :mod:`qcore.backends._observer` wraps any
method as a torch.ao (or torchao PT2E) observer, so the real int8 kernels run with whichever
method the user picked.

Methods (registered by name; ``list_calibrations()``):

- ``minmax``: the observed minimum and maximum.
- ``moving-average``: min and max smoothed over batches, ``m <- m + 0.01 * (batch_min - m)``.
- ``percentile``: the p-th percentile of |x| (symmetric) or the (100-p)-th and p-th (asymmetric),
  nearest-rank: the 99th percentile of 1..100 is 99. Kept exact up to 262,144 values, then
  on a uniform reservoir sample.
- ``entropy``: TensorRT's KL-divergence search, as NVIDIA's pytorch-quantization implements it
  (``_compute_amax_entropy``; :mod:`qcore.quant.kl_search`). A histogram of |x| with 2048 bins; bin 0 is given
  bin 1's count (a spike of exact zeros, half of a post-ReLU tensor, would otherwise dominate and drag the
  search to its smallest cut); then for every cut from ``levels`` bins up to all 2048, one bin at a time,
  the tail is folded into the last kept bin (distribution P), P is merged into ``levels`` runs and spread
  back over its non-empty bins (Q), and the cut with the smallest KL(P || Q) is the threshold. ``levels`` is
  how many of the grid's levels fall on [0, max|x|] (``abs_levels``): 128 for a symmetric 8-bit grid, 256
  for an unsigned tensor, in between for an asymmetric grid over signed data. A spike of one repeated value
  away from 0 (an image's constant background) is neutralised like bin 0 and never clipped
  (``neutralise_spikes``, qcore's rule). Example: 100,000 values drawn from N(0, 1) plus one at 50 give a
  threshold of 4.2 (min-max would spread the 128 levels over [0, 50], a step of 0.39 instead of 0.033, to
  keep one value); ReLU(N(0, 1)) keeps 4.4 at 8 bits and 4.2 at 4 bits, clipping under 0.01% of the values.
- ``mse``: the clipping range (a fraction of the observed one) minimising the expected squared
  error between x and its fake-quantized value, computed on a 4096-bin histogram. It weighs
  every value by its squared error, so one far outlier can be worth keeping: for the same
  data as above it clips at 33.5, not 4.2.
"""

from __future__ import annotations

import math

import torch

from qcore.quant.kl_search import abs_levels, kl_threshold_bin, neutralise_spikes
from qcore.quant.primitives import choose_qparams, fake_quantize

__all__ = ["HIST_BINS", "RESERVOIR", "check_finite", "Calibrator", "MinMax", "MovingAverageMinMax", "nearest_rank",
           "Percentile", "Entropy", "MSE", "CALIBRATIONS", "kl_threshold_bin", "list_calibrations", "get_calibrator",
           "weight_range"]

HIST_BINS = 4096  # signed bins over [-R, R]; |x| sees the 2048 positive ones
RESERVOIR = 262_144


def check_finite(x: torch.Tensor, what: str) -> None:
    """Refuse NaN and infinite values, naming how many: a range over them would be NaN or infinite, or
    silently exclude them."""
    finite = torch.isfinite(x)
    if bool(finite.all()):
        return
    nan = int(torch.isnan(x).sum())
    inf = int(x.numel() - int(finite.sum()) - nan)
    parts = [f"{nan} NaN" if nan else "", f"{inf} infinite" if inf else ""]
    raise ValueError(f"{what} holds {' and '.join(p for p in parts if p)} value(s) out of {x.numel()}: no "
                     "clipping range can be chosen; allowed: finite values only (check the model's weights "
                     "and the images)")


class Calibrator:
    """Accumulate statistics of one tensor stream, then solve for a clipping range."""

    name = ""

    def __init__(self) -> None:
        self.min_val = math.inf
        self.max_val = -math.inf

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().float()
        check_finite(x, "the calibration tensor")
        self.min_val = min(self.min_val, float(x.min()))
        self.max_val = max(self.max_val, float(x.max()))

    @property
    def seen(self) -> bool:
        return self.min_val <= self.max_val

    def solve(self, qmin: int, qmax: int, symmetric: bool) -> tuple[float, float]:
        return self.min_val, self.max_val

    def qparams(self, qmin: int, qmax: int, symmetric: bool) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = self.solve(qmin, qmax, symmetric) if self.seen else (0.0, 0.0)
        return choose_qparams(lo, hi, qmin, qmax, symmetric)


class MinMax(Calibrator):
    name = "minmax"


class MovingAverageMinMax(Calibrator):
    name = "moving-average"

    def __init__(self, averaging_constant: float = 0.01) -> None:
        super().__init__()
        self.c = averaging_constant
        self.avg_min: float | None = None
        self.avg_max: float | None = None

    def update(self, x: torch.Tensor) -> None:
        super().update(x)
        bmin, bmax = float(x.min()), float(x.max())
        if self.avg_min is None:
            self.avg_min, self.avg_max = bmin, bmax
        else:
            self.avg_min += self.c * (bmin - self.avg_min)
            self.avg_max += self.c * (bmax - self.avg_max)

    def solve(self, qmin, qmax, symmetric):
        return self.avg_min, self.avg_max


def nearest_rank(values: torch.Tensor, p: float) -> float:
    """The p-th percentile by nearest rank: the ceil(p/100 * n)-th smallest value."""
    n = values.numel()
    k = min(n, max(1, math.ceil(p / 100.0 * n)))
    return float(values.reshape(-1).kthvalue(k).values)


class Percentile(Calibrator):
    name = "percentile"

    def __init__(self, percentile: float = 99.99, capacity: int = RESERVOIR, seed: int = 0) -> None:
        super().__init__()
        self.p = percentile
        self.capacity = capacity
        self.sample = torch.empty(0)
        self.count = 0
        self.gen = torch.Generator().manual_seed(seed)

    def _take(self, x: torch.Tensor, k: int) -> torch.Tensor:
        if k >= x.numel():
            return x
        return x[torch.randperm(x.numel(), generator=self.gen)[:k]]

    def update(self, x: torch.Tensor) -> None:
        super().update(x)
        x = x.detach().float().reshape(-1)
        total = self.count + x.numel()
        if total <= self.capacity:
            self.sample = torch.cat([self.sample, x])
        else:  # keep a uniform sample: each side in proportion to what it stands for
            keep_old = round(self.capacity * self.count / total)
            self.sample = torch.cat([self._take(self.sample, keep_old), self._take(x, self.capacity - keep_old)])
        self.count = total

    def solve(self, qmin, qmax, symmetric):
        if symmetric:
            t = nearest_rank(self.sample.abs(), self.p)
            return -t, t
        return nearest_rank(self.sample, 100.0 - self.p), nearest_rank(self.sample, self.p)


class _Histogram(Calibrator):
    """A histogram of x over [-R, R] whose range doubles (merging bin pairs, exactly) as needed."""

    def __init__(self, bins: int = HIST_BINS) -> None:
        super().__init__()
        self.bins = bins
        self.hist = torch.zeros(bins, dtype=torch.float64)
        self.R = 0.0

    def update(self, x: torch.Tensor) -> None:
        super().update(x)
        x = x.detach().float()
        amax = max(abs(self.min_val), abs(self.max_val))
        if amax == 0.0:
            return
        if self.R == 0.0:
            self.R = amax
        elif amax > self.R:
            self._grow(2 ** math.ceil(math.log2(amax / self.R)))
        self.hist += torch.histc(x, bins=self.bins, min=-self.R, max=self.R).double()

    def _grow(self, factor: int) -> None:
        half = self.bins // 2
        new = torch.zeros_like(self.hist)
        if factor >= half:
            new[half - 1] = self.hist[:half].sum()
            new[half] = self.hist[half:].sum()
        else:
            merged = self.hist.reshape(-1, factor).sum(1)
            start = half - merged.numel() // 2
            new[start : start + merged.numel()] = merged
        self.hist = new
        self.R *= factor

    def centers(self) -> torch.Tensor:
        width = 2 * self.R / self.bins
        return -self.R + width * (torch.arange(self.bins, dtype=torch.float64) + 0.5)

    def abs_hist(self) -> torch.Tensor:
        half = self.bins // 2
        return self.hist[half:] + self.hist[:half].flip(0)


def _range_from_threshold(t: float, lo: float, hi: float, symmetric: bool) -> tuple[float, float]:
    if symmetric:
        return -t, t
    return max(lo, -t), min(hi, t)


class Entropy(_Histogram):
    name = "entropy"

    def solve(self, qmin, qmax, symmetric):
        if self.R == 0.0:  # every value was exactly 0
            return self.min_val, self.max_val
        hist, start = neutralise_spikes(self.abs_hist())
        levels = abs_levels(qmin, qmax, symmetric, self.min_val, self.max_val)
        keep = kl_threshold_bin(hist, levels, start)
        t = keep * (self.R / hist.numel())
        return _range_from_threshold(t, self.min_val, self.max_val, symmetric)


class MSE(_Histogram):
    name = "mse"
    FRACTIONS = torch.linspace(0.05, 1.0, 96, dtype=torch.float64)

    def solve(self, qmin, qmax, symmetric):
        lo = torch.as_tensor(self.min_val, dtype=torch.float64) * self.FRACTIONS
        hi = torch.as_tensor(self.max_val, dtype=torch.float64) * self.FRACTIONS
        if symmetric:
            hi = torch.maximum(-lo, hi)
            lo = -hi
        scale, zp = choose_qparams(lo.float(), hi.float(), qmin, qmax, symmetric)
        c = self.centers()
        fq = fake_quantize(c[None, :].float(), scale, zp, qmin, qmax, axis=0).double()
        err = (self.hist[None, :] * (c[None, :] - fq) ** 2).sum(1)
        best = int(torch.argmin(err))
        return float(lo[best]), float(hi[best])


CALIBRATIONS: dict[str, type[Calibrator]] = {c.name: c for c in (MinMax, MovingAverageMinMax, Percentile, Entropy, MSE)}


def list_calibrations() -> list[str]:
    return list(CALIBRATIONS)


def get_calibrator(name: str, percentile: float = 99.99) -> Calibrator:
    if name not in CALIBRATIONS:
        raise ValueError(f"calibration={name!r} is not known; allowed: {', '.join(CALIBRATIONS)}")
    if name == "percentile":
        return Percentile(percentile)
    return CALIBRATIONS[name]()


# --- weights: vectorised over rows (channels or groups) ------------------------------------------


def weight_range(
    rows: torch.Tensor, method: str, qmin: int, qmax: int, symmetric: bool, percentile: float = 99.99
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row clipping range of a weight matrix ``(n_rows, row_len)`` (a channel or a group each).

    Weights are known exactly, so only min-max, percentile and MSE apply.
    """
    rows = rows.float()
    check_finite(rows, "the weight")
    lo, hi = rows.amin(1), rows.amax(1)
    if method == "minmax":
        return lo, hi
    if method == "percentile":
        n = rows.shape[1]
        k_hi = min(n, max(1, math.ceil(percentile / 100.0 * n)))
        if symmetric:
            t = rows.abs().kthvalue(k_hi, dim=1).values
            return -t, t
        k_lo = min(n, max(1, math.ceil((100.0 - percentile) / 100.0 * n)))
        return rows.kthvalue(k_lo, dim=1).values, rows.kthvalue(k_hi, dim=1).values
    if method == "mse":
        return _weight_mse_range(rows, lo, hi, qmin, qmax, symmetric)
    raise ValueError(f"calibration={method!r} does not apply to weights; allowed: minmax, percentile, mse")


WEIGHT_MSE_COARSE = torch.linspace(0.3, 1.0, 36)  # fractions of each row's range, 0.02 apart
WEIGHT_MSE_FINE = torch.linspace(-0.02, 0.02, 21)  # then around each row's best, 0.002 apart


def _weight_mse_range(rows, lo, hi, qmin, qmax, symmetric):
    """Each row's clipping range (a fraction of its min-max range) with the smallest squared error after
    fake quantization: every fraction of :data:`WEIGHT_MSE_COARSE`, then :data:`WEIGHT_MSE_FINE` around each
    row's best. The error of an 8-bit grid on a few hundred weights moves by 10-20% between fractions 0.02
    apart (which values round up or down changes), so the second pass matters there; tested against a
    1,000-step brute-force search."""

    def search(fracs):  # fracs: (F, n_rows) -> each row's best fraction among them
        best_err = torch.full_like(lo, math.inf)
        best = torch.ones_like(lo)
        for f in fracs:
            f = f.clamp(0.01, 1.0)
            scale, zp = choose_qparams(lo * f, hi * f, qmin, qmax, symmetric)
            err = ((fake_quantize(rows, scale, zp, qmin, qmax, axis=0) - rows) ** 2).sum(1)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best = torch.where(better, f, best)
        return best

    coarse = search(WEIGHT_MSE_COARSE[:, None].expand(-1, lo.numel()))
    best = search(coarse[None, :] + WEIGHT_MSE_FINE[:, None])
    return lo * best, hi * best
