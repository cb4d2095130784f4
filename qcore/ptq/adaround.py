"""AdaRound: each weight rounded up or down as learned on data (Nagel et al., ICML 2020, "Up or Down? Adaptive
Rounding for Post-Training Quantization").

Rounding to nearest minimizes each weight's own error, not the layer's output error. AdaRound keeps the scale
and learns, per weight, ``h in [0, 1]`` added to ``floor(w / s)``: ``h = clip(sigmoid(V) * (zeta - gamma) + gamma,
0, 1)`` (the rectified sigmoid, ``zeta = 1.1``, ``gamma = -0.1``), ``V`` started where ``h`` equals the weight's
fractional part (so the soft weight starts as the float weight). The loss is the layer's output reconstruction
error, ``|| W x_fp - W~ x_q ||^2`` summed over channels and averaged over positions (``x_q``: the layer's input in
the model whose earlier layers are already rounded; the target: the float layer's output on the float model's
input), plus ``lambda * sum(1 - |2h - 1|^beta)``, which pushes every ``h`` to 0 or 1; ``beta`` falls linearly from
20 to 2 after a warm start of 20% of the steps without it. After the last step each weight rounds up where
``V >= 0``. Adam, ``lr = 0.01`` (the paper runs 10,000 steps at 1e-3 on a GPU; qcore's default is 500 steps, so a
larger step), batches of 32 images, ``lambda = 0.01`` (AIMET's default).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qcore.ptq.weights import Grid
from qcore.quant.spec_ptq import ADAROUND_BATCH

__all__ = ["ZETA", "GAMMA", "LAMBDA", "LR", "rectified_sigmoid", "init_v", "layer_forward", "adaround_codes"]

ZETA, GAMMA = 1.1, -0.1
LAMBDA = 0.01
LR = 0.01
WARM = 0.2
BETA = (20.0, 2.0)


def rectified_sigmoid(v: torch.Tensor) -> torch.Tensor:
    return (torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


def init_v(rest: torch.Tensor) -> torch.Tensor:
    """``V`` with ``rectified_sigmoid(V) == rest`` (the fractional parts, in [0, 1))."""
    return -torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1.0)


def layer_forward(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``layer`` (a Conv2d or Linear) applied to ``x`` with ``weight`` instead of its own."""
    bias = None if layer.bias is None else layer.bias.detach().float()
    if isinstance(layer, nn.Linear):
        return F.linear(x, weight, bias)
    return F.conv2d(x, weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups)


def adaround_codes(layer: nn.Module, grid: Grid, x_q: torch.Tensor, target: torch.Tensor, iters: int,
                   seed: int = 0) -> tuple[torch.Tensor, dict]:
    """The codes AdaRound chooses for ``layer``'s weight on ``grid`` (int64, the grid's rows), fitted on inputs
    ``x_q`` and float outputs ``target``; and what it measured (the reconstruction error of nearest rounding and
    of the chosen codes on those images, the share of weights rounded the other way)."""
    if x_q.shape[0] < ADAROUND_BATCH:
        raise ValueError(f"AdaRound needs at least {ADAROUND_BATCH} calibration images (one batch), got "
                         f"{x_q.shape[0]}; allowed: a sweep with calib_size >= {ADAROUND_BATCH}")
    gen = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small steps: a second thread costs more than it gives (10x under load, measured)
    try:
        return _fit(layer, grid, x_q, target, iters, gen)
    finally:
        torch.set_num_threads(threads)


def _fit(layer, grid, x_q, target, iters, gen):
    s = grid.scale[:, None]
    zp = grid.zero_point[:, None].float()
    base = torch.floor(grid.rows / s)
    v = init_v((grid.rows / s - base).clamp(0.0, 1.0 - 1e-6)).requires_grad_(True)
    opt = torch.optim.Adam([v], lr=LR)
    warm = int(WARM * iters)

    def soft_weight(h):
        return grid.weight((base + h + zp).clamp(grid.qmin, grid.qmax))

    order = torch.randperm(x_q.shape[0], generator=gen)  # shuffled once: each step reads a slice (no copy)
    xs, ys = x_q[order], target[order]
    starts = range(0, x_q.shape[0] - ADAROUND_BATCH + 1, ADAROUND_BATCH)
    for it in range(iters):
        at = starts[it % len(starts)]
        h = rectified_sigmoid(v)
        out = layer_forward(layer, xs[at:at + ADAROUND_BATCH], soft_weight(h))
        loss = (out - ys[at:at + ADAROUND_BATCH]).pow(2).sum(1).mean()
        if it >= warm:
            t = (it - warm) / max(iters - warm, 1)
            beta = BETA[1] + (BETA[0] - BETA[1]) * (1 - t)
            loss = loss + LAMBDA * (1 - (2 * h - 1).abs().pow(beta)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        up = (v >= 0).float()
        codes = (base + up + zp).clamp(grid.qmin, grid.qmax).to(torch.int64)
        nearest = grid.codes()

        def error(c):
            return float((layer_forward(layer, x_q, grid.weight(c)) - target).pow(2).sum(1).mean())

        stats = {"error_nearest": error(nearest), "error_adaround": error(codes),
                 "flipped": float((codes != nearest).float().mean())}
    return codes, stats
