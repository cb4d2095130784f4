"""Per-tensor, per-channel, per-group: how many scales a tensor gets, and what each one buys.

One scale for a whole tensor has to cover its widest channel, so a channel whose values stay small
sees only a few of the levels: with 8-bit symmetric scale ``s = 2.0 / 127.5`` set by a channel
reaching 2.0, a channel within +-0.05 is rounded to the 7 values ``-3s .. 3s``. Per channel, each
gets its own ``s`` (here ``0.05 / 127.5``, 40 times finer). Per group goes further for weights: a scale
per ``group_size`` consecutive input weights of one output channel, paid for in storage.

Rows, as the weight-only backend cuts them (:func:`qcore.quant.primitives.to_groups`): per-tensor is one
row; per-channel one row per output channel; per-group rows of ``group_size`` weights (a row shorter
than that is one group). An activation's channels are its input channels (one row per channel, all
captured values). Ranges per row come from :func:`qcore.quant.observers.weight_range`.

What the scales cost (the weight-only artifact's storage): per-tensor and per-channel scales in FP16;
per-group scales in 8 bits each plus one float32 pair per 256 of them (``encode_scales``: 8.25 bits);
zero points, asymmetric only, in ``bits`` bits each. Example: 4-bit per-group(64) symmetric spends
8.25 / 64 = 0.129 bits per weight on scales: 4.13 bits a weight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from qcore.backends.weight_only import encode_scales
from qcore.learn.affine import Affine, ErrorSplit, error_parts, error_split, split_of, sqnr_db
from qcore.learn.capture import Captured
from qcore.learn.ranges import integer_range
from qcore.quant.observers import weight_range
from qcore.quant.primitives import choose_qparams, fake_quantize, from_groups, packed_nbytes, to_groups
from qcore.quant.spec import GROUP_SIZES

__all__ = ["GRANULARITIES", "ROW_VALUES", "COST_VALUES", "FP16_BITS", "STREAM_METHODS", "weight_rows", "RowQParams",
           "row_qparams", "ChannelView", "channel_method", "channel_rows", "channel_qparams", "channel_view",
           "GroupCost", "scale_storage_bits", "weight_costs"]

GRANULARITIES = {"weights": ("per-tensor", "per-channel", "per-group"),
                 "activations": ("per-tensor", "per-channel")}
ROW_VALUES = 2**20  # per-channel numbers on at most this many values (columns sampled beyond)
COST_VALUES = 2**19  # the granularity table on at most this many weights (output channels sampled beyond)
FP16_BITS = 16


def weight_rows(w: torch.Tensor, granularity: str, group_size: int = 64
                ) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """``(rows, back)``: ``w`` as a 2-D matrix of rows that share a scale, and the way back to its shape."""
    if granularity == "per-tensor":
        return w.reshape(1, -1), lambda r: r.reshape(w.shape)
    if granularity == "per-channel":
        g = w[0].numel()
    elif granularity == "per-group":
        if group_size not in GROUP_SIZES:
            raise ValueError(f"group_size={group_size!r} is not allowed; allowed: {', '.join(map(str, GROUP_SIZES))}")
        g = min(group_size, w[0].numel())
    else:
        raise ValueError(f"granularity={granularity!r} is not allowed for weights; allowed: "
                         f"{', '.join(GRANULARITIES['weights'])}")
    groups, pad = to_groups(w, g)
    return groups.reshape(-1, g), lambda r: from_groups(r.reshape(groups.shape), w.shape, pad)


@dataclass
class RowQParams:
    lo: torch.Tensor
    hi: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor
    qmin: int
    qmax: int

    def fake(self, rows: torch.Tensor) -> torch.Tensor:
        return fake_quantize(rows, self.scale, self.zero_point, self.qmin, self.qmax, axis=0)


def row_qparams(rows: torch.Tensor, method: str, bits: int, symmetric: bool, percentile: float) -> RowQParams:
    """Each row's range (``weight_range``) and its scale and zero point."""
    qmin, qmax = integer_range(bits, symmetric)
    lo, hi = weight_range(rows, method, qmin, qmax, symmetric, percentile)
    scale, zp = choose_qparams(lo, hi, qmin, qmax, symmetric)
    return RowQParams(lo, hi, scale, zp, qmin, qmax)


def _row_sqnr(rows: torch.Tensor, fake: torch.Tensor) -> list[float]:
    noise = ((rows - fake) ** 2).sum(1, dtype=torch.float64)
    signal = (rows * rows).sum(1, dtype=torch.float64)
    return [sqnr_db(float(s), float(n)) for s, n in zip(signal, noise)]


@dataclass
class ChannelView:
    """Each channel's range and SQNR, under its own scale and under the one per-tensor scale."""

    lo: list[float]
    hi: list[float]
    scale: list[float]
    zero_point: list[int]
    tensor: Affine  # the per-tensor mapping compared against
    sqnr_tensor: list[float]  # each channel under the per-tensor scale
    sqnr_channel: list[float]  # each channel under its own scale
    split_tensor: ErrorSplit  # the whole tensor
    split_channel: ErrorSplit
    method: str  # the method the per-channel ranges used
    values_per_channel: int  # values each channel's numbers were computed on
    sampled: bool  # True when those are a seeded sample of the channel's values

    @property
    def channels(self) -> int:
        return len(self.lo)


STREAM_METHODS = ("moving-average", "entropy")  # follow one stream of batches: no per-row form


