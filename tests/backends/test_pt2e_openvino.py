"""The pt2e-openvino backend: the pt2e backend's quantized graph (residual adds' inputs quantized too), run by
OpenVINO's CPU plugin.

Oracles: the PT2E graph itself run by torch (its quantize/dequantize pairs are the spec's arithmetic), the pt2e
backend's own int8 weight codes, the pt2e backend's count of quantized layers, a walk of the graph for what feeds
each add, and OpenVINO's own compiled program for where the add runs."""

import copy
import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

from qcore.backends.pt2e_int8 import _quantizer, build_pt2e, quantized_graph
from qcore.quant.spec import QuantSpec

_gone = [m for m in ("openvino", "torchao") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(_gone), reason=f"not installed: {', '.join(_gone)}")

SPEC = QuantSpec("int8", backend="pt2e-openvino")


def _rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def _backend():
    from qcore.backends.pt2e_openvino import PT2EOpenVino

    return PT2EOpenVino()


def test_it_computes_what_the_pt2e_graph_computes_at_any_shape(cnn, peer_calib, check_close):
    q = _backend().quantize(cnn, SPEC, peer_calib, peer_calib[0][:1], "cpu")
    assert q.kernel == "native" and q.engine.startswith("openvino ") and q.backend == "pt2e-openvino"
    from qcore.backends.pt2e_openvino import quantizer

    graph, _, _ = quantized_graph(cnn, quantizer(SPEC, cnn, peer_calib[0][:1]), peer_calib, peer_calib[0][:1],
                                  fold_quantize=False)  # fmt: skip
    with torch.no_grad():
        for x in (peer_calib[1], torch.randn(3, 3, 48, 40)):  # an evaluation batch and another batch and size
            ours, spec_math, fp32 = q(x), graph(x), cnn(x)
            # OpenVINO's int8 kernels round their requantization their own way: close to the graph's arithmetic,
            # several times closer than that arithmetic is to FP32
            assert _rel_err(ours, spec_math) < 0.02 and _rel_err(ours, spec_math) < 0.5 * _rel_err(spec_math, fp32)
    check_close(q, cnn, peer_calib, 0.1)


def test_its_int8_weights_are_the_pt2e_backends_codes(cnn, peer_calib):
    import openvino as ov

    q = _backend().quantize(cnn, SPEC, peer_calib, peer_calib[0][:1], "cpu")
    ours = sorted(op.get_data().astype(np.int8).tobytes() for op in q.model.model.get_ops()
                  if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8
                  and len(op.get_output_partial_shape(0)) > 1)  # fmt: skip
    pt2e = build_pt2e(cnn, SPEC.replace(backend="pt2e"), peer_calib, peer_calib[0][:1])
    theirs = sorted(t.numpy().tobytes() for t in pt2e.artifact.values() if t.dtype == torch.int8 and t.dim() > 1)
    assert len(ours) == q.quantized_layers == 4 and ours == theirs


def test_it_keeps_layers_in_fp32_as_pt2e_does_and_refuses_what_pt2e_refuses(cnn, peer_calib):
    from qcore.backends.pt2e_int8 import PT2EInt8

    backend = _backend()
    spec = SPEC.replace(keep_float=("fc",))
    assert backend.problem(spec, "cpu") is None
    kept = backend.quantize(cnn, spec, peer_calib, peer_calib[0][:1], "cpu")
    pt2e = build_pt2e(cnn, spec.replace(backend="pt2e"), peer_calib, peer_calib[0][:1])
    assert kept.quantized_layers == sum(t.dtype == torch.int8 and t.dim() > 1 for t in pt2e.artifact.values()) == 3
    for bad in (SPEC.replace(granularity="per-tensor"), SPEC.replace(scheme="symmetric")):
        assert backend.unsupported(bad, "cpu") == PT2EInt8().unsupported(bad, "cpu") is not None
    assert "static INT8 only" in backend.unsupported(SPEC.replace(mode="dynamic"), "cpu")
    assert "CPU plugin only" in backend.unsupported(SPEC, "cuda")


