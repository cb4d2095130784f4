"""Static INT8 on CPU: qcore's PT2E quantization, run by OpenVINO's CPU plugin.

The graph is the pt2e backend's (:mod:`.pt2e_int8`): the same export, X86InductorQuantizer annotation, qcore's
observers and calibration method, weight codes (AdaRound's pinned ones included) and layers kept in FP32, with one
addition: each input of a quantized residual add is quantized (:func:`quantizer`). X86InductorQuantizer leaves the
convolution that feeds an add unquantized because Inductor's oneDNN kernel fuses convolution, add and ReLU; OpenVINO
fuses an add into the convolution only when both of its inputs are quantized (as NNCF's graph has them, and
XNNPACK's), and otherwise runs that convolution with FP32 output and the add as a pass of its own (5 of resnet18's
20 convolutions): resnet18 took 1.03-1.04x OpenVINO's own time, mobilenet_v2 at batch 32 1.08x; with the addition
0.99-1.01x (timed in turns, docs/benchmarks.md, session 15). The last step differs too: the weights keep their
quantize/dequantize pairs (``fold_quantize=False``: OpenVINO's frontend reads the pairs, where a graph whose
convolutions take int8 weights does not convert), the graph is exported again with a free batch (height and width
are read from the input, as the pt2e graph does: OpenVINO reshapes the program for another image size), converted by
``openvino.convert_model``, its weights stored as int8 (OpenVINO's ``compress_quantize_weights``) and compiled by
the CPU plugin, which runs each quantize/dequantize pair around a convolution or linear layer as its own int8
kernel.

So this backend computes what the pt2e backend computes (the same ranges, the same weight codes) up to the rounding
of requantization and the one rounding more at each residual add's input: unlike the ``openvino`` backend, whose
NNCF picks its own activation ranges and corrects biases, its accuracy does not depend on which backend ran it,
which is what makes it one of ``auto``'s candidates (:data:`qcore.backends.auto.ORDER`). OpenVINO's own thread pool
(``own_threads``) runs it with torch's thread count and the LATENCY hint, a static-shape program compiled per input
shape (the ``openvino`` backend's runner).
"""

from __future__ import annotations

import copy
import warnings

import torch

from qcore.backends.base import Backend, count_layers, register_backend
from qcore.backends.openvino_backend import _OvModel, ov_quantized
from qcore.backends.pt2e_int8 import PT2EInt8, _graph_constants, _quantizer, quantized_graph
from qcore.metrics.measure import stopwatch

__all__ = ["quantizer", "snap_weights", "to_openvino", "PT2EOpenVino"]


_ADDS = (torch.ops.aten.add.Tensor, torch.ops.aten.add_.Tensor)


def quantizer(spec, model: torch.nn.Module | None = None, example: torch.Tensor | None = None):
    """The pt2e backend's quantizer for ``spec`` (:func:`qcore.backends.pt2e_int8._quantizer`), then each input of
    an add it quantized given the add's own activation spec: the convolution before a residual add gets a
    quantize/dequantize pair on its output, which X86InductorQuantizer leaves out (see the module). An add the
    quantizer left unannotated (inside a ``keep_float`` layer, or fed by one) stays FP32."""
    from torchao.quantization.pt2e.quantizer import Quantizer

    inner = _quantizer(spec, model, example)

    class _AddInputsQuantized(Quantizer):
        def transform_for_annotation(self, model):
            return inner.transform_for_annotation(model)

        def annotate(self, model):
            model = inner.annotate(model) or model
            for node in model.graph.nodes:
                ann = node.meta.get("quantization_annotation")
                if node.op != "call_function" or node.target not in _ADDS or ann is None:
                    continue
                specs = [s for s in ann.input_qspec_map.values() if s is not None]
                for arg in node.args[:2] if specs else ():
                    if isinstance(arg, torch.fx.Node) and arg not in ann.input_qspec_map:
                        ann.input_qspec_map[arg] = specs[0]
            return model

        def validate(self, model):
            return inner.validate(model)

    return _AddInputsQuantized()


