"""The decision (qcore.metrics.budget): the point to ship under a latency and an accuracy budget, checked against a
naive loop written here on seeded random row sets; the closest budget's words on known rows; the messages of a
budget that cannot be."""

from __future__ import annotations

import math
import random

import pytest

from qcore.metrics.budget import Budget, check, choose, drop_of, meets, parse
from qcore.metrics.result import Result
from qcore.quant.spec import FP32, QuantSpec

SPECS = [QuantSpec("int8", granularity=g, calibration=c) for g in ("per-tensor", "per-channel")
         for c in ("minmax", "mse")] + [QuantSpec("int4", granularity="per-group", mode="weight-only"),
                                        QuantSpec("fp16", mode="weight-only")]  # fmt: skip


def _row(spec, *, delta=-0.5, lo=-1.0, ms=4.0, speedup=2.5, size=10, status="ok", top1=90.0, **kw) -> Result:
    hi = None if lo is None else 2 * delta - lo
    return Result(spec, "m", "d", top1=top1, top1_delta=delta, top1_delta_lo=lo, top1_delta_hi=hi,
                  latency_ms_p50=ms, speedup=speedup, size_bytes=size, status=status, **kw)


def _random_rows(rng: random.Random) -> list[Result]:
    """Up to 12 rows, with ties (latencies, sizes and drops from small sets), rows that are not ok, rows without an
    FP32 reference, an interval, a latency, a speed-up or a size, and now and then the FP32 row itself."""
    rows = []
    if rng.random() < 0.5:
        rows.append(_row(FP32, delta=0.0, lo=0.0, ms=10.0, speedup=1.0, size=40, run_id="fp32"))
    for i in range(rng.randrange(13)):
        delta = rng.choice([0.2, 0.0, -0.3, -0.5, -1.0, -2.0])
        row = _row(rng.choice(SPECS), delta=delta, lo=delta - rng.choice([0.0, 0.4, 0.8]),
                   ms=rng.choice([2.0, 3.0, 3.0, 4.0, 6.0]), speedup=None, size=rng.choice([5, 10, 10, 20]),
                   run_id=f"r{i:02d}")  # fmt: skip
        row.speedup = 12.0 / row.latency_ms_p50
        odd = rng.random()
        if odd < 0.08:
            row.status = rng.choice(["error", "skipped", "cancelled"])
        elif odd < 0.16:
            row.top1_delta = row.top1_delta_lo = row.top1_delta_hi = None  # no FP32 reference
        elif odd < 0.24:
            row.top1_delta_lo = row.top1_delta_hi = None  # stored before the intervals
        elif odd < 0.28:
            row.latency_ms_p50 = None
        elif odd < 0.32:
            row.speedup = None
        elif odd < 0.36:
            row.size_bytes = None
        rows.append(row)
    rng.shuffle(rows)
    return rows


def _random_budget(rng: random.Random) -> Budget:
    while True:
        sla = rng.choice([None, "ms", "speedup"])
        kw = {"sla_ms": rng.choice([2.0, 3.0, 3.5, 5.0])} if sla == "ms" else (
            {"sla_speedup": rng.choice([1.5, 3.0, 4.0, 6.0])} if sla == "speedup" else {})
        drop = rng.choice([None, 0.0, 0.5, 1.0, 1.3, 3.0])
        if kw or drop is not None:
            return Budget(**kw, max_drop=drop, prefer=rng.choice(["smallest", "fastest"]))


def oracle(rows: list[Result], b: Budget) -> Result | None:
    """The point to ship, one row at a time: the first best by (preferred, the other, worst drop, label, run id)."""
    best, best_key = None, None
    for r in rows:
        if r.status != "ok" or r.top1 is None or r.latency_ms_p50 is None or r.top1_delta is None:
            continue
        speed = r.speedup
        if speed is None and r.spec.is_reference:
            speed = 1.0
        if b.sla_speedup is not None and speed is None:
            continue
        worst = -(r.top1_delta_lo if r.top1_delta_lo is not None else r.top1_delta)
        if b.max_drop is not None and worst > b.max_drop + 1e-9:
            continue
        if b.sla_ms is not None and r.latency_ms_p50 > b.sla_ms + 1e-9:
            continue
        if b.sla_speedup is not None and speed < b.sla_speedup - 1e-9:
            continue
        fast = -speed if b.sla_speedup is not None else r.latency_ms_p50
        size = math.inf if r.size_bytes is None else r.size_bytes
        key = ((size, fast) if b.prefer == "smallest" else (fast, size)) + (worst, r.label, r.run_id)
        if best_key is None or key < best_key:
            best, best_key = r, key
    return best


