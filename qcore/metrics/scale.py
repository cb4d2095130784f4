"""What gives a Result's numbers their scale: intervals, spread, sample sizes, and whether the machine was busy.

One place for the policy the CLI, the app and the reports read (the thresholds below, and the words).

**Busy.** A latency is a property of the model only when the machine was otherwise quiet. A row is flagged
busy when the 1-minute load average seen around its timing exceeded the threads it timed with by more than
:data:`LOAD_MARGIN` (the timing itself accounts for ``threads`` runnable threads; more means other work
competed for the cores), or when its spread p90/p50 exceeded :data:`BUSY_SPREAD` (a quiet machine gives
1.02-1.15; 1.5 means a tenth of the calls were 50% slower than the median). Load 5.0 with 2 threads, or
p90 15 ms against p50 10 ms: busy. A busy row is shown with a mark and can be timed again
(:mod:`qcore.service.retime`).

**Accuracy** carries the number of images, a 95% interval for top-1 and a paired interval for its change
against FP32 (:mod:`qcore.metrics.stats`); with calibration draws, the mean counts per draw and intervals that combine
the draws' (:func:`set_draws_scale`); **latency** the number of timed calls, p90/p50 and a 95% interval of the
median, which the Pareto flag uses: two rows whose intervals overlap are not ranked on latency.
"""

from __future__ import annotations

from collections.abc import Sequence

from qcore.metrics.stats import combine_draws, median_interval, paired_delta, wilson

__all__ = ["BUSY_SPREAD", "LOAD_MARGIN", "busy_reason", "set_timing", "set_accuracy_scale", "set_draws_scale",
           "latency_interval", "draws_deltas", "draw0_label", "images_text", "interval_text"]

BUSY_SPREAD = 1.3
LOAD_MARGIN = 0.5


def busy_reason(load: float | None, threads: int, spread: float | None) -> str:
    """Why a timing is not to be trusted as a property of the model, or "" when nothing says so.

    >>> busy_reason(5.0, 2, 1.05)
    'load 5.0 on the machine, above the 2 threads timed with'
    >>> busy_reason(0.3, 2, 1.5)
    'spread p90/p50 1.50, above 1.3'
    >>> busy_reason(None, 2, 1.1)
    ''
    """
    why = []
    if load is not None and load > threads + LOAD_MARGIN:
        why.append(f"load {load:.1f} on the machine, above the {threads} threads timed with")
    if spread is not None and spread > BUSY_SPREAD:
        why.append(f"spread p90/p50 {spread:.2f}, above {BUSY_SPREAD}")
    return "; ".join(why)


def set_timing(r, variant, reference=None) -> None:
    """Fill a Result's latency fields from ``variant`` (a :class:`qcore.metrics.measure.Latency`) and the FP32 reference
    timed with it: p50, p90, the median's interval, the spread, the calls timed, the load and the busy flag."""
    r.latency_ms_p50, r.latency_ms_p90 = variant.p50, variant.p90
    r.latency_samples_ms = list(variant.samples_ms)
    r.latency_ms_lo, r.latency_ms_hi = variant.interval
    r.latency_spread, r.timed_calls = variant.spread, len(variant.samples_ms)
    r.load_avg = variant.load
    spreads = [variant.spread] + ([reference.spread] if reference is not None else [])
    if reference is not None:
        r.fp32_latency_ms_p50 = reference.p50
        r.speedup = reference.p50 / variant.p50
        r.load_avg = max((v for v in (variant.load, reference.load) if v is not None), default=None)
    r.busy = busy_reason(r.load_avg, r.threads, max(spreads))


def _intervals(c: dict[str, int]) -> tuple[tuple[float, float], tuple[float, float]]:
    """Top-1's 95% Wilson interval (percent) and its change's paired interval (points) from one set of paired
    counts (:func:`qcore.metrics.measure.correct_counts`)."""
    lo, hi = wilson(c["both"] + c["gained"], sum(c.values()))
    _, dlo, dhi = paired_delta(c["both"], c["lost"], c["gained"], c["neither"])
    return (100.0 * lo, 100.0 * hi), (100.0 * dlo, 100.0 * dhi)


def set_accuracy_scale(r, counts: dict[str, int]) -> None:
    """Fill a Result's accuracy scale from the paired counts of :func:`qcore.metrics.measure.correct_counts`."""
    r.eval_images = sum(counts.values())
    (r.top1_lo, r.top1_hi), (r.top1_delta_lo, r.top1_delta_hi) = _intervals(counts)
    r.images_lost, r.images_gained = counts["lost"], counts["gained"]