def snap_weights(converted: torch.fx.GraphModule) -> int:
    """Set each weight that a quantize/dequantize pair reads to its dequantized value (the pair's own arithmetic),
    in place; returns how many. The pair then gives the same values, and OpenVINO, which stores the weights as int8
    codes from the pair's range by its own formula, finds each value on a code exactly: left as FP32, 1 weight in
    2,000 or so came out one code off torch's (its rounding at the halfway points)."""
    q = torch.ops.quantized_decomposed
    attrs = _graph_constants(converted)  # each get_attr's tensor (the weights, scales, zero points)
    n = 0
    for node in converted.graph.nodes:
        if node.op != "call_function" or node.target not in (q.quantize_per_channel.default,
                                                              q.quantize_per_tensor.default):  # fmt: skip
            continue
        weight, *qparams = node.args
        if not isinstance(weight, torch.fx.Node) or weight.op != "get_attr":
            continue  # an activation's quantize
        w = attrs[weight.target]
        args = [attrs[a.target] if isinstance(a, torch.fx.Node) else a for a in qparams]
        per_channel = node.target == q.quantize_per_channel.default
        dequantize = q.dequantize_per_channel.default if per_channel else q.dequantize_per_tensor.default
        with torch.no_grad():
            w.copy_(dequantize(node.target(w, *args), *args))
        n += 1
    return n


def to_openvino(converted: torch.fx.GraphModule, example: torch.Tensor):
    """The OpenVINO model of a converted PT2E graph (weights with their quantize/dequantize pairs): its weights
    snapped to their codes (:func:`snap_weights`), exported with a free batch (height and width free as well cost
    OpenVINO's conversion half again: 10.8 against 7.2 s for mobilenet_v3_small), converted, and its quantized
    weights stored as int8."""
    import openvino as ov
    from openvino._offline_transformations import compress_quantize_weights_transformation

    snap_weights(converted)
    ex = example if example.shape[0] > 1 else torch.cat([example, example])  # batch 1 would be specialised
    auto = torch.export.Dim.AUTO
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        exported = torch.export.export(converted, (ex,), dynamic_shapes=({0: auto},))
        ov_model = ov.convert_model(exported)
    compress_quantize_weights_transformation(ov_model)
    return ov_model


class PT2EOpenVino(Backend):
    name = "pt2e-openvino"
    kinds = ("static",)
    own_threads = True

    def unsupported(self, spec, device):
        if spec.is_float or spec.precision != "int8" or spec.mode != "static":
            return "the pt2e-openvino backend runs static INT8 only"
        if device != "cpu":
            return "the pt2e-openvino backend runs OpenVINO's CPU plugin only"
        try:
            import openvino  # noqa: F401
        except ImportError as exc:
            return f"openvino is not installed ({exc}); pip install -r requirements-peers.txt"
        return PT2EInt8().unsupported(spec, device)  # the pt2e backend's graph: its quantizer's limits

    def quantize(self, model, spec, calib, example, device):
        total = count_layers(model)
        model = copy.deepcopy(model).eval().cpu()
        converted, build_s, calib_s = quantized_graph(model, quantizer(spec, model, example), calib, example,
                                                      fold_quantize=False)  # fmt: skip
        with stopwatch() as t_convert:
            ov_model = to_openvino(converted, example)
        with stopwatch() as t_compile:
            runner = _OvModel(ov_model)
            runner(example)  # the latency shape's program compiled now, not in the first timed call
        notes = ["qcore's PT2E graph (X86InductorQuantizer, qcore's calibration; residual adds' inputs quantized too) "
                 "run by OpenVINO's CPU plugin: the pt2e backend's ranges and weight codes, OpenVINO's int8 kernels; "
                 "LATENCY hint, INFERENCE_NUM_THREADS = torch threads"]  # fmt: skip
        return ov_quantized(self.name, ov_model, runner, total, calib_s, build_s + t_convert[0] + t_compile[0], notes)


register_backend(PT2EOpenVino())