@pytest.mark.parametrize("seed", range(300))
def test_the_point_to_ship_is_the_naive_loops(seed):
    rng = random.Random(seed)
    rows, budget = _random_rows(rng), _random_budget(rng)
    choice = choose(rows, budget)
    want = oracle(rows, budget)
    assert choice.ship is want, (budget, [r.run_id for r in rows])
    assert (choice.ship is None) == (not choice.meeting)
    assert all(all(meets(r, budget)) for r in choice.meeting)
    assert all(r.ok and r.top1_delta is not None for r in choice.meeting)  # never an error, never without FP32
    left = sum(choice.left_out.values())
    assert left + choice.judged == len(rows)
    if choice.ship is None and choice.judged:
        assert choice.misses and all(m.over > 0 for m in choice.misses)
    assert choose(list(reversed(rows)), budget).ship is want  # the order of the rows changes nothing


FP = _row(FP32, delta=0.0, lo=0.0, ms=10.0, speedup=1.0, size=40_000_000, run_id="fp32")
I8 = _row(SPECS[2], delta=-0.5, lo=-0.9, ms=4.0, speedup=2.5, size=10_000_000, run_id="i8")
I4 = _row(SPECS[4], delta=-2.0, lo=-2.6, ms=3.0, speedup=10 / 3, size=6_000_000, run_id="i4")
BAD = _row(SPECS[0], status="error", run_id="bad")
ORPHAN = _row(SPECS[1], delta=None, lo=None, ms=1.0, size=1, run_id="orphan")  # no FP32 row: never chosen
ROWS = [FP, I8, I4, BAD, ORPHAN]


def test_the_line_names_the_point_to_ship_with_its_numbers():
    c = choose(ROWS, Budget(sla_ms=5, max_drop=1))
    assert c.ship is I8 and c.meeting == (I8,)
    assert c.ship_text() == (
        "Ship INT8 per-channel min-max asym static (p50 4.00 ms, 2.50× FP32; top-1 -0.50 points, 95% interval -0.90 "
        "to -0.10; 10.00 MB): the one point that meets both budgets (p50 at most 5 ms and a drop of at most 1 point "
        "of top-1, its 95% interval included).")  # fmt: skip
    assert c.notes() == ["2 rows left out, never chosen: 1 not measured (an error, a skip or a cancel), 1 without an "
                         "FP32 reference to measure the drop against."]  # fmt: skip
    assert choose(ROWS, Budget(sla_ms=5, max_drop=3, prefer="fastest")).ship is I4
    assert choose(ROWS, Budget(sla_ms=5, max_drop=3)).ship is I4  # the smallest too
    assert choose(ROWS, Budget(max_drop=0.2)).ship is FP  # FP32 itself drops nothing


@pytest.mark.parametrize("budget, text", [
    (Budget(sla_ms=3.5, max_drop=1), "No point meets both budgets (p50 at most 3.5 ms and a drop of at most 1 point "
     "of top-1, its 95% interval included); the closest to being met is the latency budget: the fastest point within "
     "the accuracy budget, INT8 per-channel min-max asym static, runs at 4.00 ms, 0.50 ms over the latency budget of "
     "3.5 ms."),
    (Budget(sla_ms=3.5, max_drop=2.4), "No point meets both budgets (p50 at most 3.5 ms and a drop of at most 2.4 "
     "points of top-1, its 95% interval included); the closest to being met is the accuracy budget: the most accurate "
     "point within the latency budget, INT4 per-group(64) min-max asym weight-only, drops up to 2.60 points (the low "
     "end of its 95% interval), 0.20 over the accuracy budget of 2.4."),
    (Budget(sla_speedup=3, max_drop=1), "No point meets both budgets (at least 3× faster than FP32 and a drop of at "
     "most 1 point of top-1, its 95% interval included); the closest to being met is the latency budget: the fastest "
     "point within the accuracy budget, INT8 per-channel min-max asym static, is 2.50× faster than FP32, 0.50× short "
     "of the latency budget of 3×."),
    (Budget(sla_ms=1), "No point meets the budget (p50 at most 1 ms); the fastest point, INT4 per-group(64) min-max "
     "asym weight-only, runs at 3.00 ms, 2.00 ms over the latency budget of 1 ms."),
])  # fmt: skip
def test_no_point_meets_and_the_closest_budget_is_named(budget, text):
    c = choose(ROWS, budget)
    assert c.ship is None and c.ship_text() == text


