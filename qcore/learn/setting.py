"""One layer's quantization as the Learn page shows it: a validated setting, and that layer made so.

A :class:`LayerSetting` names the source (model, weights, dataset), the layer, what is quantized (its
weights or its input), the bits, scheme, calibration method, granularity and, for an input, static or
dynamic ranges. :func:`quantize_layer` returns a copy of the model in which only that layer is
fake-quantized (quantized then dequantized in float, with :mod:`qcore.quant.primitives`), with exactly the
scales and zero points the page computed: the same captured batches, calibrators and rows.

Fake quantization is how 2..8 bits can be taught on any CPU: the arithmetic stays float, so a model
measured with it is *simulated* (what the integers would compute, not how fast).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from qcore.learn.affine import Affine
from qcore.learn.capture import KINDS, Captured, find_layer
from qcore.learn.granularity import GRANULARITIES, channel_method, channel_qparams, row_qparams, weight_rows
from qcore.learn.ranges import BITS, integer_range, method_range, methods_for
from qcore.learn.source import Source
from qcore.quant.spec import CHOICES, GROUP_SIZES, LABELS
from qcore.runs.sweep import SweepConfig

__all__ = ["MODES", "SIMULATED", "LayerSetting", "InputQuant", "input_quant", "quantize_layer"]

MODES = ("static", "dynamic")
SIMULATED = "simulated: fake-quantized in float (quantize then dequantize), not run on integer kernels"


def _allowed(values) -> str:
    return ", ".join(str(v) for v in values)


@dataclass(frozen=True)
class LayerSetting:
    """One layer of one model, quantized one way."""

    model: str = "resnet18"
    dataset: str = "fashion-mnist"
    weights: str = "baseline"
    layer: str = ""
    kind: str = "weights"
    bits: int = 8
    scheme: str = "asymmetric"
    method: str = "minmax"
    percentile: float = 99.99
    granularity: str = "per-tensor"
    group_size: int = 64
    mode: str = "static"
    fold_bn: bool = True  # weights as the sweeps quantize them: BatchNorm folded in
    eval_limit: int | None = SweepConfig.eval_limit  # the sweeps' evaluation subset (2,000 test images)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r} is not allowed; allowed: {_allowed(KINDS)}")
        if not isinstance(self.layer, str) or not self.layer:
            raise ValueError("layer is empty; allowed: a Conv or Linear layer's module name, e.g. 'layer1.0.conv1'")
        if not isinstance(self.bits, int) or isinstance(self.bits, bool) or self.bits not in BITS:
            raise ValueError(f"bits={self.bits!r} is not allowed; allowed: {BITS[0]}..{BITS[-1]}")
        if self.scheme not in CHOICES["scheme"]:
            raise ValueError(f"scheme={self.scheme!r} is not allowed; allowed: {_allowed(CHOICES['scheme'])}")
        if self.granularity not in GRANULARITIES[self.kind]:
            raise ValueError(f"granularity={self.granularity!r} is not allowed for {self.kind}; allowed: "
                             f"{_allowed(GRANULARITIES[self.kind])}")
        if self.granularity == "per-group" and self.group_size not in GROUP_SIZES:
            raise ValueError(f"group_size={self.group_size!r} is not allowed; allowed: {_allowed(GROUP_SIZES)}")
        if self.mode not in MODES or (self.kind == "weights" and self.mode != "static"):
            allowed = MODES if self.kind == "activations" else ("static",)
            raise ValueError(f"mode={self.mode!r} is not allowed for {self.kind}; allowed: {_allowed(allowed)} "
                             "(weights are fixed: their range is chosen once)")
        if self.mode == "dynamic":  # each batch's own min and max: nothing to calibrate (as QuantSpec has it)
            object.__setattr__(self, "method", "minmax")
        if self.method not in methods_for(self.kind):
            raise ValueError(f"calibration={self.method!r} is not allowed for {self.kind}; allowed: "
                             f"{_allowed(methods_for(self.kind))}")
        if not isinstance(self.percentile, (int, float)) or not 50.0 < float(self.percentile) <= 100.0:
            raise ValueError(f"percentile={self.percentile!r} is not allowed; allowed: a number in (50, 100]")
        object.__setattr__(self, "percentile", float(self.percentile))
        if self.eval_limit is not None and (not isinstance(self.eval_limit, int) or self.eval_limit < 1):
            raise ValueError(f"eval_limit={self.eval_limit!r} is not allowed; allowed: a positive int or None (all)")

    @property
    def symmetric(self) -> bool:
        return self.scheme == "symmetric"

    @property
    def source(self) -> Source:
        return Source(self.model, self.dataset, self.weights, self.seed)

    def label(self) -> str:
        """``layer1.0.conv1 weights: 4-bit asym MSE per-channel``."""
        method = LABELS.get(self.method, self.method)
        if self.method == "percentile":
            method += f"({self.percentile:g})"
        gran = f"per-group({self.group_size})" if self.granularity == "per-group" else self.granularity
        what = "input" if self.kind == "activations" else "weights"
        mode = f" {self.mode}" if self.kind == "activations" else ""
        method = "per-batch min-max" if self.mode == "dynamic" else method
        scheme = "sym" if self.symmetric else "asym"
        return f"{self.layer} {what}: {self.bits}-bit {scheme}{mode} {method} {gran}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LayerSetting:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown LayerSetting field(s): {', '.join(unknown)}; allowed: {_allowed(sorted(names))}")
        return cls(**d)


@dataclass
class InputQuant:
    """How a layer's input is fake-quantized: fixed parameters (static) or each batch's own (dynamic)."""

    setting: LayerSetting
    channel_axis: int
    scale: torch.Tensor | None = None  # static: 0-d (per-tensor) or one per channel
    zero_point: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from qcore.quant.primitives import choose_qparams, fake_quantize

        s = self.setting
        qmin, qmax = integer_range(s.bits, s.symmetric)
        axis = None if s.granularity == "per-tensor" else self.channel_axis
        scale, zp = self.scale, self.zero_point
        if s.mode == "dynamic":
            if axis is None:
                lo, hi = x.min(), x.max()
            else:
                rows = x.movedim(axis, 0).reshape(x.shape[axis], -1)
                lo, hi = rows.amin(1), rows.amax(1)
            scale, zp = choose_qparams(lo, hi, qmin, qmax, s.symmetric)
        return fake_quantize(x, scale, zp, qmin, qmax, axis)

    def summary(self) -> dict:
        if self.scale is None:
            return {"dynamic": "each batch's own min and max"}
        return _summary(self.scale, self.zero_point)


def _summary(scale: torch.Tensor, zero_point: torch.Tensor) -> dict:
    """Parameters as numbers: the one scale and zero point, or how many and their spread."""
    if scale.numel() == 1:
        return {"scale": float(scale.reshape(-1)[0]), "zero_point": int(zero_point.reshape(-1)[0])}
    return {"scales": int(scale.numel()), "scale_min": float(scale.min()), "scale_max": float(scale.max())}


def input_quant(captured: Captured, setting: LayerSetting, calibrators=None) -> InputQuant:
    """The input's fake quantizer for ``setting``, calibrated on ``captured`` (its calibration batches)."""
    if captured.kind != "activations":
        raise ValueError("input_quant needs the layer's captured input activations")
    q = InputQuant(setting, captured.channel_axis)
    if setting.mode == "static":
        if setting.granularity == "per-tensor":
            lo, hi = method_range(captured, setting.method, setting.bits, setting.symmetric, setting.percentile,
                                  calibrators)
            a = Affine.fit(lo, hi, setting.bits, setting.symmetric)
            q.scale, q.zero_point = torch.tensor(a.scale), torch.tensor(a.zero_point)
        else:
            qp = channel_qparams(captured, setting.method, setting.bits, setting.symmetric, setting.percentile)
            q.scale, q.zero_point = qp.scale, qp.zero_point
    return q


