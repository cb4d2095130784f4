"""Intervals that give a measured number its scale: top-1 on n images, a paired top-1 change, a median latency.

Pure functions of counts and samples (no torch), read by the sweep that stores them, the Pareto flag and
the reports. All intervals are 95%.

**Top-1** is a proportion: ``k`` of ``n`` images right. The Wilson score interval is used rather than
``p ± 1.96·sqrt(p(1-p)/n)`` because it stays inside [0, 1] and is honest near 0 and 1. For 1838 of 2000
images (91.9%) it is 90.6% to 93.0%: a change of one image (0.05 points) is far inside it.

**The top-1 change** of a quantized model against FP32 is *paired*: both saw the same images, so only the
images on which they disagree about being right carry information. With ``lost`` images FP32 got right and
the variant wrong, and ``gained`` the other way round, the change is ``(gained - lost) / n``. Its interval
is Newcombe's (1998, method 10): Wilson intervals of both marginals, combined with the correlation of the
two models' correctness, which for quantized models is close to 1, so the paired interval is much narrower
than the unpaired one. Lost 3, gained 2 of 2000 is -0.05 points with an interval of -0.32 to +0.22.

**Calibration draws.** A spec calibrated K times on disjoint image samples gives K estimates, each with its own
interval on the same evaluation images. They are combined by Rubin's rules for multiple imputation (Rubin 1987,
*Multiple Imputation for Nonresponse in Surveys*, eqs. 3.1.2-3.1.6): the point is the mean of the draws, the
variance ``T = W + (1 + 1/K) B`` adds the between-draw variance ``B`` to the mean within-draw variance ``W``, and
the interval is Student's t with ``nu = (K - 1) (1 + W / ((1 + 1/K) B))^2`` degrees of freedom. Each draw's
within variance is read off its own 95% interval, ``((hi - lo) / (2 * 1.96))^2`` (the usual back-calculation of a
standard error from an interval). Since ``T`` holds ``B`` itself as well as ``B / K``, the interval is where this
spec lands when calibrated on images drawn at random, not only the mean's: it is also never narrower than the
draws' own range. Draws -0.10, +0.20, +0.05 points, each +-0.30 wide: mean +0.05, interval -0.51 to +0.61.

**A median latency** gets the distribution-free interval of order statistics: with ``n`` sorted samples,
the ``j``-th and ``k``-th, ``j = floor((n - 1.96 sqrt(n)) / 2)``, ``k = ceil(1 + (n + 1.96 sqrt(n)) / 2)``
(1-based; 40th and 61st of 100). No assumption about the shape of the timing distribution, which is skewed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["Z95", "wilson", "paired_delta", "t_quantile", "combine_draws", "median_interval"]

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of the proportion ``k / n``, as fractions in [0, 1].

    >>> [round(v, 4) for v in wilson(1838, 2000)]
    [0.9062, 0.9302]
    >>> wilson(0, 0)
    (0.0, 1.0)
    """
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= k <= n:
        raise ValueError(f"k={k} is not allowed; allowed: 0 <= k <= n={n}")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))


