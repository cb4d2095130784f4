"""The budget on the Pareto chart: the region that meets both budgets shaded, the points that meet both ringed.

The decision itself is :func:`qcore.metrics.budget.choose`; this module only draws it, on the app's chart and the
HTML report's alike (:func:`shade`), and says in words what it drew.

- The shade is a layout shape (never a trace: the browser helpers find points by their trace), below the points:
  top-1 at least the FP32 top-1 less the accuracy budget, and, on the latency chart, x at most the latency budget
  (a speed-up budget at the FP32 p50 the axis divides by, over the budget). A budget the chart's axes cannot hold
  (a latency budget on the size chart; rows of several FP32 references) is left to the rings.
- The rings are the truth: a trace ``meets both budgets`` of open circles around every point that does, and a
  thicker one, ``point to ship``, around the point the decision names. The chart draws each point at FP32's p50
  over its speed-up, and the accuracy budget judges the low end of the drop's 95% interval, so a point inside the
  shade can miss (its own p50 was timed under another load; its interval reaches below the line) and the ring
  says so.
- The axes keep the points' range: the shade never stretches them; a budget's edge near the points is brought
  into view.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from qcore.metrics.budget import Choice
from qcore.present.chart_x import LATENCY, positions

__all__ = ["MEETS", "SHIP", "SHADE", "shade"]

MEETS, SHIP = "meets both budgets", "point to ship"  # the rings' trace names
SHADE = "within the budgets"  # the shade's legend entry
_GREEN = "44,160,44"


def _fp32_top1(rows: Sequence) -> float | None:
    """The FP32 top-1 every row's change was measured against, when they share one (top-1 less its change)."""
    refs = {round(r.top1 - r.top1_delta, 6) for r in rows if r.top1 is not None and r.top1_delta is not None}
    return refs.pop() if len(refs) == 1 else None


def _x_edge(choice: Choice, x: str, pos: dict) -> float | None:
    """Where the latency budget sits on the latency axis, or None where it has no place."""
    b = choice.budget
    if x != LATENCY or not b.latency:
        return None
    if b.sla_ms is not None:
        return b.sla_ms
    refs = {p.ref for p in pos.values() if p.ref}
    return refs.pop() / b.sla_speedup if len(refs) == 1 else None


def _near(edge: float, lo: float, hi: float, log: bool) -> bool:
    """Whether a budget's edge is near enough the points to be brought into view."""
    if log:
        return lo / 3 <= edge <= hi * 3
    span = max(hi - lo, 0.2 * hi)
    return lo - span <= edge <= hi + span


def _keep_x(fig, pos: dict, edge: float | None) -> tuple[bool, float]:
    """Fix the x axis to the points (and the budget's edge, when near), so the shade cannot stretch it; returns
    whether the axis is a log one and a value left of everything drawn (where the shade starts)."""
    log = fig.layout.xaxis.type == "log"
    pts = [v for p in pos.values() for v in (p.lo, p.hi) if v is not None and (v > 0 or not log)]
    if not pts:
        return log, 0.0
    lo, hi = min(pts), max(pts)
    rng = fig.layout.xaxis.range
    if rng is not None:  # set by the chart's scale already: keep it, the shade is clipped to it
        a = 10 ** rng[0] if log else rng[0]
        return log, (a / 10 if log else min(0.0, a - abs(a)))
    if edge is not None and edge > 0 and _near(edge, lo, hi, log):
        lo, hi = min(lo, edge), max(hi, edge)
    if log:
        a, b = math.log10(lo), math.log10(hi)
        pad = max(0.06 * (b - a), 0.05)
        fig.update_xaxes(range=[a - pad, b + pad])
        return log, 10 ** (a - pad - 1)
    pad = max(0.06 * (hi - lo), 0.05 * abs(hi), 1e-6)
    fig.update_xaxes(range=[max(0.0, lo - pad) if lo >= 0 else lo - pad, hi + pad])
    return log, min(0.0, lo - 2 * pad)


def _keep_y(fig, floor: float | None) -> None:
    """Bring the accuracy budget's line into view when it lies just below the points' range."""
    rng = fig.layout.yaxis.range
    if floor is None or rng is None:
        return
    lo, hi = rng
    if hi - 2 * (hi - lo) <= floor < lo:
        fig.update_yaxes(range=[floor - 0.05 * (hi - floor), hi])


