"""Calibration draws of one spec: the mean is the point, the spread is the luck of the calibration images.

With ``calib_draws = K`` a sweep calibrates each spec that reads calibration images K times, on disjoint
samples (:mod:`qcore.data.draws`), and evaluates each draw on the same evaluation images. The Result's
``top1``, ``top1_delta``, ``agreement`` (and ``top5``, ``logit_kl``) are the means over the draws;
``top1_std`` is the sample standard deviation (divided by K - 1), ``top1_min``/``top1_max`` the range and
``draws_top1`` every draw's top-1. For example draws at 91.2, 91.6 and 91.0 % give top1 91.27, std 0.31,
range 91.0 to 91.6.

Every other number of the row describes the same mean: ``images_lost``/``images_gained`` are the mean counts per
draw (so ``top1_delta`` is ``(gained - lost) / n`` of them, in points), ``draws_lost``/``draws_gained`` each
draw's, and both intervals (top-1's and the change's) combine the draws' own intervals by Rubin's rules
(:func:`qcore.metrics.stats.combine_draws`), so they hold the spread between draws as well as the luck of the evaluation
images: draws on both sides of FP32 give an interval of the change that holds 0
(:func:`qcore.metrics.scale.set_draws_scale`).

Two points are *not distinguishable* with K draws when their min-max ranges overlap: some draw of one
was at least as good as some draw of the other, so which ranks first depends on the calibration images
(:func:`indistinguishable`). This is the rule the Pareto chart's hover and the benchmark table use.
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Sequence

from qcore.metrics.measure import Accuracy, accuracy, predict
from qcore.metrics.scale import set_accuracy_scale, set_draws_scale

__all__ = ["reads_calibration_images", "summarize_draws", "apply_draws", "draw_accuracies", "draws_note", "overlaps",
           "indistinguishable"]


def reads_calibration_images(spec) -> bool:
    """Whether a spec's model depends on the calibration images: static integer quantization, and any spec whose
    bias correction or AdaRound is fitted on them.

    Otherwise weight-only ranges come from the weights, dynamic ones from each batch at run time and float casts
    have no range, so every draw of those gives the same model: one draw is exact.
    """
    return not spec.is_float and (spec.mode == "static" or spec.bias_correction or spec.rounding == "adaround")


def summarize_draws(accs: Sequence[Accuracy]) -> tuple[Accuracy, dict]:
    """The mean Accuracy over the draws and the spread of top-1 (std, min, max, each draw's value).

    >>> a = [Accuracy(top1=t, top5=99.0, top1_delta=t - 92.0) for t in (91.2, 91.6, 91.0)]
    >>> mean, spread = summarize_draws(a)
    >>> round(mean.top1, 2), round(spread["top1_std"], 2), spread["top1_min"], spread["top1_max"]
    (91.27, 0.31, 91.0, 91.6)
    """
    if not accs:
        raise ValueError("summarize_draws needs at least one draw")
    k = len(accs)
    top1 = [a.top1 for a in accs]
    mean = Accuracy(
        top1=statistics.fmean(top1),
        top5=statistics.fmean(a.top5 for a in accs),
        agreement=statistics.fmean(a.agreement for a in accs),
        logit_kl=statistics.fmean(a.logit_kl for a in accs),
        top1_delta=statistics.fmean(a.top1_delta for a in accs),
        n=accs[0].n,
    )
    spread = {
        "top1_std": statistics.stdev(top1) if k > 1 else None,
        "top1_min": min(top1) if k > 1 else None,
        "top1_max": max(top1) if k > 1 else None,
        "draws_top1": top1,
    }
    return mean, spread


def apply_draws(r, accs: Sequence[Accuracy], seeds: Sequence[int]) -> None:
    """Write the draws' mean and spread onto Result ``r`` (top1, top5, top1_delta, agreement, logit_kl, ...) and,
    where the Accuracies carry their paired counts, the scale of that mean: images and intervals
    (qcore.metrics.scale)."""
    mean, spread = summarize_draws(accs)
    counts = [a.counts for a in accs]
    if len(counts) == 1 and counts[0] is not None:
        set_accuracy_scale(r, counts[0])
    elif counts and all(c is not None for c in counts):
        set_draws_scale(r, counts)
    r.top1, r.top5, r.top1_delta, r.agreement, r.logit_kl = (
        mean.top1, mean.top5, mean.top1_delta, mean.agreement, mean.logit_kl,
    )  # fmt: skip
    r.calib_draws = len(accs)
    r.top1_std, r.top1_min, r.top1_max = spread["top1_std"], spread["top1_min"], spread["top1_max"]
    r.draws_top1 = spread["draws_top1"]
    r.calib_seeds = list(seeds[: len(accs)])


def draw_accuracies(p, build, spec, start: int = 0) -> list[Accuracy]:
    """Quantize ``spec`` on each calibration draw of ``p`` (a :class:`qcore.runs.sweep.Prepared`) from ``start`` on and
    evaluate it: one Accuracy a draw, each model freed before the next is built. ``build(calib)`` quantizes the
    spec on a draw's batches (its backend, after its post-training algorithms)."""
    accs = []
    for batches in p.calib_draws[start:]:
        calib = [x.to(p.device) for x in batches] if p.device != "cpu" else batches
        q = build(calib)
        logits, _ = predict(q, p.eval_batches, q.device)
        accs.append(accuracy(logits, p.labels, p.ref_logits))
        del q
        gc.collect()
    return accs


def draws_note(r, spec, k: int) -> str:
    """The row's note on its ``k`` calibration draws: their spread, or why it was measured once."""
    if r.calib_draws == 1:
        return (f"{spec.mode} ranges do not come from calibration images, so every draw gives the same model: "
                f"measured once, not {k} times")
    return (f"top-1 is the mean of {r.calib_draws} calibration draws (seeds {r.calib_seeds[0]} to "
            f"{r.calib_seeds[-1]}): std {r.top1_std:.2f}, range {r.top1_min:.2f} to {r.top1_max:.2f}; the change, "
            "its images lost and gained (per draw) and both intervals describe that mean, the intervals with the "
            "spread between draws; latency and size measured once")


def _range(r) -> tuple[float, float] | None:
    if r.top1 is None:
        return None
    if r.calib_draws > 1 and r.top1_min is not None and r.top1_max is not None:
        return r.top1_min, r.top1_max
    return r.top1, r.top1


def overlaps(a, b) -> bool:
    """Whether the top-1 ranges (min-max over draws; the single value for one draw) of two Results overlap."""
    ra, rb = _range(a), _range(b)
    return ra is not None and rb is not None and ra[0] <= rb[1] and rb[0] <= ra[1]


def indistinguishable(results: Sequence, frontier: Sequence) -> dict[str, list]:
    """For each Result with more than one draw (by run_id): the ``frontier`` Results it overlaps, itself left out.

    A frontier point with one draw has no range, so only a multi-draw point's bar can reach it; two frontier
    points with draws are compared both ways.
    """
    out: dict[str, list] = {}
    for r in results:
        if not r.ok or r.calib_draws <= 1:
            continue
        hits = [f for f in frontier if f.run_id != r.run_id and overlaps(r, f)]
        if hits:
            out[r.run_id] = hits
    return out
