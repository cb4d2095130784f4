"""BatchNorm folded into the convolutions before any post-training algorithm, and what the BatchNorms said.

The int8 kernels see each convolution with its BatchNorm folded in (torch.ao's FX flow and PT2E fold them; the
weight-only backend does too), so the algorithms must work on those weights: equalizing or rounding an unfolded
weight would choose codes for a tensor the kernel never sees. Folding first also means the backends find no
BatchNorm left to fold, so the weights they quantize are exactly the ones the algorithms chose.

The folded model is a ``torch.fx.GraphModule`` with the original module names (``features.0.0`` stays the
name of that convolution); its graph is what cross-layer equalization walks. Each folded BatchNorm's ``weight``
and ``bias`` (gamma and beta: the pre-activation's standard deviation and mean by its own statistics) are kept
for high-bias absorption (:mod:`qcore.ptq.cle`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["Folded", "FoldError", "fold"]


class FoldError(ValueError):
    """The model cannot be traced, so its BatchNorms cannot be folded (the message names why)."""


@dataclass
class Folded:
    """The model with BatchNorms folded, and each folded conv's BatchNorm (gamma, beta) by the conv's name."""

    model: torch.fx.GraphModule
    bn: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    folded: int = 0
    total_bn: int = 0


def _conv_bn_pairs(gm: torch.fx.GraphModule) -> list[tuple[str, str]]:
    modules = dict(gm.named_modules())
    pairs = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        prev = node.args[0] if node.args else None
        if (isinstance(prev, torch.fx.Node) and prev.op == "call_module" and len(prev.users) == 1
                and isinstance(modules.get(prev.target), nn.Conv2d)):
            pairs.append((prev.target, node.target))
    return pairs


def fold(model: nn.Module) -> Folded:
    """A copy of ``model`` (eval mode, CPU) traced by torch.fx with every conv -> BatchNorm pair folded; raises
    :class:`FoldError` when torch.fx cannot trace it."""
    model = copy.deepcopy(model).eval().cpu()
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as exc:  # data-dependent control flow and the like
        raise FoldError(f"the post-training algorithms need the model's graph with its BatchNorms folded, and "
                        f"torch.fx could not trace it ({type(exc).__name__}: {str(exc)[:160]})") from None
    total = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    modules = dict(gm.named_modules())
    pairs = _conv_bn_pairs(gm)
    bn = {conv: (modules[b].weight.detach().clone(), modules[b].bias.detach().clone()) for conv, b in pairs
          if modules[b].affine}
    from torch.fx.experimental.optimization import fuse

    gm = fuse(gm)  # torch's folding, as qcore.backends.weight_only.fold_batchnorm does: the same conv -> BN pairs
    return Folded(gm, bn, len(pairs), total)
