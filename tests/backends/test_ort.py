"""The ort backend: ONNX Runtime FP32 and static INT8 (ORT's own quantizer) on a small CNN."""

import importlib.util

import pytest

from qcore.metrics.measure import size_bytes
from qcore.quant.spec import QuantSpec


def _missing(*modules: str) -> str | None:
    gone = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"not installed: {', '.join(gone)} (pip install -r requirements-peers.txt)" if gone else None


needs_ort = pytest.mark.skipif(bool(_missing("onnx", "onnxruntime")), reason=str(_missing("onnx", "onnxruntime")))


@pytest.fixture(scope="module")
def ort_backend():
    from qcore.backends import ort

    return ort.OrtBackend()


@needs_ort
def test_ort_fp32_matches_torch(ort_backend, cnn, peer_calib, check_close):
    q = ort_backend.quantize(cnn, QuantSpec("fp32", backend="ort"), peer_calib, peer_calib[0][:1], "cpu")
    assert q.backend == "ort" and q.kernel == "native" and q.engine.startswith("onnxruntime ")
    check_close(q, cnn, peer_calib, 1e-4)


@needs_ort
@pytest.mark.parametrize("calibration", ["minmax", "entropy", "percentile"])
def test_ort_int8_is_really_quantized_smaller_and_close(ort_backend, cnn, peer_calib, check_close, calibration):
    from qcore.backends.onnx_export import export_onnx, op_counts

    spec = QuantSpec("int8", granularity="per-channel", calibration=calibration, percentile=99.9, backend="ort")
    assert ort_backend.unsupported(spec, "cpu") is None
    q = ort_backend.quantize(cnn, spec, peer_calib, peer_calib[0][:1], "cpu")
    ops = op_counts(q.artifact)
    assert ops["QuantizeLinear"] >= 3 and ops["DequantizeLinear"] >= 4, ops
    assert q.quantized_layers == q.total_layers == 4
    assert size_bytes(q.artifact) < 0.4 * len(export_onnx(cnn, peer_calib[0][:1]))
    check_close(q, cnn, peer_calib, 0.1)


@needs_ort
def test_ort_refuses_what_it_cannot_do_with_a_reason(ort_backend):
    assert "no mse calibration" in ort_backend.unsupported(QuantSpec("int8", calibration="mse"), "cpu")
    assert "CPU" in ort_backend.unsupported(QuantSpec("int8"), "cuda")
    assert "static INT8 only" in ort_backend.unsupported(QuantSpec("int8", mode="dynamic"), "cpu")
    assert "not fp16" in ort_backend.unsupported(QuantSpec("fp16"), "cpu")


def outlier_cnn(cnn):
    """``cnn`` with one output channel of ``features.3`` 300 times larger and negative (its inputs are ReLU outputs,
    so the ReLU after it zeroes that channel and the activations keep their range): per-tensor INT8 weights of that
    layer round the other 63 channels to a few levels, so leaving it in FP32 shows in the logits."""
    import copy

    import torch

    model = copy.deepcopy(cnn)
    with torch.no_grad():
        conv = model.features[3]
        conv.weight[0] = -conv.weight[0].abs() * 300
        conv.bias[0] = -1.0
    return model


@needs_ort
def test_ort_leaves_keep_float_layers_in_fp32_through_nodes_to_exclude(ort_backend, cnn, peer_calib):
    import onnx
    import torch

    cnn = outlier_cnn(cnn)
    spec = QuantSpec("int8", granularity="per-tensor", backend="ort")
    assert ort_backend.problem(spec.replace(keep_float=("features.3",)), "cpu") is None
    full = ort_backend.quantize(cnn, spec, peer_calib, peer_calib[0][:1], "cpu")
    kept = ort_backend.quantize(cnn, spec.replace(keep_float=("features.3",)), peer_calib, peer_calib[0][:1], "cpu")
    assert (full.quantized_layers, kept.quantized_layers) == (4, 3)
    assert "1 layer(s) left in FP32 (nodes_to_exclude): features.3" in kept.notes
    graph = onnx.load_from_string(kept.artifact).graph
    made_by = {out: n.op_type for n in graph.node for out in n.output}
    floats = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    nodes = {n.name: n for n in graph.node}
    conv = nodes["/features/features.3/Conv"]
    # its weight and bias are float initializers (no DequantizeLinear), its output feeds no QuantizeLinear
    assert list(conv.input[1:]) and all(i in floats for i in conv.input[1:])
    assert all(n.op_type != "QuantizeLinear" for n in graph.node if set(conv.output) & set(n.input))
    other = nodes["/features/features.5/Conv"]  # the next convolution is still int8 (weights through a DQ)
    assert [made_by.get(i) for i in other.input] == ["DequantizeLinear"] * 3
    x = peer_calib[1][:8]
    with torch.no_grad():
        ref = cnn(x)
    err = {name: ((q(x) - ref).norm() / ref.norm()).item() for name, q in (("full", full), ("kept", kept))}
    assert err["kept"] < err["full"] / 3, err  # the layer per-tensor INT8 cannot hold, left in FP32


@needs_ort
def test_ort_refuses_a_layer_that_no_node_of_the_graph_is(ort_backend, cnn, peer_calib):
    from qcore.backends.onnx_export import export_onnx
    from qcore.backends.ort import excluded_nodes
    from qcore.quant.spec import SpecError

    fp32 = export_onnx(cnn, peer_calib[0][:1])
    assert excluded_nodes(fp32, ("fc", "features.0")) == ["/fc/Gemm", "/features/features.0/Conv"]
    with pytest.raises(SpecError, match=r"no node of the ONNX graph is layer 'features.1'.*names: features.5, "
                                        r"features.3, features.0 \(4 in all\)"):
        ort_backend.quantize(cnn, QuantSpec("int8", backend="ort", keep_float=("features.1",)), peer_calib,
                             peer_calib[0][:1], "cpu")
