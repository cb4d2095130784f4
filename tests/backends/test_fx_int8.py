"""The fx backend: torch.ao FX graph mode INT8, static (the user's calibration method) and dynamic."""

import pytest
import torch
from torch import nn

from qcore.backends import BackendUnavailable, quantize, resolve_backend
from qcore.backends.fx_int8 import called_modules, quantized_mean
from qcore.metrics.measure import size_bytes
from qcore.nets import models
from qcore.quant.spec import QuantSpec

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
    from qcore.quant.observers import Entropy

    real = Entropy.solve

    def slow_solve(self, *a):
        time.sleep(0.05)
        return real(self, *a)

    monkeypatch.setattr(Entropy, "solve", slow_solve)
    prepared = torch.nn.Sequential(_observer.CalibrationObserver(method="entropy"),
                                   _observer.CalibrationObserver(method="entropy"))
    seconds = _observer.calibrate(prepared, [torch.randn(64)])
    assert seconds >= 0.1 and all(m._cached is not None for m in prepared)


# --- models that broke it (found by bench/zoo.py), each on the smallest model that did -----------------


def _run(name: str, spec: QuantSpec, size: int = 32):
    torch.manual_seed(0)
    model = models.build_model(name, 10, size).eval()
    g = torch.Generator().manual_seed(0)
    calib = [torch.randn(4, 3, size, size, generator=g)]
    q = quantize(model, spec, calib, calib[0][:1])
    with torch.inference_mode():
        return model, q, q(calib[0]), q(calib[0][:1])


def test_quantized_mean_of_a_channels_last_pixel():
    # the strides a quantized conv gives a 1x1 map: (C, 1, C, C), which torch's int8 mean refuses
    x = torch.tensor([0.5, -1.0, 2.0]).reshape(1, 3, 1, 1).contiguous(memory_format=torch.channels_last)
    x = torch.as_strided(x, (1, 3, 1, 1), (3, 1, 3, 3))
    q = torch.quantize_per_tensor(x, 0.5, 10, torch.quint8)
    assert q.stride() == (3, 1, 3, 3)
    with pytest.raises(RuntimeError, match="channels_last"):  # torch's own; when torch fixes it, drop the wrapper
        q.mean([2, 3])
    out = quantized_mean(q, [2, 3])
    assert out.is_quantized and out.shape == (1, 3)
    assert out.dequantize().tolist() == [[0.5, -1.0, 2.0]]
    # a larger map is untouched: the mean of 2x2 pixels
    big = torch.quantize_per_tensor(torch.arange(8.0).reshape(1, 2, 2, 2), 0.25, 0, torch.quint8)
    assert quantized_mean(big, [2, 3]).dequantize().tolist() == [[1.5, 5.5]]


def test_static_int8_runs_a_network_ending_in_a_mean_over_1x1_maps():
    # shufflenet_v2 (and mnasnet) end with x.mean([2, 3]); at 32x32 the last map is 1x1
    _, q, out, one = _run("shufflenet_v2_x0_5", QuantSpec("int8"))
    assert q.backend == "fx" and q.kernel == "native"
    assert q.quantized_layers == q.total_layers == 57
    assert out.shape == (4, 10) and one.shape == (1, 10) and torch.isfinite(out).all()


class ReadsWeight(nn.Module):
    """Like torchvision's Swin attention: one Linear is called, the other's weight is read."""

    def __init__(self):
        super().__init__()
        self.called = nn.Linear(8, 8)
        self.read = nn.Linear(8, 8)

    def forward(self, x):
        return nn.functional.linear(self.called(x), self.read.weight, self.read.bias)


def test_called_modules_leaves_out_layers_whose_weight_is_read():
    assert called_modules(ReadsWeight(), torch.randn(2, 8)) == ["called"]


def test_dynamic_int8_keeps_read_weights_fp32():
    model = ReadsWeight().eval()
    x = torch.randn(3, 8)
    q = quantize(model, QuantSpec("int8", mode="dynamic"), [], x)
    assert q.quantized_layers == 1 and q.total_layers == 2
    assert isinstance(q.model.read, nn.Linear) and not callable(q.model.read.weight)
    assert callable(q.model.called.weight)  # torch.ao's dynamic Linear: weight() is a method
    assert any("1 Linear layer(s) stay FP32" in n and "read" in n for n in q.notes)
    with torch.inference_mode():
        err = (q(x) - model(x)).norm() / model(x).norm()
    assert err < 0.05


def test_dynamic_int8_runs_swin():
    # torchvision's Swin attention runs F.linear(x, self.qkv.weight): it failed with "linear(): argument
    # 'weight' must be Tensor, not method" once qkv was swapped for a dynamic quantized Linear
    _, q, out, one = _run("swin_t", QuantSpec("int8", mode="dynamic"))
    assert q.kernel == "native"
    assert (q.quantized_layers, q.total_layers) == (28, 53)  # 12 blocks x (qkv, proj) read, the patch conv
    assert any("24 Linear layer(s) stay FP32" in n for n in q.notes)
    assert out.shape == (4, 10) and one.shape == (1, 10) and torch.isfinite(out).all()
