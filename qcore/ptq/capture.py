"""Reading one layer's inputs or outputs out of a model on calibration batches (the data the algorithms fit).

The forward pass stops at the layer asked for (nothing after it runs), so walking a model layer by layer costs
about half of one full pass per layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["layer_inputs", "output_means"]


class _Stop(Exception):
    pass


def _run(model: nn.Module, batches: Sequence[torch.Tensor], handles: list) -> None:
    """``model`` over ``batches`` (a hook's :class:`_Stop` ends a pass early), then the hooks removed."""
    try:
        with torch.no_grad():
            for x in batches:
                try:
                    model(x)
                except _Stop:
                    pass
    finally:
        for h in handles:
            h.remove()


def layer_inputs(model: nn.Module, name: str, batches: Sequence[torch.Tensor]) -> torch.Tensor:
    """The input of module ``name`` for every image of ``batches``, concatenated (CPU, float32)."""
    layer = model.get_submodule(name)
    got: list[torch.Tensor] = []

    def hook(_m, args):
        got.append(args[0].detach().float().cpu())
        raise _Stop

    _run(model, batches, [layer.register_forward_pre_hook(hook)])
    return torch.cat(got)


def _channel_mean_parts(y: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Per-channel sum over every other dimension (channels on dim 1) and how many values each sums."""
    y = y.detach().double()
    dims = [d for d in range(y.dim()) if d != 1]
    return y.sum(dims), y.numel() // y.shape[1]


def output_means(model: nn.Module, names: Sequence[str], batches: Sequence[torch.Tensor],
                 stop_after: str | None = None) -> dict[str, torch.Tensor]:
    """Each named module's output, averaged per channel (dim 1) over every image and position (float64); with
    ``stop_after``, the pass stops once that module has run."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def make(name):
        def hook(_m, _args, out):
            s, n = _channel_mean_parts(out)
            sums[name] = sums.get(name, 0) + s
            counts[name] = counts.get(name, 0) + n
            if name == stop_after:
                raise _Stop
        return hook

    _run(model, batches, [model.get_submodule(name).register_forward_hook(make(name)) for name in names])
    return {n: sums[n] / counts[n] for n in sums}
