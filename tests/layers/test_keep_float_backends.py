"""QuantSpec.keep_float is honoured on the real backends: the named layers stay FP32 modules, the rest are int8."""

import pytest
import torch
import torchvision
from torch import nn

from qcore.backends import BackendUnavailable, get_backend, quantize, resolve
from qcore.spec import QuantSpec


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


def test_fx_static_and_weight_only_leave_the_named_layers_in_fp32(resnet, one_thread):
    calib, example = [torch.randn(4, 3, 32, 32)], torch.randn(1, 3, 32, 32)
    keep = ("conv1", "fc", "layer1.0.conv1")
    q = quantize(resnet, QuantSpec("int8", backend="fx", keep_float=keep), calib, example)
    assert (q.quantized_layers, q.total_layers) == (18, 21)
    mods = dict(q.model.named_modules())
    assert type(mods["fc"]) is nn.Linear and "quantized" in type(mods["layer1.0.conv2"]).__module__
    x = torch.randn(2, 3, 32, 32)
    assert q(x).shape == (2, 10)
    w = quantize(resnet, QuantSpec("int4", mode="weight-only", granularity="per-channel", keep_float=keep), calib,
                 example)
    assert w.quantized_layers == 18 and type(dict(w.model.named_modules())["fc"]) is nn.Linear
    full = quantize(resnet, QuantSpec("int4", mode="weight-only", granularity="per-channel"), calib, example)
    assert w.model(x).sub(resnet(x)).abs().mean() < full.model(x).sub(resnet(x)).abs().mean()
    dyn = quantize(resnet, QuantSpec("int8", mode="dynamic", keep_float=("fc",)), calib, example)
    assert dyn.quantized_layers == 0  # its only Linear is kept


def test_backends_that_cannot_exclude_layers_refuse_and_auto_picks_one_that_can():
    spec = QuantSpec("int8", backend="ort", keep_float=("fc",))
    assert "cannot keep layers in FP32 (keep_float); allowed: fx, pt2e, weight-only" in get_backend("ort").problem(
        spec, "cpu")
    with pytest.raises(BackendUnavailable, match="keep_float"):
        resolve(spec, "cpu")
    assert resolve(QuantSpec("int8", keep_float=("fc",)), "cpu").backend.name in ("fx", "pt2e")
