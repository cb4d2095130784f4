"""INT8 on CPU through torch.ao FX graph mode: real fbgemm / oneDNN (x86) or qnnpack kernels.

Static mode: FX traces the model, fuses conv-bn-relu, inserts an observer per activation
(the user's calibration method, a :class:`~qcore.backends._observer.CalibrationObserver`) and per weight
(min-max, per tensor or per output channel), runs the calibration batches, and converts to
quantized modules whose arithmetic is int8 x int8 -> int32. ``keep_float`` leaves layers (module names) and
activation quantizers (``act:`` names, :mod:`qcore.backends.act_quantizers`) in FP32: their ops get no qconfig.

Dynamic mode: Linear layers only; weights are quantized ahead of time, activations per batch
at run time. Convolutions stay FP32 and the result says how many layers were quantized. So do
Linear layers the model never calls but reads the weight of (torchvision's Swin attention runs
``F.linear(x, self.qkv.weight)``, nn.MultiheadAttention reads ``out_proj.weight``): a dynamic
quantized Linear's ``weight`` is a method, and such a read would fail.

On CPUs without VNNI (AVX2 only), fbgemm multiplies uint8 x int8 pairs into int16 with
saturation, so activations use 7 bits (``reduce_range``), as torch's own x86 defaults do.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from qcore.backends._observer import CalibrationObserver, calibrate
from qcore.backends.act_quantizers import (
    ActQuantizer,
    check_act_names,
    fed_int8,
    is_act,
    keep_in_mapping,
    not_kept_note,
    quantizers,
    still_quantized,
)
from qcore.backends.base import Backend, Quantized, count_layers, register_backend
from qcore.env import hardware
from qcore.metrics.measure import stopwatch
from qcore.quant.spec import QuantSpec, SpecError

__all__ = [
    "weight_observer", "activation_range", "static_qconfig_mapping", "prepared_fx", "model_quantizers", "FXInt8",
    "called_modules", "quantized_mean",
]


def _quantized_layer_count(model: nn.Module) -> int:
    """Modules whose weights are int8 (static or dynamic quantized Conv/Linear)."""
    n = 0
    for m in model.modules():
        mod = type(m).__module__
        if mod.startswith("torch.ao.nn.quantized") or mod.startswith("torch.ao.nn.intrinsic.quantized"):
            if hasattr(m, "weight") and callable(m.weight):
                n += 1
    return n


def weight_observer(spec: QuantSpec):
    """torch.ao's min-max observer for int8 symmetric weights, per tensor or per output channel (codes pinned by
    AdaRound honoured: :mod:`qcore.backends.pinned_observers`)."""
    from qcore.backends.pinned_observers import PinnedMinMaxObserver as MinMaxObserver
    from qcore.backends.pinned_observers import PinnedPerChannelMinMaxObserver as PerChannelMinMaxObserver

    # int8 weights are symmetric (zero point 0): the only kind oneDNN's and PT2E's kernels take.
    if spec.granularity == "per-channel":
        return PerChannelMinMaxObserver.with_args(
            dtype=torch.qint8, qscheme=torch.per_channel_symmetric, quant_min=-128, quant_max=127
        )
    return MinMaxObserver.with_args(
        dtype=torch.qint8, qscheme=torch.per_tensor_symmetric, quant_min=-128, quant_max=127
    )


def activation_range() -> tuple[int, int]:
    """uint8 activations: 0..255 with VNNI, 0..127 (reduce_range) without."""
    return (0, 255) if hardware.detect().has_vnni else (0, 127)


def static_qconfig_mapping(spec: QuantSpec, engine: str):
    """The QConfigMapping of a static INT8 spec: the user's calibration method on every activation."""
    from torch.ao.quantization import QConfig, get_default_qconfig_mapping
    from torch.ao.quantization.observer import HistogramObserver

    qmin, qmax = activation_range()
    act = CalibrationObserver.with_args(
        method=spec.calibration,
        percentile=spec.percentile,
        dtype=torch.quint8,
        qscheme=torch.per_tensor_symmetric if spec.symmetric else torch.per_tensor_affine,
        quant_min=qmin,
        quant_max=qmax,
    )
    qconfig = QConfig(activation=act, weight=weight_observer(spec))
    mapping = get_default_qconfig_mapping(engine).set_global(qconfig)
    # Ops with fixed output ranges (sigmoid, tanh, ...) keep their fixed qparams; every entry
    # that used the default histogram observer gets the user's method instead.
    for key, qc in list(mapping.object_type_qconfigs.items()):
        if qc is not None and getattr(qc.activation, "func", qc.activation) is HistogramObserver:
            mapping.set_object_type(key, qconfig)
    for name in spec.keep_float:  # left in FP32: no observer, so FX converts nothing there (a fused conv-bn-relu
        if not is_act(name):  # takes its conv's name, so the conv's name excludes all three)
            mapping.set_module_name(name, None)
    return mapping  # (activation quantizers kept in FP32 need the model's graph: FXInt8._static adds them)


