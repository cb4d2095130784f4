from qcore.metrics.pareto import dominates, frontier_2d, mark_pareto, non_dominated
from qcore.metrics.result import Result
from qcore.quant.spec import QuantSpec

MAX_MIN_MIN = (True, False, False)


def test_dominates():
    assert dominates((90, 10, 5), (89, 12, 6), MAX_MIN_MIN)
    assert not dominates((90, 10, 5), (90, 10, 5), MAX_MIN_MIN)  # equal is not domination
    assert not dominates((90, 10, 5), (91, 20, 1), MAX_MIN_MIN)


def test_non_dominated_hand_made():
    pts = [
        (92.0, 30.0, 44.0),  # fp32: best accuracy
        (91.8, 6.0, 11.0),  # int8: fast and small
        (91.0, 7.0, 11.5),  # dominated by the int8 point
        (90.5, 60.0, 6.0),  # int4: smallest
        (91.8, 6.0, 11.0),  # a duplicate of int8: both kept
    ]
    assert non_dominated(pts, MAX_MIN_MIN) == [True, True, False, True, True]


def test_frontier_2d():
    pts = [(30, 92.0), (6, 91.8), (7, 91.0), (60, 90.5), (5, 80.0)]
    assert frontier_2d(pts) == [4, 1, 0]


def test_mark_pareto_ignores_failed_rows():
    def r(top1, lat, size, status="ok"):
        return Result(QuantSpec(), "m", "d", top1=top1, latency_ms_p50=lat, size_bytes=size, status=status)

    rows = [r(90, 10, 5), r(89, 12, 6), r(None, None, None, "error"), r(95, 1, 1, "skipped")]
    rows[3].top1 = None
    mark_pareto(rows)
    assert [x.pareto for x in rows] == [True, False, False, False]
