"""A top-1 difference between two models on the same images, with its paired 95% interval.

Per image, each model is right or wrong; the four counts (both right, only the first, only the second,
neither) go to :func:`qcore.metrics.stats.paired_delta`, the one rule for a paired top-1 change in qcore (Newcombe's
interval, the one every sweep row carries). Pairing removes the images both get right or both wrong, so the
interval is far narrower than two separate intervals: 10,000 images where 60 flip one way and 20 the other
give -0.40 points, 95% interval -0.58 to -0.22 (unpaired: about +- 0.6).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qcore.metrics.measure import predicted_class
from qcore.metrics.stats import paired_delta as _counts_delta

__all__ = ["Paired", "paired_delta", "correct"]


@dataclass(frozen=True)
class Paired:
    """``delta`` points (b minus a) and its 95% interval ``[low, high]`` in points, over ``n`` images."""

    delta: float
    low: float
    high: float
    n: int

    def text(self) -> str:
        return f"{self.delta:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


def correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """1.0 where the top-1 prediction (:func:`qcore.metrics.measure.predicted_class`: ties to the lowest class) is the
    label, else 0.0."""
    return (predicted_class(logits) == labels).double()


def paired_delta(correct_a: torch.Tensor, correct_b: torch.Tensor) -> Paired:
    """``b - a`` in points with its paired 95% interval (see the module).

    >>> a = torch.tensor([1., 1., 0., 0.]); b = torch.tensor([1., 0., 0., 0.])
    >>> paired_delta(a, b).delta
    -25.0
    """
    if correct_a.shape != correct_b.shape or correct_a.numel() == 0:
        raise ValueError("paired_delta needs two non-empty results on the same images")
    a, b = correct_a.bool(), correct_b.bool()
    counts = (int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum()), int((~a & ~b).sum()))
    delta, low, high = _counts_delta(*counts)
    return Paired(100.0 * delta, 100.0 * low, 100.0 * high, int(a.numel()))
