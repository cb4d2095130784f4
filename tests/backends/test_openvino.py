"""The openvino backend: OpenVINO FP32 and static INT8 (NNCF) on a small CNN."""

import importlib.util

import pytest

from qcore.measure import size_bytes
from qcore.spec import QuantSpec


def _missing(*modules: str) -> str | None:
    gone = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"not installed: {', '.join(gone)} (pip install -r requirements-peers.txt)" if gone else None


needs_ov = pytest.mark.skipif(bool(_missing("openvino", "nncf")), reason=str(_missing("openvino", "nncf")))


@needs_ov
def test_openvino_fp32_and_int8(cnn, peer_calib, check_close):
    from qcore.backends import openvino_backend

    backend = openvino_backend.OpenVinoBackend()
    fp = backend.quantize(cnn, QuantSpec("fp32", backend="openvino"), peer_calib, peer_calib[0][:1], "cpu")
    check_close(fp, cnn, peer_calib, 1e-4)
    spec = QuantSpec("int8", granularity="per-channel", backend="openvino")
    assert backend.unsupported(spec, "cpu") is None
    q = backend.quantize(cnn, spec, peer_calib, peer_calib[0][:1], "cpu")
    assert q.kernel == "native" and q.engine.startswith("openvino ")
    assert q.quantized_layers >= 3
    assert size_bytes(q.artifact) < 0.4 * size_bytes(fp.artifact)
    check_close(q, cnn, peer_calib, 0.1)


@needs_ov
def test_openvino_refuses_calibrations_nncf_does_not_take(cnn):
    from qcore.backends import openvino_backend

    reason = openvino_backend.OpenVinoBackend().unsupported(QuantSpec("int8", calibration="entropy"), "cpu")
    assert "allowed: minmax" in reason
