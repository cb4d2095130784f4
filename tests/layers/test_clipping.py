"""The clipping range a spec chooses for a layer's weight is the backend's own: fake-quantizing each row with the
returned scale and zero point reproduces the backend's dequantized weight (:func:`dequantized_weight`)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qcore.layers.clipping import rows_of, weight_ranges
from qcore.layers.errors import dequantized_weight
from qcore.quant.primitives import fake_quantize
from qcore.quant.spec import QuantSpec


@pytest.fixture
def conv() -> nn.Conv2d:
    torch.manual_seed(0)
    m = nn.Conv2d(8, 6, 3)
    with torch.no_grad():
        m.weight[2] *= 5  # one wide channel
    return m


def _fake(m: nn.Module, spec: QuantSpec, r, scale: torch.Tensor) -> torch.Tensor:
    rows = rows_of(m.weight, spec)
    fq = fake_quantize(rows, scale, torch.tensor(r.zero_point), r.qmin, r.qmax, axis=0)
    return fq.reshape(m.weight.shape[0], -1)[:, : m.weight[0].numel()].reshape(m.weight.shape)


@pytest.mark.parametrize("granularity", ["per-tensor", "per-channel"])
def test_int8_static_ranges_are_torch_ao_symmetric_minmax(conv, granularity):
    spec = QuantSpec("int8", granularity=granularity, calibration="percentile", mode="static")
    r = weight_ranges(conv.weight, spec)
    amax = conv.weight.detach().abs().reshape(conv.weight.shape[0] if granularity == "per-channel" else 1, -1).amax(1)
    assert r.count == (6 if granularity == "per-channel" else 1) and r.unit in ("channel", "tensor")
    assert r.hi == pytest.approx(amax.tolist()) and r.lo == pytest.approx((-amax).tolist())
    assert (r.qmin, r.qmax) == (-128, 127) and set(r.zero_point) == {0}
    assert r.widest == (2 if granularity == "per-channel" else 0)
    w, scale, zp = conv.weight.detach(), torch.tensor(r.scale), torch.tensor(r.zero_point, dtype=torch.int32)
    fq = (torch.fake_quantize_per_channel_affine(w, scale, zp, 0, -128, 127) if granularity == "per-channel"
          else torch.fake_quantize_per_tensor_affine(w, r.scale[0], 0, -128, 127))  # torch's rounding, as the kernels
    assert torch.equal(fq, dequantized_weight(conv, spec))
    assert "percentile calibration sets the activations" in r.how


@pytest.mark.parametrize("calibration", ["minmax", "mse"])
def test_weight_only_per_channel_ranges_are_the_backends(conv, calibration):
    spec = QuantSpec("int4", granularity="per-channel", calibration=calibration, mode="weight-only",
                     scheme="asymmetric")
    r = weight_ranges(conv.weight, spec)
    assert r.count == 6 and (r.qmin, r.qmax) == (0, 15) and r.row_len == 72
    w = conv.weight.detach().reshape(6, -1)
    if calibration == "minmax":
        assert r.lo == pytest.approx(w.amin(1).tolist()) and r.hi == pytest.approx(w.amax(1).tolist())
    scale = torch.tensor(r.scale).half().float()  # the artifact stores per-channel scales in FP16
    assert torch.allclose(_fake(conv, spec, r, scale), dequantized_weight(conv, spec), atol=1e-6)


def test_weight_only_per_group_counts_and_places_groups(conv):
    spec = QuantSpec("int4", granularity="per-group", group_size=32, mode="weight-only", scheme="symmetric")
    r = weight_ranges(conv.weight, spec)
    assert r.count == 6 * 3 and r.row_len == 32  # 72 weights a channel: groups of 32, 32 and 8 (+24 zeros)
    assert (r.qmin, r.qmax) == (-8, 7)
    assert r.where(7, 6) == "group 1 of channel 2" and r.widest // 3 == 2
    rows = rows_of(conv.weight, spec)
    assert r.lo == pytest.approx(rows.amin(1).tolist()) and r.hi == pytest.approx(rows.amax(1).tolist())


def test_a_float_spec_has_no_range(conv):
    with pytest.raises(ValueError, match="quantizes nothing"):
        weight_ranges(conv.weight, QuantSpec("fp16"))
