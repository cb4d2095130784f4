"""QAT of INT4 (or INT8) weight-only quantization: the weights learn to live on their quantization grid.

PTQ of INT4 weight-only rounds each weight once to one of 16 levels of its row's range (a row: the whole
tensor, an output channel, or a group). With mobilenet_v3_small's per-tensor min-max that costs ~4.8 points
of top-1 on Fashion-MNIST: one outlier weight stretches the range and every other weight of the layer shares
its 16 coarse steps. QAT trains *through* that rounding. Each forward uses the fake-quantized weight

    w_q = dequantize(quantize(w))          (exactly the integers and the stored scale the artifact will hold)

and the backward passes the gradient to ``w`` unchanged (straight-through estimator): ``w + (w_q - w).detach()``
has the value of ``w_q`` and the gradient of ``w``. A weight of 0.030 on a grid of step 0.0125 is used as
0.025; if the loss wants it larger it moves until it rounds to 0.0375, so the training adapts the float
weights to what the rounding will do.

The ranges are not trained: each step recomputes them from the current weights with the spec's own
calibration (:func:`qcore.backends.weight_only.weight_qparams`, min-max, percentile or MSE), so conversion is
exact: :meth:`WeightOnlyQAT.convert` builds the same :class:`~qcore.backends.weight_only.WeightOnlyLayer`
as PTQ does, from the trained weights, and its forward equals the last training forward's (tested to the
last bit). Hence ``qat_freeze_observers`` has nothing to freeze here (weight-only has no activation ranges).
BatchNorm is folded into the convolutions before training, as the PTQ build folds it (what is quantized is
the folded weight), so the QAT model's BatchNorm statistics are fixed from step 0 while the FP32 control's
freeze at ``qat_freeze_bn``; the row's notes say so. The kernel is the weight-only backend's: simulated
(weights dequantized to float before each layer), so the size is real and the latency is not an INT4 kernel's.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from qcore.backends.base import Quantized, count_layers
from qcore.backends.weight_only import WeightOnlyLayer, _replace, fold_batchnorm, weight_qparams
from qcore.quant.primitives import dequantize, from_groups, quantize
from qcore.quant.spec import QuantSpec

__all__ = ["fake_quantize_weight", "FakeQuantWeight", "WeightOnlyQAT"]


def fake_quantize_weight(w: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """``w`` rounded to ``spec``'s weight-only grid, with a straight-through gradient: the value
    :class:`WeightOnlyLayer` would dequantize (bit for bit), the gradient of ``w``."""
    with torch.no_grad():
        flat, rows_shape, pad, scale, zp, (qmin, qmax), _ = weight_qparams(
            w.detach().float(), spec.bits, spec.granularity, spec.group_size, spec.calibration, spec.symmetric,
            spec.percentile)
        q = quantize(flat, scale.float(), zp, qmin, qmax, axis=0)
        wq = from_groups(dequantize(q, scale.float(), zp, axis=0).reshape(rows_shape), w.shape, pad).to(w.dtype)
    return w + (wq - w).detach()


class FakeQuantWeight(nn.Module):
    """A Conv2d or Linear (``self.layer``, trainable) whose forward uses its fake-quantized weight."""

    def __init__(self, layer: nn.Module, spec: QuantSpec) -> None:
        super().__init__()
        self.layer, self.spec = layer, spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = fake_quantize_weight(self.layer.weight, self.spec)
        if isinstance(self.layer, nn.Linear):
            return F.linear(x, w, self.layer.bias)
        return self.layer._conv_forward(x, w, self.layer.bias)


class WeightOnlyQAT:
    """The weight-only flow: :meth:`prepare` (BatchNorm folded, weights fake-quantized), :meth:`convert` after
    training (the weight-only backend's packed layers)."""

    backend = "weight-only"
    engine = ""

    def __init__(self, spec: QuantSpec) -> None:
        self.spec = spec
        self.folded = ""

    def key(self) -> dict:
        """What, besides the spec's common fields, defines a trained state of this flow (its cache key)."""
        s = self.spec
        return {"flow": self.backend, "bits": s.bits, "group_size": s.group_size, "keep_float": list(s.keep_float)}

    def prepare(self, model: nn.Module, example: torch.Tensor, calib=None) -> nn.Module:
        """A trainable copy of ``model``: BatchNorm folded, each Conv2d/Linear (``keep_float`` aside) wrapped in
        :class:`FakeQuantWeight`. ``calib`` is not used: weight ranges come from the weights."""
        m, self.folded = fold_batchnorm(copy.deepcopy(model).cpu().eval())
        n = _replace(m, lambda c: FakeQuantWeight(c, self.spec), self.spec.keep_float)  # the backend's own walk
        if n == 0:
            raise ValueError("this model has no Conv2d or Linear layer to quantize (keep_float aside): "
                             "nothing to train")
        for p in m.parameters():
            p.requires_grad_(True)
        return m.train()

    def convert(self, prepared: nn.Module) -> nn.Module:
        """The trained model with each fake-quantized layer packed as PTQ packs it (the same arithmetic)."""
        s = self.spec
        m = copy.deepcopy(prepared).eval()
        wrapped = [name for name, mod in m.named_modules() if isinstance(mod, FakeQuantWeight)]
        for name in wrapped:
            parent, _, child = name.rpartition(".")
            fq = m.get_submodule(name)
            setattr(m.get_submodule(parent), child, WeightOnlyLayer(
                fq.layer, s.bits, s.granularity, s.group_size, s.calibration, s.symmetric, s.percentile))
        self.converted_layers = len(wrapped)
        for p in m.parameters():
            p.requires_grad_(False)
        return m

    def starting_ranges(self, calib_images: int) -> str:
        return f"weight ranges by {self.spec.calibration} from the weights themselves, at every step"

    def quantized(self, converted: nn.Module, model: nn.Module, note: str) -> Quantized:
        """The converted model as the weight-only backend's result (simulated kernel, packed artifact)."""
        notes = [note, f"INT{self.spec.bits} weights are stored packed and dequantized to float before each layer: "
                       "the size is real, the arithmetic is float (simulated), so it is smaller but not faster",
                 "weight ranges follow the weights at every step (the spec's calibration recomputed), so "
                 "qat_freeze_observers has nothing to freeze; BatchNorm was folded before training (fixed from "
                 "step 0), the control's statistics freeze at qat_freeze_bn"]
        if self.folded:
            notes.append(self.folded)
        return Quantized(model=converted, backend=self.backend, kernel="simulated", device="cpu",
                         artifact=converted.state_dict(), quantized_layers=self.converted_layers,
                         total_layers=count_layers(model), notes=notes)
