"""Weight-only INT8 / INT4: weights stored in 8 or 4 bits, computed in float.

Each Conv/Linear weight is cut into rows (per-tensor: one row; per-channel: one row per output
channel; per-group: groups of ``group_size`` consecutive input weights of one output channel),
each row gets a scale and, when asymmetric, a zero point; INT4 values are packed two per byte and
INT4 zero points likewise. Per-tensor and per-channel scales are stored in FP16; per-group scales,
one per group, in 8 bits each (:func:`encode_scales`). BatchNorms are folded into the
convolutions first. That packed state dict is the artifact whose size is reported. Layers a spec names in
``keep_float`` stay FP32 modules; under INT4, those in ``keep_int8`` are packed in 8 bits the same way
(their bytes count as 8-bit weights in the artifact). At run time
the weights are dequantized to float before each matmul/conv, so the result is marked
``simulated``: smaller, not faster.

Example of the size: resnet18's 11.2M weights at INT4 per-group(64), symmetric, take
4 bits + 8.25/64 bits of scale = 4.13 bits each, about 0.13x of FP32.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from qcore.backends.base import Backend, Quantized, count_layers, register_backend
from qcore.metrics.measure import stopwatch
from qcore.quant import pinned
from qcore.quant.observers import weight_range
from qcore.quant.primitives import (
    choose_qparams,
    from_groups,
    pack_int4,
    qrange,
    quantize,
    to_groups,
    unpack_int4,
)

__all__ = ["encode_scales", "decode_scales", "weight_qparams", "WeightOnlyLayer", "fold_batchnorm", "WeightOnly"]

_FP16_TINY = 2.0**-24


_SCALE_BLOCK = 256  # scales per block of the double quantization


def encode_scales(scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-group scales in 8 bits: ``log2(scale)`` quantized over each block of 256 scales.

    Returns ``(code, span)``: one uint8 per scale and, per block, the float32 ``(low, high)`` of its
    log2 scales. Storage is 8.25 bits a scale instead of FP16's 16 (INT4 per-group(64): 4.13 bits a
    weight instead of 4.25); the relative error is at most ``2 ** ((high - low) / 510) - 1``, 0.4% for
    scales spanning a factor of 4 in a block. The same idea as QLoRA's double quantization.
    """
    logs = scale.float().log2()
    pad = (-logs.numel()) % _SCALE_BLOCK
    blocks = torch.nn.functional.pad(logs, (0, pad), value=float(logs[-1])).reshape(-1, _SCALE_BLOCK)
    low, high = blocks.amin(1), blocks.amax(1)
    width = (high - low).clamp(min=1e-12)
    code = ((blocks - low[:, None]) / width[:, None] * 255).round().clamp(0, 255).to(torch.uint8)
    return code.reshape(-1)[: logs.numel()], torch.stack([low, high], 1)


