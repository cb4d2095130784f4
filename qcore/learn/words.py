"""The sentences next to the Learn page's charts, each built from the chart's own numbers.

Pure functions of numbers (no torch): what the student is looking at, in plain words, with the values
that are on the screen. Example (:func:`step_sentence`, range [-1, 3]): "Min-max at 4 bits (asymmetric): the
16 codes 0..15 cover [-1.067, 2.933] (...). One step is s = 0.2667, so a value inside the range is off by at
most s / 2 = 0.1333."
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from qcore.learn.fmt import db, num, pct
from qcore.quant.spec import CHOICES, LABELS

if TYPE_CHECKING:
    from qcore.learn.affine import Affine, ErrorSplit

__all__ = ["NAMES", "tensor_sentence", "ranges_sentence", "step_sentence", "error_sentence", "scheme_sentence",
           "channel_sentence", "cost_sentence", "dynamic_sentence", "result_sentence"]

NAMES = {m: LABELS[m] for m in CHOICES["calibration"]}  # "min-max", "entropy (KL)", ...


def tensor_sentence(what: str, stats: dict, note: str = "") -> str:
    """What the tensor is and where its values lie."""
    sign = ("none of them negative (it comes after a ReLU or similar)" if stats["nonneg"]
            else f"mean {num(stats['mean'], 3)}, spread (std) {num(stats['std'], 3)}")
    zeros = f"; {pct(stats['zeros'], 1)} are exactly 0" if stats["zeros"] > 0.001 else ""
    p99 = stats.get("abs_p99")
    reach = max(abs(stats["min"]), abs(stats["max"]))
    bulk = (f" 99% of them are within ±{num(p99, 3)}, so the extremes are {reach / p99:.1f}× further out than "
            "the bulk." if p99 and math.isfinite(p99) and p99 > 0 else "")
    return (f"You are looking at {what}: {stats['numel']:,} values from {num(stats['min'])} to {num(stats['max'])}, "
            f"{sign}{zeros}.{bulk}" + (f" {note}." if note else ""))


def ranges_sentence(ranges: dict[str, tuple[float, float]], stats: dict, percentile: float) -> str:
    """How the methods' ranges compare with the tensor's extent."""
    width = stats["max"] - stats["min"] or 1.0
    parts = []
    for m, (lo, hi) in ranges.items():
        name = NAMES[m] + (f" {percentile:g}" if m == "percentile" else "")
        share = (hi - lo) / width
        parts.append(f"{name} [{num(lo)}, {num(hi)}] ({share:.0%} of the extent)")
    return ("Each method picks a clipping range, drawn as a pair of lines: " + "; ".join(parts) + ". Values "
            "outside a range are clamped to its ends; a narrower range spends the same codes on less, so the "
            "values inside are rounded more finely.")


def step_sentence(a: Affine, split: ErrorSplit, method: str) -> str:
    """Scale, zero point and what they mean for this tensor."""
    g_lo, g_hi = a.grid_range
    z = (f"z = {a.zero_point} is the code of 0.0, so zeros (padding, ReLU outputs) come back exactly"
         if a.zero_point or not a.symmetric else "z = 0: the integers are centred on 0, whatever the data")
    clip = (f"{split.clipped:,} of the {split.n:,} values ({pct(split.clipped_fraction, 3)}) lie beyond the reach "
            f"of the codes and are clamped" if split.clipped else "No value lies beyond the codes: nothing is clamped")
    tol = 1e-3 * a.scale
    moved = (f" (the range [{num(a.lo)}, {num(a.hi)}] shifted so that 0 falls exactly on a code)"
             if not a.symmetric and (abs(g_lo - min(a.lo, 0)) > tol or abs(g_hi - max(a.hi, 0)) > tol) else "")
    name = NAMES[method][0].upper() + NAMES[method][1:]
    return (f"{name} at {a.bits} bits ({'symmetric' if a.symmetric else 'asymmetric'}): the {a.levels} "
            f"codes {a.qmin}..{a.qmax} cover [{num(g_lo)}, {num(g_hi)}]{moved}. One step is s = {num(a.scale)}, so "
            f"a value inside the range is off by at most s / 2 = {num(a.scale / 2)}. {z}. {clip}.")


def error_sentence(rows: list[dict], chosen: str, curves: dict[str, list[float]], bits: int) -> str:
    """Which method loses least here, rounding against clipping, and what a bit more buys."""
    by = {r["method"]: r for r in rows}
    c = by[chosen]
    best = max(rows, key=lambda r: r["sqnr"])
    uniform = c["scale"] ** 2 / 12
    share = c["clipping"] / (c["rounding"] + c["clipping"]) if c["rounding"] + c["clipping"] > 0 else 0.0
    text = (f"With {NAMES[chosen]}, the mean squared error is {num(c['rounding'] + c['clipping'], 3)}: rounding "
            f"{num(c['rounding'], 3)} (evenly spread values would give s² / 12 = {num(uniform, 3)}) and clipping "
            f"{num(c['clipping'], 3)} ({share:.0%} of it); SQNR {db(c['sqnr'])}. ")
    if best["method"] != chosen:
        text += f"The best here is {NAMES[best['method']]} at {db(best['sqnr'])}. "
    else:
        text += "That is the best of the methods here. "
    curve = curves.get(chosen)
    if curve and bits < 8 and all(math.isfinite(v) for v in curve[bits - 2: bits]):
        gain = curve[bits - 1] - curve[bits - 2]
        text += (f"One more bit ({bits + 1}) would take it to {db(curve[bits - 1])}, {gain:+.1f} dB: about 6 dB "
                 "per bit while rounding dominates, less where clipping does.")
    return text


def scheme_sentence(sym, asym, nonneg: bool) -> str:
    """Symmetric against asymmetric on this tensor: zero points, wasted codes, SQNR."""
    s, a = sym.affine, asym.affine
    if nonneg:
        lost = math.log2(s.levels / max(1, s.levels - sym.codes.wasted))
        lead = (f"This tensor has no negative values. The symmetric range keeps the codes {s.qmin}..-1 for "
                f"negatives that never come: {sym.codes.wasted} of {s.levels} codes are wasted "
                f"({sym.codes.wasted / s.levels:.0%}, about {lost:.1f} bit), and the steps are "
                f"{s.scale / a.scale:.2f}× as coarse as asymmetric's.")
    else:
        lead = (f"The symmetric range is centred on 0 (z = {s.zero_point}) and wastes {sym.codes.wasted} of "
                f"{s.levels} codes on the side where the tensor reaches less far; asymmetric shifts the codes with "
                f"z = {a.zero_point} to fit [{num(a.lo)}, {num(a.hi)}] and wastes {asym.codes.wasted}.")
    return (f"{lead} SQNR: symmetric {db(sym.split.sqnr_db)}, asymmetric {db(asym.split.sqnr_db)}. Values actually "
            f"land on {sym.codes.used} codes (symmetric) and {asym.codes.used} (asymmetric). Symmetric costs less "
            "arithmetic (no zero point to subtract): the int8 kernels take symmetric weights for that reason.")


def channel_sentence(view, kind: str) -> str:
    """How different the channels are, and what a scale per channel buys."""
    widths = [max(abs(lo), abs(hi)) for lo, hi in zip(view.lo, view.hi)]
    live = [i for i, w in enumerate(widths) if w > 0]
    what = "output channels (filters)" if kind == "weights" else "input channels"
    t = view.tensor
    if not live:
        return f"All {view.channels} {what} are exactly 0 here: there is nothing to quantize."
    narrow, wide = min(live, key=widths.__getitem__), max(live, key=widths.__getitem__)
    g_lo, g_hi = t.grid_range
    span = min(view.hi[narrow], g_hi) - max(view.lo[narrow], g_lo)
    codes = min(t.levels, int(span / t.scale) + 1) if t.scale > 0 else t.levels
    finite = [(a, b) for a, b in zip(view.sqnr_tensor, view.sqnr_channel) if math.isfinite(a) and math.isfinite(b)]
    gains = sorted(b - a for a, b in finite)
    median_gain = gains[len(gains) // 2] if gains else 0.0
    dead = view.channels - len(live)
    dead_text = f" ({dead} channel(s) are all zeros: a dead ReLU or an unused filter)" if dead else ""
    return (f"The {view.channels} {what} reach from ±{num(widths[narrow], 3)} (channel {narrow}) to "
            f"±{num(widths[wide], 3)} (channel {wide}), {widths[wide] / widths[narrow]:.1f}× apart{dead_text}. "
            f"One per-tensor scale (s = {num(t.scale)}) must serve the widest, so channel {narrow} spans about "
            f"{codes} of the {t.levels} codes. With a scale per channel the median channel gains "
            f"{median_gain:.1f} dB of SQNR; the whole tensor goes from {db(view.split_tensor.sqnr_db)} to "
            f"{db(view.split_channel.sqnr_db)}.")


def cost_sentence(costs, bits: int) -> str:
    """What per-group scales cost in bits per weight and what they buy."""
    by = {c.label: c for c in costs}
    pc = by.get("per-channel")
    groups = [c for c in costs if c.granularity == "per-group"]
    if not groups or pc is None:
        return ("Every row of this weight is shorter than the smallest group size (16): per-group is the same "
                "as per-channel here.")
    g = by.get("per-group(64)", groups[len(groups) // 2])
    return (f"Per channel costs {pc.scale_bits + pc.zero_point_bits:.4f} bits per weight in scales and zero points "
            f"({pc.scales:,} of them); per-group({g.group_size}) costs {g.scale_bits + g.zero_point_bits:.3f} "
            f"({g.scales:,}): {g.bits_per_weight(bits):.3f} bits a weight instead of {bits}, for "
            f"{db(g.split.sqnr_db)} against per-channel's {db(pc.split.sqnr_db)}. Smaller groups follow the "
            f"weights more closely and cost more: per-group({groups[0].group_size}) spends "
            f"{groups[0].scale_bits + groups[0].zero_point_bits:.3f} bits a weight.")


def dynamic_sentence(br, method: str) -> str:
    """Static range against the batches' own."""
    s = br.static
    over = [i + 1 for i, sp in enumerate(br.static_splits) if sp.clipped]
    clipped = sum(sp.clipped for sp in br.static_splits)
    total = sum(sp.n for sp in br.static_splits)
    s_db = [sp.sqnr_db for sp in br.static_splits]
    d_db = [sp.sqnr_db for sp in br.dynamic_splits]
    mean = lambda v: sum(x for x in v if math.isfinite(x)) / max(1, sum(math.isfinite(x) for x in v))  # noqa: E731
    reach = (f"batch(es) {', '.join(map(str, over))} reach beyond it and get clipped ({clipped:,} of {total:,} values)"
             if over else "no batch reaches beyond it")
    d_mean, s_mean = mean(d_db), mean(s_db)
    verdict = ("Dynamic wins here: each batch gets steps fitted to it" if d_mean > s_mean + 0.05 else
               f"Static does as well or better here: {NAMES[method]} cuts a tail that each batch's min-max must cover"
               if d_mean < s_mean - 0.05 else "The two are about even here")
    return (f"The static range [{num(s.lo)}, {num(s.hi)}] ({NAMES[method]} over all {len(br.batch_hi)} "
            f"calibration batches) is fixed before any image is seen; the batches' own maxima run from "
            f"{num(min(br.batch_hi))} to {num(max(br.batch_hi))}, and {reach}. Dynamic quantization takes each "
            f"batch's min and max as it runs: mean SQNR {d_mean:.1f} dB against {s_mean:.1f} dB static. {verdict}; "
            "dynamic pays a min/max pass over every batch at run time, and the same image gets other integers in "
            "another batch.")


def result_sentence(r: dict) -> str:
    """The model measured with only this layer quantized."""
    n = r["n"]
    other = r["flips"] - r["broke"] - r["fixed"]
    delta = r["top1_delta"]
    move = (f"went from {r['top1_fp32']:.2f}% to {r['top1']:.2f}% ({delta:+.2f} points)" if abs(delta) > 1e-9
            else f"stayed at {r['top1']:.2f}%")
    one = 100.0 / n
    flips = (f"{r['flips']:,} of the {n:,} images ({100 * r['flips'] / n:.2f}%) changed class: {r['broke']} that FP32 "
             f"had right are now wrong, {r['fixed']} the other way, {other} wrong both times"
             if r["flips"] else f"no image of the {n:,} changed class")
    return (f"With only {r['label']}, top-1 {move} on {n:,} test images; {flips}. One image is {one:.2f} points "
            f"here, so differences of a few images are noise. This is {r['simulated']}.")