def channel_method(method: str) -> str:
    """The method per-channel ranges use: ``method``, or min-max for the stream methods (per channel they
    would need a calibrator per channel, and int8 kernels take per-tensor activations anyway)."""
    return "minmax" if method in STREAM_METHODS else method


def channel_rows(captured: Captured) -> torch.Tensor:
    """One row per channel: a weight's output channels, an activation's input channels."""
    if captured.kind == "activations":
        return captured.channel_rows()
    return weight_rows(captured.batches[0], "per-channel")[0]


def channel_qparams(captured: Captured, method: str, bits: int, symmetric: bool, percentile: float) -> RowQParams:
    """Each channel's range (on all its values) and its scale and zero point."""
    return row_qparams(channel_rows(captured), channel_method(method), bits, symmetric, percentile)


def channel_view(captured: Captured, tensor: Affine, method: str, percentile: float, seed: int = 0) -> ChannelView:
    """Per-channel ranges of ``captured`` (:func:`channel_qparams`) against the per-tensor mapping ``tensor``;
    the errors on a seeded sample of each channel's values when there are more than ``ROW_VALUES``."""
    rows = channel_rows(captured)
    qp = channel_qparams(captured, method, tensor.bits, tensor.symmetric, percentile)
    sampled = rows.numel() > ROW_VALUES
    if sampled:
        keep = max(1, ROW_VALUES // rows.shape[0])
        cols = torch.randperm(rows.shape[1], generator=torch.Generator().manual_seed(seed))[:keep]
        rows = rows[:, cols.sort().values]
    per_channel = qp.fake(rows)
    per_tensor = tensor.fake(rows)
    return ChannelView(
        lo=qp.lo.tolist(), hi=qp.hi.tolist(), scale=qp.scale.tolist(), zero_point=qp.zero_point.tolist(),
        tensor=tensor, sqnr_tensor=_row_sqnr(rows, per_tensor), sqnr_channel=_row_sqnr(rows, per_channel),
        split_tensor=error_split(rows, tensor.scale, tensor.zero_point, tensor.qmin, tensor.qmax),
        split_channel=error_split(rows, qp.scale, qp.zero_point, qp.qmin, qp.qmax, axis=0),
        method=channel_method(method), values_per_channel=rows.shape[1], sampled=sampled,
    )  # fmt: skip


@dataclass(frozen=True)
class GroupCost:
    """One granularity of a weight: how many scales, the bits they cost per weight, and the SQNR."""

    granularity: str
    group_size: int  # weights per scale (the row length)
    scales: int
    scale_bits: float  # per weight
    zero_point_bits: float  # per weight (0 when symmetric)
    split: ErrorSplit

    @property
    def label(self) -> str:
        return f"per-group({self.group_size})" if self.granularity == "per-group" else self.granularity

    def bits_per_weight(self, bits: int) -> float:
        return bits + self.scale_bits + self.zero_point_bits


def scale_storage_bits(granularity: str, scales: int) -> int:
    """Bits the weight-only artifact spends on ``scales`` scales: FP16 each, or ``encode_scales`` per group
    (its size depends on the count only)."""
    if granularity == "per-group":
        code, span = encode_scales(torch.ones(scales))
        return code.numel() * code.element_size() * 8 + span.numel() * span.element_size() * 8
    return scales * FP16_BITS


def weight_costs(w: torch.Tensor, tensor: Affine, method: str, percentile: float, max_values: int = COST_VALUES,
                 seed: int = 0) -> tuple[list[GroupCost], int]:
    """Per-tensor (``tensor``, fitted on the whole weight), per-channel and every per-group size of
    ``GROUP_SIZES`` shorter than a row; and how many output channels the errors were computed on.

    A weight of more than ``max_values`` values is measured on a seeded sample of its output channels
    (rows are independent below per-tensor, so the sample's SQNR estimates the whole one); the bits
    spent on scales are always those of the whole weight."""
    w = w.float()
    n, row_len = w.numel(), w[0].numel()
    bits, symmetric = tensor.bits, tensor.symmetric
    sub = w
    if n > max_values:
        keep = max(1, max_values // row_len)
        idx = torch.randperm(w.shape[0], generator=torch.Generator().manual_seed(seed))[:keep]
        sub = w[idx.sort().values]
    out = []
    for granularity, g in [("per-tensor", 0), ("per-channel", 0)] + [("per-group", g) for g in GROUP_SIZES
                                                                          if g < row_len]:
        rows, back = weight_rows(sub, granularity, g or 64)
        if granularity == "per-tensor":
            qp = RowQParams(torch.tensor([tensor.lo]), torch.tensor([tensor.hi]), torch.tensor([tensor.scale]),
                            torch.tensor([tensor.zero_point]), tensor.qmin, tensor.qmax)
        else:
            qp = row_qparams(rows, method, bits, symmetric, percentile)
        err2, clipped = error_parts(rows, qp.scale, qp.zero_point, qp.qmin, qp.qmax, axis=0)
        split = split_of(sub, back(err2), back(clipped))  # the zero padding of the last group left out
        scales = weight_rows(torch.empty(w.shape, device="meta"), granularity, g or 64)[0].shape[0]
        zp_bits = 0 if symmetric else packed_nbytes(scales, bits) * 8
        out.append(GroupCost(granularity, rows.shape[1], scales, scale_storage_bits(granularity, scales) / n,
                             zp_bits / n, split))
    return out, sub.shape[0]
