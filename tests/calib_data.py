"""Synthetic tensors whose calibration answer is known, shared by the calibration oracle tests: ReLU(N(0, 1)) (half
the values exactly 0), a Laplace tensor, N(0, 1) with one far outlier, hard-swish outputs (a short negative side)
and normalised image pixels with a constant background (a spike away from 0). Each is seeded."""

from __future__ import annotations

import torch

__all__ = ["relu_normal", "laplace", "normal_with_outlier", "hardswish_like", "image_input", "clipped_share"]


def relu_normal(n=400_000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(n, generator=g))


def laplace(n=400_000, seed=1):
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, generator=g, dtype=torch.float64) - 0.5
    return (-torch.sign(u) * torch.log1p(-2 * u.abs())).float()


def normal_with_outlier(n=200_000, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.randn(n, generator=g), torch.tensor([50.0])])


def hardswish_like(n=400_000, seed=3):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.hardswish(2.5 * torch.randn(n, generator=g))


def image_input(n=200_000, seed=4):
    """Normalised pixels: 44% background at exactly -0.81 (Fashion-MNIST's 0 after its mean and std), the rest
    spread up to 2.02."""
    g = torch.Generator().manual_seed(seed)
    background = torch.full((int(0.44 * n),), -0.81)
    rest = -0.81 + 2.83 * torch.rand(n - background.numel(), generator=g) ** 2
    return torch.cat([background, rest])


def clipped_share(x: torch.Tensor, lo: float, hi: float) -> float:
    """The share of ``x`` outside ``[lo, hi]`` (clamped by that range)."""
    return float(((x < lo) | (x > hi)).double().mean())
