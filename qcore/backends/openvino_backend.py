"""OpenVINO as a qcore backend: FP32, and static INT8 through NNCF post-training quantization.

``openvino.convert_model`` converts the FP32 torch model (batch and spatial dimensions left
free, so one model evaluates 32x32 images and is timed at 224x224). FP32 runs that model.
Static INT8 runs ``nncf.quantize`` on it with the same calibration images as the torch
backends (fed one image at a time, NNCF's usual way), target device CPU; the preset follows
the spec's scheme (asymmetric activations: MIXED, symmetric: PERFORMANCE), weights are int8
symmetric per channel or per tensor. NNCF picks its own activation ranges (its min-max family
of estimators plus fast bias correction), so only ``calibration="minmax"`` is accepted: any
other method name would be a label on NNCF's choice.

Layers a spec keeps in FP32 (``QuantSpec.keep_float``) go into NNCF's ``IgnoredScope(names=...)``, found by
their scope names (:mod:`.graph_names`: ``fc`` is ``__module.fc/aten::linear/MatMul``). OpenVINO names a
convolution whose BatchNorm it folds itself ``Multiply_N``, so for INT8 the BatchNorms are folded in torch first
(:func:`.weight_only.fold_batchnorm`, the same arithmetic), which keeps every convolution's name.

The compiled model uses ``INFERENCE_NUM_THREADS = torch.get_num_threads()`` and the LATENCY
hint. The artifact is the serialized IR (``.xml`` + ``.bin``, weights not compressed to FP16).
OpenVINO compiles one program per model; a model with dynamic dimensions runs any shape, and
:class:`_OvModel` also compiles a static-shape copy for each new input shape it meets (up to
a few), which is what OpenVINO runs fastest.
"""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np
import torch

from qcore.backends.base import Backend, Quantized, count_layers, register_backend
from qcore.backends.graph_names import layer_nodes, nodes_for, openvino_module
from qcore.backends.weight_only import fold_batchnorm
from qcore.metrics.measure import stopwatch

__all__ = ["convert", "ignored_nodes", "ov_quantized", "OpenVinoBackend"]

# The ops NNCF quantizes in a Conv or Linear layer: what its ignored scope names.
_LAYER_OPS = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul")


def _ov_config(threads: int | None = None) -> dict:
    """The CPU plugin's settings: torch's thread count, latency mode, and f32 for what is not int8 (on a CPU
    with AVX512-BF16 the plugin would otherwise run an "FP32" model in bf16: 1e-3 off torch, not 1e-6)."""
    return {"INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()), "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32"}


class _OvModel:
    """A callable over an OpenVINO model: float32 torch tensor in, float32 torch logits out.

    ``static_shapes``: compile a fixed-shape copy per input shape (at most ``max_shapes``;
    beyond that the dynamic program runs).
    """

    def __init__(self, model, threads: int | None = None, static_shapes: bool = True, max_shapes: int = 4) -> None:
        import openvino as ov

        self.core = ov.Core()
        self.model = model
        self.config = _ov_config(threads)
        self.dynamic = None
        self.static_shapes = static_shapes
        self.max_shapes = max_shapes
        self.compiled: dict[tuple[int, ...], object] = {}

    def _program(self, shape: tuple[int, ...]):
        prog = self.compiled.get(shape)
        if prog is None and self.static_shapes and len(self.compiled) < self.max_shapes:
            m = self.model.clone()
            m.reshape({m.inputs[0]: list(shape)})
            prog = self.compiled[shape] = self.core.compile_model(m, "CPU", self.config).create_infer_request()
        if prog is None:
            if self.dynamic is None:
                self.dynamic = self.core.compile_model(self.model, "CPU", self.config).create_infer_request()
            prog = self.dynamic
        return prog

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().cpu().float().numpy())
        prog = self._program(tuple(arr.shape))
        out = prog.infer({0: arr}, share_inputs=True)
        return torch.from_numpy(np.array(next(iter(out.values())), dtype=np.float32, copy=True))


def convert(model: torch.nn.Module, example: torch.Tensor):
    """The OpenVINO model of ``model`` with input [N, C, H, W], N, H and W dynamic."""
    import openvino as ov

    model = model.eval().cpu().float()
    ex = example.detach().cpu().float()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convert_model traces with torch.jit, which warns that it is deprecated
        return ov.convert_model(model, example_input=ex, input=[ov.PartialShape([-1, ex.shape[1], -1, -1])])


def ignored_nodes(ov_model, keep: tuple[str, ...]) -> list[str]:
    """The OpenVINO op names of the torchvision layers in ``keep`` (``fc`` -> ``__module.fc/aten::linear/MatMul``):
    NNCF's ``IgnoredScope(names=...)``. Raises SpecError for a layer no op is named after (:mod:`.graph_names`)."""
    ops = ((op.get_friendly_name(), op.get_type_name()) for op in ov_model.get_ordered_ops())
    return nodes_for(keep, layer_nodes(ops, openvino_module, _LAYER_OPS), "OpenVINO")


