"""The Sweep page's decision: a latency budget and an accuracy budget above the Pareto chart, the region that meets
both shaded on it, and a line under it naming the point to ship (:mod:`qcore.metrics.budget`,
:mod:`qcore.present.budget_chart`).

Every input is kept in the URL (``?sla_ms=5&max_drop=1&ship=fastest``, ``?sla=speed-up&sla_speedup=2``; Streamlit
keeps an option by its label, so the labels are the URL's words): a link reproduces the decision. Streamlit drops a
link's value a widget cannot take without a word, so the link's values are read first: one that is not allowed is
named, with what is, until that input is changed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import streamlit as st

from qcore.metrics.budget import FIELDS, LIMITS, PREFER, Budget, Choice, allowed, choose
from qcore.metrics.result import Result
from qcore.present.budget_chart import shade

from .text import plain

__all__ = ["KIND_KEY", "KINDS", "Decision", "inputs"]

KIND_KEY = "sla"  # the latency budget in ms or as a speed-up; each value has a URL key of its own
KINDS = ("ms", "speed-up")
VALUE_KEYS = {"ms": "sla_ms", "speed-up": "sla_speedup"}
DROP_KEY, SHIP_KEY = "max_drop", "ship"
_PROBLEMS = "budget-link-problems"


def _forget(key: str) -> None:
    """A value chosen on the page replaces what the link said."""
    st.session_state.get(_PROBLEMS, {}).pop(key, None)


def _link_problems() -> dict[str, str]:
    """What the link asks for that the inputs cannot take (read before they take the URL's values, which drop it)."""
    said = st.session_state.setdefault(_PROBLEMS, {})
    q = st.query_params
    for key in (*VALUE_KEYS.values(), DROP_KEY):
        raw = q.get(key)
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and 0 <= value <= LIMITS[key][1]):  # the input's range; Budget says the rest
            said[key] = f"The link's {key}={raw!r} was left out ({FIELDS[key]}); allowed: {allowed(key)}"
    for key, choices in ((KIND_KEY, tuple(KINDS)), (SHIP_KEY, PREFER)):
        if (raw := q.get(key)) is not None and raw not in choices:
            said[key] = f"The link's {key}={raw!r} was left out; allowed: {', '.join(choices)}"
    if KIND_KEY not in st.session_state and KIND_KEY not in q and "sla_speedup" in q and "sla_ms" not in q:
        st.session_state[KIND_KEY] = "speed-up"  # a link that names only a speed-up opens on it
    return said


def inputs() -> Budget | None:
    """The budget's inputs, above the chart: the budget they make, or None (none given, or one that cannot be:
    then an error says why)."""
    said = _link_problems()
    c1, c2, c3, c4 = st.columns([0.9, 1.2, 1.2, 0.9], vertical_alignment="bottom")  # values fit at 1024 px
    kind = c1.selectbox(
        "Latency in", KINDS, key=KIND_KEY, bind="query-params", on_change=_forget, args=(KIND_KEY,),
        help="a median latency (p50) in ms at the timed batch size, or a speed-up over FP32 eager",
    )  # fmt: skip
    kind = kind if kind in KINDS else "ms"
    key, other = VALUE_KEYS[kind], VALUE_KEYS["speed-up" if kind == "ms" else "ms"]
    if other in st.query_params:
        if key in st.query_params:
            said[other] = (f"The link gives both sla_ms and sla_speedup; a latency budget is one of them: {other} "
                           "was left out")
        del st.query_params[other]  # one latency budget in the URL: the one shown
    sla = c2.number_input(
        "p50 at most (ms)" if kind == "ms" else "Speed-up at least (×)", 0.0, LIMITS[key][1], None,
        key=key, bind="query-params", format="%g", step=0.5 if kind == "ms" else 0.25, placeholder="none",
        on_change=_forget, args=(key,),
        help=("the latency budget: the slowest median latency (p50) a point may have, in ms at the timed batch "
              "size, above 0" if kind == "ms" else "the latency budget: the least speed-up over FP32 eager a point "
              "must have, above 0"),
    )  # fmt: skip
    drop = c3.number_input(
        "Max drop (pts)", 0.0, LIMITS[DROP_KEY][1], None, key=DROP_KEY, bind="query-params",
        format="%g", step=0.1, placeholder="none", on_change=_forget, args=(DROP_KEY,),
        help="the accuracy budget: the largest drop of top-1 from FP32, in points; a point meets it when the "
             "largest drop its 95% interval allows does (0 to 100)",
    )  # fmt: skip
    prefer = c4.selectbox(
        "Ship the", PREFER, key=SHIP_KEY, bind="query-params", on_change=_forget, args=(SHIP_KEY,),
        help="which of the points that meet both budgets to name: the smallest or the fastest",
    )  # fmt: skip
    for p in said.values():
        st.warning(plain(p), icon=":material/link_off:")
    if sla is None and drop is None:
        return None
    try:
        return Budget(**{key: sla}, max_drop=drop, prefer=prefer if prefer in PREFER else "smallest")
    except ValueError as exc:
        st.error(plain(str(exc)), icon=":material/block:")
        return None


class Decision:
    """The point to ship among a sweep's rows under ``budget`` (None: no budget, nothing drawn or said): its
    :meth:`draw` goes to :func:`ui.results.pareto` (the shade and the rings), :meth:`show` under the chart."""

    def __init__(self, rows: Sequence[Result], budget: Budget | None) -> None:
        self.budget = budget
        self.choice: Choice | None = None if budget is None else choose(rows, budget)
        self.said = ""

    def draw(self, fig, ok: Sequence[Result], x: str) -> None:
        if self.choice is not None:
            self.said = shade(fig, ok, x, self.choice)

    def show(self) -> None:
        """The line that names the point to ship, or says none does and which budget is the closest to being met;
        what was left out and what the chart marks, under it."""
        c = self.choice
        if c is None:
            st.caption("Give a latency budget, an accuracy budget or both: the chart shades what meets them and a "
                       "line names the point to ship.")
            return
        if c.ship is not None:
            st.success(plain(c.ship_text()), icon=":material/rocket_launch:")
        else:
            st.warning(plain(c.ship_text()), icon=":material/block:")
        notes = [*c.notes(), self.said]
        st.caption(plain(" ".join(n for n in notes if n)))
