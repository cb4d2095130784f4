"""AdaRound and bias correction against independent computations: the codes AdaRound chose are the integers inside
the converted model (torch's own ``int_repr`` and the packed INT4 bytes as the oracle), qcore's copy of each
backend's weight rounding equals the backend's, bias correction makes the mean output of each layer equal the float
model's (a plain average), and the rectified sigmoid starts where the paper says."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qcore.backends import get_backend
from qcore.nets.train import Cancelled
from qcore.ptq.adaround import adaround_codes, init_v, layer_forward, rectified_sigmoid
from qcore.ptq.fold import fold
from qcore.ptq.run import apply, quantize
from qcore.ptq.weights import grid_for
from qcore.quant.primitives import from_groups, unpack_int4
from qcore.quant.spec import QuantSpec, SpecError


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                      nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.BatchNorm2d(16), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    for bn in (m[1], m[4]):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2)
    return m.eval()


def _calib(n: int = 64, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return list(torch.randn(n, 3, 16, 16, generator=g).split(32))


def _fx_codes(q) -> dict[str, torch.Tensor]:
    out = {}
    for name, m in q.model.named_modules():
        w = getattr(m, "weight", None)
        if callable(w):
            out[name] = w().int_repr().to(torch.int64)
    return out


@pytest.mark.parametrize("granularity", ["per-tensor", "per-channel"])
def test_qcores_copy_of_the_fx_weight_rounding_is_the_backends(granularity):
    model = _net()
    spec = QuantSpec("int8", granularity=granularity, mode="static", backend="fx")
    prep = apply(model, spec.replace(equalize=True), "fx", _calib(), _calib()[0])  # a folded, equalized model
    q = get_backend("fx").quantize(prep.model, spec, _calib(), _calib()[0], "cpu")
    codes = _fx_codes(q)
    for name in ("0", "3", "8"):
        grid = grid_for(prep.model.get_submodule(name).weight, spec, "fx")
        assert torch.equal(grid.codes().reshape(codes[name].shape), codes[name]), name


@pytest.mark.parametrize("granularity", ["per-tensor", "per-channel"])
def test_adaround_codes_reach_the_fx_kernel_bit_for_bit(granularity):
    model = _net()
    spec = QuantSpec("int8", granularity=granularity, mode="static", backend="fx", rounding="adaround",
                     adaround_iters=30, adaround_images=64)
    calib = _calib()
    prep = apply(model, spec, "fx", calib, calib[0])
    assert len(prep.pins) == 3
    q = quantize(get_backend("fx"), model, spec, calib, calib[0], "cpu")
    assert not any("did not reach" in n for n in q.notes)
    codes = _fx_codes(q)
    for name in ("0", "3", "8"):
        assert torch.equal(codes[name].reshape(prep.codes[name].shape), prep.codes[name]), name
    folded = fold(model).model  # nearest rounding of the folded weights: AdaRound moved some codes off it
    assert any((prep.codes[n] != grid_for(folded.get_submodule(n).weight, spec, "fx").codes()).any()
               for n in ("0", "3", "8"))


def test_adaround_codes_reach_the_pt2e_graph_bit_for_bit():
    from qcore.backends.pt2e_int8 import build_pt2e
    from qcore.quant.pinned import pinned

    model = _net()
    spec = QuantSpec("int8", granularity="per-channel", mode="static", backend="pt2e", rounding="adaround",
                     adaround_iters=20, adaround_images=64)
    calib = _calib()
    prep = apply(model, spec, "pt2e", calib, calib[0])
    with pinned(prep.pins) as used:
        graph = build_pt2e(prep.model, spec, calib, calib[0])
    assert used == set(prep.pins)
    ints = [t for t in graph.artifact.values() if t.dtype == torch.int8 and t.dim() > 1]
    for name in ("0", "3", "8"):
        want = prep.codes[name].to(torch.int8).reshape(prep.model.get_submodule(name).weight.shape)
        assert sum(t.shape == want.shape and torch.equal(t, want) for t in ints) == 1, name


def test_adaround_codes_reach_openvinos_int8_weights_bit_for_bit_on_pt2e_openvino():
    """pt2e-openvino runs pt2e's graph: the int8 constants OpenVINO stores are AdaRound's codes."""
    ov = pytest.importorskip("openvino")
    model = _net()
    spec = QuantSpec("int8", granularity="per-channel", mode="static", backend="pt2e-openvino", rounding="adaround",
                     adaround_iters=20, adaround_images=64)
    calib = _calib()
    prep = apply(model, spec, "pt2e-openvino", calib, calib[0])
    q = quantize(get_backend("pt2e-openvino"), model, spec, calib, calib[0], "cpu")
    ints = [torch.from_numpy(op.get_data().astype("int8")) for op in q.model.model.get_ops()
            if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8
            and len(op.get_output_partial_shape(0)) > 1]  # fmt: skip
    for name in ("0", "3", "8"):
        want = prep.codes[name].to(torch.int8).reshape(prep.model.get_submodule(name).weight.shape)
        assert sum(t.shape == want.shape and torch.equal(t, want) for t in ints) == 1, name


@pytest.mark.parametrize("granularity,group", [("per-tensor", 0), ("per-channel", 0), ("per-group", 16)])
@pytest.mark.parametrize("scheme", ["symmetric", "asymmetric"])
def test_adaround_codes_reach_the_int4_weight_only_layers_bit_for_bit(granularity, group, scheme):
    model = _net()
    spec = QuantSpec("int4", granularity=granularity, group_size=group or 64, mode="weight-only", scheme=scheme,
                     rounding="adaround", adaround_iters=20, adaround_images=64)
    calib = _calib()
    prep = apply(model, spec, "weight-only", calib, calib[0])
    q = quantize(get_backend("weight-only"), model, spec, calib, calib[0], "cpu")
    assert not any("did not reach" in n for n in q.notes)
    for name in ("0", "3", "8"):
        layer = q.model.get_submodule(name)
        grid = grid_for(fold(model).model.get_submodule(name).weight, spec, "weight-only")
        stored = unpack_int4(layer.qweight, layer.qweight.numel() * 2).to(torch.int64)
        chosen = prep.codes[name] + layer.offset  # stored unsigned: the code plus the offset of a signed range
        want = from_groups(chosen.reshape(grid.rows_shape), (grid.shape[0], -1), grid.pad).reshape(-1)
        assert torch.equal(stored[: want.numel()], want), name


def test_the_rectified_sigmoid_starts_at_each_weights_fraction():
    rest = torch.rand(1000, generator=torch.Generator().manual_seed(0)) * 0.999
    torch.testing.assert_close(rectified_sigmoid(init_v(rest)), rest, rtol=0, atol=1e-5)


def test_adaround_lowers_a_layers_output_error_against_nearest():
    torch.manual_seed(0)
    layer = nn.Conv2d(16, 32, 3, padding=1)
    # correlated channels, as a network's activations are (on white noise nearest rounding is already near best)
    x = torch.einsum("ck,nkhw->nchw", torch.randn(16, 4), torch.randn(128, 4, 8, 8)) + 0.1 * torch.randn(128, 16, 8, 8)
    with torch.no_grad():
        target = layer(x)
    spec = QuantSpec("int4", granularity="per-channel", mode="weight-only", scheme="symmetric")
    grid = grid_for(layer.weight, spec, "weight-only")
    codes, stats = adaround_codes(layer, grid, x, target, iters=300)

    def error(c):  # an independent reconstruction: dequantize by hand, conv by torch
        w = ((c.float() - grid.zero_point[:, None]) * grid.scale[:, None]).reshape(layer.weight.shape)
        with torch.no_grad():
            return float((nn.functional.conv2d(x, w, layer.bias, padding=1) - target).pow(2).sum(1).mean())

    nearest = torch.round(grid.rows / grid.scale[:, None]).clamp(grid.qmin, grid.qmax)
    assert error(codes) < 0.5 * error(nearest)
    assert stats["error_adaround"] == pytest.approx(error(codes), rel=1e-4)
    assert ((codes - torch.floor(grid.rows / grid.scale[:, None])).abs() <= 1).all()  # only up or down
    assert torch.equal(layer_forward(layer, x, layer.weight), layer(x))


def test_bias_correction_makes_each_layers_mean_output_the_float_ones():
    model = _net()
    spec = QuantSpec("int4", granularity="per-tensor", mode="weight-only", bias_correction=True)
    calib = _calib(96)
    prep = apply(model, spec, "weight-only", calib, calib[0])
    float_model = fold(model).model
    q = get_backend("weight-only").quantize(prep.model, spec, calib, calib[0], "cpu")
    for name in ("0", "3", "8"):
        means = []
        for m in (float_model, q.model):  # the plain mean over every image and position, per channel
            got: list[torch.Tensor] = []
            h = m.get_submodule(name).register_forward_hook(lambda _m, _a, out, got=got: got.append(out.detach()))
            with torch.no_grad():
                for x in calib:
                    m(x)
            h.remove()
            y = torch.cat(got)
            means.append(y.transpose(0, 1).reshape(y.shape[1], -1).double().mean(1))
        torch.testing.assert_close(means[1], means[0], rtol=0, atol=1e-4)


def test_a_cancel_stops_the_algorithms_and_keeps_nothing():
    spec = QuantSpec("int8", mode="static", rounding="adaround", adaround_iters=5, adaround_images=32)
    with pytest.raises(Cancelled):
        apply(_net(), spec, "fx", _calib(), _calib()[0], cancel=lambda: True)


def test_fewer_calibration_images_than_one_batch_is_named():
    spec = QuantSpec("int8", mode="static", rounding="adaround", adaround_iters=5, adaround_images=32)
    with pytest.raises(ValueError, match="at least 32 calibration images"):
        apply(_net(), spec, "fx", _calib(16), _calib()[0])


def test_a_model_with_no_equalizable_pair_runs_and_says_so():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Hardswish(), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(1, 3, 8, 8))
    prep = apply(model.eval(), QuantSpec("int8", granularity="per-tensor", equalize=True), "fx",
                 [torch.randn(8, 3, 8, 8)], torch.randn(1, 3, 8, 8))
    assert any("no equalizable pair" in n for n in prep.notes)
    assert any("hardswish" in n for n in prep.notes)


@pytest.mark.parametrize("backend", ["ort", "openvino", "xnnpack", "torchao"])
def test_backends_that_round_their_own_weights_refuse_adaround_and_bias_correction(backend):
    b = get_backend(backend)
    mode = "weight-only" if backend == "torchao" else "static"
    spec = QuantSpec("int8" if mode == "static" else "int4", mode=mode, rounding="adaround", backend=backend,
                     scheme="symmetric" if backend == "xnnpack" else "asymmetric")
    reason = b.problem(spec, "cpu")
    assert reason and "AdaRound" in reason and "allowed: fx, pt2e, pt2e-openvino, weight-only" in reason
    assert "bias correction" in (b.problem(spec.replace(rounding="nearest", bias_correction=True), "cpu") or "")
    cle = b.problem(spec.replace(rounding="nearest", equalize=True), "cpu")
    assert cle is None or "equaliz" not in cle  # CLE only changes FP32 weights: never the reason


def test_bad_spec_values_name_what_is_allowed():
    for kw, words in ((dict(rounding="up"), "allowed: nearest, adaround"),
                      (dict(rounding="adaround", adaround_iters=0), "from 1 to 20,000"),
                      (dict(rounding="adaround", adaround_iters=10**6), "from 1 to 20,000"),
                      (dict(rounding="adaround", adaround_images=8), "fewer than one AdaRound batch"),
                      (dict(equalize="maybe"), "allowed: on, off"),
                      (dict(mode="qat", bias_correction=True), "post-training algorithms")):
        with pytest.raises(SpecError, match=words.replace("(", r"\(")):
            QuantSpec("int8", **kw)
