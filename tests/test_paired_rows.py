"""Per-image correctness kept with each row, and the paired change between two rows: against a naive count of the
four cells and the paired interval computed from them by qcore.metrics.stats (itself tested against Newcombe's)."""

from __future__ import annotations

import random

import pytest
import torch

from qcore.metrics.paired_rows import attach, decode, encode, paired_change
from qcore.metrics.result import Result
from qcore.metrics.stats import paired_delta
from qcore.quant.spec import QuantSpec


@pytest.mark.parametrize("n", [1, 7, 8, 9, 2000])
def test_encode_then_decode_gives_the_bits_back(n):
    bits = torch.tensor([random.Random(n + i).random() < 0.5 for i in range(n)])
    assert torch.equal(decode(encode(bits), n), bits)


def test_packed_most_significant_bit_first():
    assert encode(torch.tensor([True] + [False] * 7)) == "gA=="  # 0b10000000 = 0x80
    assert len(encode(torch.ones(2000, dtype=torch.bool))) == 336


@pytest.mark.parametrize("text, n", [("gA==", 9), ("not base64!", 8), ("gA==", 17)])
def test_bits_that_do_not_fit_are_refused(text, n):
    with pytest.raises(ValueError, match="correct"):
        decode(text, n)


def _row(correct: list[bool], key: str = "k", draws: int = 1) -> Result:
    r = Result(spec=QuantSpec(), model="m", dataset="d", status="ok")
    r.eval_images, r.calib_draws = len(correct), draws
    attach(r, torch.tensor(correct), key)
    return r


def test_the_change_counts_each_image_as_a_naive_loop_does():
    rng = random.Random(3)
    a = [rng.random() < 0.8 for _ in range(500)]
    b = [x if rng.random() < 0.9 else not x for x in a]
    lost = sum(1 for x, y in zip(a, b) if x and not y)
    gained = sum(1 for x, y in zip(a, b) if not x and y)
    both = sum(1 for x, y in zip(a, b) if x and y)
    neither = 500 - lost - gained - both
    c = paired_change(_row(a), _row(b))
    assert (c.lost, c.gained, c.images) == (lost, gained, 500)
    assert c.delta == pytest.approx(100 * (gained - lost) / 500)
    d, lo, hi = paired_delta(both, lost, gained, neither)
    assert (c.lo, c.hi) == (pytest.approx(100 * lo), pytest.approx(100 * hi))
    assert "gained" in c.text() and "of 500 images" in c.text()


def test_rows_of_other_images_or_without_bits_are_not_paired():
    assert paired_change(_row([True, False]), _row([True, True], key="other")) is None
    bare = Result(spec=QuantSpec(), model="m", dataset="d", status="ok")
    assert paired_change(_row([True]), bare) is None


def test_attach_copies_the_manifest_that_rows_share():
    shared = {"torch": "x"}
    r = Result(spec=QuantSpec(), model="m", dataset="d", manifest=shared)
    attach(r, torch.tensor([True]), "k")
    assert "correct" not in shared and r.manifest["torch"] == "x" and r.manifest["eval_key"] == "k"


def test_rows_with_draws_say_which_draw_was_paired():
    assert "first calibration draw" in paired_change(_row([True, False], draws=3), _row([True, True])).text()
