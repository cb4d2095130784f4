"""QuantSpec.keep_float is honoured on the real backends: the named layers stay FP32 modules, the rest are int8."""

import pytest
import torch
import torchvision
from torch import nn

from qcore.backends import BackendUnavailable, get_backend, quantize, resolve
from qcore.quant.spec import QuantSpec


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
    spec = QuantSpec("int8", backend="xnnpack", keep_float=("fc",))
    allowed = "allowed: fx, pt2e, pt2e-openvino, weight-only, ort, openvino"
    assert f"cannot keep layers in FP32 (keep_float); {allowed}" in get_backend("xnnpack").problem(spec, "cpu")
    with pytest.raises(BackendUnavailable, match="keep_float"):
        resolve(spec, "cpu")
    assert resolve(QuantSpec("int8", keep_float=("fc",)), "cpu").backend.name in ("fx", "pt2e")


def _payload(artifact) -> int:
    return sum(t.numel() * t.element_size() for t in artifact.values())


def test_weight_only_int4_stores_keep_int8_layers_in_8_bits_and_sizes_them_so(resnet, one_thread):
    from qcore.backends.weight_only import WeightOnlyLayer
    from qcore.metrics.measure import size_bytes

    calib, example = [torch.randn(4, 3, 32, 32)], torch.randn(1, 3, 32, 32)
    int4 = QuantSpec("int4", mode="weight-only", granularity="per-channel", scheme="symmetric")
    keep = ("fc", "layer4.1.conv2")
    full = quantize(resnet, int4, calib, example)
    mixed = quantize(resnet, int4.replace(keep_int8=keep), calib, example)
    fp32 = quantize(resnet, int4.replace(keep_float=keep), calib, example)
    mods = dict(mixed.model.named_modules())
    assert mixed.backend == "weight-only" and mixed.quantized_layers == full.quantized_layers == 21
    assert all(isinstance(mods[n], WeightOnlyLayer) and mods[n].bits == 8 for n in keep)
    assert mods["layer1.0.conv1"].bits == 4 and "2 layer(s) kept in INT8 weights: fc, layer4.1.conv2" in mixed.notes
    # the same scales (FP16, one per output channel); each kept weight takes a byte instead of half of one
    numel = {n: m.weight.numel() for n, m in resnet.named_modules() if n in keep}
    assert _payload(mixed.artifact) - _payload(full.artifact) == sum(n - (n + 1) // 2 for n in numel.values())
    assert size_bytes(full.artifact) < size_bytes(mixed.artifact) < size_bytes(fp32.artifact)
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        ref = resnet(x)
        err = {k: q.model(x).sub(ref).abs().mean().item() for k, q in (("int4", full), ("int8", mixed))}
        assert err["int8"] < err["int4"]  # the two layers' 8-bit weights are closer to FP32
        w8 = mods["fc"].dequantized_weight()
        w4 = dict(full.model.named_modules())["fc"].dequantized_weight()
        # 2**4 times as many levels over the same per-channel range: about a sixteenth of the error
        assert 10 < (w4 - resnet.fc.weight).abs().mean() / (w8 - resnet.fc.weight).abs().mean() < 25


def test_keep_int8_only_runs_where_a_backend_stores_int8_layers(resnet):
    spec = QuantSpec("int4", mode="weight-only", granularity="per-group", group_size=32, keep_int8=("fc",))
    assert resolve(spec, "cpu").backend.name == "weight-only"
    assert "cannot keep layers in INT8 under INT4 (keep_int8); allowed: weight-only" in get_backend(
        "torchao").problem(spec, "cpu")