def _rings(fig, rows: Sequence, x: str, choice: Choice, pos: dict, max_size: float) -> None:
    import plotly.graph_objects as go

    ids = {id(r) for r in choice.meeting}
    meeting = [r for r in rows if id(r) in ids and r.run_id in pos]
    size = lambda r: 10 + 30 * (r.size_bytes or 0) / max_size  # noqa: E731  (the points' own size)
    if meeting:
        fig.add_trace(go.Scatter(
            x=[pos[r.run_id].x for r in meeting], y=[r.top1 for r in meeting], mode="markers", name=MEETS,
            marker=dict(symbol="circle-open", size=[size(r) + 9 for r in meeting], color=f"rgb({_GREEN})",
                        line=dict(width=2, color=f"rgb({_GREEN})")),
            hoverinfo="skip", unselected=dict(marker=dict(opacity=1.0)),
        ))  # fmt: skip
    ship = choice.ship
    if ship is not None and any(ship is r for r in meeting):
        fig.add_trace(go.Scatter(
            x=[pos[ship.run_id].x], y=[ship.top1], mode="markers+text", name=SHIP, text=["ship"],
            textposition="top center", textfont=dict(size=13, color=f"rgb({_GREEN})"),
            marker=dict(symbol="circle-open", size=[size(ship) + 20], color=f"rgb({_GREEN})",
                        line=dict(width=4, color=f"rgb({_GREEN})")),
            hoverinfo="skip", unselected=dict(marker=dict(opacity=1.0)),
        ))  # fmt: skip


def shade(fig, rows: Sequence, x: str, choice: Choice) -> str:
    """Draw ``choice`` (:func:`qcore.metrics.budget.choose` of these rows) on ``fig``, a Pareto figure of ``rows``
    with ``x`` on its x axis (:func:`qcore.present.report.pareto_figure`); returns what it drew, in words."""
    ok = [r for r in rows if r.ok and r.top1 is not None and getattr(r, x, None) is not None]
    if not ok:
        return ""
    b = choice.budget
    pos = positions(ok, x)
    edge = _x_edge(choice, x, pos)
    base = _fp32_top1([r for r in ok if r.top1_delta is not None]) if b.accuracy else None
    floor = None if base is None else base - b.max_drop
    log, left = _keep_x(fig, pos, edge)
    _keep_y(fig, floor)
    said = []
    if edge is not None or floor is not None:
        fig.add_shape(
            type="rect", layer="below", xref="x" if edge is not None else "paper",
            yref="y" if floor is not None else "paper",
            x0=left if edge is not None else 0, x1=edge if edge is not None else 1,
            y0=floor if floor is not None else 0, y1=101.0 if floor is not None else 1,
            fillcolor=f"rgba({_GREEN},0.10)", line=dict(color=f"rgba({_GREEN},0.7)", width=1, dash="dot"),
            showlegend=True, name=SHADE,
        )  # fmt: skip
        if edge is not None:
            said.append(f"x at most {edge:.2f} ms" + ("" if b.sla_ms is not None else
                                                      f" (FP32's p50 over {b.sla_speedup:g}×)"))
        if floor is not None:
            said.append(f"top-1 at least {floor:.2f}% (FP32's {base:.2f}% less {b.max_drop:g} "
                        f"point{'' if b.max_drop == 1 else 's'})")
    _rings(fig, ok, x, choice, pos, max((r.size_bytes or 1) for r in ok))
    out = ["Shaded: " + " and ".join(said) + "." if said else "Nothing shaded."]
    if b.latency and edge is None:
        out.append("The latency budget has no place on " + ("the size axis." if x != LATENCY else
                                                            "this axis: its rows have several FP32 references."))
    if b.accuracy and floor is None:
        out.append("The accuracy budget has no line here: the rows do not share one FP32 reference.")
    what = "both budgets" if b.latency and b.accuracy else "the budget"
    on = [w for w, given in (("their own p50" if b.sla_ms is not None else "their own speed-up", b.latency),
                             ("the low end of the drop's 95% interval", b.accuracy)) if given]
    if choice.meeting:
        out.append(f"Ringed in green: the points that meet {what}, judged on {' and '.join(on)}"
                   + (", so a point inside the shade can miss." if said else "."))
    else:
        out.append(f"No point meets {what}: none is ringed.")
    return " ".join(out)