def _nncf_quantize(ov_model, calib, spec):
    """NNCF static INT8 of ``ov_model`` on the calibration images in ``calib`` (batches); the layers of
    ``spec.keep_float`` are in NNCF's ignored scope (no FakeQuantize on their weights or inputs)."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, QuantizationParameters

    images = [x[i : i + 1].detach().cpu().float().numpy() for x in calib for i in range(x.shape[0])]
    advanced = None
    if spec.granularity != "per-channel":
        advanced = AdvancedQuantizationParameters(weights_quantization_params=QuantizationParameters(per_channel=False))
    preset = nncf.QuantizationPreset.PERFORMANCE if spec.symmetric else nncf.QuantizationPreset.MIXED
    return nncf.quantize(
        ov_model,
        nncf.Dataset(images),
        preset=preset,
        target_device=nncf.TargetDevice.CPU,
        subset_size=len(images),
        advanced_parameters=advanced,
        ignored_scope=nncf.IgnoredScope(names=ignored_nodes(ov_model, spec.keep_float)) if spec.keep_float else None,
    )


def _serialize(ov_model) -> bytes:
    """The IR as deployed: ``model.xml`` followed by ``model.bin`` (FP32 weights kept FP32)."""
    import openvino as ov

    with tempfile.TemporaryDirectory() as tmp:
        xml = os.path.join(tmp, "model.xml")
        ov.save_model(ov_model, xml, compress_to_fp16=False)
        with open(xml, "rb") as fh:
            head = fh.read()
        with open(xml[:-4] + ".bin", "rb") as fh:
            return head + fh.read()


def _int8_weight_count(ov_model) -> int:
    """Weights held as int8 (or uint8) constants of rank > 1: the layers NNCF really quantized."""
    import openvino as ov

    n = 0
    for op in ov_model.get_ops():
        if op.get_type_name() == "Constant" and op.get_element_type() in (ov.Type.i8, ov.Type.u8):
            n += len(op.get_output_partial_shape(0)) > 1
    return n


def _ov_version() -> str:
    import openvino as ov

    return ov.get_version().split("-")[0]


def ov_quantized(backend: str, ov_model, runner: _OvModel, total_layers: int, calib_seconds: float,
                 quantize_seconds: float, notes: list[str]) -> Quantized:  # fmt: skip
    """The :class:`Quantized` of an OpenVINO model run by ``runner``: its IR as the artifact, its int8 weights
    counted as the quantized layers."""
    return Quantized(
        model=runner,
        backend=backend,
        kernel="native",
        device="cpu",
        artifact=_serialize(ov_model),
        quantized_layers=_int8_weight_count(ov_model),
        total_layers=total_layers,
        calib_seconds=calib_seconds,
        quantize_seconds=quantize_seconds,
        engine=f"openvino {_ov_version()}",
        notes=notes,
    )


class OpenVinoBackend(Backend):
    name = "openvino"
    kinds = ("float", "static")
    own_threads = True

    def unsupported(self, spec, device):
        if device != "cpu":
            return "the openvino backend runs OpenVINO's CPU plugin only"
        try:
            import openvino  # noqa: F401
        except ImportError as exc:
            return f"openvino is not installed ({exc}); pip install -r requirements-peers.txt"
        if spec.is_float:
            if spec.precision != "fp32":
                return f"the openvino backend runs fp32 and static int8, not {spec.precision}"
            return None
        if spec.precision != "int8" or spec.mode != "static":
            return f"the openvino backend runs static INT8 only, not {spec.precision} {spec.mode}"
        try:
            import nncf  # noqa: F401
        except ImportError as exc:
            return f"nncf is not installed ({exc}); pip install -r requirements-peers.txt"
        if spec.calibration != "minmax":
            return (
                f"NNCF chooses its own activation ranges (min-max estimators and bias correction), so "
                f"calibration={spec.calibration!r} cannot be honoured; allowed: minmax"
            )
        return None

    def quantize(self, model, spec, calib, example, device):
        import copy

        total = count_layers(model)
        model = copy.deepcopy(model)
        notes = ["OpenVINO CPU plugin, LATENCY hint, INFERENCE_NUM_THREADS = torch threads"]
        with stopwatch() as t_conv:
            if not spec.is_float:  # folded in torch, a convolution keeps its name (NNCF's ignored scope needs it)
                model, folded = fold_batchnorm(model.eval())
                notes += [folded] if folded else []
            ov_model = convert(model, example)
        calib_s = 0.0
        if not spec.is_float:
            with stopwatch() as t_q:
                ov_model = _nncf_quantize(ov_model, list(calib), spec)
            calib_s = t_q[0]
            notes.insert(0, f"NNCF post-training quantization, preset {'PERFORMANCE' if spec.symmetric else 'MIXED'}")
            if spec.keep_float:
                notes.insert(1, f"{len(spec.keep_float)} layer(s) left in FP32 (NNCF ignored_scope): "
                                f"{', '.join(spec.keep_float)}")
        with stopwatch() as t_compile:
            runner = _OvModel(ov_model)
            runner(example)
        return ov_quantized(self.name, ov_model, runner, total, calib_s, t_conv[0] + t_compile[0], notes)


register_backend(OpenVinoBackend())
