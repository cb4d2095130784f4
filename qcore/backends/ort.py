"""ONNX Runtime as a qcore backend: FP32, and static INT8 through ORT's own quantizer.

The FP32 model is exported to ONNX once (:mod:`.onnx_export`, batch and spatial dimensions
free). FP32 runs that graph as it is. Static INT8 calibrates it on the same calibration
batches as the torch backends with ``onnxruntime.quantization.quantize_static`` and writes a
QDQ model (QuantizeLinear/DequantizeLinear pairs around each Conv, Gemm, Add ...), which
ORT's graph optimizer fuses into QLinearConv-style int8 kernels (MLAS) when the session
loads it. Weights are int8 symmetric, per output channel or per tensor as the spec says;
activations uint8 (asymmetric) or int8 (symmetric).

Calibration methods map onto ORT's: minmax -> MinMax, moving-average -> MinMax with
``CalibMovingAverage``, entropy -> Entropy, percentile -> Percentile (same percentile).
ORT has no MSE search, so ``mse`` is refused with a reason.

Layers a spec keeps in FP32 (``QuantSpec.keep_float``) are found in the exported graph by their scope names
(:mod:`.graph_names`: ``fc`` is the node ``/fc/Gemm``) and passed to ``quantize_static`` as
``nodes_to_exclude``: their weights stay float initializers and ORT runs them as float ops.

Sessions use ``torch.get_num_threads()`` intra-op threads, one inter-op thread, all graph
optimizations, and no spinning by default: a sweep times the session in a block of its own and
torch FP32 in the next, in one process, and spinning ORT workers would still hold the cores when
torch's block starts.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from collections.abc import Iterable

import numpy as np
import torch

from qcore.backends.base import Backend, Quantized, count_layers, register_backend
from qcore.backends.graph_names import layer_nodes, nodes_for, onnx_module
from qcore.backends.onnx_export import INPUT_NAME, export_onnx
from qcore.metrics.measure import stopwatch

__all__ = ["OrtModel", "OrtBackend", "excluded_nodes"]

_CALIBRATIONS = {"minmax": "MinMax", "moving-average": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
# The ops of a Conv or Linear layer's scope (a Linear on 3-d input exports as MatMul + Add): excluded together.
_LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add")


def _make_session(model_bytes: bytes, threads: int | None = None, spinning: bool = False):
    """An ORT CPU session over ``model_bytes`` (see the module docstring for the settings)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.log_severity_level = 3
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


class OrtModel:
    """A callable over an ORT session: float32 torch tensor in, float32 torch logits out."""

    def __init__(self, model_bytes: bytes, threads: int | None = None, spinning: bool = False) -> None:
        self.session = _make_session(model_bytes, threads, spinning)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().cpu().float().numpy())
        return torch.from_numpy(self.session.run([self.output_name], {self.input_name: arr})[0])


def _ort_version() -> str:
    import onnxruntime as ort

    return ort.__version__


def excluded_nodes(model_bytes: bytes, keep: tuple[str, ...]) -> list[str]:
    """The graph's node names of the torchvision layers in ``keep`` (``fc`` -> ``/fc/Gemm``): quantize_static's
    ``nodes_to_exclude``. Raises SpecError for a layer no node is named after (:mod:`.graph_names`)."""
    import onnx

    graph = onnx.load_from_string(model_bytes).graph
    return nodes_for(keep, layer_nodes(((n.name, n.op_type) for n in graph.node), onnx_module, _LAYER_OPS), "ONNX")


