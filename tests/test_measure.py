import time

import pytest
import torch

from qcore.metrics.measure import (
    TimingProtocol,
    accuracy,
    correct_counts,
    predict,
    size_bytes,
    stopwatch,
    time_interleaved,
)


def test_accuracy_known_answers():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0, -2.0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]])
    labels = torch.tensor([0, 0])
    acc = accuracy(logits, labels)
    assert acc.top1 == 50.0 and acc.top5 == 50.0  # the second image has class 0 ranked last
    ref = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0, -2.0], [5.0, 1.0, 2.0, 3.0, 4.0, 0.0]])
    acc = accuracy(logits, labels, reference=ref)
    assert acc.agreement == 50.0
    assert acc.top1_delta == pytest.approx(50.0 - 100.0)
    assert acc.logit_kl > 0
    same = accuracy(ref, labels, reference=ref)
    assert same.agreement == 100.0 and same.logit_kl == pytest.approx(0.0, abs=1e-12) and same.top1_delta == 0


def test_predict_refuses_empty():
    with pytest.raises(ValueError, match="empty"):
        predict(lambda x: x, [])


class _Clock:
    """qcore.metrics.measure's clock, moved only by the timed calls themselves (``advance``): what these tests check of
    the protocol (the order, the ranking, a warm-up by time) then holds however busy the machine is."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _clock(monkeypatch) -> _Clock:
    import qcore.metrics.measure

    clock = _Clock()
    monkeypatch.setattr(qcore.metrics.measure, "time", clock)
    return clock


def test_time_interleaved_alternates_and_ranks(monkeypatch):
    clock = _clock(monkeypatch)  # a real 4 ms sleep against a no-op ranks the same, but only on a quiet machine
    order = []

    def fast():
        order.append("a")
        clock.advance(0.0005)

    def slow():
        order.append("b")
        clock.advance(0.004)

    lat = time_interleaved({"a": fast, "b": slow}, warmup=1, min_runs=5, max_runs=5, budget_s=0.0)
    assert len(lat["a"].samples_ms) == len(lat["b"].samples_ms) == 5
    # one warm-up round (a zero budget leaves no time for more), then rounds in alternating order
    assert order == ["a", "b"] + ["a", "b", "b", "a"] * 2 + ["a", "b"]
    assert lat["a"].samples_ms == pytest.approx([0.5] * 5) and lat["b"].samples_ms == pytest.approx([4.0] * 5)
    assert lat["b"].p50 > lat["a"].p50 and lat["b"].p50 == pytest.approx(4.0)  # in milliseconds
    assert lat["b"].p90 >= lat["b"].p50
    lo, hi = lat["b"].interval
    assert lo <= lat["b"].p50 <= hi and lat["b"].spread >= 1.0


def test_warm_up_runs_by_time_and_the_collector_is_off_while_timing(monkeypatch):
    import gc

    clock = _clock(monkeypatch)  # with real 1 ms sleeps a loaded machine fits fewer calls in the 0.1 s
    calls, collector = [], []

    def fn():
        calls.append(1)
        collector.append(gc.isenabled())
        clock.advance(0.001)

    proto = TimingProtocol(warmup=2, warmup_s=0.1, warmup_share=1.0, min_runs=3, max_runs=3)
    lat = time_interleaved({"a": fn}, budget_s=1.0, protocol=proto)
    assert len(lat["a"].samples_ms) == 3
    assert len(calls) - 3 == pytest.approx(100, abs=1)  # 0.1 s of 1 ms calls: far more than the 2 asked for by count
    assert not any(collector) and gc.isenabled()  # off while timing, on again after
    assert lat["a"].load is None or lat["a"].load >= 0.0


def test_a_slow_call_is_warmed_twice_then_stops_at_its_share_of_the_budget():
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.05)

    proto = TimingProtocol(warmup=10, warmup_s=5.0, warmup_share=0.1, min_runs=2, max_runs=2)
    time_interleaved({"s": slow}, budget_s=0.5, protocol=proto)
    assert len(calls) == 2 + 2  # two warm-up rounds (0.1 s > 10% of 0.5 s), two timed


def test_correct_counts_pair_the_images():
    labels = torch.tensor([0, 0, 1, 1, 2])
    ref = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 0, 2]), 3).float()  # right: 0, 2, 4
    var = torch.nn.functional.one_hot(torch.tensor([0, 0, 2, 1, 1]), 3).float()  # right: 0, 1, 3
    assert correct_counts(var, labels, ref) == {"both": 1, "lost": 2, "gained": 2, "neither": 0}


def test_size_bytes_counts_the_serialized_state():
    small = size_bytes({"w": torch.zeros(10, dtype=torch.int8)})
    big = size_bytes({"w": torch.zeros(10_000, dtype=torch.float32)})
    assert big - small > 39_000
    assert size_bytes(b"12345") == 5


def test_stopwatch():
    with stopwatch() as t:
        time.sleep(0.01)
    assert t[0] >= 0.009
