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

**A median latency** gets the distribution-free interval of order statistics: with ``n`` sorted samples,
the ``j``-th and ``k``-th, ``j = floor((n - 1.96 sqrt(n)) / 2)``, ``k = ceil(1 + (n + 1.96 sqrt(n)) / 2)``
(1-based; 40th and 61st of 100). No assumption about the shape of the timing distribution, which is skewed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["Z95", "wilson", "paired_delta", "median_interval"]

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
