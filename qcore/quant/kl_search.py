"""The maths of entropy (KL-divergence) calibration on a histogram of |x|, as pure functions.

:func:`kl_threshold_bin` is TensorRT's search as NVIDIA's pytorch-quantization implements it
(``calib/histogram.py``, ``_compute_amax_entropy``), tested against a loop port of that function
(``tests/test_entropy_oracle.py``). Two rules are qcore's own, each reducing to the reference where the
reference has an answer: :func:`abs_levels` (how many levels an asymmetric grid puts on the side |x|
measures) and :func:`neutralise_spikes` (the reference's ``bins[0] = bins[1]`` for a spike of one repeated
value away from 0). :class:`qcore.quant.observers.Entropy` feeds them its histogram.
"""

from __future__ import annotations

import math

import torch

__all__ = ["abs_levels", "kl_divergences", "kl_threshold_bin", "SPIKE_SHARE", "SPIKE_RATIO", "neutralise_spikes"]


def abs_levels(qmin: int, qmax: int, symmetric: bool, lo: float, hi: float) -> int:
    """How many of the grid's levels fall on ``[0, max(|lo|, |hi|)]``, the range the |x| histogram covers.

    The reference's two cases: a symmetric grid spends half its levels on each side (``n // 2``: 128 at 8
    bits), an unsigned tensor on an asymmetric grid all of them (``n``: 256). An asymmetric grid over a
    signed ``[lo, hi]`` spends the share ``max(|lo|, |hi|) / (hi - lo)`` of its ``n`` levels on the longer
    side, between ``n // 2`` (data symmetric about 0: the reference's signed case) and ``n`` (one-sided data).
    For example hard-swish outputs over [-0.375, 8.56] get 245 of 256 levels, not 128: searching with 128
    would model a grid twice as coarse as the one the kernels use, and clip for it.
    """
    n = qmax - qmin + 1
    if symmetric:
        return n // 2
    if lo >= 0 or hi <= 0:
        return n
    amax = max(-lo, hi)
    return max(n // 2, min(n, round(n * amax / (hi - lo))))


def kl_divergences(hist: torch.Tensor, levels: int, start: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """KL(P || Q) for every cut ``i`` from ``start`` (default ``levels``) to ``len(hist)`` kept bins: ``(cuts, kl)``.

    For a cut ``i``: P is ``hist[:i]`` with the tail ``sum(hist[i:])`` added to its last bin; Q merges
    ``hist[:i]`` into ``levels`` equal runs of bins (bin ``j`` into run ``floor(j * levels / i)``) and spreads
    each run's count evenly over its non-empty bins (empty bins stay empty). A cut whose last kept bin is
    empty while the tail is not has P > 0 where Q = 0: its KL is infinite, as in the reference. Both are
    normalised. Written with prefix sums, so every cut costs ``levels`` operations, not ``len(hist)``.
    """
    h = hist.double().reshape(-1)
    nbins = h.numel()
    cuts = torch.arange(max(levels, start or 0), nbins + 1)
    zero = torch.zeros(1, dtype=torch.float64)
    hlogh = torch.where(h > 0, h * torch.log(h.clamp(min=1e-300)), torch.zeros_like(h))
    cs = torch.cat([zero, h.cumsum(0)])  # cs[j] = sum(h[:j])
    cn = torch.cat([zero, (h > 0).double().cumsum(0)])
    cl = torch.cat([zero, hlogh.cumsum(0)])
    total = cs[-1]
    k = torch.arange(levels)
    first = (k[None, :] * cuts[:, None] + levels - 1) // levels  # first j with floor(j * levels / i) == k
    end = ((k[None, :] + 1) * cuts[:, None] + levels - 1) // levels
    qsum, qcnt = cs[end] - cs[first], cn[end] - cn[first]
    qval = qsum / qcnt.clamp(min=1)  # Q's (unnormalised) value on each non-empty bin of run k
    logq = torch.where(qsum > 0, torch.log(qval.clamp(min=1e-300)), torch.zeros_like(qval))
    last = h[cuts - 1]
    tail = total - cs[cuts]
    plast = last + tail
    sum_plogp = cl[cuts] - hlogh[cuts - 1] + torch.where(plast > 0, plast * torch.log(plast.clamp(min=1e-300)), 0.0)
    sum_plogq = (qsum * logq).sum(1) + tail * logq[:, -1]
    kl = (sum_plogp - sum_plogq) / total - torch.log(total) + torch.log(cs[cuts])
    kl = torch.where((last == 0) & (tail > 0), torch.full_like(kl, math.inf), kl)
    return cuts, kl


def kl_threshold_bin(hist: torch.Tensor, levels: int, start: int | None = None) -> int:
    """TensorRT's entropy calibration: how many of the |x| histogram's bins to keep.

    As NVIDIA's pytorch-quantization implements it (``_compute_amax_entropy``): bin 0 is set to bin 1's
    count first (``bins[0] = bins[1]``), so that a spike of exact zeros (half of a post-ReLU tensor) does not
    dominate P and drag the search to its smallest cut; then every cut from ``levels`` bins (or ``start``,
    when larger) up to all of them, one bin at a time, and the cut with the smallest KL(P || Q) wins (the
    largest such cut on a tie). ``levels`` is the number of quantization levels |x| is spread over: 128 for
    signed 8-bit, 256 for unsigned 8-bit.
    """
    h = hist.double().reshape(-1).clone()
    nbins = h.numel()
    if max(levels, start or 0) >= nbins:
        return nbins
    if nbins > 1:
        h[0] = h[1]
    if float(h.sum()) <= 0:
        return nbins
    cuts, kl = kl_divergences(h, levels, start)
    best = kl.min()
    if not torch.isfinite(best):
        return nbins
    return int(cuts[(kl <= best).nonzero().max()])


SPIKE_SHARE = 0.01  # a bin holding at least 1% of all values ...
SPIKE_RATIO = 8.0  # ... and 8 times more than any bin within two of it


def neutralise_spikes(hist: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The reference's ``bins[0] = bins[1]``, for a spike anywhere: ``(hist, start)``.

    A spike is one bin holding at least :data:`SPIKE_SHARE` of all values and :data:`SPIKE_RATIO` times more
    than each of its neighbours within two bins: one value repeated exactly (a constant image background, which
    Fashion-MNIST's normalisation puts at -0.81; ReLU6's cap at 6). Like the zeros of bin 0 it would dominate
    P, and every cut whose last run of bins holds it narrowly would look best: on Fashion-MNIST's input
    (44% of the pixels at |x| = 0.81, the rest up to 2.02) the reference's search keeps [-0.81, 0.81] and clips
    every bright pixel, which costs resnet18 5 points. So the spike's count is set to its neighbours' mean (as
    bin 0's is to bin 1's), and no cut may clip it: ``start`` is the first cut that keeps it. Bin 0 is left to
    the reference's own rule. A histogram without spikes is returned unchanged with ``start = 0``; the search
    is then exactly the reference's. This rule is qcore's, not TensorRT's.
    """
    h = hist.double().reshape(-1).clone()
    n = h.numel()
    total = float(h.sum())
    if n < 3 or total <= 0:
        return h, 0
    pad = torch.cat([torch.zeros(2, dtype=h.dtype), h, torch.zeros(2, dtype=h.dtype)])
    around = torch.stack([pad[0:n], pad[1 : n + 1], pad[3 : n + 3], pad[4 : n + 4]]).amax(0)
    spikes = (h >= SPIKE_SHARE * total) & (h > SPIKE_RATIO * around)
    spikes[0] = False
    idx = spikes.nonzero().flatten()
    if idx.numel() == 0:
        return h, 0
    left = torch.cat([torch.zeros(1, dtype=h.dtype), h[:-1]])
    right = torch.cat([h[1:], torch.zeros(1, dtype=h.dtype)])
    h[idx] = (left[idx] + right[idx]) / 2
    return h, int(idx.max()) + 1
