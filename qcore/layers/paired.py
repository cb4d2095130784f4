"""A top-1 difference between two models on the same images, with its paired 95% interval.

Each image gives ``d_i = correct_b(i) - correct_a(i)`` in {-1, 0, 1}; the difference in points is
``100 mean(d)`` and, the images being a sample, its 95% interval is ``100 (mean(d) +- 1.96 sd(d) / sqrt(n))``.
Pairing removes the images both get right or both wrong, so the interval is far narrower than two separate
intervals: 10,000 images where 60 flip one way and 20 the other give -0.40 +- 0.18 points (unpaired: +- 0.6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Paired", "paired_delta", "correct"]


@dataclass(frozen=True)
class Paired:
    """``delta`` points (b minus a) and the half width of its 95% interval, over ``n`` images."""

    delta: float
    half_width: float
    n: int

    def text(self) -> str:
        return f"{self.delta:+.2f} ± {self.half_width:.2f}"


def correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """1.0 where the top-1 prediction is the label, else 0.0."""
    return (logits.argmax(1) == labels).double()


def paired_delta(correct_a: torch.Tensor, correct_b: torch.Tensor) -> Paired:
    """``b - a`` in points with its paired 95% interval (see the module).

    >>> a = torch.tensor([1., 1., 0., 0.]); b = torch.tensor([1., 0., 0., 0.])
    >>> paired_delta(a, b).delta
    -25.0
    """
    if correct_a.shape != correct_b.shape or correct_a.numel() == 0:
        raise ValueError("paired_delta needs two non-empty results on the same images")
    d = correct_b.double() - correct_a.double()
    n = d.numel()
    sd = float(d.std(unbiased=True)) if n > 1 else 0.0
    return Paired(100.0 * float(d.mean()), 100.0 * 1.96 * sd / math.sqrt(n), n)