def paired_delta(both: int, lost: int, gained: int, neither: int, z: float = Z95) -> tuple[float, float, float]:
    """The change in proportion right, variant minus reference, on the same images, and its interval.

    ``both``: images both got right; ``lost``: the reference right, the variant wrong; ``gained``: the
    variant right, the reference wrong; ``neither``: both wrong. Returns ``(delta, lo, hi)`` as fractions.

    >>> [round(100 * v, 2) for v in paired_delta(1835, 3, 2, 160)]   # points
    [-0.05, -0.32, 0.22]
    >>> paired_delta(1838, 0, 0, 162)   # the same predictions: no change, and no doubt about it
    (0.0, 0.0, 0.0)
    """
    counts = (both, lost, gained, neither)
    if min(counts) < 0:
        raise ValueError(f"counts {counts} are not allowed; allowed: counts >= 0")
    n = sum(counts)
    if n == 0:
        return 0.0, -1.0, 1.0
    p1, p2 = (both + gained) / n, (both + lost) / n  # variant right, reference right
    delta = (gained - lost) / n
    if lost == gained == 0:
        return 0.0, 0.0, 0.0
    l1, u1 = wilson(both + gained, n, z)
    l2, u2 = wilson(both + lost, n, z)
    a, b, c, d = both, gained, lost, neither  # rows: variant right/wrong; columns: reference right/wrong
    denom = (a + b) * (c + d) * (a + c) * (b + d)
    phi = (a * d - b * c) / math.sqrt(denom) if denom > 0 else 0.0
    lo = delta - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    hi = delta + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return delta, max(-1.0, lo), min(1.0, hi)


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (Numerical Recipes, 3rd ed., 6.4; modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        for aa in (m * (b - m) * x / ((a - 1.0 + 2 * m) * (a + 2 * m)),
                   -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 1.0 + 2 * m))):  # fmt: skip
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def _betai(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_quantile(p: float, df: float) -> float:
    """The ``p``-quantile of Student's t with ``df`` degrees of freedom (any real ``df > 0``; ``math.inf``: the
    normal's). The upper tail is ``I_{df / (df + t^2)}(df / 2, 1 / 2) / 2``, solved for ``t`` by bisection.

    >>> [round(t_quantile(0.975, df), 3) for df in (1, 2, 10, math.inf)]
    [12.706, 4.303, 2.228, 1.96]
    """
    from statistics import NormalDist

    if not 0.0 < p < 1.0 or not df > 0:
        raise ValueError(f"p={p}, df={df} is not allowed; allowed: 0 < p < 1, df > 0")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    if math.isinf(df) or df > 1e7:
        return NormalDist().inv_cdf(p)
    tail = lambda t: 0.5 * _betai(df / 2.0, 0.5, df / (df + t * t))  # noqa: E731
    lo, hi = 0.0, 1.0
    while tail(hi) > 1.0 - p:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if tail(mid) > 1.0 - p else (lo, mid)
        if hi - lo <= 1e-12 * hi:
            break
    return (lo + hi) / 2.0


def combine_draws(
    estimates: Sequence[float], intervals: Sequence[tuple[float, float]], z: float = Z95,
    bounds: tuple[float, float] = (-math.inf, math.inf),
) -> tuple[float, float, float]:
    """Rubin's rules over calibration draws (see the module): ``(mean, lo, hi)`` from each draw's estimate and
    its ``z``-level interval; never narrower than the draws' own range, clipped to ``bounds``.

    >>> [round(v, 2) for v in combine_draws([-0.10, 0.20, 0.05], [(-0.40, 0.20), (-0.10, 0.50), (-0.25, 0.35)])]
    [0.05, -0.51, 0.61]
    >>> combine_draws([0.0, 0.0], [(0.0, 0.0), (0.0, 0.0)])   # the same model every time
    (0.0, 0.0, 0.0)
    """
    from statistics import NormalDist, fmean, variance

    k = len(estimates)
    if k == 0 or len(intervals) != k:
        raise ValueError(f"{k} estimates and {len(intervals)} intervals; allowed: one interval per estimate, k >= 1")
    q = fmean(estimates)
    w = fmean(((hi - lo) / (2.0 * z)) ** 2 for lo, hi in intervals)
    b = variance(estimates) if k > 1 else 0.0
    extra = (1.0 + 1.0 / k) * b
    total = w + extra
    if extra == 0.0:
        df = math.inf
    elif w == 0.0:
        df = float(k - 1)
    else:
        df = (k - 1) * (1.0 + w / extra) ** 2
    half = t_quantile(NormalDist().cdf(z), df) * math.sqrt(total) if total > 0 else 0.0
    lo, hi = min(q - half, min(estimates)), max(q + half, max(estimates))
    return q, max(bounds[0], lo), min(bounds[1], hi)


def median_interval(samples: Sequence[float], z: float = Z95) -> tuple[float, float]:
    """Distribution-free interval of the median of ``samples`` (order statistics; see the module).

    >>> median_interval(range(1, 101))
    (40, 61)
    >>> median_interval([3.0, 1.0, 2.0])   # too few samples to exclude anything
    (1.0, 3.0)
    """
    s = sorted(samples)
    n = len(s)
    if n == 0:
        raise ValueError("no samples; the median of nothing has no interval")
    j = math.floor((n - z * math.sqrt(n)) / 2)
    k = math.ceil(1 + (n + z * math.sqrt(n)) / 2)
    return s[min(max(j, 1), n) - 1], s[min(max(k, 1), n) - 1]
