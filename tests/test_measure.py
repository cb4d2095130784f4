import time

import pytest
import torch

from qcore.measure import accuracy, predict, size_bytes, stopwatch, time_interleaved


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


def test_time_interleaved_alternates_and_ranks():
    order = []

    def fast():
        order.append("a")

    def slow():
        order.append("b")
        time.sleep(0.004)

    lat = time_interleaved({"a": fast, "b": slow}, warmup=1, min_runs=5, max_runs=5)
    assert len(lat["a"].samples_ms) == len(lat["b"].samples_ms) == 5
    assert order[2:] == ["a", "b"] * 5  # after one warm-up each: A B A B ...
    assert lat["b"].p50 > lat["a"].p50 and lat["b"].p50 >= 4.0
    assert lat["b"].p90 >= lat["b"].p50


def test_size_bytes_counts_the_serialized_state():
    small = size_bytes({"w": torch.zeros(10, dtype=torch.int8)})
    big = size_bytes({"w": torch.zeros(10_000, dtype=torch.float32)})
    assert big - small > 39_000
    assert size_bytes(b"12345") == 5


def test_stopwatch():
    with stopwatch() as t:
        time.sleep(0.01)
    assert t[0] >= 0.009
