"""How a QAT spec becomes a trainable model and then a deployable one, per backend: the one table of QAT flows.

A QAT spec (``mode="qat"``) is deployed as its static INT8 counterpart (:attr:`QuantSpec.ptq_spec`) on the
backend that counterpart resolves to, restricted to the backends that have a QAT flow here
(:data:`qcore.backends.qat_choice.QAT_BACKENDS`, which also says why the others have none, and picks among them
as ``auto`` does): this module holds the flows themselves (:data:`FLOWS`).

The fx flow (torch.ao ``prepare_qat_fx`` / ``convert_fx``): conv-bn(-relu) are fused into QAT modules whose
weights pass through fake quantization (int8 symmetric, per tensor or per output channel, moving-average
min-max as torch's QAT defaults) and every activation through a fake quantizer. The activations' starting
ranges are the PTQ ones: the calibration batches run first through the user's calibration method
(:class:`~qcore.backends._observer.CalibrationObserver`), and each activation's moving-average observer is
started at the range that method chose (a scale of 0.02 with zero point 10 over 0..255 starts at
[-0.2, 4.9]). Training then moves the ranges (until they are frozen) and the weights; ``convert_fx``
gives the same int8 modules as the fx backend's static PTQ, on the same kernels.

The weight-only flow (INT4 weight-only QAT: weights trained through their fake quantization, converted to the
weight-only backend's packed layers) is :mod:`qcore.qat.weight_only_flow`.

The pt2e flow is not wired here (its graph would need torchao's ``prepare_qat_pt2e`` and an AOTInductor
build after training); a QAT spec that names ``backend="pt2e"`` says so, and ``auto`` runs it on fx.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable

import torch
from torch import nn

from qcore.backends.base import Quantized, count_layers
from qcore.qat.weight_only_flow import WeightOnlyQAT
from qcore.quant.spec import QuantSpec

__all__ = ["FxQAT", "FLOWS", "freeze_bn", "freeze_observers"]

def _act_range(qparams: tuple[torch.Tensor, torch.Tensor], qmin: int, qmax: int) -> tuple[float, float]:
    """The float range ``[(qmin - zp) * scale, (qmax - zp) * scale]`` a scale and zero point cover."""
    scale, zp = (float(t.reshape(-1)[0]) for t in qparams)
    return (qmin - zp) * scale, (qmax - zp) * scale


class FxQAT:
    """The fx flow: :meth:`prepare` (fused QAT graph, PTQ starting ranges), then :meth:`convert` after training."""

    backend = "fx"

    def __init__(self, spec: QuantSpec) -> None:
        from qcore.backends.fx_int8 import activation_range
        from qcore.env import hardware

        self.spec = spec
        self.engine = hardware.quantized_engine()
        self.qmin, self.qmax = activation_range()

    def _qconfig_mapping(self, calibrating: bool):
        from torch.ao.quantization import QConfig, get_default_qat_qconfig_mapping
        from torch.ao.quantization.fake_quantize import FakeQuantize, FusedMovingAvgObsFakeQuantize
        from torch.ao.quantization.observer import (
            HistogramObserver,
            MovingAverageMinMaxObserver,
            MovingAveragePerChannelMinMaxObserver,
        )

        from qcore.backends._observer import CalibrationObserver

        spec = self.spec
        qscheme = torch.per_tensor_symmetric if spec.symmetric else torch.per_tensor_affine
        observer = (CalibrationObserver.with_args(method=spec.calibration, percentile=spec.percentile)
                    if calibrating else MovingAverageMinMaxObserver)
        act = FakeQuantize.with_args(observer=observer, quant_min=self.qmin, quant_max=self.qmax,
                                     dtype=torch.quint8, qscheme=qscheme)
        if spec.granularity == "per-channel":
            weight = FusedMovingAvgObsFakeQuantize.with_args(
                observer=MovingAveragePerChannelMinMaxObserver, quant_min=-128, quant_max=127, dtype=torch.qint8,
                qscheme=torch.per_channel_symmetric)
        else:
            weight = FusedMovingAvgObsFakeQuantize.with_args(
                observer=MovingAverageMinMaxObserver, quant_min=-128, quant_max=127, dtype=torch.qint8,
                qscheme=torch.per_tensor_symmetric)
        qconfig = QConfig(activation=act, weight=weight)
        mapping = get_default_qat_qconfig_mapping(self.engine).set_global(qconfig)
        # ops with fixed output ranges (sigmoid, hardsigmoid, tanh) keep their fixed qparams; the rest get ours
        for key, qc in list(mapping.object_type_qconfigs.items()):
            kind = getattr(qc.activation, "func", qc.activation) if qc is not None else None
            if kind in (FusedMovingAvgObsFakeQuantize, HistogramObserver):
                mapping.set_object_type(key, qconfig)
        return mapping

    def key(self) -> dict:
        """What, besides the spec's common fields, defines a trained state of this flow (its cache key)."""
        return {"flow": self.backend, "range": [self.qmin, self.qmax]}

    def starting_ranges(self, calib_images: int) -> str:
        return f"started from {self.spec.calibration} ranges on {calib_images} calibration images"

    def quantized(self, converted: nn.Module, model: nn.Module, note: str) -> Quantized:
        """The converted graph as the fx backend's result (its int8 kernels)."""
        from qcore.backends.fx_int8 import _quantized_layer_count

        return Quantized(model=converted, backend=self.backend, kernel="native", device="cpu",
                         artifact=converted.state_dict(), quantized_layers=_quantized_layer_count(converted),
                         total_layers=count_layers(model), engine=self.engine, notes=[note])

    def prepare(self, model: nn.Module, example: torch.Tensor, calib: Iterable[torch.Tensor] | None) -> nn.Module:
        """A trainable copy of ``model`` with fake quantization; ``calib`` batches set the activations'
        starting ranges (None: leave them to be loaded from a cached state dict)."""
        from torch.ao.quantization.quantize_fx import prepare_qat_fx

        torch.backends.quantized.engine = self.engine
        model = copy.deepcopy(model).cpu().train()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao FX warns that it is deprecated in favour of PT2E
            try:
                prepared = prepare_qat_fx(model, self._qconfig_mapping(calibrating=True), example_inputs=(example,))
            except Exception as exc:
                raise ValueError(f"this model's graph cannot be traced for QAT by torch.fx: "
                                 f"{type(exc).__name__}: {str(exc)[:300]}") from exc
        if calib is not None:
            self._calibrate(prepared, calib)
        self._to_moving_average(prepared)
        return prepared

    @staticmethod
    def _activation_quantizers(prepared: nn.Module):
        from torch.ao.quantization.fake_quantize import FakeQuantize

        from qcore.backends._observer import CalibrationObserver

        for m in prepared.modules():
            if isinstance(m, FakeQuantize) and isinstance(m.activation_post_process, CalibrationObserver):
                yield m

    def _calibrate(self, prepared: nn.Module, calib: Iterable[torch.Tensor]) -> None:
        """The user's calibration method over ``calib``, in eval mode (BatchNorm statistics untouched), with
        fake quantization off: PTQ's ranges, solved once per activation."""
        quantizers = list(self._activation_quantizers(prepared))
        hooks = [q.register_forward_pre_hook(lambda mod, args: mod.activation_post_process(args[0]))
                 for q in quantizers]
        for q in quantizers:  # the hook feeds the observer; the quantizer itself passes x through
            q.disable_observer()
            q.disable_fake_quant()
        prepared.eval()
        try:
            with torch.no_grad():
                for x in calib:
                    prepared(x)
        finally:
            for h in hooks:
                h.remove()
        for q in quantizers:
            q.enable_fake_quant()
            q.enable_observer()

    def _to_moving_average(self, prepared: nn.Module) -> None:
        """Each activation quantizer's observer becomes a moving-average min-max one started at the range the
        calibration chose (left empty when nothing was calibrated: a cached state dict fills it)."""
        from torch.ao.quantization.observer import MovingAverageMinMaxObserver

        for q in self._activation_quantizers(prepared):
            old = q.activation_post_process
            new = MovingAverageMinMaxObserver(dtype=old.dtype, qscheme=old.qscheme, quant_min=old.quant_min,
                                              quant_max=old.quant_max)
            if bool(torch.isfinite(old.min_val)):
                lo, hi = _act_range(old.calculate_qparams(), old.quant_min, old.quant_max)
                new.min_val.fill_(lo)
                new.max_val.fill_(hi)
                scale, zp = new.calculate_qparams()
                q.scale.resize_(scale.shape).copy_(scale)
                q.zero_point.resize_(zp.shape).copy_(zp)
            q.activation_post_process = new

    def convert(self, prepared: nn.Module) -> nn.Module:
        """The trained graph as the fx backend's int8 modules (the same kernels as static PTQ)."""
        from torch.ao.quantization.quantize_fx import convert_fx

        torch.backends.quantized.engine = self.engine
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return convert_fx(copy.deepcopy(prepared).eval())


def freeze_observers(prepared: nn.Module) -> None:
    """Stop every range from moving (weights keep training through the frozen fake quantizers)."""
    from torch.ao.quantization import disable_observer

    prepared.apply(disable_observer)


def freeze_bn(prepared: nn.Module) -> None:
    """BatchNorm statistics stop updating (the fused QAT conv-bn modules keep their running estimates)."""
    from torch.ao.nn.intrinsic.qat import freeze_bn_stats

    prepared.apply(freeze_bn_stats)
    for m in prepared.modules():  # any BatchNorm left unfused
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


FLOWS = {"fx": FxQAT, "weight-only": WeightOnlyQAT}