def quantize_layer(model: nn.Module, setting: LayerSetting, captured: Captured | None = None,
                   calibrators=None) -> tuple[nn.Module, dict]:
    """A copy of ``model`` with only ``setting.layer`` fake-quantized, and its parameters as numbers.

    Weights: the layer's weight is replaced by its fake-quantized copy (``model`` should already have its
    BatchNorm folded when ``setting.fold_bn``). Input: a forward pre-hook fake-quantizes what the layer
    receives, with the parameters calibrated on ``captured``."""
    model = copy.deepcopy(model).eval()
    layer, _ = find_layer(model, setting.layer)
    if setting.kind == "weights":
        with torch.no_grad():
            rows, back = weight_rows(layer.weight.detach().float(), setting.granularity, setting.group_size)
            qp = row_qparams(rows, setting.method, setting.bits, setting.symmetric, setting.percentile)
            layer.weight.copy_(back(qp.fake(rows)))
        return model, {"method": setting.method, **_summary(qp.scale, qp.zero_point)}
    if captured is None:
        raise ValueError("quantizing a layer's input needs its captured calibration activations")
    quant = input_quant(captured, setting, calibrators)
    layer.register_forward_pre_hook(lambda _m, args: (quant(args[0]), *args[1:]))
    used = channel_method(setting.method) if setting.granularity == "per-channel" else setting.method
    return model, {"method": used, **quant.summary()}
