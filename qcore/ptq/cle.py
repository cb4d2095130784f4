"""Cross-layer equalization and high-bias absorption (Nagel et al. 2019, "Data-Free Quantization", sections 4.1-4.2).

Two layers joined only by a ReLU (or nothing, or a per-channel max/average pool) can trade scale: for ``s > 0``,
``relu(s * x) = s * relu(x)``, so dividing output channel ``i`` of the first layer (its weights and bias) by
``s_i`` and multiplying input channel ``i`` of the second by ``s_i`` leaves the network's function unchanged.
With ``r1_i`` the range (max |w|) of the first layer's output channel ``i`` and ``r2_i`` that of the second's
input channel ``i``, ``s_i = sqrt(r1_i * r2_i) / r2_i`` makes both ranges ``sqrt(r1_i * r2_i)`` (the paper's eq. 7),
so a per-tensor scale no longer wastes its codes on the few channels with wide ranges. Chains (a depthwise conv
between two pointwise ones) are equalized pair by pair until the scales stop changing.

Pairs: conv -> conv (ordinary or depthwise second), conv -> linear through an average pool to 1x1 and a flatten,
linear -> linear. The first layer's output must reach nothing but the second. A ReLU6 on the way is replaced by a
ReLU, as the paper does (a per-channel clip at ``6 / s_i`` has no kernel): the row's notes say how many. Outputs
that reach a hard-swish, a sigmoid, an SE gate's multiply or a residual add cannot be rescaled: counted by reason.

High-bias absorption: after a BatchNorm and a ReLU, channel ``i``'s pre-activation is about normal with mean
``beta_i`` and standard deviation ``|gamma_i|`` (the folded BatchNorm's, scaled as equalized); when
``c_i = max(0, beta_i - 3 |gamma_i|) > 0`` nearly every value is above ``c_i``, so ``relu(x - c) + c = relu(x)`` and
``c`` moves into the next layer's bias (``b2 += W2 c``), narrowing the activation range the quantizer must cover.
Done only where the next layer has no padding (a 1x1 conv or a linear), where that move is exact at the borders.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from qcore.ptq.fold import Folded

__all__ = ["Pair", "Equalized", "find_pairs", "equalize", "absorb_high_biases"]

# ops a per-channel positive scale passes through unchanged (ReLU and ReLU6 are told apart in _kind)
_PASS_MODULES = (nn.Identity, nn.Dropout, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.AvgPool2d, nn.Flatten)
_PASS_FUNCTIONS = {F.dropout, F.adaptive_avg_pool2d, F.avg_pool2d, F.max_pool2d, torch.flatten}
_PASS_METHODS = {"relu", "flatten"}


@dataclass
class Pair:
    """Two layers whose scales can be traded: ``first``'s output channels are ``second``'s input channels."""

    first: str
    second: str
    relu6: list = field(default_factory=list)  # the ReLU6 nodes on the way (replaced by ReLU)
    relu: bool = False  # a ReLU on the way (high-bias absorption needs one)
    pooled: bool = False


@dataclass
class Equalized:
    pairs: list[Pair]
    blocked: Counter  # why a layer's output could not be equalized with the next: reason -> count
    relu6_replaced: int = 0
    absorbed: int = 0  # channels whose high bias moved into the next layer
    scales: dict[str, torch.Tensor] = field(default_factory=dict)  # first layer -> each output channel's total 1/s


def _kind(node, modules) -> str:
    """What ``node`` is for the walk: 'layer', 'pass', 'relu6', 'relu', or a reason it blocks."""
    if node.op == "call_module":
        m = modules[node.target]
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            return "layer"
        if isinstance(m, nn.ReLU6) or (isinstance(m, nn.Hardtanh) and (m.min_val, m.max_val) == (0.0, 6.0)):
            return "relu6"
        if isinstance(m, nn.ReLU):
            return "relu"
        if isinstance(m, _PASS_MODULES):
            return "pass"
        return type(m).__name__.lower()
    if node.op == "call_function":
        if node.target in (F.relu, torch.relu):
            return "relu"
        if node.target in (F.relu6,):
            return "relu6"
        if node.target in _PASS_FUNCTIONS:
            return "pass"
        return getattr(node.target, "__name__", str(node.target))
    if node.op == "call_method":
        return "relu" if node.target == "relu" else ("pass" if node.target in _PASS_METHODS else node.target)
    return node.op


def _fits(first: nn.Module, second: nn.Module, pooled: bool) -> bool:
    c = first.out_channels if isinstance(first, nn.Conv2d) else first.out_features
    if isinstance(second, nn.Linear):
        return second.in_features == c and (pooled or isinstance(first, nn.Linear))
    if isinstance(first, nn.Linear) or second.in_channels != c:
        return False
    return second.groups == 1 or second.groups == second.in_channels == second.out_channels


def find_pairs(gm: torch.fx.GraphModule) -> tuple[list[Pair], Counter]:
    """Every equalizable pair of ``gm`` (a folded graph), and why the other layers' outputs are not."""
    modules = dict(gm.named_modules())
    pairs, blocked = [], Counter()
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], (nn.Conv2d, nn.Linear)):
            continue
        pair, cur = Pair(node.target, ""), node
        while True:
            if len(cur.users) != 1:
                if len(cur.users) > 1:
                    blocked["its output feeds several ops (a residual add or an SE gate)"] += 1
                break
            nxt = next(iter(cur.users))
            kind = _kind(nxt, modules)
            if kind == "layer":
                if nxt.args and nxt.args[0] is cur and _fits(modules[node.target], modules[nxt.target], pair.pooled):
                    pair.second = nxt.target
                    pairs.append(pair)
                else:
                    blocked["the next layer does not take its channels one to one (grouped or reshaped)"] += 1
                break
            if kind in ("pass", "relu", "relu6"):
                pair.relu |= kind in ("relu", "relu6")
                if kind == "relu6":
                    pair.relu6.append(nxt)
                what = modules.get(nxt.target) if nxt.op == "call_module" else nxt.target
                pair.pooled |= "pool" in getattr(what, "__name__", type(what).__name__).lower()
                cur = nxt
                continue
            if kind != "output":
                blocked[f"it passes through {kind}, which does not commute with a per-channel scale"] += 1
            break
    return pairs, blocked


