"""The ONNX Runtime and OpenVINO backends on a small CNN, and bench/peers.py's command line."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from qcore.backends import Backend
from qcore.measure import size_bytes
from qcore.spec import QuantSpec

ROOT = Path(__file__).resolve().parent.parent


def _missing(*modules: str) -> str | None:
    gone = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"not installed: {', '.join(gone)} (pip install -r requirements-peers.txt)" if gone else None


needs_ort = pytest.mark.skipif(bool(_missing("onnx", "onnxruntime")), reason=str(_missing("onnx", "onnxruntime")))
needs_ov = pytest.mark.skipif(bool(_missing("openvino", "nncf")), reason=str(_missing("openvino", "nncf")))


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    model = SmallCNN().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, folded by the exporters
        model.features[1].running_mean.uniform_(-0.2, 0.2)
        model.features[1].running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def calib():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(16, 3, 32, 32, generator=g) for _ in range(4)]


def _rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def _check_close(q, cnn, calib, tol):
    """Close to FP32 at the calibration size and also at another size (dynamic batch and spatial dims)."""
    for x in (calib[0][:8], torch.randn(3, 3, 48, 40)):
        out = q(x)
        assert out.dtype == torch.float32 and out.shape == (x.shape[0], 10)
        with torch.no_grad():
            assert _rel_err(out, cnn(x)) < tol


@pytest.fixture(scope="module")
def ort_backend():
    from qcore.backends import ort

    return ort.OrtBackend()


@needs_ort
def test_ort_fp32_matches_torch(ort_backend, cnn, calib):
    q = ort_backend.quantize(cnn, QuantSpec("fp32", backend="ort"), calib, calib[0][:1], "cpu")
    assert q.backend == "ort" and q.kernel == "native" and q.engine.startswith("onnxruntime ")
    _check_close(q, cnn, calib, 1e-4)


@needs_ort
@pytest.mark.parametrize("calibration", ["minmax", "entropy", "percentile"])
def test_ort_int8_is_really_quantized_smaller_and_close(ort_backend, cnn, calib, calibration):
    from qcore.backends.onnx_export import export_onnx, op_counts

    spec = QuantSpec("int8", granularity="per-channel", calibration=calibration, percentile=99.9, backend="ort")
    assert ort_backend.unsupported(spec, "cpu") is None
    q = ort_backend.quantize(cnn, spec, calib, calib[0][:1], "cpu")
    ops = op_counts(q.artifact)
    assert ops["QuantizeLinear"] >= 3 and ops["DequantizeLinear"] >= 4, ops
    assert q.quantized_layers == q.total_layers == 4
    assert size_bytes(q.artifact) < 0.4 * len(export_onnx(cnn, calib[0][:1]))
    _check_close(q, cnn, calib, 0.1)


@needs_ort
def test_ort_refuses_what_it_cannot_do_with_a_reason(ort_backend):
    assert "no mse calibration" in ort_backend.unsupported(QuantSpec("int8", calibration="mse"), "cpu")
    assert "CPU" in ort_backend.unsupported(QuantSpec("int8"), "cuda")
    assert "static INT8 only" in ort_backend.unsupported(QuantSpec("int8", mode="dynamic"), "cpu")
    assert "not fp16" in ort_backend.unsupported(QuantSpec("fp16"), "cpu")


@needs_ov
def test_openvino_fp32_and_int8(cnn, calib):
    from qcore.backends import openvino_backend

    backend = openvino_backend.OpenVinoBackend()
    fp = backend.quantize(cnn, QuantSpec("fp32", backend="openvino"), calib, calib[0][:1], "cpu")
    _check_close(fp, cnn, calib, 1e-4)
    spec = QuantSpec("int8", granularity="per-channel", backend="openvino")
    assert backend.unsupported(spec, "cpu") is None
    q = backend.quantize(cnn, spec, calib, calib[0][:1], "cpu")
    assert q.kernel == "native" and q.engine.startswith("openvino ")
    assert q.quantized_layers >= 3
    assert size_bytes(q.artifact) < 0.4 * size_bytes(fp.artifact)
    _check_close(q, cnn, calib, 0.1)


@needs_ov
def test_openvino_refuses_calibrations_nncf_does_not_take(cnn):
    from qcore.backends import openvino_backend

    reason = openvino_backend.OpenVinoBackend().unsupported(QuantSpec("int8", calibration="entropy"), "cpu")
    assert "allowed: minmax" in reason


def test_peer_backends_are_backends_and_import_lazily():
    code = (
        "import sys; import qcore.backends.ort, qcore.backends.openvino_backend;"
        "bad = [m for m in ('onnxruntime', 'openvino', 'nncf') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    from qcore.backends import ort

    assert isinstance(ort.OrtBackend(), Backend)


def test_bench_peers_help_runs():
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "peers.py"), "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "ratio_to_best_peer_int8" in out.stdout and "--engines" in out.stdout
    assert "auto_ratio_to_best_peer_int8" in out.stdout and "xnnpack-int8" in out.stdout
    assert "gemmcpp" in out.stdout and "--record-auto" in out.stdout  # the PT2E options are listed
    bad = subprocess.run([sys.executable, str(ROOT / "bench" / "peers.py"), "--engines", "qcore-pt2e-int8+turbo"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "unknown PT2E option(s) ['turbo']" in bad.stderr