def set_draws_scale(r, draws: Sequence[dict[str, int]]) -> None:
    """Fill a Result's accuracy scale from the paired counts of each calibration draw, for the draws' mean:
    ``images_lost``/``images_gained`` the mean counts per draw (their difference over ``n`` is the mean change),
    ``draws_lost``/``draws_gained`` each draw's, and top-1's and the change's intervals each draw's Wilson and
    Newcombe intervals combined by Rubin's rules (:func:`qcore.metrics.stats.combine_draws`): they hold the spread
    between
    the draws as well as the luck of the evaluation images, and every draw's own value."""
    ns = {sum(c.values()) for c in draws}
    if len(ns) != 1 or not draws:
        raise ValueError(f"draws evaluated on {sorted(ns)} images; allowed: every draw on the same images")
    n = ns.pop()
    top1 = [100.0 * (c["both"] + c["gained"]) / n for c in draws]
    delta = [100.0 * (c["gained"] - c["lost"]) / n for c in draws]
    top1_iv, delta_iv = zip(*map(_intervals, draws))
    r.eval_images = n
    _, r.top1_lo, r.top1_hi = combine_draws(top1, top1_iv, bounds=(0.0, 100.0))
    _, r.top1_delta_lo, r.top1_delta_hi = combine_draws(delta, delta_iv, bounds=(-100.0, 100.0))
    r.draws_lost, r.draws_gained = [c["lost"] for c in draws], [c["gained"] for c in draws]
    r.images_lost = sum(r.draws_lost) / len(draws)
    r.images_gained = sum(r.draws_gained) / len(draws)


def draws_deltas(r) -> list[float]:
    """Each calibration draw's top-1 change in points: from its counts, or, in rows stored before those were,
    from its top-1 and FP32's (``top1 - top1_delta``); [] for a row with one draw."""
    n, lost, gained = getattr(r, "eval_images", None), getattr(r, "draws_lost", []), getattr(r, "draws_gained", [])
    if getattr(r, "calib_draws", 1) <= 1:
        return []
    if n and lost and len(lost) == len(gained):
        return [100.0 * (g - x) / n for x, g in zip(lost, gained)]
    if r.top1 is None or r.top1_delta is None:
        return []
    fp32 = r.top1 - r.top1_delta
    return [t - fp32 for t in getattr(r, "draws_top1", [])]


def draw0_label(r) -> str:
    """``" in draw 0 of 3"`` for a draw row stored before the counts and intervals described the mean (they are
    its first draw's); "" otherwise. Every place that shows those numbers appends it."""
    k = getattr(r, "calib_draws", 1) or 1
    legacy = k > 1 and not getattr(r, "draws_lost", []) and getattr(r, "images_lost", None) is not None
    return f" in draw 0 of {k}" if legacy else ""


def latency_interval(r) -> tuple[float, float] | None:
    """The row's 95% interval of the median latency: stored, else from its samples (rows stored before the
    interval was), else the bare p50; None when it has no latency."""
    lo, hi = getattr(r, "latency_ms_lo", None), getattr(r, "latency_ms_hi", None)
    if lo is not None and hi is not None:
        return lo, hi
    samples: Sequence[float] = getattr(r, "latency_samples_ms", None) or []
    if samples:
        return median_interval(samples)
    p50 = getattr(r, "latency_ms_p50", None)
    return None if p50 is None else (p50, p50)


def images_text(r) -> str:
    """The top-1 change in images: ``-1 of 2000 images (lost 3, gained 2)``; with calibration draws the mean per
    draw, ``+1.3 of 2000 images, mean of 3 draws (lost 7.7, gained 9.0)``; "" when not counted. The part before
    `` (`` is the table's column.

    >>> from types import SimpleNamespace as R
    >>> images_text(R(eval_images=2000, images_lost=3, images_gained=2))
    '-1 of 2000 images (lost 3, gained 2)'
    >>> images_text(R(eval_images=2000, images_lost=23 / 3, images_gained=9.0, draws_lost=[7, 8, 8], calib_draws=3))
    '+1.3 of 2000 images, mean of 3 draws (lost 7.7, gained 9.0)'
    """
    n, lost, gained = (getattr(r, k, None) for k in ("eval_images", "images_lost", "images_gained"))
    if n is None or lost is None or gained is None:
        return ""
    k = getattr(r, "calib_draws", 1) or 1
    if k > 1 and getattr(r, "draws_lost", []):
        change = f"{gained - lost:+.1f} of".replace("+0.0 of", "0.0 of").replace("-0.0 of", "0.0 of")
        return f"{change} {n} images, mean of {k} draws (lost {lost:.1f}, gained {gained:.1f})"
    change = f"{round(gained - lost):+d} of".replace("+0 of", "0 of")
    return f"{change} {n} images{draw0_label(r)} (lost {round(lost)}, gained {round(gained)})"


def interval_text(lo: float | None, hi: float | None, spec: str = ".2f", suffix: str = "") -> str:
    """``[90.62, 93.02]``-style text of an interval; "" when it is not known.

    >>> interval_text(-0.32, 0.22, "+.2f", " pts")
    '[-0.32, +0.22] pts'
    """
    if lo is None or hi is None:
        return ""
    return f"[{format(lo, spec)}, {format(hi, spec)}]{suffix}"
