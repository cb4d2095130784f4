"""The ort backend: ONNX Runtime FP32 and static INT8 (ORT's own quantizer) on a small CNN."""

import importlib.util

import pytest

from qcore.measure import size_bytes
from qcore.spec import QuantSpec


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
