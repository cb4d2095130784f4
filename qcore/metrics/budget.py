"""The decision: which measured point to ship under a latency budget and an accuracy budget.

A :class:`Budget` holds a latency budget, ``sla_ms`` (the median latency, p50, in milliseconds at the timed batch
size) or ``sla_speedup`` (the speed-up over FP32 eager timed in turns with the row), an accuracy budget,
``max_drop`` (the largest drop of top-1 from FP32, in percentage points), and which point to prefer among those
that meet both: ``smallest`` (the fewest bytes) or ``fastest``.

A row meets the accuracy budget when the whole 95% interval of its change against FP32 lies within it: the
interval's low end (``top1_delta_lo``: the largest drop the evaluation images allow) is no lower than
``-max_drop``. A row stored without that interval is judged on its change itself, and the decision says so. A
row meets the latency budget when its own p50 is at most ``sla_ms``, or its speed-up at least ``sla_speedup``.

:func:`choose` judges the rows that can be judged: measured (status ok) with a top-1, a latency (and a speed-up,
for a speed-up budget) and an FP32 reference (a ``top1_delta``). Rows of an error, a skip or a cancel and rows
whose FP32 row is missing are never chosen; the decision counts them. Among the rows that meet both budgets it
names the point to ship (ties broken by latency, size, accuracy, label, run id: the same rows give the same
point); when none does, which budget is the closest to being met: the one that the best point within the other
budget misses by the least, relative to the budget itself.

>>> from qcore.quant.spec import FP32, QuantSpec
>>> fp32 = Result(FP32, "m", "d", top1=90.0, top1_delta=0.0, latency_ms_p50=10.0, speedup=1.0, size_bytes=40)
>>> int8 = Result(QuantSpec("int8"), "m", "d", top1=89.5, top1_delta=-0.5, top1_delta_lo=-0.9,
...               top1_delta_hi=-0.1, latency_ms_p50=4.0, speedup=2.5, size_bytes=10)
>>> choose([fp32, int8], Budget(sla_ms=5.0, max_drop=1.0)).ship is int8
True
>>> miss = choose([fp32, int8], Budget(sla_ms=3.0, max_drop=1.0)).closest   # the fastest within 1 point: 1 ms over
>>> miss.budget, miss.row is int8, miss.over
('latency', True, 1.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from qcore.metrics.result import Result

__all__ = ["PREFER", "LIMITS", "FIELDS", "allowed", "Budget", "Miss", "Choice", "check", "parse", "drop_of", "meets",
           "choose", "point_text"]

PREFER = ("smallest", "fastest")
# Each budget's range: (above, at most, unit). Above 0 for a latency and a speed-up (a budget of 0 ms can never be
# met); a drop of 0 asks for no loss the images can show. The tops are past any sense: 16 minutes a batch, a
# thousand times faster than FP32, every point of top-1.
LIMITS = {"sla_ms": (0.0, 1e6, "ms"), "sla_speedup": (0.0, 1000.0, "×"), "max_drop": (0.0, 100.0, "points")}
# What each budget is, in the words of a message.
FIELDS = {
    "sla_ms": "the latency budget: the median latency (p50) in milliseconds at the timed batch size",
    "sla_speedup": "the latency budget as a speed-up over FP32 eager",
    "max_drop": "the accuracy budget: the largest drop of top-1 from FP32, in points",
}
_EPS = 1e-9  # a drop equal to its budget meets it, whatever the floating point says


def allowed(name: str) -> str:
    """What budget ``name`` allows, in words: ``above 0, at most 1,000,000 ms``."""
    lo, hi, unit = LIMITS[name]
    low = "0 or more" if name == "max_drop" else "above 0"
    return f"{low}, at most {hi:,.0f}{'' if unit == '×' else ' '}{unit}"


def check(name: str, value) -> float:
    """``value`` as the float budget ``name`` (``sla_ms``, ``sla_speedup`` or ``max_drop``), or a ValueError naming
    the field, what it is and what is allowed.

    >>> check("max_drop", 1)
    1.0
    >>> try:
    ...     check("sla_ms", -3)
    ... except ValueError as exc:
    ...     print(str(exc).split("; ")[-1])
    allowed: above 0, at most 1,000,000 ms
    """
    lo, hi, _ = LIMITS[name]
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value > hi or (value < lo if name == "max_drop" else value <= lo):
        raise ValueError(f"{name}={value!r} is not allowed ({FIELDS[name]}); allowed: {allowed(name)}")
    return float(value)


def parse(name: str, text: str) -> float:
    """A budget typed as text (a link's value, a command-line option) as :func:`check` takes it."""
    try:
        value = float(str(text).strip())
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a number ({FIELDS[name]}); allowed: {allowed(name)}") from None
    try:
        return check(name, value)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not allowed ({FIELDS[name]}); allowed: {allowed(name)}") from None


@dataclass(frozen=True)
class Budget:
    """What a point must meet to be shipped, and which of those to prefer; checked when made (ValueError)."""

    sla_ms: float | None = None
    sla_speedup: float | None = None
    max_drop: float | None = None
    prefer: str = "smallest"

    def __post_init__(self) -> None:
        for name in LIMITS:
            if getattr(self, name) is not None:
                object.__setattr__(self, name, check(name, getattr(self, name)))
        if self.sla_ms is not None and self.sla_speedup is not None:
            raise ValueError("sla_ms and sla_speedup are both given: a latency budget is one of them, milliseconds "
                             "or a speed-up over FP32; allowed: one, or neither")
        if self.sla_ms is None and self.sla_speedup is None and self.max_drop is None:
            raise ValueError("no budget given; allowed: a latency budget (sla_ms or sla_speedup), an accuracy budget "
                             "(max_drop), or both")
        if self.prefer not in PREFER:
            raise ValueError(f"prefer={self.prefer!r} is not allowed; allowed: {', '.join(PREFER)}")

    @property
    def latency(self) -> bool:
        return self.sla_ms is not None or self.sla_speedup is not None

    @property
    def accuracy(self) -> bool:
        return self.max_drop is not None

    def latency_text(self) -> str:
        if self.sla_ms is not None:
            return f"p50 at most {self.sla_ms:g} ms"
        return f"at least {self.sla_speedup:g}× faster than FP32" if self.sla_speedup is not None else ""

    def limits_text(self) -> str:
        """The budgets in words: ``p50 at most 5 ms and a drop of at most 1 point of top-1, its 95% interval
        included``."""
        parts = [self.latency_text()] if self.latency else []
        if self.accuracy:
            parts.append(f"a drop of at most {self.max_drop:g} point{'' if self.max_drop == 1 else 's'} of top-1, "
                         "its 95% interval included")
        return " and ".join(parts)

    def text(self) -> str:
        """:meth:`limits_text` and the preference: ``...; the smallest first``."""
        return f"{self.limits_text()}; the {self.prefer} first"


def drop_of(r: Result) -> tuple[float, bool]:
    """The largest drop of top-1 ``r``'s 95% interval allows, in points (negative: even the interval's low end is
    a gain), and whether the interval said so (False: the change itself, no interval stored). The FP32 reference
    itself drops nothing."""
    if r.top1_delta_lo is not None:
        return -r.top1_delta_lo, True
    if r.spec.is_reference and r.top1_delta == 0:
        return 0.0, True
    return -(r.top1_delta or 0.0), False


def _speedup(r: Result) -> float | None:
    return r.speedup if r.speedup is not None else (1.0 if r.spec.is_reference else None)


def _why_out(r: Result, budget: Budget) -> str | None:
    """Why row ``r`` cannot be judged (a key of :data:`_LEFT_OUT`), or None."""
    if not r.ok:
        return "not measured"
    if r.top1 is None or r.latency_ms_p50 is None or (budget.sla_speedup is not None and _speedup(r) is None):
        return "no numbers"
    return "no reference" if r.top1_delta is None else None


_LEFT_OUT = {
    "not measured": "not measured (an error, a skip or a cancel)",
    "no numbers": "without a top-1 or a latency{speedup}",
    "no reference": "without an FP32 reference to measure the drop against",
}


def meets(r: Result, budget: Budget) -> tuple[bool, bool]:
    """``(latency ok, accuracy ok)`` of row ``r`` under ``budget``; a budget not given is met; a row that cannot be
    judged (not measured, no numbers, no FP32 reference) meets neither."""
    if _why_out(r, budget):
        return False, False
    if budget.sla_ms is not None:
        lat = r.latency_ms_p50 <= budget.sla_ms + _EPS
    elif budget.sla_speedup is not None:
        lat = _speedup(r) >= budget.sla_speedup - _EPS
    else:
        lat = True
    acc = budget.max_drop is None or drop_of(r)[0] <= budget.max_drop + _EPS
    return lat, acc


@dataclass(frozen=True)
class Miss:
    """The best point within one budget, and how far it misses the other (``budget``: the one it misses):
    ``value`` its p50 (ms), speed-up or largest drop (points); ``over`` how far past the budget, in those units;
    ``relative`` that over the budget itself; ``within`` whether the point meets the other budget; ``text`` it in
    words."""

    budget: str  # "latency" or "accuracy"
    row: Result
    value: float
    over: float
    relative: float
    within: bool
    text: str


@dataclass(frozen=True)
class Choice:
    """What :func:`choose` decided: ``ship`` (None: no point meets both), ``meeting`` (the points that meet both,
    the preferred first), ``judged`` (rows judged), ``left_out`` (reason: rows), ``estimated`` (rows judged on
    their change, no interval stored), ``misses`` (when none meets: the closest first)."""

    budget: Budget
    ship: Result | None
    meeting: tuple[Result, ...] = ()
    judged: int = 0
    left_out: dict[str, int] = field(default_factory=dict)
    estimated: int = 0
    misses: tuple[Miss, ...] = ()

    @property
    def closest(self) -> Miss | None:
        return self.misses[0] if self.misses else None

    def ship_text(self) -> str:
        """The point to ship in words, or that none meets both budgets and which is closest to being met."""
        b = self.budget
        if self.ship is not None:
            n, what = len(self.meeting), "both budgets" if b.latency and b.accuracy else "the budget"
            among = f"the {b.prefer} of {n} points that meet" if n > 1 else "the one point that meets"
            busy = " It was timed while the machine was busy: time it again before trusting its latency." if (
                self.ship.busy) else ""
            return f"Ship {point_text(self.ship)}: {among} {what} ({b.limits_text()}).{busy}"
        if not self.judged:
            return ("No point can be judged against the budget: no row is measured with a top-1, a latency and an "
                    "FP32 reference.")
        closest, both = self.closest, b.latency and b.accuracy
        either = both and not any(m.within for m in self.misses)
        what = ("either budget" if either else "both budgets") if both else "the budget"
        head = f"No point meets {what} ({b.limits_text()})"
        if closest is None:
            return head + "."
        which = f"; the closest to being met is the {closest.budget} budget: " if both else "; "
        return f"{head}{which}{closest.text}."

    def notes(self) -> list[str]:
        """What the reader must know besides: rows left out, rows judged without an interval."""
        out = []
        if self.left_out:
            total = sum(self.left_out.values())
            speedup = " or a speed-up" if self.budget.sla_speedup is not None else ""
            parts = [f"{n} {_LEFT_OUT[k].format(speedup=speedup)}" for k, n in self.left_out.items()]
            out.append(f"{total} row{'s' if total > 1 else ''} left out, never chosen: {', '.join(parts)}.")
        if self.estimated and self.budget.accuracy:
            out.append(f"{self.estimated} row{'s' if self.estimated > 1 else ''} stored without the 95% interval of "
                       "the change: judged on the change itself.")
        return out

    def line(self) -> str:
        """:meth:`ship_text` and :meth:`notes`, one paragraph (the CLI prints it)."""
        return " ".join([self.ship_text(), *self.notes()])


def point_text(r: Result) -> str:
    """A point's label and the numbers a budget judges: ``INT8 ... (p50 3.10 ms, 2.95× FP32; top-1 -0.40 points,
    95% interval -0.80 to -0.10; 11.20 MB)``."""
    lat = f"p50 {r.latency_ms_p50:.2f} ms" + (f", {_speedup(r):.2f}× FP32" if _speedup(r) is not None else "")
    if r.top1_delta_lo is not None and r.top1_delta_hi is not None:
        acc = f"top-1 {r.top1_delta:+.2f} points, 95% interval {r.top1_delta_lo:+.2f} to {r.top1_delta_hi:+.2f}"
    else:
        acc = f"top-1 {r.top1_delta:+.2f} points" + ("" if r.spec.is_reference else ", no interval stored")
    size = "" if r.size_bytes is None else f"; {r.size_bytes / 1e6:.2f} MB"
    return f"{r.label} ({lat}; {acc}{size})"


def _latency_key(r: Result, budget: Budget) -> float:
    """Lower is faster: the p50, or minus the speed-up for a speed-up budget."""
    return -_speedup(r) if budget.sla_speedup is not None else r.latency_ms_p50


def _order(budget: Budget):
    """The preference among points that meet both: the smallest (else the fastest) first, then the other, the
    smaller drop, the label and the run id, so the same rows always give the same point."""
    def key(r: Result) -> tuple:
        size = float("inf") if r.size_bytes is None else r.size_bytes
        fast = _latency_key(r, budget)
        first = (size, fast) if budget.prefer == "smallest" else (fast, size)
        return (*first, drop_of(r)[0], r.label, r.run_id)

    return key


def _latency_miss(r: Result, budget: Budget, within: str) -> Miss:
    if budget.sla_ms is not None:
        over = r.latency_ms_p50 - budget.sla_ms
        text = (f"the fastest point{within}, {r.label}, runs at {r.latency_ms_p50:.2f} ms, {over:.2f} ms over the "
                f"latency budget of {budget.sla_ms:g} ms")
        return Miss("latency", r, r.latency_ms_p50, over, over / budget.sla_ms, bool(within), text)
    s = _speedup(r)
    over = budget.sla_speedup - s
    text = (f"the fastest point{within}, {r.label}, is {s:.2f}× faster than FP32, {over:.2f}× short of the "
            f"latency budget of {budget.sla_speedup:g}×")
    return Miss("latency", r, s, over, over / budget.sla_speedup, bool(within), text)


def _accuracy_miss(r: Result, budget: Budget, within: str) -> Miss:
    drop, _ = drop_of(r)
    over = drop - budget.max_drop
    text = (f"the most accurate point{within}, {r.label}, drops up to {drop:.2f} points (the low end of its 95% "
            f"interval), {over:.2f} over the accuracy budget of {budget.max_drop:g}")
    rel = over / budget.max_drop if budget.max_drop > 0 else math.inf
    return Miss("accuracy", r, drop, over, rel, bool(within), text)


def _misses(judged: list[Result], flags: dict[int, tuple[bool, bool]], budget: Budget) -> tuple[Miss, ...]:
    """When no point meets both budgets, how close each comes, the closest first (relative to the budget; latency
    first on a tie). With both budgets: while some point meets the accuracy budget, the fastest of those against
    the latency budget, and while some meets the latency budget, the most accurate of those against the accuracy
    budget; when no point meets either, the fastest and the most accurate of all. With one budget: the best point
    of all against it."""
    def fastest(rows):
        return min(rows, key=lambda r: (_latency_key(r, budget), drop_of(r)[0], r.label, r.run_id))

    def accurate(rows):
        return min(rows, key=lambda r: (drop_of(r)[0], _latency_key(r, budget), r.label, r.run_id))

    if not judged:
        return ()
    fast_ok = [r for r in judged if flags[id(r)][0]]
    acc_ok = [r for r in judged if flags[id(r)][1]]
    out = []
    if not budget.accuracy:
        out.append(_latency_miss(fastest(judged), budget, ""))
    elif not budget.latency:
        out.append(_accuracy_miss(accurate(judged), budget, ""))
    elif not fast_ok and not acc_ok:
        out += [_latency_miss(fastest(judged), budget, ""), _accuracy_miss(accurate(judged), budget, "")]
    else:
        if acc_ok:
            out.append(_latency_miss(fastest(acc_ok), budget, " within the accuracy budget"))
        if fast_ok:
            out.append(_accuracy_miss(accurate(fast_ok), budget, " within the latency budget"))
    return tuple(sorted(out, key=lambda m: (m.relative, m.budget != "latency")))


def choose(results, budget: Budget) -> Choice:
    """The point to ship among ``results`` under ``budget`` (see the module's words), with what was left out."""
    judged, left_out = [], {}
    for r in results:
        why = _why_out(r, budget)
        if why:
            left_out[why] = left_out.get(why, 0) + 1
        else:
            judged.append(r)
    left_out = {k: left_out[k] for k in _LEFT_OUT if k in left_out}
    flags = {id(r): meets(r, budget) for r in judged}
    meeting = sorted((r for r in judged if all(flags[id(r)])), key=_order(budget))
    estimated = sum(not drop_of(r)[1] for r in judged)
    misses = () if meeting else _misses(judged, flags, budget)
    return Choice(budget, meeting[0] if meeting else None, tuple(meeting), len(judged), left_out, estimated, misses)
