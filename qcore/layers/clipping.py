"""The clipping range a spec's weight settings choose for one layer's weight: one per tensor, one per output
channel, or one per group of weights, exactly as the spec's backend computes it.

- INT8 static, dynamic and QAT (before fine-tuning): torch.ao's min-max observer for symmetric int8 weights
  (:func:`qcore.backends.fx_int8.weight_observer`), whatever the spec's calibration, which chooses the
  *activations'* ranges. Its range is ``[-a, a]`` with ``a = max|w|`` of the tensor or channel, its scale
  ``a / 127.5`` and zero point 0: a channel reaching 0.51 gets ``s = 0.004``, codes -128..127.
- Weight-only (INT8 or INT4): qcore's own rows and ranges, the Learn page's functions
  (:func:`qcore.learn.granularity.weight_rows` and :func:`~qcore.learn.granularity.row_qparams`, which call
  the backend's :func:`qcore.quant.observers.weight_range`): the spec's calibration (min-max, percentile, MSE), its
  scheme (symmetric: signed codes, ``-8..7`` for INT4) and its groups (``group_size`` consecutive input
  weights of one output channel; a row shorter than that is one group).

A row is what shares one scale: the tensor, an output channel, or a group. :attr:`WeightRanges.widest` is the
row with the widest range, the one a per-tensor scale would have to cover.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qcore.learn.granularity import row_qparams, weight_rows
from qcore.quant.spec import QuantSpec

__all__ = ["WeightRanges", "weight_ranges"]


@dataclass(frozen=True)
class WeightRanges:
    """Each row's clipping range ``[lo, hi]``, scale and zero point, and how the rows were cut."""

    granularity: str  # per-tensor | per-channel | per-group
    row_len: int  # weights per row (scale)
    lo: list[float]
    hi: list[float]
    scale: list[float]
    zero_point: list[int]
    qmin: int
    qmax: int
    how: str  # which function chose the ranges, in words

    @property
    def count(self) -> int:
        return len(self.lo)

    @property
    def unit(self) -> str:
        return {"per-tensor": "tensor", "per-channel": "channel", "per-group": "group"}[self.granularity]

    @property
    def widest(self) -> int:
        """The row whose range is widest (the first of equals)."""
        widths = [h - lo for lo, h in zip(self.lo, self.hi)]
        return max(range(len(widths)), key=widths.__getitem__)

    def where(self, row: int, out_channels: int) -> str:
        """``group 5 of channel 2`` for a per-group row, ``channel 2`` per channel, ``the tensor`` per tensor."""
        if self.granularity == "per-group":
            per = self.count // max(1, out_channels)
            return f"group {row % per} of channel {row // per}"
        return f"channel {row}" if self.granularity == "per-channel" else "the tensor"


def rows_of(w: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """``w`` as the rows that share a scale under ``spec`` (the zero padding of a short last group included)."""
    granularity = spec.granularity if spec.mode == "weight-only" else (
        "per-channel" if spec.granularity == "per-channel" else "per-tensor")
    return weight_rows(w.detach().float(), granularity, spec.group_size or 64)[0]


def weight_ranges(w: torch.Tensor, spec: QuantSpec) -> WeightRanges:
    """The clipping range of every row of ``w`` (a Conv or Linear weight) under ``spec`` (see the module)."""
    if spec.is_float:
        raise ValueError(f"{spec.label()} quantizes nothing: it has no clipping range; allowed: an INT8 or INT4 spec")
    w = w.detach().float()
    rows = rows_of(w, spec)
    if spec.mode == "weight-only":
        qp = row_qparams(rows, spec.calibration, spec.bits, spec.symmetric, spec.percentile)
        how = (f"{spec.calibration} on each {spec.granularity.removeprefix('per-')}, {spec.scheme}, "
               f"{spec.bits}-bit codes {qp.qmin}..{qp.qmax} (the weight-only backend's weight_range)")
        return WeightRanges(spec.granularity, rows.shape[1], qp.lo.tolist(), qp.hi.tolist(), qp.scale.tolist(),
                            [int(z) for z in qp.zero_point.tolist()], qp.qmin, qp.qmax, how)
    from qcore.backends.fx_int8 import weight_observer

    obs = weight_observer(spec)()
    obs(w)
    scale, zp = obs.calculate_qparams()
    lo = torch.as_tensor(obs.min_val).clamp(max=0).reshape(-1)
    hi = torch.as_tensor(obs.max_val).clamp(min=0).reshape(-1)
    amax = torch.maximum(-lo, hi)  # symmetric: the range is [-a, a]
    granularity = "per-channel" if spec.granularity == "per-channel" else "per-tensor"
    how = (f"min-max on each {granularity.removeprefix('per-')}, symmetric int8 codes -128..127 (torch.ao's "
           f"observer: int8 kernels take symmetric weights; the spec's {spec.calibration} calibration sets the "
           "activations' ranges)" + ("; QAT fine-tunes these ranges from here" if spec.mode == "qat" else ""))
    return WeightRanges(granularity, rows.shape[1], (-amax).tolist(), amax.tolist(),
                        scale.reshape(-1).float().tolist(), [int(z) for z in zp.reshape(-1).tolist()], -128, 127, how)
