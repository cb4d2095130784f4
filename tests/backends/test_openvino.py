"""The openvino backend: OpenVINO FP32 and static INT8 (NNCF) on a small CNN."""

import importlib.util

import pytest

from qcore.metrics.measure import size_bytes
from qcore.quant.spec import QuantSpec


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


@needs_ov
def test_openvino_leaves_keep_float_layers_in_fp32_through_nncf_ignored_scope(cnn, peer_calib):
    import torch

    from qcore.backends import openvino_backend
    from qcore.quant.spec import SpecError

    from .test_ort import outlier_cnn

    cnn = outlier_cnn(cnn)
    backend = openvino_backend.OpenVinoBackend()
    spec = QuantSpec("int8", granularity="per-tensor", backend="openvino")
    assert backend.problem(spec.replace(keep_float=("fc",)), "cpu") is None
    full = backend.quantize(cnn, spec, peer_calib, peer_calib[0][:1], "cpu")
    kept = backend.quantize(cnn, spec.replace(keep_float=("features.3", "fc")), peer_calib, peer_calib[0][:1], "cpu")
    assert full.quantized_layers == 4 and kept.quantized_layers == 2
    assert "2 layer(s) left in FP32 (NNCF ignored_scope): fc, features.3" in kept.notes

    def feeds(model, name):  # the op types feeding the named op
        (op,) = [o for o in model.get_ordered_ops() if o.get_friendly_name() == name]
        return [i.get_source_output().get_node().get_type_name() for i in op.inputs()]

    conv3, conv5 = (f"__module.features.{i}/aten::_convolution/Convolution" for i in (3, 5))
    assert feeds(kept.model.model, conv3) == ["Relu", "Constant"]  # FP32 weight, no FakeQuantize on its input
    assert feeds(kept.model.model, "__module.fc/aten::linear/MatMul")[1] == "Constant"
    assert feeds(kept.model.model, conv5)[0] == "FakeQuantize" and feeds(full.model.model, conv3)[0] == "FakeQuantize"
    x = peer_calib[1][:8]
    with torch.no_grad():
        ref = cnn(x)
    err = {name: ((q(x) - ref).norm() / ref.norm()).item() for name, q in (("full", full), ("kept", kept))}
    assert err["kept"] < err["full"] / 3, err  # the layer per-tensor INT8 cannot hold, left in FP32
    with pytest.raises(SpecError, match="no node of the OpenVINO graph is layer 'features.1'"):
        backend.quantize(cnn, spec.replace(keep_float=("features.1",)), peer_calib, peer_calib[0][:1], "cpu")