def prepared_fx(model: nn.Module, spec: QuantSpec | None = None, example: torch.Tensor | None = None,
                engine: str | None = None) -> torch.fx.GraphModule:
    """``model`` prepared by torch.ao FX for ``spec`` (default: static INT8 per-tensor min-max) with nothing kept
    in FP32: fused, observers inserted, nothing calibrated. ``model`` is not modified; a model on the meta device
    gives the graph without values (the names of its quantizers)."""
    from torch.ao.quantization.quantize_fx import prepare_fx

    spec = (spec or QuantSpec("int8", granularity="per-tensor", mode="static")).replace(keep_float=())
    engine = engine or hardware.quantized_engine()
    example = example if example is not None else torch.randn(1, 3, 32, 32)
    model = copy.deepcopy(model).eval()
    if next(model.parameters(), torch.empty(0)).device.type != "meta":
        model = model.cpu()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prepare_fx(model, static_qconfig_mapping(spec, engine), example_inputs=(example,))


def model_quantizers(model: nn.Module, example: torch.Tensor | None = None) -> list[ActQuantizer]:
    """The activation quantizers (:func:`qcore.backends.act_quantizers.quantizers`) of ``model`` prepared for
    static INT8: a trace, a fusion, the observers inserted, no calibration (about a second for
    mobilenet_v3_small). The set does not depend on the calibration method or the weights' granularity."""
    return quantizers(prepared_fx(model, example=example), model)


