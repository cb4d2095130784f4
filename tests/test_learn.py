"""qcore.learn: the maths the Learn page shows, checked against independent computations (torch's own
quantize_per_tensor / fake_quantize_* and observers, a naive Python loop), known answers on tiny tensors,
and the capture of a layer's tensor."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from qcore.learn import affine, capture, dynamic, errors, granularity, ranges, words
from qcore.learn.affine import Affine
from qcore.learn.setting import LayerSetting, quantize_layer

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("one_thread")


def _tensor(n: int = 4000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g)
    x[:5] = torch.tensor([6.0, -5.0, 4.5, 7.5, -6.5])  # a few outliers to clip
    return x


# -- the staircase: scale, zero point and x_hat against torch -------------------------------------------


@pytest.mark.parametrize("symmetric", [False, True], ids=["asym", "sym"])
def test_8_bit_parameters_and_staircase_equal_torch_quantize_per_tensor(symmetric):
    from torch.ao.quantization.observer import MinMaxObserver

    x = _tensor()
    dtype, qscheme = (torch.qint8, torch.per_tensor_symmetric) if symmetric else (torch.quint8, torch.per_tensor_affine)
    obs = MinMaxObserver(dtype=dtype, qscheme=qscheme)
    obs(x)
    t_scale, t_zp = obs.calculate_qparams()
    a = Affine.fit(float(x.min()), float(x.max()), 8, symmetric)
    assert a.scale == pytest.approx(float(t_scale), rel=1e-6) and a.zero_point == int(t_zp)
    probe = torch.linspace(-9, 9, 5001)  # beyond the range too: the clamp is part of the staircase
    ref = torch.quantize_per_tensor(probe, a.scale, a.zero_point, dtype)
    assert torch.equal(a.quantize(probe), ref.int_repr().to(torch.int32))
    assert torch.allclose(a.fake(probe), ref.dequantize(), atol=0, rtol=0)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("symmetric", [False, True], ids=["asym", "sym"])
def test_staircase_at_every_bit_width_equals_torch_fake_quantize(bits, symmetric):
    x = _tensor(seed=bits)
    a = Affine.fit(-2.5, 3.0, bits, symmetric)
    ref = torch.fake_quantize_per_tensor_affine(x, a.scale, a.zero_point, a.qmin, a.qmax)
    assert torch.allclose(a.fake(x), ref, atol=1e-6, rtol=0)
    grid, y = affine.staircase(a, -4, 4, points=801)
    ref = torch.fake_quantize_per_tensor_affine(grid, a.scale, a.zero_point, a.qmin, a.qmax)
    # torch multiplies by 1/s where qcore divides by s: the two may round a value that sits exactly on a
    # step's edge (x / s = k + 0.5, which an even grid hits) to either neighbour
    on_edge = ((grid / a.scale).remainder(1.0) - 0.5).abs() < 1e-4
    assert torch.allclose(y[~on_edge], ref[~on_edge], atol=1e-6) and on_edge.float().mean() < 0.05
    assert len(torch.unique(y)) <= a.levels


def test_per_channel_rows_equal_torch_quantize_per_channel():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(6, 4, 3, 3, generator=g) * torch.tensor([0.01, 0.1, 1, 2, 0.5, 0.05]).view(6, 1, 1, 1)
    rows, back = granularity.weight_rows(w, "per-channel")
    qp = granularity.row_qparams(rows, "minmax", 8, True, 99.99)
    ref = torch.quantize_per_channel(w, qp.scale.double(), qp.zero_point, 0, torch.qint8)
    assert torch.allclose(back(qp.fake(rows)), ref.dequantize(), atol=0, rtol=0)
    qp4 = granularity.row_qparams(rows, "minmax", 4, False, 99.99)
    ref4 = torch.fake_quantize_per_channel_affine(w, qp4.scale, qp4.zero_point.int(), 0, qp4.qmin, qp4.qmax)
    assert torch.allclose(back(qp4.fake(rows)), ref4, atol=1e-6)


# -- known answers ------------------------------------------------------------------------------------------


def test_docstring_example_4_bits_minus_1_to_3():
    a = Affine.fit(-1.0, 3.0, 4, False)
    assert (a.qmin, a.qmax, a.zero_point) == (0, 15, 4) and a.scale == pytest.approx(4 / 15)
    assert a.formula() == "q = clamp(round(x / 0.2667) + 4, 0, 15)"
    assert a.inverse_formula() == "x̂ = (q - 4) × 0.2667"
    assert a.worked(1.0) == "x = 1.000 → round(3.750) + 4 = 8 → (8 - 4) × 0.2667 = 1.067"
    assert a.worked(5.0) == "x = 5.000 → round(18.75) + 4 = 23, clamped to 15 → (15 - 4) × 0.2667 = 2.933"
    assert Affine.fit(-1.0, 3.0, 4, True).formula() == "q = clamp(round(x / 0.4000), -8, 7)"


@pytest.mark.parametrize("bits,wasted", [(8, 128), (4, 8), (2, 2)])
def test_symmetric_range_over_a_relu_output_wastes_half_the_codes(bits, wasted):
    x = torch.relu(_tensor())  # one-sided: min 0
    sym = affine.code_usage(x, Affine.fit(0.0, float(x.max()), bits, True))
    asym = affine.code_usage(x, Affine.fit(0.0, float(x.max()), bits, False))
    assert (sym.levels, sym.wasted_below, sym.wasted_above) == (2**bits, wasted, 0)
    assert asym.wasted == 0
    assert sym.used <= 2**bits - wasted


def test_wasted_codes_above_a_static_range_the_batch_does_not_reach():
    usage = affine.code_usage(torch.tensor([0.0, 3.0]), Affine.fit(0.0, 3.5, 8, False))
    assert (usage.wasted_below, usage.wasted_above, usage.used) == (0, 36, 2)  # 3.0 is code 219


def test_error_split_equals_a_naive_loop():
    x = _tensor()
    a = Affine.fit(-2.0, 2.5, 4, False)  # the outliers are clipped
    split = affine.affine_error(x, a)
    rounding = clipping = signal = 0.0
    clipped = 0
    for v in x.tolist():
        q = round(v / a.scale) + a.zero_point  # Python rounds half to even, as torch does
        qc = min(max(q, a.qmin), a.qmax)
        err = (v - (qc - a.zero_point) * a.scale) ** 2
        signal += v * v
        if qc != q:
            clipped += 1
            clipping += err
        else:
            rounding += err
    n = x.numel()
    assert split.clipped == clipped > 5  # the outliers and the tails beyond -2 and 2.5
    assert split.rounding_mse == pytest.approx(rounding / n, rel=1e-5)
    assert split.clipping_mse == pytest.approx(clipping / n, rel=1e-5)
    assert split.sqnr_db == pytest.approx(10 * math.log10(signal / (rounding + clipping)), rel=1e-5)
    # rounding error of values spread evenly over the steps: close to s^2 / 12
    assert split.rounding_mse == pytest.approx(a.scale**2 / 12 * (n - clipped) / n, rel=0.1)


def test_per_channel_error_split_equals_a_naive_loop():
    g = torch.Generator().manual_seed(2)
    rows = torch.randn(3, 50, generator=g) * torch.tensor([[0.1], [1.0], [3.0]])
    scale, zp = torch.tensor([0.02, 0.2, 0.25]), torch.tensor([3, -1, 0])
    split = affine.error_split(rows, scale, zp, -8, 7, axis=0)
    total = clip = 0.0
    for r in range(3):
        for v in rows[r].tolist():
            q = round(v / float(scale[r])) + int(zp[r])
            qc = min(max(q, -8), 7)
            e = (v - (qc - int(zp[r])) * float(scale[r])) ** 2
            total += e
            clip += e if q != qc else 0.0
    assert split.total_mse == pytest.approx(total / 150, rel=1e-5)
    assert split.clipping_mse == pytest.approx(clip / 150, rel=1e-5) and split.clipping_mse > 0


def test_errors_docstring_example():
    x = torch.cat([torch.arange(100) / 100, torch.tensor([10.0])])
    wide, tight = Affine.fit(0, 10, 4, False), Affine.fit(0, 1.0, 4, False)
    assert affine.affine_error(x, wide).sqnr_db == pytest.approx(15.6, abs=0.05)
    e = affine.affine_error(x, tight)
    assert e.clipped == 1 and e.sqnr_db == pytest.approx(2.1, abs=0.05)
    assert affine.affine_error(x[:100], wide).sqnr_db == pytest.approx(9.5, abs=0.05)
    assert affine.affine_error(x[:100], tight).sqnr_db == pytest.approx(29.5, abs=0.05)


def test_sqnr_gains_about_6_db_per_bit_when_rounding_dominates():
    x = torch.rand(100_000, generator=torch.Generator().manual_seed(0)) * 2 - 1
    db = [affine.affine_error(x, Affine.fit(-1, 1, b, False)).sqnr_db for b in (4, 5, 6)]
    assert 5.5 < db[1] - db[0] < 6.5 and 5.5 < db[2] - db[1] < 6.5


# -- ranges: the sweeps' observers, on the captured batches ---------------------------------------------------


def _captured_acts(batches: list[torch.Tensor]) -> capture.Captured:
    info = capture.LayerInfo("fc", "Linear", (4, batches[0].shape[-1]))
    return capture.Captured(info, "activations", batches, channel_axis=-1, images=sum(len(b) for b in batches))


@pytest.mark.parametrize("method", ["minmax", "moving-average", "percentile", "entropy", "mse"])
def test_activation_ranges_are_the_sweeps_observer_qparams(method):
    from qcore.backends._observer import CalibrationObserver

    g = torch.Generator().manual_seed(3)
    batches = [torch.relu(torch.randn(16, 32, generator=g) * (1 + i)) for i in range(4)]
    c = _captured_acts(batches)
    obs = CalibrationObserver.with_args(method=method, percentile=99.9, dtype=torch.quint8,
                                     qscheme=torch.per_tensor_affine, quant_min=0, quant_max=255)()
    for b in batches:
        obs(b)
    scale, zp = obs.calculate_qparams()
    lo, hi = ranges.method_range(c, method, 8, False, 99.9)
    a = Affine.fit(lo, hi, 8, False)
    assert a.scale == pytest.approx(float(scale), rel=1e-6) and a.zero_point == int(zp)


def test_weight_ranges_are_weight_range_and_stream_methods_are_refused():
    from qcore.quant.observers import weight_range

    w = _tensor().reshape(40, 100)
    info = capture.LayerInfo("fc", "Linear", (40, 100))
    c = capture.Captured(info, "weights", [w], channel_axis=0)
    lo, hi = weight_range(w.reshape(1, -1), "mse", -8, 7, True, 99.99)
    assert ranges.method_range(c, "mse", 4, True, 99.99) == (float(lo[0]), float(hi[0]))
    assert set(ranges.all_ranges(c, 4, True, 99.99)) == {"minmax", "percentile", "mse"}
    with pytest.raises(ValueError, match="does not apply to weights; allowed: minmax, percentile, mse"):
        ranges.method_range(c, "entropy", 4, True, 99.99)


def test_entropy_range_moves_with_the_bits_and_min_max_does_not():
    c = _captured_acts([torch.relu(_tensor(8000, seed=s)).reshape(100, 80) for s in range(3)])
    cal = ranges.fit_calibrators(c, 99.99)
    e2, e8 = (ranges.method_range(c, "entropy", b, False, 99.99, cal) for b in (2, 8))
    m2, m8 = (ranges.method_range(c, "minmax", b, False, 99.99, cal) for b in (2, 8))
    assert m2 == m8 and e2[1] < e8[1] <= m8[1]


# -- granularity ----------------------------------------------------------------------------------------------


def test_scale_bits_equal_the_weight_only_artifact():
    from qcore.backends.weight_only import WeightOnlyLayer

    torch.manual_seed(0)
    layer = nn.Conv2d(24, 40, 3)  # rows of 216 weights: groups of 128 leave padding
    w = layer.weight.detach()
    a = Affine.fit(float(w.min()), float(w.max()), 4, False)
    costs, channels = granularity.weight_costs(w, a, "minmax", 99.99)
    assert channels == 40 and [c.label for c in costs] == ["per-tensor", "per-channel", "per-group(16)",
                                                             "per-group(32)", "per-group(64)", "per-group(128)"]
    for c in costs:
        g = c.group_size if c.granularity == "per-group" else 64
        stored = WeightOnlyLayer(layer, 4, c.granularity, g, "minmax", False, 99.99).state_dict()
        scale_bits = sum(stored[k].numel() * stored[k].element_size() * 8 for k in stored
                         if k.startswith("scale"))
        assert c.scale_bits == pytest.approx(scale_bits / w.numel())
        assert c.zero_point_bits == pytest.approx(stored["zero_point"].numel() * 8 / w.numel())
        assert c.split.n == w.numel()  # the padding of the last group is not counted
    sqnr = [c.split.sqnr_db for c in costs]
    assert sqnr[1] > sqnr[0] and sqnr[2] > sqnr[1]  # a scale per channel, then per 16 weights, pays


def test_channel_view_against_torch_per_channel_and_known_spread():
    w = torch.stack([torch.linspace(-s, s, 27) for s in (0.05, 0.5, 2.0)]).reshape(3, 3, 3, 3)
    c = capture.Captured(capture.LayerInfo("conv", "Conv2d", (3, 3, 3, 3)), "weights", [w], channel_axis=0)
    tensor = Affine.fit(-2.0, 2.0, 8, True)
    view = granularity.channel_view(c, tensor, "minmax", 99.99)
    assert view.lo == pytest.approx([-0.05, -0.5, -2.0]) and view.hi == pytest.approx([0.05, 0.5, 2.0])
    assert view.scale == pytest.approx([0.05 / 127.5, 0.5 / 127.5, 2.0 / 127.5])
    assert view.sqnr_channel[0] - view.sqnr_tensor[0] == pytest.approx(20 * math.log10(40), abs=3)
    assert view.sqnr_channel[2] == pytest.approx(view.sqnr_tensor[2])
    sentence = words.channel_sentence(view, "weights")
    assert "from ±0.0500 (channel 0) to ±2.00 (channel 2), 40.0× apart" in sentence


# -- static against dynamic -------------------------------------------------------------------------------------


def test_static_range_clips_the_batch_that_reaches_further():
    batches = [torch.linspace(0, 3.0, 301).reshape(1, 301), torch.linspace(0, 4.2, 421).reshape(1, 421)]
    c = _captured_acts(batches)
    br = dynamic.static_vs_dynamic(c, Affine.fit(0, 3.5, 8, False))
    assert br.batch_hi == pytest.approx([3.0, 4.2])
    assert br.static_splits[0].clipped == 0 and br.static_splits[1].clipped == 70  # 3.51 .. 4.20
    assert [s.clipped for s in br.dynamic_splits] == [0, 0]
    assert br.dynamic_splits[1].sqnr_db > br.static_splits[1].sqnr_db
    assert "batch(es) 2 reach beyond it" in words.dynamic_sentence(br, "minmax")


# -- capture ------------------------------------------------------------------------------------------------------


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.proj = nn.Linear(4, 4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        h = torch.relu(self.conv(x)).mean((2, 3))
        h = nn.functional.linear(h, self.proj.weight)  # proj's weight used without calling the module
        return self.fc(h)


def test_capture_inputs_of_a_conv_and_a_linear_layer_and_stop_early():
    torch.manual_seed(0)
    m = Tiny().eval()
    batches = [torch.randn(5, 3, 6, 6), torch.randn(5, 3, 6, 6)]
    layers = capture.list_layers(m)
    assert [i.name for i in layers] == ["conv", "proj", "fc"] and capture.default_layer(layers) == "proj"
    assert layers[0].label() == "conv · Conv2d 3→4, 3x3" and layers[2].label() == "fc · Linear 4→2"
    conv = capture.capture_inputs(m, "conv", batches)
    assert conv.channel_axis == 1 and conv.channels == 3 and conv.images == 10
    assert torch.equal(conv.batches[1], batches[1])
    fc = capture.capture_inputs(m, "fc", batches)
    with torch.no_grad():
        h = torch.relu(m.conv(batches[0])).mean((2, 3)) @ m.proj.weight.T
    assert torch.allclose(fc.batches[0], h) and fc.channel_rows().shape == (4, 10)
    assert not m.conv._forward_pre_hooks  # the shared model is left as it was
    with pytest.raises(ValueError, match="never called as a module"):
        capture.capture_inputs(m, "proj", batches)
    with pytest.raises(ValueError, match="is not a Conv or Linear layer of this model; allowed"):
        capture.capture_weights(m, "nope")
    small = capture.capture_inputs(m, "conv", batches, max_values=3 * 36 * 3)
    assert small.images == 3 and len(small.batches) == 1  # capped at 3 images


# -- one layer quantized in the model ------------------------------------------------------------------------------


def test_quantize_layer_touches_only_that_layer():
    torch.manual_seed(0)
    m = Tiny().eval()
    s = LayerSetting(layer="conv", kind="weights", bits=3, granularity="per-group", group_size=16, method="mse")
    q, params = quantize_layer(m, s)
    rows, back = granularity.weight_rows(m.conv.weight.detach(), "per-group", 16)
    expect = back(granularity.row_qparams(rows, "mse", 3, False, 99.99).fake(rows))
    assert torch.equal(q.conv.weight, expect) and not torch.equal(q.conv.weight, m.conv.weight)
    assert torch.equal(q.fc.weight, m.fc.weight) and params["scales"] == rows.shape[0] == 4 * 2  # 27 = 16 + 11
    x = torch.randn(4, 3, 6, 6)
    c = capture.capture_inputs(m, "fc", [x])
    s = LayerSetting(layer="fc", kind="activations", bits=2, method="minmax")
    q, params = quantize_layer(m, s, c)
    a = Affine.fit(float(c.batches[0].min()), float(c.batches[0].max()), 2, False)
    assert params == {"method": "minmax", "scale": pytest.approx(a.scale), "zero_point": a.zero_point}
    with torch.no_grad():
        h = torch.relu(m.conv(x)).mean((2, 3)) @ m.proj.weight.T
        assert torch.allclose(q(x), m.fc(a.fake(h)), atol=1e-6)


def test_layer_setting_names_the_bad_field_and_what_is_allowed():
    with pytest.raises(ValueError, match=r"bits=9 is not allowed; allowed: 2..8"):
        LayerSetting(layer="fc", bits=9)
    with pytest.raises(ValueError, match="granularity='per-group' is not allowed for activations"):
        LayerSetting(layer="fc", kind="activations", granularity="per-group")
    with pytest.raises(ValueError, match="calibration='entropy' is not allowed for weights"):
        LayerSetting(layer="fc", method="entropy")
    with pytest.raises(ValueError, match="mode='dynamic' is not allowed for weights"):
        LayerSetting(layer="fc", mode="dynamic")
    s = LayerSetting(layer="fc", kind="activations", mode="dynamic", method="entropy")
    assert s.method == "minmax"  # per-batch min and max: nothing to calibrate
    assert LayerSetting.from_dict(s.to_dict()) == s
    assert s.label() == "fc input: 8-bit asym dynamic per-batch min-max per-tensor"


def test_words_are_torch_free():
    code = "import sys, qcore.learn.words; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_sentences_carry_the_numbers():
    a = Affine.fit(-1.0, 3.0, 4, False)
    x = torch.tensor([-1.0, 0.0, 1.0, 5.0])
    text = words.step_sentence(a, affine.affine_error(x, a), "minmax")
    assert text.startswith("Min-max at 4 bits (asymmetric): the 16 codes 0..15 cover [-1.067, 2.933]")
    assert "s = 0.2667" in text and "s / 2 = 0.1333" in text and "1 of the 4 values (25.000%)" in text
    x = torch.relu(_tensor())
    views = {name: errors.SchemeView(b := Affine.fit(0, float(x.max()), 8, name == "symmetric"),
                                     affine.affine_error(x, b), affine.code_usage(x, b))
             for name in ("symmetric", "asymmetric")}
    assert "128 of 256 codes are wasted (50%, about 1.0 bit)" in words.scheme_sentence(
        views["symmetric"], views["asymmetric"], nonneg=True)
