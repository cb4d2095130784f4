"""torch.ao FX INT8 on models that broke it (found by bench/zoo.py): each on the smallest model that did."""

import pytest
import torch
from torch import nn

from qcore import models
from qcore.backends import quantize
from qcore.backends.fx_int8 import called_linears, quantized_mean
from qcore.spec import QuantSpec


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


def test_called_linears_leaves_out_layers_whose_weight_is_read():
    assert called_linears(ReadsWeight(), torch.randn(2, 8)) == ["called"]


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