def _quantize_onnx(fp32_bytes: bytes, spec, calib: Iterable[torch.Tensor], reduce_range: bool = False) -> bytes:
    """Static QDQ INT8 of an exported FP32 ONNX model, calibrated on ``calib`` as ``spec`` says; the layers of
    ``spec.keep_float`` are left out (``nodes_to_exclude``: their weights stay float, no QDQ pair of theirs)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {INPUT_NAME: np.ascontiguousarray(x.detach().cpu().float().numpy())}

    extra = {"ActivationSymmetric": spec.symmetric, "WeightSymmetric": True}
    if spec.calibration == "moving-average":
        extra["CalibMovingAverage"] = True
    if spec.calibration == "percentile":
        extra["CalibPercentile"] = spec.percentile
        extra["CalibTensorRangeSymmetric"] = spec.symmetric
    with tempfile.TemporaryDirectory() as tmp:
        src, pre, dst = (os.path.join(tmp, n) for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        with open(src, "wb") as fh:
            fh.write(fp32_bytes)
        try:  # shape inference + ORT's FP32 graph cleanup: better fused QDQ patterns
            quant_pre_process(src, pre, skip_symbolic_shape=False)
        except Exception:  # pre-processing is an optimization; quantize the raw export instead
            pre = src
        with open(pre, "rb") as fh:  # the names quantize_static will see (pre-processing keeps the exporter's)
            exclude = excluded_nodes(fh.read(), spec.keep_float) if spec.keep_float else []
        # ORT's entropy and percentile calibrators print their progress; keep stdout clean.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            quantize_static(
                pre,
                dst,
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=spec.granularity == "per-channel",
                reduce_range=reduce_range,
                activation_type=QuantType.QInt8 if spec.symmetric else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=getattr(CalibrationMethod, _CALIBRATIONS[spec.calibration]),
                nodes_to_exclude=exclude,
                extra_options=extra,
            )
        with open(dst, "rb") as fh:
            return fh.read()


def _quantized_weight_count(model_bytes: bytes) -> int:
    """Weights stored as int8 in the graph (initializers of rank > 1 feeding a DequantizeLinear)."""
    import onnx

    graph = onnx.load_from_string(model_bytes).graph
    int8 = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) > 1}
    return sum(1 for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in int8)


class OrtBackend(Backend):
    name = "ort"
    kinds = ("float", "static")
    own_threads = True

    def unsupported(self, spec, device):
        if device != "cpu":
            return "the ort backend runs ONNX Runtime's CPU execution provider only"
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            return f"onnxruntime is not installed ({exc}); pip install -r requirements-peers.txt"
        if spec.is_float:
            return None if spec.precision == "fp32" else f"the ort backend runs fp32 and int8, not {spec.precision}"
        if spec.precision != "int8" or spec.mode != "static":
            return f"the ort backend runs static INT8 only, not {spec.precision} {spec.mode}"
        if spec.calibration not in _CALIBRATIONS:
            return (
                f"ONNX Runtime has no {spec.calibration} calibration; allowed: "
                f"{', '.join(_CALIBRATIONS)} (ORT's MinMax, Entropy, Percentile)"
            )
        return None

    def quantize(self, model, spec, calib, example, device):
        total = count_layers(model)
        with stopwatch() as t_export:
            fp32_bytes = export_onnx(model, example)
        notes = ["ONNX Runtime CPU EP, graph optimizations ALL, intra-op threads = torch threads, no spinning"]
        if spec.is_float:
            artifact, calib_s, nq = fp32_bytes, 0.0, 0
            notes.insert(0, "ONNX export of the FP32 model (TorchScript exporter, BatchNorm folded)")
        else:
            calib = list(calib)
            with stopwatch() as t_q:
                artifact = _quantize_onnx(fp32_bytes, spec, calib)
            calib_s, nq = t_q[0], _quantized_weight_count(artifact)
            notes.insert(
                0,
                f"ORT quantize_static: QDQ, {_CALIBRATIONS[spec.calibration]} calibration, "
                f"{'int8' if spec.symmetric else 'uint8'} activations, int8 {spec.granularity} weights "
                "(calibration seconds include writing the QDQ model)",
            )
            if spec.keep_float:
                notes.insert(1, f"{len(spec.keep_float)} layer(s) left in FP32 (nodes_to_exclude): "
                                f"{', '.join(spec.keep_float)}")
        with stopwatch() as t_sess:
            runner = OrtModel(artifact)
            runner(example)  # the first run allocates; keep it out of the timed calls
        return Quantized(
            model=runner,
            backend=self.name,
            kernel="native",
            device="cpu",
            artifact=artifact,
            quantized_layers=nq,
            total_layers=total,
            calib_seconds=calib_s,
            quantize_seconds=t_export[0] + t_sess[0],
            engine=f"onnxruntime {_ort_version()}",
            notes=notes,
        )


register_backend(OrtBackend())
