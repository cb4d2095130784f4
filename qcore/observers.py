"""Calibration methods: how the clipping range of a tensor is chosen.

Each method is a small class that accumulates statistics in ``update(x)`` and solves for a
range ``(lo, hi)`` in ``solve(...)``; the mapping from range to scale and zero point is
:func:`qcore.primitives.choose_qparams`, written once. :mod:`qcore.backends._observer` wraps any
method as a torch.ao (or torchao PT2E) observer, so the real int8 kernels run with whichever
method the user picked.

Methods (registered by name; ``list_calibrations()``):

- ``minmax``: the observed minimum and maximum.
- ``moving-average``: min and max smoothed over batches, ``m <- m + 0.01 * (batch_min - m)``.
- ``percentile``: the p-th percentile of |x| (symmetric) or the (100-p)-th and p-th (asymmetric),
  nearest-rank: the 99th percentile of 1..100 is 99. Kept exact up to 262,144 values, then
  on a uniform reservoir sample.
- ``entropy``: TensorRT's KL-divergence search. A histogram of |x| with 2048 bins is cut at
  bin i, the tail folded into the last kept bin (distribution P), P is merged into as many
  bins as there are quantization levels and spread back (Q), and the cut with the smallest
  KL(P || Q) is the threshold. Example: 100,000 values drawn from N(0, 1) plus one at 50
  give a threshold of 4.2 (min-max would spread the 128 levels over [0, 50], a step of 0.39
  instead of 0.033, to keep one value).
- ``mse``: the clipping range (a fraction of the observed one) minimising the expected squared
  error between x and its fake-quantized value, computed on a 4096-bin histogram. It weighs
  every value by its squared error, so one far outlier can be worth keeping: for the same
  data as above it clips at 33.5, not 4.2.
"""

from __future__ import annotations

import math

import torch

from .primitives import choose_qparams, fake_quantize

__all__ = ["HIST_BINS", "RESERVOIR", "Calibrator", "MinMax", "MovingAverageMinMax", "nearest_rank", "Percentile",
           "Entropy", "MSE", "CALIBRATIONS", "kl_threshold_bin", "list_calibrations", "get_calibrator",
           "weight_range"]

HIST_BINS = 4096  # signed bins over [-R, R]; |x| sees the 2048 positive ones
RESERVOIR = 262_144


class Calibrator:
    """Accumulate statistics of one tensor stream, then solve for a clipping range."""

    name = ""

    def __init__(self) -> None:
        self.min_val = math.inf
        self.max_val = -math.inf

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().float()
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


def _levels(qmin: int, qmax: int, symmetric: bool, nonneg: bool) -> int:
    n = qmax - qmin + 1
    return n if (nonneg and not symmetric) else n // 2


def _range_from_threshold(t: float, lo: float, hi: float, symmetric: bool) -> tuple[float, float]:
    if symmetric:
        return -t, t
    return max(lo, -t), min(hi, t)


def _kl_divergences(hist: torch.Tensor, levels: int, cands: torch.Tensor) -> torch.Tensor:
    """KL(P || Q) for each candidate cut (number of kept bins), vectorised over candidates."""
    nbins = hist.numel()
    j = torch.arange(nbins)
    inside = j[None, :] < cands[:, None]  # (C, B)
    sliced = hist[None, :] * inside
    tail = hist.flip(0).cumsum(0).flip(0)  # tail[i] = sum(hist[i:])
    outliers = torch.where(cands < nbins, tail[cands.clamp(max=nbins - 1)], torch.zeros((), dtype=hist.dtype))
    p = sliced.clone()
    p[torch.arange(len(cands)), cands - 1] += outliers
    idx = torch.where(inside, (j[None, :] * levels) // cands[:, None], 0)
    nonzero = (sliced != 0).to(hist.dtype)
    qsum = torch.zeros(len(cands), levels, dtype=hist.dtype).scatter_add_(1, idx, sliced)
    qcnt = torch.zeros(len(cands), levels, dtype=hist.dtype).scatter_add_(1, idx, nonzero)
    q = nonzero * qsum.gather(1, idx) / qcnt.gather(1, idx).clamp(min=1)
    p = p / p.sum(1, keepdim=True).clamp(min=1e-30)
    q = q / q.sum(1, keepdim=True).clamp(min=1e-30)
    q = torch.where((p > 0) & (q == 0), torch.full_like(q, 1e-8), q)  # smooth empty bins
    terms = torch.where(p > 0, p * torch.log(p / q.clamp(min=1e-30)), torch.zeros_like(p))
    return terms.sum(1)


def kl_threshold_bin(hist: torch.Tensor, levels: int, coarse: int = 16) -> int:
    """TensorRT's search: the number of |x| bins to keep so that KL(P || Q) is smallest.

    Every ``coarse``-th cut first, then every cut around the best coarse one.
    """
    nbins = hist.numel()
    if levels >= nbins:
        return nbins
    hist = hist.double()
    cands = torch.unique(torch.cat([torch.arange(levels, nbins + 1, coarse), torch.tensor([nbins])]))
    best = int(cands[int(torch.argmin(_kl_divergences(hist, levels, cands)))])
    fine = torch.arange(max(levels, best - coarse), min(nbins, best + coarse) + 1)
    return int(fine[int(torch.argmin(_kl_divergences(hist, levels, fine)))])


class Entropy(_Histogram):
    name = "entropy"

    def solve(self, qmin, qmax, symmetric):
        nonneg = self.min_val >= 0
        hist = self.abs_hist()
        levels = _levels(qmin, qmax, symmetric, nonneg)
        keep = kl_threshold_bin(hist, levels)
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
        best_err = torch.full_like(lo, math.inf)
        best_lo, best_hi = lo.clone(), hi.clone()
        for frac in torch.linspace(0.3, 1.0, 36).tolist():
            clo, chi = lo * frac, hi * frac
            scale, zp = choose_qparams(clo, chi, qmin, qmax, symmetric)
            err = ((fake_quantize(rows, scale, zp, qmin, qmax, axis=0) - rows) ** 2).sum(1)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_lo = torch.where(better, clo, best_lo)
            best_hi = torch.where(better, chi, best_hi)
        return best_lo, best_hi
    raise ValueError(f"calibration={method!r} does not apply to weights; allowed: minmax, percentile, mse")
