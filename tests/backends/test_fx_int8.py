"""The fx backend: torch.ao FX graph mode INT8, static (the user's calibration method) and dynamic."""

import pytest
import torch
from torch import nn

from qcore.backends import BackendUnavailable, quantize, resolve_backend
from qcore.measure import size_bytes
from qcore.spec import QuantSpec

EXAMPLE = torch.randn(1, 3, 32, 32)


def _rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_cuda_int8_conv_is_refused_with_a_reason():
    with pytest.raises(BackendUnavailable, match="no CUDA kernel for int8 convolutions"):
        resolve_backend(QuantSpec("int8", backend="fx"), "cuda")


@pytest.mark.parametrize(
    "granularity,calibration",
    [
        ("per-tensor", "minmax"),
        ("per-channel", "minmax"),
        ("per-channel", "moving-average"),
        ("per-channel", "percentile"),
        ("per-channel", "entropy"),
        ("per-tensor", "mse"),
    ],
)
def test_int8_static_is_really_quantized(resnet, calib, granularity, calibration):
    spec = QuantSpec("int8", granularity=granularity, calibration=calibration)
    q = quantize(resnet, spec, calib, EXAMPLE)
    convs = [
        m
        for m in q.model.modules()
        if type(m).__module__.startswith("torch.ao.nn.intrinsic.quantized")
        or type(m).__module__.startswith("torch.ao.nn.quantized.modules.conv")
    ]
    assert convs, "no quantized conv module in the converted model"
    w = convs[0].weight()
    assert w.dtype == torch.qint8
    if granularity == "per-channel":  # one scale per output channel, symmetric (zero points 0)
        assert w.q_per_channel_scales().numel() == w.shape[0]
        assert torch.all(w.q_per_channel_zero_points() == 0)
    else:
        assert w.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric) and w.q_zero_point() == 0
    assert q.kernel == "native" and q.quantized_layers == q.total_layers == 21
    assert size_bytes(q.artifact) <= 0.26 * size_bytes(resnet.state_dict())
    # entropy clips hardest on random images: 0.33 with 8-bit activations (a CPU with VNNI), less with 7 bits
    with torch.no_grad():
        assert _rel_err(q(calib[0]), resnet(calib[0])) < (0.4 if calibration == "entropy" else 0.25)
    assert any(isinstance(m, nn.Conv2d) for m in resnet.modules())  # the original is untouched


def test_int8_dynamic_quantizes_linear_only(resnet):
    q = quantize(resnet, QuantSpec("int8", mode="dynamic"), [], EXAMPLE)
    assert q.quantized_layers == 1 and q.total_layers == 21
    assert any(type(m).__name__ == "Linear" and "dynamic" in type(m).__module__ for m in q.model.modules())
    assert any("convolutions stay FP32" in n for n in q.notes)


def test_calibration_observer_is_a_torch_ao_observer_running_qcores_method():
    from torch.ao.quantization.observer import ObserverBase

    from qcore.backends._observer import CalibrationObserver

    obs = CalibrationObserver.with_args(method="percentile", percentile=99.0, quant_min=0, quant_max=255)()
    assert isinstance(obs, ObserverBase) and type(obs).__qualname__ == "CalibrationObserver"
    x = torch.arange(1, 101, dtype=torch.float32)
    assert obs(x) is x  # observers watch, they do not change the activations
    scale, zp = obs.calculate_qparams()
    assert scale.item() == pytest.approx(99.0 / 255) and zp.item() == 0  # the 99th percentile of 1..100 is 99


def test_calibration_time_includes_solving_the_ranges(monkeypatch):
    """The entropy search runs in calibrate(), not later in convert: calib_seconds counts it."""
    import time

    from qcore.backends import _observer
    from qcore.observers import Entropy

    real = Entropy.solve

    def slow_solve(self, *a):
        time.sleep(0.05)
        return real(self, *a)

    monkeypatch.setattr(Entropy, "solve", slow_solve)
    prepared = torch.nn.Sequential(_observer.CalibrationObserver(method="entropy"),
                                   _observer.CalibrationObserver(method="entropy"))
    seconds = _observer.calibrate(prepared, [torch.randn(64)])
    assert seconds >= 0.1 and all(m._cached is not None for m in prepared)
