"""A diagnosis in words (``python -m qcore doctor``, the app's "Why?" panel), and a measured move in one line.

The numbers are the diagnosis's own (:class:`qcore.doctor.diagnose.Diagnosis`); nothing here measures.
"""

from __future__ import annotations

from qcore.doctor.diagnose import Diagnosis
from qcore.doctor.fix import Fix
from qcore.metrics.paired_rows import paired_change
from qcore.metrics.result import Result
from qcore.present.report import fmt

__all__ = ["headline", "split_lines", "speed_lines", "fix_line", "diagnosis_text", "move_text"]


def headline(d: Diagnosis) -> str:
    """What the point lost, with its interval, and its speed-up against what this CPU should give."""
    parts = []
    if d.lost_points is not None:
        iv = (f" (95% interval {d.lost_interval[0]:+.2f} to {d.lost_interval[1]:+.2f})"
              if d.lost_interval else "")
        parts.append(f"top-1 {fmt(d.top1, '.2f')} % against FP32's {fmt(d.fp32_top1, '.2f')} %: "
                     f"{d.lost_points:+.2f} points lost{iv}".replace("+-", "-"))
    if d.speedup is not None:
        parts.append(f"{d.speedup:.2f}x FP32's speed" + (f", {d.standing}" if d.standing else ""))
    focus = {"accuracy": "it lost accuracy: the accuracy fixes come first",
             "speed": "it lost speed, not accuracy: the speed fixes come first",
             "": "it lost neither significantly"}[d.focus]
    return f"{d.label}: " + "; ".join(parts) + f". {focus[0].upper() + focus[1:]}."


def split_lines(d: Diagnosis) -> list[str]:
    s = d.split or {}
    out = []
    if s.get("weights_top1") is not None:
        out.append(f"only the weights quantized: top-1 {fmt(s['weights_top1'], '.2f')} %, agreement "
                   f"{fmt(s.get('weights_agreement'), '.2f')} %")
    if s.get("acts_top1") is not None:
        out.append(f"only the activations quantized: top-1 {fmt(s['acts_top1'], '.2f')} %, agreement "
                   f"{fmt(s.get('acts_agreement'), '.2f')} %")
    if s.get("simulated"):
        out.append(f"(simulated: {s['simulated']})")
    if s.get("note"):
        out.append(s["note"])
    return out


def speed_lines(d: Diagnosis) -> list[str]:
    p = d.profile or {}
    out = []
    for name, key in (("quantized", "ms_per_call"), ("FP32", "fp32_ms_per_call")):
        cats = p.get(key) or {}
        if cats:
            total = sum(cats.values()) or 1.0
            out.append(f"{name} ({p.get('profiler') or 'no profiler'}): " + ", ".join(
                f"{k} {v:.2f} ms ({100 * v / total:.0f}%)" for k, v in cats.items() if v > 0))
    ops = p.get("float_ops") or []
    if ops:
        out.append("still in FP32: " + ", ".join(f"{n} {ms:.2f} ms" for n, ms in ops[:5]))
    if p.get("note"):
        out.append(p["note"])
    e = d.expected
    if e:
        out.append(f"this CPU ({e.get('isa')}): INT8 over FP32 published {e.get('low')}-{e.get('high')}x "
                   f"({e.get('source')})")
    return out


def fix_line(i: int, f: Fix) -> str:
    """``3. [accuracy] per-channel weights -> INT8 per-channel ... : why (expected +1.2 pts)``."""
    unit = f"+{f.score:.2f} pts expected" if f.kind == "accuracy" else f"{f.score:.2f}x expected"
    target = f.spec.label() if f.spec is not None else ""
    config = ", ".join(f"{k}={v}" for k, v in f.config.items())
    how = " · ".join(x for x in (target, f"new sweep: {config}" if config else "") if x)
    return f"{i}. [{f.kind}] {f.what}" + (f" -> {how}" if how else "") + f": {f.why} ({unit})"


def diagnosis_text(d: Diagnosis) -> str:
    """The whole diagnosis as the CLI prints it."""
    lines = [headline(d), ""]
    if d.split:
        lines += ["Weights or activations:"] + [f"  {x}" for x in split_lines(d)] + [""]
    if d.culprits or d.layers_source:
        lines.append(f"Where (Layers measurement: {d.layers_source or 'none'}):")
        for c in d.culprits:
            gain = f"+{c['gain']:.2f} pts alone in FP32" if c.get("gain") is not None else f"by {c.get('metric')}"
            lines.append(f"  {c['name']} ({c['role']}): {gain}")
        lines.append("")
    if d.causes:
        lines.append("Why:")
        for c in d.causes:
            place = f" at {c.where}" if c.where else ""
            lines.append(f"  {c.cause}{place}: {c.evidence}")
        lines.append("")
    sp = speed_lines(d)
    if sp:
        lines += ["Where the time goes:"] + [f"  {x}" for x in sp] + [""]
    if d.refused:
        lines += ["Not measured:"] + [f"  {x}" for x in d.refused] + [""]
    lines.append("Fixes, in the order to try them (--try N measures one):" if d.suggestions else "No fix to suggest.")
    lines += [f"  {fix_line(i, f)}" for i, f in enumerate(d.suggestions, 1)]
    secs = ", ".join(f"{k} {v:.1f} s" for k, v in d.seconds.items())
    if secs:
        lines += ["", f"Diagnosis cost: {secs}."]
    return "\n".join(lines)


def move_text(origin: Result, fix: Result, what: str) -> str:
    """What a fix changed and what it bought: the paired top-1 change (or, without per-image bits, the difference
    of the two rows' changes against FP32, said), speed-up and size, each against the origin."""
    change = paired_change(origin, fix)
    if change is not None:
        acc = f"top-1 {change.text()}"
    elif origin.top1 is not None and fix.top1 is not None:
        acc = f"top-1 {fix.top1 - origin.top1:+.2f} pts (not paired: a row measured before per-image results were kept)"
    else:
        acc = "top-1 not measured"
    speed = (f"speed {origin.latency_ms_p50 / fix.latency_ms_p50:.2f}x the origin's"
             if origin.latency_ms_p50 and fix.latency_ms_p50 else "speed not measured")
    size = (f"size {fix.size_bytes / origin.size_bytes:.2f}x" if origin.size_bytes and fix.size_bytes
            else "size not measured")
    return f"{what}: {origin.label} -> {fix.label}: {acc}; {speed}; {size}"