def decode_scales(code: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`encode_scales` (float32)."""
    n = code.numel()
    pad = (-n) % _SCALE_BLOCK
    c = torch.nn.functional.pad(code.float(), (0, pad)).reshape(-1, _SCALE_BLOCK)
    low, high = span[:, 0:1], span[:, 1:2]
    return torch.exp2(low + c / 255 * (high - low)).reshape(-1)[:n]


def weight_qparams(w: torch.Tensor, bits: int, granularity: str, group_size: int, method: str, symmetric: bool,
                   percentile: float):
    """How a weight is cut into rows and what each row's scale and zero point are, as stored.

    Returns ``(flat rows, rows shape, pad, scale, zero point, (qmin, qmax), (code, span) or None)``; the scale
    is the one the artifact holds (FP16, or 8-bit codes for per-group), so quantizing with it reproduces the
    stored integers. A weight whose codes AdaRound chose (:mod:`qcore.quant.pinned`) gets the qparams pinned for it.
    One home for :class:`WeightOnlyLayer` and for QAT's fake quantization of the same weights
    (:mod:`qcore.qat.weight_only_flow`), so a trained weight converts to exactly what training saw.
    """
    if granularity == "per-group":
        rows, pad = to_groups(w, min(group_size, w[0].numel()))  # short rows: one group each
    elif granularity == "per-channel":
        rows, pad = to_groups(w, w[0].numel())
    else:
        rows, pad = w.reshape(1, 1, -1), 0
    flat = rows.reshape(-1, rows.shape[-1])
    qmin, qmax = qrange(bits, signed=symmetric)
    pin = pinned.lookup(w)  # codes chosen by AdaRound (qcore.ptq.adaround): their qparams as they were stored
    if pin is not None:
        if pin[0].numel() != flat.shape[0]:
            raise ValueError(f"a pinned weight has {pin[0].numel()} scales where {granularity} has {flat.shape[0]}")
        return flat, tuple(rows.shape), pad, pin[0], pin[1], (qmin, qmax), (pin[2], pin[3]) if len(pin) > 2 else None
    lo, hi = weight_range(flat, method, qmin, qmax, symmetric, percentile)
    scale, zp = choose_qparams(lo, hi, qmin, qmax, symmetric)
    scale = scale.clamp(min=_FP16_TINY)
    code_span = None
    if granularity == "per-group":
        code_span = encode_scales(scale)
        scale = decode_scales(*code_span)
    else:
        scale = scale.half()
    return flat, tuple(rows.shape), pad, scale, zp, (qmin, qmax), code_span


class WeightOnlyLayer(nn.Module):
    """A Conv or Linear whose weight lives packed in ``bits`` and is dequantized per forward."""

    def __init__(
        self,
        layer: nn.Module,
        bits: int,
        granularity: str,
        group_size: int,
        method: str,
        symmetric: bool,
        percentile: float,
    ) -> None:
        super().__init__()
        w = layer.weight.detach().float()
        self.kind = "linear" if isinstance(layer, nn.Linear) else "conv"
        self.shape = tuple(w.shape)
        self.bits, self.symmetric = bits, symmetric
        if isinstance(layer, nn.Conv2d):
            self.conv_args = dict(
                stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups
            )
            if layer.padding_mode != "zeros":
                raise ValueError(f"padding_mode={layer.padding_mode!r} is not supported; allowed: zeros")
        flat, self.rows_shape, self.pad, scale, zp, (qmin, qmax), code_span = weight_qparams(
            w, bits, granularity, group_size, method, symmetric, percentile)
        if code_span is not None:  # many scales: stored in 8 bits each (double quantization)
            self.register_buffer("scale_code", code_span[0])
            self.register_buffer("scale_span", code_span[1])
        # quantize with the scale as stored; the decoded copy is not part of the artifact
        self.register_buffer("scale", scale, persistent=granularity != "per-group")
        q = quantize(flat, scale.float(), zp, qmin, qmax, axis=0)
        offset = 0 if not symmetric else -qmin  # store unsigned
        # stored without the zero padding of the last group of each row (a 96-wide row is 96 values, not 128)
        qu = from_groups((q + offset).to(torch.uint8).reshape(self.rows_shape), (w.shape[0], -1), self.pad)
        if bits == 4:
            self.register_buffer("qweight", pack_int4(qu))
            zbuf = pack_int4(zp.to(torch.uint8)) if not symmetric else torch.empty(0, dtype=torch.uint8)
        else:
            self.register_buffer("qweight", qu.reshape(-1))
            zbuf = zp.to(torch.uint8) if not symmetric else torch.empty(0, dtype=torch.uint8)
        self.register_buffer("zero_point", zbuf)
        self.bias = None if layer.bias is None else nn.Parameter(layer.bias.detach().clone(), requires_grad=False)
        self.qmin, self.offset = qmin, offset

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        n_rows = self.scale.numel()
        numel = n_rows * self.rows_shape[-1]
        stored = numel - self.shape[0] * self.pad
        q = unpack_int4(self.qweight, stored) if self.bits == 4 else self.qweight
        q = q.to(torch.int32)
        if self.pad:  # re-insert the padding (its values are cut off again below)
            q = to_groups(q.reshape(self.shape[0], -1), self.rows_shape[-1])[0]
        q = q.reshape(n_rows, -1) - self.offset
        if self.symmetric:
            zp = torch.zeros(n_rows, dtype=torch.int32, device=q.device)
        elif self.bits == 4:
            zp = unpack_int4(self.zero_point, n_rows).to(torch.int32)
        else:
            zp = self.zero_point.to(torch.int32)
        w = (q - zp[:, None]).to(dtype) * self.scale.to(dtype)[:, None]
        return from_groups(w.reshape(self.rows_shape), self.shape, self.pad)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight, for code that reads ``layer.weight`` (nn.MultiheadAttention's out_proj)."""
        return self.dequantized_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.dequantized_weight(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        if self.kind == "linear":
            return F.linear(x, w, bias)
        return F.conv2d(x, w, bias, **self.conv_args)


def _replace(model: nn.Module, make, keep: tuple[str, ...] = (), prefix: str = "",
             make_int8=None, keep_int8: tuple[str, ...] = ()) -> int:
    """Swap each Conv2d/Linear for ``make(layer)``, except those named in ``keep`` (left FP32) and those in
    ``keep_int8`` (``make_int8(layer)``); returns how many were swapped."""
    count = 0
    for name, child in list(model.named_children()):
        full = f"{prefix}{name}"
        if isinstance(child, (nn.Linear, nn.Conv2d)):
            if full in keep:  # QuantSpec.keep_float: stays an FP32 layer
                continue
            setattr(model, name, make_int8(child) if full in keep_int8 else make(child))
            count += 1
        else:
            count += _replace(child, make, keep, f"{full}.", make_int8, keep_int8)
    return count


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, str]:
    """``model`` with each BatchNorm that follows a conv folded into that conv's weight and bias.

    What a deployed model does anyway (torch.ao's FX flow fuses the same way); here it also means the
    BatchNorm parameters are not left in FP32 beside the packed weights. Models that torch.fx cannot
    trace keep their BatchNorms; the note says so.
    """
    def batchnorms(m: nn.Module) -> int:
        return sum(isinstance(x, nn.modules.batchnorm._BatchNorm) for x in m.modules())

    before = batchnorms(model)
    if not before:
        return model, ""
    from torch.fx.experimental.optimization import fuse

    try:
        fused = fuse(model)
    except Exception as exc:  # torch.fx cannot trace every model (data-dependent control flow)
        return model, f"BatchNorm not folded ({type(exc).__name__}: torch.fx could not trace the model)"
    after = batchnorms(fused)
    return fused, f"{before - after} of {before} BatchNorm layers folded into the preceding convolution"


class WeightOnly(Backend):
    name = "weight-only"
    kinds = ("weight-only",)

    def unsupported(self, spec, device):
        if spec.is_float or spec.mode != "weight-only":
            return "the weight-only backend runs INT8/INT4 weight-only specs"
        return None

    def quantize(self, model, spec, calib, example, device):
        bits = spec.bits

        def make(layer: nn.Module, bits: int = bits) -> WeightOnlyLayer:
            return WeightOnlyLayer(layer, bits, spec.granularity, spec.group_size, spec.calibration, spec.symmetric,
                                   spec.percentile)

        with stopwatch() as t:
            m, folded = fold_batchnorm(copy.deepcopy(model).eval().cpu())
            # keep_int8 (INT4 specs only): those layers packed in 8 bits, same granularity, calibration and scheme
            n = _replace(m, make, spec.keep_float, make_int8=lambda layer: make(layer, 8), keep_int8=spec.keep_int8)
            m = m.to(device)
        kept = [f"{len(names)} layer(s) kept in {what}: {', '.join(names)}"
                for names, what in ((spec.keep_int8, "INT8 weights"), (spec.keep_float, "FP32"))
                if names]
        return Quantized(
            model=m,
            backend=self.name,
            kernel="simulated",
            device=device,
            artifact=m.state_dict(),
            quantized_layers=n,
            total_layers=count_layers(model),
            quantize_seconds=t[0],
            notes=[
                f"INT{bits} weights are stored packed and dequantized to float before each layer: "
                "the size is real, the arithmetic is float (simulated), so it is smaller but not faster"
            ]
            + ([folded] if folded else [])
            + kept,
        )


register_backend(WeightOnly())
