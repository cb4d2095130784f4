"""The weight-only backend: packed INT8/INT4 weights, scales stored in 8 bits, folded BatchNorms."""

import copy

import pytest
import torch
from torch import nn

from qcore.backends import quantize
from qcore.backends.weight_only import WeightOnlyLayer, decode_scales, encode_scales, fold_batchnorm
from qcore.metrics.measure import size_bytes
from qcore.quant.primitives import choose_qparams, fake_quantize, qrange, to_groups
from qcore.quant.spec import QuantSpec

EXAMPLE = torch.randn(1, 3, 32, 32)


def _rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_int4_per_group_size_and_reference(resnet):
    spec = QuantSpec(
        "int4", mode="weight-only", granularity="per-group", group_size=64, calibration="minmax", scheme="symmetric"
    )
    q = quantize(resnet, spec, [], EXAMPLE)
    assert q.kernel == "simulated"
    assert size_bytes(q.artifact) <= 0.14 * size_bytes(resnet.state_dict())
    layer = q.model.get_submodule("layer1.0.conv1")
    assert isinstance(layer, WeightOnlyLayer) and layer.qweight.dtype == torch.uint8
    assert layer.qweight.numel() == resnet.layer1[0].conv1.weight.numel() // 2  # two values per byte
    assert not any(isinstance(m, nn.BatchNorm2d) for m in q.model.modules())  # folded, not left in FP32
    assert any("20 of 20 BatchNorm layers folded" in n for n in q.notes)
    # reference: fake-quantize each group of 64 of the folded weight with its own symmetric scale (FP16)
    w = fold_batchnorm(copy.deepcopy(resnet))[0].get_submodule("layer1.0.conv1").weight.detach()
    rows, pad = to_groups(w, 64)
    flat = rows.reshape(-1, 64)
    qmin, qmax = qrange(4, True)
    scale, zp = choose_qparams(flat.amin(1), flat.amax(1), qmin, qmax, True)
    stored = decode_scales(*encode_scales(scale))  # per-group scales are stored in 8 bits
    assert ((stored - scale).abs() / scale).max() < 0.01
    assert "scale" not in layer.state_dict() and layer.state_dict()["scale_code"].dtype == torch.uint8
    ref = fake_quantize(flat, stored, zp, qmin, qmax, axis=0).reshape(w.shape)
    assert torch.allclose(layer.dequantized_weight(), ref, atol=1e-6)


def test_scale_double_quantization_round_trip():
    g = torch.Generator().manual_seed(0)
    scale = torch.exp2(torch.rand(1000, generator=g) * 6 - 10)  # 2^-10 .. 2^-4, 4 blocks, the last short
    code, span = encode_scales(scale)
    assert code.dtype == torch.uint8 and code.numel() == 1000 and span.shape == (4, 2)
    back = decode_scales(code, span)
    assert ((back - scale).abs() / scale).max() <= 2 ** (6 / 510) - 1 + 1e-6  # half a step of log2 range / 255
    assert torch.equal(decode_scales(*encode_scales(torch.full((3,), 0.5))), torch.full((3,), 0.5))


@pytest.mark.parametrize("bits,gran", [(8, "per-channel"), (4, "per-channel"), (4, "per-tensor"), (8, "per-group")])
@pytest.mark.parametrize("scheme", ["symmetric", "asymmetric"])
def test_weight_only_round_trip_error_is_bounded(resnet, bits, gran, scheme):
    spec = QuantSpec(f"int{bits}", mode="weight-only", granularity=gran, scheme=scheme, calibration="minmax")
    q = quantize(resnet, spec, [], EXAMPLE)
    layer, orig = q.model.fc, resnet.fc.weight.detach()
    step = (orig.max() - orig.min()) / (2**bits - 1)
    assert (layer.dequantized_weight() - orig).abs().max() <= step * 0.51 + 1e-3


def test_mse_clipping_beats_minmax_on_int4_error(resnet):
    errs = {}
    conv = resnet.layer4[0].conv1
    for method in ("minmax", "mse"):
        layer = WeightOnlyLayer(conv, 4, "per-group", 64, method, symmetric=False, percentile=99.99)
        errs[method] = ((layer.dequantized_weight() - conv.weight.detach()) ** 2).sum().item()
    assert errs["mse"] < errs["minmax"]


def test_weight_only_keeps_attention_working():
    """nn.MultiheadAttention reads out_proj.weight directly: the packed layer must still answer it."""
    torch.manual_seed(0)
    model = nn.TransformerEncoderLayer(32, 4, dim_feedforward=64, batch_first=True).eval()
    x = torch.randn(2, 5, 32)
    q = quantize(model, QuantSpec("int4", mode="weight-only", granularity="per-group", group_size=32), [], x)
    assert isinstance(q.model.self_attn.out_proj, WeightOnlyLayer) and q.quantized_layers == 3
    assert q.model.self_attn.out_proj.weight.shape == (32, 32)
    with torch.no_grad():
        assert _rel_err(q(x), model(x)) < 0.2


def test_int4_rows_are_stored_without_group_padding():
    torch.manual_seed(0)
    lin = nn.Linear(100, 8)  # rows of 100: groups of 64 and 36
    layer = WeightOnlyLayer(lin, 4, "per-group", 64, "minmax", symmetric=False, percentile=99.99)
    assert layer.qweight.numel() == 8 * 100 // 2 and layer.scale.numel() == 8 * 2
    w = lin.weight.detach()
    for g, cols in enumerate((slice(0, 64), slice(64, 100))):
        part = w[:, cols]
        step = (part.amax(1) - part.amin(1)) / 15
        assert ((layer.dequantized_weight()[:, cols] - part).abs() <= step[:, None] * 0.51 + 1e-3).all(), g