def test_when_no_point_meets_either_budget_both_misses_are_weighed():
    c = choose([I8, I4], Budget(sla_ms=2.0, max_drop=0.5))
    assert c.ship_text().startswith("No point meets either budget (p50 at most 2 ms and a drop of at most 0.5 points")
    assert [(m.budget, m.row.run_id) for m in c.misses] == [("latency", "i4"), ("accuracy", "i8")]
    # the fastest is 1 ms over 2 ms (half the budget), the most accurate 0.4 points over 0.5 (four fifths)
    assert [m.relative for m in c.misses] == [pytest.approx(0.5), pytest.approx(0.8)]
    assert "the closest to being met is the latency budget: the fastest point, INT4" in c.ship_text()
    c = choose([I8, I4], Budget(sla_ms=3.5, max_drop=0.0))  # any drop over a budget of 0 is infinitely far
    assert [m.budget for m in c.misses] == ["accuracy"] and math.isinf(c.misses[0].relative)
    c = choose([I8, I4], Budget(sla_ms=2.0, max_drop=0.0))
    assert [m.budget for m in c.misses] == ["latency", "accuracy"] and math.isinf(c.misses[1].relative)


def test_an_interval_missing_falls_back_to_the_change_and_says_so():
    old = _row(SPECS[0], delta=-0.5, lo=None, ms=4.0, run_id="old")
    assert drop_of(old) == (0.5, False) and drop_of(I8) == (pytest.approx(0.9), True)
    c = choose([old], Budget(max_drop=0.6))
    assert c.ship is old and c.notes() == ["1 row stored without the 95% interval of the change: judged on the "
                                           "change itself."]  # fmt: skip
    assert "no interval stored" in c.ship_text()


def test_the_interval_low_end_not_the_change_decides():
    assert meets(I8, Budget(max_drop=0.9)) == (True, True)
    assert meets(I8, Budget(max_drop=0.6)) == (True, False)  # the change is -0.5, its interval reaches -0.9
    assert meets(BAD, Budget(max_drop=100)) == (False, False) and meets(ORPHAN, Budget(sla_ms=5)) == (False, False)


def test_nothing_to_judge_is_said():
    c = choose([BAD, ORPHAN], Budget(sla_ms=5))
    assert c.ship is None and c.ship_text().startswith("No point can be judged")
    assert choose([], Budget(max_drop=1)).notes() == []


@pytest.mark.parametrize("kw, said", [
    ({"sla_ms": -3}, "sla_ms=-3 is not allowed (the latency budget: the median latency (p50) in milliseconds at the "
                     "timed batch size); allowed: above 0, at most 1,000,000 ms"),
    ({"sla_ms": 0}, "sla_ms=0 is not allowed"),
    ({"sla_ms": 2e6}, "allowed: above 0, at most 1,000,000 ms"),
    ({"sla_speedup": 0.0}, "sla_speedup=0.0 is not allowed (the latency budget as a speed-up over FP32 eager); "
                           "allowed: above 0, at most 1,000×"),
    ({"sla_speedup": 5000}, "at most 1,000×"),
    ({"max_drop": -0.5}, "max_drop=-0.5 is not allowed (the accuracy budget: the largest drop of top-1 from FP32, "
                         "in points); allowed: 0 or more, at most 100 points"),
    ({"max_drop": 101}, "at most 100 points"),
    ({"max_drop": float("nan")}, "max_drop=nan is not allowed"),
    ({"max_drop": float("inf")}, "max_drop=inf is not allowed"),
    ({"max_drop": True}, "max_drop=True is not allowed"),
    ({"sla_ms": 5, "sla_speedup": 2}, "sla_ms and sla_speedup are both given"),
    ({}, "no budget given; allowed: a latency budget (sla_ms or sla_speedup), an accuracy budget (max_drop), or both"),
    ({"max_drop": 1, "prefer": "cheapest"}, "prefer='cheapest' is not allowed; allowed: smallest, fastest"),
])  # fmt: skip
def test_a_budget_that_cannot_be_is_named_with_what_is_allowed(kw, said):
    with pytest.raises(ValueError) as err:
        Budget(**kw)
    assert said in str(err.value)


def test_typed_budgets_are_read_and_checked():
    assert parse("sla_ms", " 2.5 ") == 2.5 and parse("max_drop", "0") == 0.0 and check("sla_speedup", 3) == 3.0
    for text, said in (("abc", "sla_ms='abc' is not a number"), ("-1", "sla_ms='-1' is not allowed"),
                       ("nan", "sla_ms='nan' is not allowed"), ("1e9", "sla_ms='1e9' is not allowed")):
        with pytest.raises(ValueError, match="allowed: above 0, at most 1,000,000 ms") as err:
            parse("sla_ms", text)
        assert said in str(err.value)
