import copy

import pytest
import torch
import torchvision
from torch import nn

from qcore.backends import BackendUnavailable, get_backend, list_backends, quantize, resolve_backend
from qcore.backends.weight_only import WeightOnlyLayer, decode_scales, encode_scales, fold_batchnorm
from qcore.measure import size_bytes
from qcore.primitives import choose_qparams, fake_quantize, qrange, to_groups
from qcore.spec import QuantSpec


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


@pytest.fixture(scope="module")
def calib():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(16, 3, 32, 32, generator=g) for _ in range(2)]


EXAMPLE = torch.randn(1, 3, 32, 32)


def _rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_registry():
    assert {"fx", "pt2e", "float", "weight-only"} <= set(list_backends())
    with pytest.raises(ValueError, match="available: "):
        get_backend("tensorrt")


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
    with torch.no_grad():
        assert _rel_err(q(calib[0]), resnet(calib[0])) < 0.25
    assert any(isinstance(m, nn.Conv2d) for m in resnet.modules())  # the original is untouched


def test_int8_dynamic_quantizes_linear_only(resnet):
    q = quantize(resnet, QuantSpec("int8", mode="dynamic"), [], EXAMPLE)
    assert q.quantized_layers == 1 and q.total_layers == 21
    assert any(type(m).__name__ == "Linear" and "dynamic" in type(m).__module__ for m in q.model.modules())
    assert any("convolutions stay FP32" in n for n in q.notes)


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


@pytest.mark.parametrize("precision,ratio", [("fp16", 0.5), ("bf16", 0.5), ("fp32", 1.0)])
def test_float_casts(resnet, precision, ratio):
    q = quantize(resnet, QuantSpec(precision), [], EXAMPLE)
    assert (
        next(q.model.parameters()).dtype
        == {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    )
    assert size_bytes(q.artifact) / size_bytes(resnet.state_dict()) == pytest.approx(ratio, abs=0.01)
    with torch.no_grad():
        assert q(EXAMPLE).shape == (1, 10)


@pytest.mark.slow
def test_pt2e_int8_packages_are_cached_and_a_bad_one_is_rebuilt(calib, tmp_path, monkeypatch):
    """Real int8 AOTInductor packages per shape; a second quantization loads them (same outputs), and a
    damaged package is rebuilt instead of failing the run."""
    from pathlib import Path

    monkeypatch.setenv("QCORE_BUILDS", str(tmp_path / "builds"))
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    ).eval()
    spec = QuantSpec("int8", backend="pt2e")
    q = quantize(model, spec, calib, EXAMPLE)
    assert q.backend == "pt2e" and q.kernel == "native"
    int8 = [t for t in q.artifact.values() if t.dtype == torch.int8]
    assert len(int8) >= 2
    with torch.no_grad():
        out, out_ex = q(calib[0]), q(EXAMPLE)  # the evaluation batch gets a package of its own
        assert _rel_err(out, model(calib[0])) < 0.2
        assert torch.equal(q(calib[0][:5]), out[:5])  # a smaller batch runs padded to 16
    assert [(r.cached, tuple(r.meta["shape"])) for r in q.builds] == [(False, (1, 3, 32, 32)), (False, (16, 3, 32, 32))]
    q2 = quantize(model, spec, calib, EXAMPLE)  # the same spec again: both packages come from the cache
    with torch.no_grad():
        assert torch.equal(q2(calib[0]), out) and torch.equal(q2(EXAMPLE), out_ex)
    assert [r.cached for r in q2.builds] == [True, True]
    assert q2.builds[1].first_build_seconds == pytest.approx(q.builds[1].first_build_seconds, rel=0.2)
    Path(q.builds[0].path).write_bytes(b"PK\x03\x04 not a package")  # the latency shape's package, damaged
    q3 = quantize(model, spec, calib, EXAMPLE)
    with torch.no_grad():
        assert torch.equal(q3(calib[0]), out) and torch.equal(q3(EXAMPLE), out_ex)
    assert [r.cached for r in q3.builds] == [False, True] and q3.builds[0].rebuilt_because


def test_pt2e_refuses_per_tensor_with_reason():
    with pytest.raises(BackendUnavailable, match="per channel only"):
        resolve_backend(QuantSpec("int8", granularity="per-tensor", backend="pt2e"), "cpu")


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 10)).eval()


@pytest.mark.parametrize(
    "spec",
    [
        QuantSpec("int8", mode="dynamic", backend="torchao"),
        QuantSpec("int8", mode="dynamic", scheme="symmetric"),  # auto: fx refuses symmetric, torchao runs it
        QuantSpec("int8", mode="weight-only", scheme="symmetric", backend="torchao"),
        QuantSpec("int8", mode="weight-only", scheme="symmetric", granularity="per-group", backend="torchao"),
    ],
    ids=lambda s: s.label(),
)
def test_torchao_linear(spec):
    model, x = _mlp(), torch.randn(4, 64)
    q = quantize(model, spec, [], x)
    assert q.backend == "torchao" and q.quantized_layers == 2 and q.kernel == "native"
    assert size_bytes(q.artifact) < 0.4 * size_bytes(model.state_dict())
    with torch.no_grad():
        assert _rel_err(q(x), model(x)) < 0.05


def test_torchao_int4_needs_cuda():
    spec = QuantSpec("int4", mode="weight-only", granularity="per-group", backend="torchao")
    with pytest.raises(BackendUnavailable, match="CUDA only"):
        resolve_backend(spec, "cpu")


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
