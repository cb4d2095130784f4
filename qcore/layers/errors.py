"""How far a quantized tensor is from its FP32 original: SQNR, relative MSE, cosine similarity.

With ``x`` the FP32 tensor and ``q`` its quantized counterpart (dequantized to float):

- relative MSE ``= sum((x - q)^2) / sum(x^2)``: the share of the signal's energy that is error;
- SQNR ``= 10 log10(sum(x^2) / sum((x - q)^2))`` dB ``= -10 log10(relative MSE)``: 0.001 relative MSE is 30 dB.
  Each bit of a uniform quantizer adds about 6 dB, so INT8 of a well-ranged tensor gives 35-45 dB, INT4 10-20;
- cosine similarity ``= <x, q> / (|x| |q|)``, per image, averaged: the direction kept, whatever the scale.

:class:`ErrorSum` accumulates these over batches (sums, not means of means, so the batch size does not matter).
:func:`weight_error` quantizes -> dequantizes one layer's weight exactly as the spec's backend does: symmetric
int8 from torch.ao's min-max observer (per tensor or per output channel) for static and dynamic INT8, qcore's
packed weight-only layer (its clipping method, scheme and groups) for weight-only INT8/INT4.

The weight is the one the kernels hold: :func:`deployed` folds each BatchNorm into the convolution before it
(``w * gamma / sqrt(var + eps)`` per output channel, as torch.ao's FX and PT2E flows, ONNX, OpenVINO and qcore's
weight-only backend all do before they quantize), so :func:`weight_errors` measures the folded weight: for
mobilenet_v3_small's ``features.0.0`` the range is [-1.485, 1.214] folded, [-0.449, 0.371] unfolded, and a
per-tensor scale set by the folded range is what costs the accuracy. Dynamic INT8 quantizes Linear layers only
(no BatchNorm follows one) and folds nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from qcore.quant.spec import QuantSpec

__all__ = ["ErrorSum", "sqnr_db", "weight_error", "dequantized_weight", "deployed", "weight_errors"]


def sqnr_db(signal: float, noise: float) -> float:
    """``10 log10(signal / noise)``; inf when there is no error, nan when there is no signal."""
    if signal <= 0:
        return math.nan
    return math.inf if noise <= 0 else 10.0 * math.log10(signal / noise)


@dataclass
class ErrorSum:
    """Sums over batches of one tensor pair: ``add(x, q)`` per batch, then ``sqnr``, ``rel_mse``, ``cosine``.

    >>> e = ErrorSum(); e.add(torch.tensor([[3.0, 4.0]]), torch.tensor([[3.0, 3.9]])); round(e.sqnr, 1)
    34.0
    """

    signal: float = 0.0
    noise: float = 0.0
    cos_sum: float = 0.0
    count: int = 0

    def add(self, x: torch.Tensor, q: torch.Tensor) -> None:
        x, q = x.detach().double().flatten(1), q.detach().double().flatten(1)
        self.signal += float((x * x).sum())
        self.noise += float(((x - q) ** 2).sum())
        self.cos_sum += float(torch.nn.functional.cosine_similarity(x, q, dim=1, eps=1e-12).sum())
        self.count += x.shape[0]

    @property
    def sqnr(self) -> float:
        return sqnr_db(self.signal, self.noise)

    @property
    def rel_mse(self) -> float:
        return self.noise / self.signal if self.signal > 0 else math.nan

    @property
    def cosine(self) -> float:
        return self.cos_sum / self.count if self.count else math.nan


def dequantized_weight(layer: nn.Module, spec: QuantSpec) -> torch.Tensor:
    """``layer.weight`` after quantize -> dequantize with ``spec``'s weight settings (see the module's doc)."""
    w = layer.weight.detach().float()
    if spec.mode == "weight-only":
        from qcore.backends.weight_only import WeightOnlyLayer

        packed = WeightOnlyLayer(layer, spec.bits, spec.granularity, spec.group_size, spec.calibration,
                                 spec.symmetric, spec.percentile)
        return packed.dequantized_weight()
    from qcore.backends.fx_int8 import weight_observer

    obs = weight_observer(spec)()
    obs(w)
    scale, zp = obs.calculate_qparams()
    if spec.granularity == "per-channel":
        return torch.fake_quantize_per_channel_affine(w, scale.float(), zp.int(), 0, -128, 127)
    return torch.fake_quantize_per_tensor_affine(w, float(scale), int(zp), -128, 127)


def weight_error(layer: nn.Module, spec: QuantSpec) -> ErrorSum:
    """The error of ``layer``'s weight under ``spec`` (one "image": the whole weight)."""
    e = ErrorSum()
    w = layer.weight.detach().float()
    e.add(w.reshape(1, -1), dequantized_weight(layer, spec).reshape(1, -1))
    return e


def deployed(model: nn.Module, spec: QuantSpec) -> nn.Module:
    """A copy of ``model`` with its BatchNorms folded as ``spec``'s kernels hold them (see the module); layer
    names are kept. Dynamic INT8 folds nothing (a copy all the same)."""
    import copy

    from qcore.backends.weight_only import fold_batchnorm

    model = copy.deepcopy(model).eval()
    if spec.mode == "dynamic":
        return model
    return fold_batchnorm(model)[0]


def weight_errors(model: nn.Module, names: list[str], spec: QuantSpec) -> dict[str, ErrorSum]:
    """Each named layer's weight error under ``spec``, on the weights as deployed (``model`` as
    :func:`deployed` gives it); a name ``model`` lacks is left out (torch.fx's fold keeps only the modules the
    graph calls: a layer whose weight the model reads instead of calling it)."""
    modules = dict(model.named_modules())
    return {n: weight_error(modules[n], spec) for n in names if n in modules}
