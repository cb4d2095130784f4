"""The activation quantizers' rows of the per-layer table (``kind="activation"``): their output error.

For a static INT8 spec, every activation quantizer the fx build inserts between the layers
(:func:`qcore.backends.act_quantizers.quantizers`: the model input, residual additions, activation functions)
gets a row. Its output error is the quantizer's own: the FP32 tensor there (the model prepared by torch.ao FX,
BatchNorm folded, calibrated on the spec's calibration images with the spec's method, every op in float) against
that tensor quantized -> dequantized with the scale and zero point the calibration chose
(``torch.fake_quantize_per_tensor_affine``), over the same images as the layers' output errors. A layer's output
error carries every error before it; an activation row's is that one quantizer's alone.

The accuracy columns are real builds, as for a layer: only this quantizer in FP32 (``keep_float=("act:...",)``)
and only this one quantized (every layer and every other activation quantizer that can be kept, in FP32).
"""

from __future__ import annotations

import torch
from torch import nn

from qcore.backends._observer import calibrate
from qcore.backends.act_quantizers import ActQuantizer, quantizers
from qcore.backends.fx_int8 import prepared_fx
from qcore.layers.errors import ErrorSum
from qcore.quant.spec import QuantSpec

__all__ = ["observer_qparams", "observer_calls", "activation_errors"]


def observer_qparams(obs) -> tuple[float, int, int, int]:
    """A calibrated per-tensor observer's ``(scale, zero_point, quant_min, quant_max)``, as its kernel uses them."""
    scale, zp = obs.calculate_qparams()
    qmin = getattr(obs, "quant_min", None)
    qmax = getattr(obs, "quant_max", None)
    if qmin is None or qmax is None:
        qmin, qmax = (0, 255) if obs.dtype == torch.quint8 else (-128, 127)
    return float(scale.reshape(-1)[0]), int(zp.reshape(-1)[0]), int(qmin), int(qmax)


def observer_calls(prepared, batches, instances: dict[int, nn.Module], each) -> None:
    """Run ``prepared`` over ``batches`` without gradients; after every batch, ``each(calls)`` with what each
    observer of ``instances`` (by ``id``) read, one tensor a call (an observer shared by several ops is called
    several times)."""
    calls: dict[int, list[torch.Tensor]] = {}
    hooks = [m.register_forward_pre_hook(lambda m, a: calls.setdefault(id(m), []).append(a[0].detach().float()))
             for m in instances.values()]
    try:
        with torch.no_grad():
            for x in batches:
                calls.clear()
                prepared(x)
                each(calls)
    finally:
        for h in hooks:
            h.remove()


def activation_errors(model: nn.Module, spec: QuantSpec, calib: list[torch.Tensor], example: torch.Tensor,
                      batches: list[torch.Tensor]) -> tuple[list[ActQuantizer], dict[str, ErrorSum]]:
    """``(quantizers, errors)``: ``model``'s activation quantizers under ``spec`` (static INT8) and each one's
    output error over ``batches`` (see the module). ``model`` is not modified."""
    prepared = prepared_fx(model, spec, example)
    calibrate(prepared, calib)
    found = quantizers(prepared, model)
    params = {q.name: observer_qparams(prepared.get_submodule(q.observer)) for q in found}  # before any other forward
    sums = {q.name: ErrorSum() for q in found}
    instances = {id(prepared.get_submodule(q.observer)): prepared.get_submodule(q.observer) for q in found}

    def each(calls: dict[int, list[torch.Tensor]]) -> None:
        for q in found:
            t = calls[id(prepared.get_submodule(q.observer))][q.call]  # a shared observer: this row's call
            scale, zp, qmin, qmax = params[q.name]
            fq = torch.fake_quantize_per_tensor_affine(t, scale, zp, qmin, qmax)
            sums[q.name].add(t.reshape(t.shape[0], -1), fq.reshape(t.shape[0], -1))

    observer_calls(prepared, batches, instances, each)
    return found, sums
