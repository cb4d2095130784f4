"""Dominance and frontiers over measured results.

A point dominates another when it is at least as good on every objective and strictly
better on one. Objectives: accuracy up, latency down, size down.

>>> pts = [(90, 10, 5), (91, 20, 5), (89, 12, 6)]   # (top1, latency, size)
>>> non_dominated(pts, maximize=(True, False, False))
[True, True, False]
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["dominates", "non_dominated", "frontier_2d", "mark_pareto", "dominates_with_intervals"]


def dominates(a: Sequence[float], b: Sequence[float], maximize: Sequence[bool]) -> bool:
    better_somewhere = False
    for x, y, up in zip(a, b, maximize):
        if (x < y) if up else (x > y):
            return False
        if x != y:
            better_somewhere = True
    return better_somewhere


def non_dominated(points: Sequence[Sequence[float]], maximize: Sequence[bool]) -> list[bool]:
    """For each point, whether no other point dominates it (duplicates are all kept)."""
    return [not any(dominates(q, p, maximize) for j, q in enumerate(points) if j != i) for i, p in enumerate(points)]


def frontier_2d(points: Sequence[tuple[float, float]], maximize_y: bool = True) -> list[int]:
    """Indices of the 2-D frontier of (cost x, value y), sorted by x: lower x, higher y is better.

    >>> frontier_2d([(1, 80), (2, 85), (3, 84), (4, 90)])
    [0, 1, 3]
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1] if maximize_y else points[i][1]))
    out, best = [], None
    for i in order:
        y = points[i][1]
        if best is None or (y > best if maximize_y else y < best):
            out.append(i)
            best = y
    return out


def mark_pareto(results: list) -> None:
    """Set ``pareto`` on each ok Result: non-dominated on (top1 up, latency p50 down, size down).

    Latency is compared by the 95% intervals of the medians (:func:`qcore.metrics.scale.latency_interval`): two rows
    whose intervals overlap are tied on latency, so the flag does not flip on timing noise."""
    from qcore.metrics.scale import latency_interval

    ok = [r for r in results if r.ok and None not in (r.top1, r.latency_ms_p50, r.size_bytes)]
    points = [(r.top1, latency_interval(r), r.size_bytes) for r in ok]
    flags = [not any(dominates_with_intervals(q, p) for j, q in enumerate(points) if j != i)
             for i, p in enumerate(points)]  # fmt: skip
    for r in results:
        r.pareto = False
    for r, f in zip(ok, flags):
        r.pareto = f


def dominates_with_intervals(a: tuple, b: tuple) -> bool:
    """Whether ``a`` dominates ``b``, both ``(top1, (latency lo, latency hi), size)``: accuracy up, latency down,
    size down, where latency is better only when the intervals do not overlap (``a``'s high end below ``b``'s
    low end) and equal when they do.

    >>> dominates_with_intervals((90, (10, 11), 5), (90, (12, 13), 5))   # clearly faster, same otherwise
    True
    >>> dominates_with_intervals((90, (10, 12.5), 5), (90, (12, 13), 5))  # faster by noise only: a tie
    False
    >>> dominates_with_intervals((91, (10, 12.5), 5), (90, (12, 13), 5))  # tied on latency, better on top-1
    True
    """
    (acc_a, (lo_a, hi_a), size_a), (acc_b, (lo_b, hi_b), size_b) = a, b
    if hi_a < lo_b:
        lat = -1  # a faster
    elif hi_b < lo_a:
        lat = 1  # a slower
    else:
        lat = 0
    if acc_a < acc_b or lat > 0 or size_a > size_b:
        return False
    return acc_a > acc_b or lat < 0 or size_a < size_b
