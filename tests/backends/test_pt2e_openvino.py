"""The pt2e-openvino backend: the pt2e backend's quantized graph, run by OpenVINO's CPU plugin.

Oracles: the PT2E graph itself run by torch (its quantize/dequantize pairs are the spec's arithmetic), the pt2e
backend's own int8 weight codes, and the pt2e backend's count of quantized layers."""

import importlib.util

import numpy as np
import pytest
import torch

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
    graph, _, _ = quantized_graph(cnn, _quantizer(SPEC, cnn, peer_calib[0][:1]), peer_calib, peer_calib[0][:1],
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
