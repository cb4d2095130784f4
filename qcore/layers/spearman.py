"""Spearman's rank correlation: how well one per-layer metric orders the layers as another does.

``spearman(x, y)`` is Pearson's correlation of the ranks of ``x`` and of ``y`` (:func:`ranks`: 1 for the
smallest; tied values share the mean of the ranks they span, so ``[10, 20, 20, 30]`` ranks ``[1, 2.5, 2.5, 4]``).
Without ties it equals ``1 - 6 sum(d^2) / (n (n^2 - 1))`` (``d``: the difference of an item's two ranks); with
ties the Pearson form is the one scipy's ``spearmanr`` computes. Plain Python, no torch: the bench that picks the
walk's default metric (``bench/layers_spearman.py``) and its tests read it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["ranks", "spearman"]


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties given the average of the ranks they span.

    >>> ranks([10, 20, 20, 30])
    [1.0, 2.5, 2.5, 4.0]
    """
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        mean = (i + j) / 2 + 1  # positions i..j hold ranks i+1..j+1
        for k in range(i, j + 1):
            out[order[k]] = mean
        i = j + 1
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho of paired ``x`` and ``y`` (see the module); nan when either is constant.

    Raises ValueError for sequences of different lengths, fewer than 3 pairs, or a NaN or None value.

    >>> spearman([1, 2, 3, 4], [10, 20, 30, 40]), spearman([1, 2, 3, 4], [4, 3, 2, 1])
    (1.0, -1.0)
    """
    if len(x) != len(y):
        raise ValueError(f"spearman needs pairs: {len(x)} x values and {len(y)} y values")
    if len(x) < 3:
        raise ValueError(f"spearman needs at least 3 pairs, got {len(x)}")
    for v in (*x, *y):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            raise ValueError("spearman needs a number in every pair; leave out the pairs without one (None or NaN)")
    rx, ry = ranks(x), ranks(y)
    n = len(rx)
    mx, my = sum(rx) / n, sum(ry) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return math.nan
    return sxy / math.sqrt(sxx * syy)