class _Residual(nn.Module):
    """conv, ReLU, conv, + the input, ReLU (resnet's block), then a classifier: one add fed by a convolution."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.conv1, self.conv2 = nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

    def forward(self, x):
        x = torch.relu(self.stem(x))  # its quantizer is "act:relu", an input of the add
        return self.head(torch.relu(self.conv2(torch.relu(self.conv1(x))) + x))


def _add_inputs(graph: torch.fx.GraphModule) -> list[str]:
    """What produces each input of each add: "dequantize" or the producer's op name."""
    names = []
    for node in graph.graph.nodes:
        if node.op == "call_function" and "add" in str(node.target):
            names += ["dequantize" if "dequantize" in str(a.target) else str(a.target) for a in node.args[:2]]
    return names


def _where_the_add_runs(graph: torch.fx.GraphModule, x: torch.Tensor) -> list[str]:
    """The OpenVINO layer types whose original layers include the add, in the program compiled from ``graph``."""
    from qcore.backends.openvino_backend import _OvModel
    from qcore.backends.pt2e_openvino import to_openvino

    runner = _OvModel(to_openvino(copy.deepcopy(graph), x))
    runner(x)
    program = next(iter(runner.compiled.values())).get_compiled_model().get_runtime_model()
    return [op.get_rt_info()["layerType"].astype(str) for op in program.get_ordered_ops()
            if "aten.add" in op.get_rt_info()["originalLayersNames"].astype(str)]  # fmt: skip


def test_a_residual_adds_inputs_are_quantized_so_openvino_fuses_it_into_the_convolution(peer_calib):
    """pt2e's own graph feeds the add straight from the convolution (Inductor fuses the three) and OpenVINO runs
    that add as a pass of its own; this backend's graph quantizes that input too, and OpenVINO fuses the add into
    the convolution."""
    from qcore.backends.pt2e_openvino import quantizer

    torch.manual_seed(0)
    model, x = _Residual().eval(), peer_calib[0][:1]
    pt2e, _, _ = quantized_graph(model, _quantizer(SPEC, model, x), peer_calib, x, fold_quantize=False)
    ours, _, _ = quantized_graph(model, quantizer(SPEC, model, x), peer_calib, x, fold_quantize=False)
    assert sorted(_add_inputs(pt2e)) == ["aten.conv2d.default", "dequantize"]
    assert _add_inputs(ours) == ["dequantize", "dequantize"]
    assert _where_the_add_runs(pt2e, x) == ["Subgraph"] and _where_the_add_runs(ours, x) == ["Convolution"]
    q = _backend().quantize(model, SPEC, peer_calib, x, "cpu")
    with torch.no_grad():
        for batch in (peer_calib[1], torch.randn(2, 3, 40, 48)):
            err = _rel_err(q(batch), ours(batch))  # OpenVINO against the graph's own arithmetic
            assert err < 0.02 and err < 0.5 * _rel_err(ours(batch), model(batch))


def test_an_add_fed_by_a_layer_kept_in_fp32_stays_as_pt2e_leaves_it(peer_calib):
    """keep_float on the convolution before the add: it stays FP32 as in pt2e, and so does the add."""
    from qcore.backends.pt2e_openvino import quantizer

    torch.manual_seed(0)
    model, x = _Residual().eval(), peer_calib[0][:1]
    spec = SPEC.replace(keep_float=("conv2",))
    pt2e, _, _ = quantized_graph(model, _quantizer(spec, model, x), peer_calib, x, fold_quantize=False)
    ours, _, _ = quantized_graph(model, quantizer(spec, model, x), peer_calib, x, fold_quantize=False)
    assert _add_inputs(ours) == _add_inputs(pt2e) == ["aten.conv2d.default", "aten.relu.default"]
    kept = build_pt2e(model, spec.replace(backend="pt2e"), peer_calib, x)
    assert _backend().quantize(model, spec, peer_calib, x, "cpu").quantized_layers == sum(
        t.dtype == torch.int8 and t.dim() > 1 for t in kept.artifact.values()) == 3
