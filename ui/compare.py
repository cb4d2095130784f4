"""Two runs side by side (the Runs page's Compare): B's numbers as cards with the change from A, a warning when
their FP32 references were timed under different loads, and where their manifests differ."""

from __future__ import annotations

import json

import streamlit as st

from qcore.metrics.result import Result
from qcore.present.report import fmt
from qcore.quant.spec_ptq import ptq_label

from .common import delta_style
from .text import plain

__all__ = ["CARD_WIDTH", "compare", "compare_references"]

CARD_WIDTH = 168  # px: "Latency p50 ms" and "88.00" whole; three cards a row at 1024 px, five at 1280


def compare(a: Result, b: Result) -> None:
    """Two runs side by side; the deltas are B minus A."""
    st.markdown(f"**A** {plain(a.label)} ({plain(a.run_id)}) · **B** {plain(b.label)} ({plain(b.run_id)})")
    fields = [("Top-1 %", "top1", ".2f", "normal"), ("Agreement %", "agreement", ".1f", "normal"),
              ("Latency p50 ms", "latency_ms_p50", ".2f", "inverse"), ("Speed-up ×", "speedup", ".2f", "normal"),
              ("Size MB", "size_bytes", ".2f", "inverse"), ("Size ×", "size_ratio", ".3f", "inverse")]  # fmt: skip
    fields.insert(3, ("FP32 p50 ms", "fp32_latency_ms_p50", ".2f", "off"))  # what each speed-up was divided by
    # cards of a fixed width in a row that wraps: seven columns cut every card to "8.…" at 1024 px
    row = st.container(horizontal=True, wrap=True)
    for title, attr, spec, colour in fields:
        va, vb = getattr(a, attr), getattr(b, attr)
        if attr == "size_bytes":
            va, vb = (None if v is None else v / 1e6 for v in (va, vb))
        change = None if va is None or vb is None else vb - va
        digits = int(spec.strip(".f"))
        delta = None if change is None else format(round(change, digits) or 0.0, "+" + spec)  # never "-0.00"
        row.metric(
            title,
            fmt(vb, spec),
            delta=delta,
            **delta_style(change, colour, digits),
            border=True,
            width=CARD_WIDTH,
            help=f"B; A was {fmt(va, spec)}. The change is B minus A.",
        )
    compare_references(a, b)
    if a.spec.asks_ptq or b.spec.asks_ptq:  # CLE, bias correction, AdaRound: what each ran and what it took
        st.caption(plain("Post-training algorithms: " + "; ".join(f"{n} {_algorithms(r)}" for n, r in (("A", a),
                                                                                                      ("B", b)))))
    same = {k: v for k, v in a.manifest.items() if b.manifest.get(k) == v}
    diff = {k: (a.manifest.get(k), b.manifest.get(k)) for k in set(a.manifest) | set(b.manifest) if k not in same}
    diff.pop("created_at", None)
    if a.model != b.model or a.dataset != b.dataset:
        st.warning("A and B differ in model or dataset: their accuracies are not on the same images.")
    if diff:
        with st.expander(f"Where their manifests differ ({len(diff)})"):
            st.code(json.dumps(diff, indent=1, default=str), language="json")


def _algorithms(r: Result) -> str:
    words = " ".join(ptq_label(r.spec)) or "none"
    return words + (f" ({r.ptq_algorithm_seconds:.1f} s)" if r.ptq_algorithm_seconds is not None else "")


def compare_references(a: Result, b: Result) -> None:
    """Warn when A's and B's latencies were taken against FP32 timings more than 10% apart (a busy machine, or
    another input): their latencies then disagree with their speed-ups, and only the speed-ups compare."""
    ra, rb = a.fp32_latency_ms_p50, b.fp32_latency_ms_p50
    if ra and rb and max(ra, rb) / min(ra, rb) > 1.1:
        st.warning(f"A was timed against FP32 p50 {ra:.2f} ms and B against {rb:.2f} ms: the machine was not in "
                   "the same state (or the input differs), so their latencies do not compare; their speed-ups, each "
                   "against the FP32 timed beside it, do. Time them again on a quiet machine to compare latencies.",
                   icon=":material/warning:")  # fmt: skip
    for r, name in ((a, "A"), (b, "B")):
        if r.busy:
            st.caption(f"{name} was timed while the machine was busy: {plain(r.busy)}.")