def _in_ranges(second: nn.Module) -> torch.Tensor:
    w = second.weight.detach()
    if isinstance(second, nn.Linear):
        return w.abs().amax(0)
    if second.groups == 1:
        return w.abs().transpose(0, 1).reshape(w.shape[1], -1).amax(1)
    return w.abs().reshape(w.shape[0], -1).amax(1)  # depthwise: filter i reads channel i


def _scale_in(second: nn.Module, s: torch.Tensor) -> None:
    w = second.weight.data
    if isinstance(second, nn.Linear):
        w.mul_(s[None, :])
    elif second.groups == 1:
        w.mul_(s[None, :, None, None])
    else:
        w.mul_(s[:, None, None, None])


def equalize(folded: Folded, iterations: int = 100, tol: float = 1e-4) -> Equalized:
    """Equalize every pair of ``folded.model`` in place (ReLU6 on the way replaced by ReLU) until no scale moves
    by more than ``tol`` (relative) or after ``iterations`` passes."""
    gm = folded.model
    modules = dict(gm.named_modules())
    pairs, blocked = find_pairs(gm)
    replaced = 0
    for pair in pairs:
        for node in pair.relu6:
            if node.op == "call_module" and not isinstance(modules[node.target], nn.ReLU):
                parent, _, leaf = node.target.rpartition(".")
                setattr(gm.get_submodule(parent) if parent else gm, leaf, nn.ReLU(inplace=False))
                modules[node.target] = gm.get_submodule(node.target)
                replaced += 1
            elif node.op == "call_function":
                node.target, node.args, node.kwargs = F.relu, node.args[:1], {}
                replaced += 1
    gm.recompile()
    total = {p.first: torch.ones(_out(modules[p.first])) for p in pairs}
    with torch.no_grad():
        for _ in range(iterations):
            moved = 0.0
            for pair in pairs:
                first, second = modules[pair.first], modules[pair.second]
                r1 = first.weight.detach().abs().reshape(first.weight.shape[0], -1).amax(1)
                r2 = _in_ranges(second)
                ok = (r1 > 0) & (r2 > 0)
                s = torch.where(ok, torch.sqrt(r1 * r2) / r2.clamp(min=1e-30), torch.ones_like(r1))
                first.weight.data.div_(s.reshape(-1, *([1] * (first.weight.dim() - 1))))
                if first.bias is not None:
                    first.bias.data.div_(s)
                _scale_in(second, s)
                total[pair.first] /= s
                moved = max(moved, float((s - 1).abs().max()))
            if moved < tol:
                break
    return Equalized(pairs, blocked, replaced, scales=total)


def _out(m: nn.Module) -> int:
    return m.out_channels if isinstance(m, nn.Conv2d) else m.out_features


def absorb_high_biases(folded: Folded, eq: Equalized, sigmas: float = 3.0) -> int:
    """Move ``c = max(0, beta - 3|gamma|)`` (scaled as equalized) from each pair's first layer into its second's
    bias where a ReLU separates them and the second has no padding; returns how many channels moved."""
    modules = dict(folded.model.named_modules())
    moved = 0
    with torch.no_grad():
        for pair in eq.pairs:
            first, second = modules[pair.first], modules[pair.second]
            if (not pair.relu or pair.first not in folded.bn or first.bias is None
                    or (isinstance(second, nn.Conv2d) and any(p != 0 for p in second.padding))):
                continue
            gamma, beta = folded.bn[pair.first]
            k = eq.scales.get(pair.first, torch.ones_like(beta))
            c = (beta * k - sigmas * (gamma * k).abs()).clamp(min=0)
            if not bool((c > 0).any()):
                continue
            first.bias.data.sub_(c)
            w = second.weight.detach()
            if isinstance(second, nn.Linear):
                add = w @ c
            elif second.groups == 1:
                add = (w.sum((2, 3)) * c[None, :]).sum(1)
            else:
                add = w.sum((1, 2, 3)) * c
            if second.bias is None:
                second.bias = nn.Parameter(torch.zeros(w.shape[0]), requires_grad=False)
            second.bias.data.add_(add)
            moved += int((c > 0).sum())
    eq.absorbed = moved
    return moved