class FXInt8(Backend):
    name = "fx"
    kinds = ("static", "dynamic")

    def unsupported(self, spec, device):
        if spec.is_float or spec.precision != "int8":
            return f"the fx backend runs INT8 only, not {spec.precision}"
        if spec.mode not in ("static", "dynamic"):
            return f"the fx backend runs static and dynamic INT8, not {spec.mode}"
        if spec.mode == "dynamic" and spec.symmetric:
            return "torch.ao quantizes dynamic activations asymmetrically (uint8); allowed: asymmetric"
        if device != "cpu":
            return (
                "torch.ao int8 kernels (fbgemm, oneDNN, qnnpack) run on the CPU only; torch has no "
                "CUDA kernel for int8 convolutions"
            )
        return None

    def quantize(self, model, spec, calib, example, device):
        engine = hardware.quantized_engine()
        torch.backends.quantized.engine = engine
        model = copy.deepcopy(model).eval().cpu()
        total = count_layers(model)
        notes: list[str] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao FX warns that it is deprecated in favour of PT2E
            if spec.mode == "dynamic":
                q, seconds, read = self._dynamic(model, spec, example)
                calib_s = 0.0
                notes.append(
                    "dynamic: Linear layers hold int8 weights and quantize activations per batch; "
                    "convolutions stay FP32"
                )
                if read:
                    notes.append(
                        f"{len(read)} Linear layer(s) stay FP32: the model reads their weight instead of calling "
                        f"them (e.g. {read[0]}; attention code such as Swin's or nn.MultiheadAttention's)"
                    )
            else:
                q, calib_s, seconds, not_kept = self._static(model, spec, calib, example, engine)
                notes += [not_kept_note(n) for n in not_kept]
        nq = _quantized_layer_count(q)
        if not hardware.detect().has_vnni and spec.mode == "static":
            notes.append("no VNNI on this CPU: activations use 7 bits (reduce_range) to avoid int16 overflow")
        if nq == 0:
            notes.append("no layer was quantized (no Linear layer for dynamic mode?)")
        return Quantized(
            model=q,
            backend=self.name,
            kernel="native" if nq else "simulated",
            device="cpu",
            artifact=q.state_dict(),
            quantized_layers=nq,
            total_layers=total,
            calib_seconds=calib_s,
            quantize_seconds=seconds,
            engine=engine,
            notes=notes,
        )

    def _static(self, model, spec, calib, example, engine):
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        mapping = static_qconfig_mapping(spec, engine)
        kept = []
        if any(is_act(n) for n in spec.keep_float):  # activation quantizers kept in FP32 (.act_quantizers)
            kept = check_act_names(spec.keep_float, model_quantizers(model, example))
            keep_in_mapping(mapping, kept)
        with stopwatch() as t_prep:
            prepared = prepare_fx(model, mapping, example_inputs=(example,))
        missed = still_quantized(prepared, kept)
        if missed:
            raise SpecError(f"keep_float: torch.ao FX still quantizes {missed[0]} with the mapping qcore built for "
                            "it; it cannot be kept in FP32 on this model")
        calib_s = calibrate(prepared, calib)
        with stopwatch() as t_conv:
            q = convert_fx(prepared)
            _route_quantized_means(q)
        return q, calib_s, t_prep[0] + t_conv[0], fed_int8(q, kept, example) if kept else []

    def _dynamic(self, model, spec, example):
        from torch.ao.quantization import QConfig, quantize_dynamic
        from torch.ao.quantization.observer import PlaceholderObserver

        act = PlaceholderObserver.with_args(dtype=torch.quint8, is_dynamic=True)
        qconfig = QConfig(activation=act, weight=weight_observer(spec))
        with stopwatch() as t:
            called = called_modules(model, example)
            read = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n not in called]
            # kept layers (spec.keep_float) get no qconfig: a name-keyed mapping quantizes only what it names
            q = quantize_dynamic(model, {name: qconfig for name in called if name not in spec.keep_float},
                                 dtype=torch.qint8)
        return q, t[0], read


def called_modules(model: nn.Module, example: torch.Tensor, types: tuple[type, ...] = (nn.Linear,)) -> list[str]:
    """Qualified names of the layers of ``types`` that one forward of ``model`` calls as modules, in call order.

    The others are read, not called: their parent passes ``layer.weight`` to a function itself.
    """
    called: list[str] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, args, name=name: called.append(name))
        for name, m in model.named_modules()
        if isinstance(m, types)
    ]
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return list(dict.fromkeys(called))


def quantized_mean(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """``x.mean(...)``, also for a quantized channels-last map of 1x1 pixels.

    torch's int8 ``mean`` fails on such a tensor ("required rank 4 tensor to use channels_last format"):
    its strides, (C, 1, C, C), read as channels-last, and the kernel then asks for a channels-last result
    of rank 2. shufflenet_v2 and mnasnet end with ``x.mean([2, 3])``, and at 32x32 their last map is 1x1.
    A contiguous copy (N*C bytes) reads as NCHW; the mean of one pixel is that pixel, requantized as before.
    """
    if x.is_quantized and x.dim() == 4 and x.shape[2] * x.shape[3] == 1:
        x = x.clone(memory_format=torch.contiguous_format)
    return x.mean(*args, **kwargs)


def _route_quantized_means(gm: torch.fx.GraphModule) -> None:
    """Every ``mean`` of the converted graph goes through :func:`quantized_mean`."""
    changed = False
    for node in gm.graph.nodes:
        if (node.op == "call_method" and node.target == "mean") or (
            node.op == "call_function" and node.target is torch.mean
        ):
            node.op, node.target = "call_function", quantized_mean
            changed = True
    if changed:
        gm.recompile()


register_backend(FXInt8())
