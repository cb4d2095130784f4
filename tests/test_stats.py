"""qcore.metrics.stats: known answers, and the coverage of the intervals checked by simulation (the oracle)."""

from __future__ import annotations

import random

import pytest

from qcore.metrics.stats import median_interval, paired_delta, wilson


def test_wilson_known_answers():
    lo, hi = wilson(1838, 2000)
    assert (round(lo, 4), round(hi, 4)) == (0.9062, 0.9302)
    assert wilson(0, 10)[0] == 0.0 and 0.25 < wilson(0, 10)[1] < 0.35  # the "rule of three" region, not [0, 0]
    assert wilson(10, 10)[1] == 1.0 and wilson(10, 10)[0] > 0.65
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson(11, 10)


def test_paired_delta_known_answers_and_narrower_than_unpaired():
    delta, lo, hi = paired_delta(both=1835, lost=3, gained=2, neither=160)
    assert delta == pytest.approx(-0.0005) and lo < delta < hi
    assert (round(100 * lo, 2), round(100 * hi, 2)) == (-0.32, 0.22)
    # unpaired, the two Wilson intervals of ~92% on 2000 images each span 2.4 points; paired, 0.54
    assert hi - lo < 0.01
    assert paired_delta(1838, 0, 0, 162) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="counts >= 0"):
        paired_delta(1, -1, 0, 0)


def test_paired_interval_covers_the_true_change_about_95_percent_of_the_time():
    rng = random.Random(0)
    n, reps, covered = 200, 1500, 0
    # per image: both right 85%, lost 4%, gained 2%, neither 9%: the true change is -2 points
    cells = [("both", 0.85), ("lost", 0.04), ("gained", 0.02), ("neither", 0.09)]
    for _ in range(reps):
        counts = dict.fromkeys(("both", "lost", "gained", "neither"), 0)
        for _ in range(n):
            u, acc = rng.random(), 0.0
            for name, p in cells:
                acc += p
                if u < acc:
                    counts[name] += 1
                    break
            else:
                counts["neither"] += 1
        _, lo, hi = paired_delta(**counts)
        covered += lo <= -0.02 <= hi
    assert 0.92 <= covered / reps <= 0.985


def test_wilson_covers_about_95_percent():
    rng = random.Random(1)
    n, p, reps = 100, 0.9, 2000
    covered = 0
    for _ in range(reps):
        k = sum(rng.random() < p for _ in range(n))
        lo, hi = wilson(k, n)
        covered += lo <= p <= hi
    assert 0.92 <= covered / reps <= 0.98


def test_median_interval_order_statistics():
    assert median_interval(range(1, 101)) == (40, 61)
    assert median_interval([5.0]) == (5.0, 5.0)
    assert median_interval([3.0, 1.0, 2.0]) == (1.0, 3.0)
    with pytest.raises(ValueError, match="no samples"):
        median_interval([])
