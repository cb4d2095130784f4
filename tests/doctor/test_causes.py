"""Issue 26, "Why there" and "the fix": the causes measured on tiny models with hand-set weights and images, each
against an oracle that is not qcore's code: a naive loop over the values, a forward hook on the FP32 model, torch.ao's
own MinMaxObserver; the ranking by hand-made fixes; every suggested spec checked against the backends' registry.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from qcore.doctor.causes import find_causes, general_fixes, rank_fixes, spec_problem
from qcore.doctor.fix import Cause, Fix
from qcore.doctor.where import culprits
from qcore.layers.row import LayerRow
from qcore.metrics.result import Result
from qcore.quant.spec import QuantSpec
from qcore.runs.sweep_config import SweepConfig

STATIC = QuantSpec("int8", granularity="per-tensor", calibration="minmax", scheme="asymmetric", backend="fx")
INT4 = QuantSpec("int4", granularity="per-tensor", calibration="minmax", scheme="symmetric", mode="weight-only")


def _prepared(model, calib, held):
    return SimpleNamespace(loaded=SimpleNamespace(model=model.eval()), calib=calib, example=calib[0][:1],
                           eval_batches=[(x, torch.zeros(len(x), dtype=torch.long)) for x in held], device="cpu",
                           config=SweepConfig(calib_size=16))


def _row(spec, lost=5.0, **kw):
    return Result(spec=spec, model="tiny", dataset="t", top1=80.0, top1_delta=-lost, **kw)


def _rows(model, gains):
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return [LayerRow(n, i, type(model.get_submodule(n)).__name__, 1, None, None, gain_only_float=g)
            for i, (n, g) in enumerate(zip(names, gains))]


def _spread_model():
    """A conv whose channel 3 is 50x wider than every other (each other channel reaches exactly |w| = 1)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    with torch.no_grad():
        w = torch.rand(8, 2, 3, 3) * 2 - 1
        w /= w.abs().amax((1, 2, 3), keepdim=True)
        w[3] *= 50
        model[0].weight.copy_(w)
    return model


@pytest.mark.parametrize("spec", [STATIC, INT4], ids=["int8-static", "int4-weight-only"])
def test_a_channel_50x_wider_is_channel_spread_and_per_channel_comes_first(spec):
    model = _spread_model()
    calib = [torch.randn(4, 2, 8, 8) for _ in range(2)]
    p = _prepared(model, calib, [torch.randn(4, 2, 8, 8)])
    found = culprits(_rows(model, [1.0, 0.2]), model, k=2)
    causes = find_causes(p, spec, found, row=_row(spec))
    spread = next(c for c in causes if c.cause == "channel-spread")
    w = model[0].weight.tolist()  # the oracle: a loop over the channels
    widths = sorted(max(abs(v) for plane in ch for line in plane for v in line) for ch in w)
    assert spread.where == "0" and spread.numbers["ratio"] == pytest.approx(widths[-1] / widths[3]) == 50.0
    assert spread.numbers["widest_channel"] == 3
    assert spread.fixes[0].what == "per-channel weights" and spread.fixes[0].spec.granularity == "per-channel"
    assert spread.fixes[0].spec == spec.replace(granularity="per-channel")
    ranked = rank_fixes(causes, general_fixes(spec, 5.0, None))
    assert ranked[0].spec == spec.replace(granularity="per-channel")
    assert ranked[0].score > 1.0  # more than keeping the layer in FP32 (its measured gain)
    _all_valid(ranked)


def test_post_relu_zeros_under_a_symmetric_scheme_ask_for_asymmetric():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 3))
    spec = STATIC.replace(scheme="symmetric")
    calib = [torch.randn(8, 3, 6, 6) for _ in range(2)]
    p = _prepared(model, calib, [torch.randn(8, 3, 6, 6)])
    found = culprits(_rows(model, [0.1, 2.0, 0.1]), model, k=1)
    assert found[0].name == "2"
    causes = find_causes(p, spec, found, row=_row(spec))
    relu = next(c for c in causes if c.cause == "relu-symmetric")
    seen = []  # the oracle: a hook on the FP32 model, and torch.ao's own observer of the same values
    hook = model[2].register_forward_pre_hook(lambda m, a: seen.append(a[0].detach()))
    with torch.no_grad():
        for x in calib:
            model(x)
    hook.remove()
    from torch.ao.quantization.observer import MinMaxObserver

    from qcore.backends.fx_int8 import activation_range

    qmin, qmax = activation_range()
    obs = MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_symmetric, quant_min=qmin, quant_max=qmax)
    for t in seen:
        obs(t)
    _, zp = obs.calculate_qparams()
    assert relu.numbers["min"] == min(float(t.min()) for t in seen) == 0.0
    # a symmetric range puts zero in the middle of the codes (torch.ao at 127 of 0..255, qcore's observer at 128):
    # the values >= 0 reach half of them
    assert abs(relu.numbers["zero_point"] - int(zp)) <= 1 and abs(int(zp) - (qmin + qmax) / 2) <= 0.5
    assert relu.numbers["codes_used"] == pytest.approx((qmax - relu.numbers["zero_point"]) / (qmax - qmin))
    assert relu.numbers["codes_used"] == pytest.approx(0.5, abs=1 / (qmax - qmin))
    asym = next(f for f in relu.fixes if f.what == "asymmetric activations")
    assert asym.spec == spec.replace(scheme="asymmetric") and asym.cause == "relu-symmetric" and asym.score > 0
    keep = next(f for f in relu.fixes if f.spec.keep_float)
    assert keep.spec.keep_float == ("2",) and keep.score == 2.0
    _all_valid(relu.fixes)


def test_held_out_images_twice_the_calibration_clip_as_a_naive_count_says():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    calib = [torch.randn(8, 2, 8, 8) for _ in range(2)]
    held = [2 * x for x in calib]
    p = _prepared(model, calib, held)
    found = culprits(_rows(model, [1.5, 0.1]), model, k=1)
    causes = find_causes(p, STATIC, found, row=_row(STATIC))
    clip = next(c for c in causes if c.cause == "calib-exceeded")
    from torch.ao.quantization.observer import MinMaxObserver

    from qcore.backends.fx_int8 import activation_range

    qmin, qmax = activation_range()  # the first conv reads the model input: its range is the images'
    obs = MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine, quant_min=qmin, quant_max=qmax)
    for x in calib:
        obs(x)
    scale, zp = (float(v) for v in obs.calculate_qparams())
    lo, hi = (qmin - zp) * scale, (qmax - zp) * scale

    def naive(batches):
        values = [v for x in batches for v in x.flatten().tolist()]
        return sum(1 for v in values if v < lo - scale / 2 or v > hi + scale / 2), len(values)

    clipped, n = naive(held)
    assert clip.numbers["eval_values"] == n and clipped > 0
    assert abs(clip.numbers["eval_clip"] * n - clipped) <= 1  # one value on the edge at most (float rounding)
    assert clip.numbers["calib_clip"] * n == naive(calib)[0] == 0
    more = next(f for f in clip.fixes if f.config)
    assert more.config == {"calib_size": 64} and more.spec == STATIC and not more.queueable
    assert "the draw spread was not measured" in clip.evidence  # one draw: said, not claimed
    assert not any(c.cause == "calib-small" for c in causes)


def test_weight_outliers_share_and_percentile_as_a_naive_count_says():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2500, 4))
    with torch.no_grad():
        model[1].weight.uniform_(-1, 1)
        model[1].weight[1, 7] = 100.0
    p = _prepared(model, [torch.randn(4, 2500)], [torch.randn(4, 2500)])
    found = culprits(_rows(model, [3.0]), model)
    causes = find_causes(p, INT4, found, row=_row(INT4, 20.0))
    out = next(c for c in causes if c.cause == "outliers")
    values = sorted(abs(v) for ch in model[1].weight.tolist() for v in ch)
    k = math.ceil(0.9999 * len(values))  # nearest rank
    assert out.numbers["share_beyond_half"] == sum(1 for v in values if v > values[-1] / 2) / len(values) == 1e-4
    assert out.numbers["range_over_p9999"] == pytest.approx(values[-1] / values[k - 1])
    cal = {f.spec.calibration: f for f in out.fixes if f.spec.calibration != INT4.calibration}
    assert cal["percentile"].spec == INT4.replace(calibration="percentile", percentile=99.99)
    assert cal["percentile"].score > 0 and cal["percentile"].cause == "outliers"
    _all_valid(out.fixes)


def test_a_measured_draw_spread_is_calib_small_with_more_images():
    model = _spread_model()
    p = _prepared(model, [torch.randn(4, 2, 8, 8)], [torch.randn(4, 2, 8, 8)])
    row = _row(INT4, calib_draws=3, top1_std=0.6, top1_min=79.2, top1_max=80.8)
    causes = find_causes(p, INT4, culprits(_rows(model, [1.0, 0.2]), model), row=row)
    small = next(c for c in causes if c.cause == "calib-small")
    assert small.where == "" and small.numbers["top1_std"] == 0.6 and small.numbers["draws"] == 3
    assert small.fixes[0].config == {"calib_size": 64} and small.fixes[0].score == pytest.approx(0.4)
    quiet = _row(INT4, calib_draws=3, top1_std=0.05, top1_min=79.9, top1_max=80.1)
    assert not any(c.cause == "calib-small" for c in find_causes(p, INT4, culprits(_rows(model, [1.0, 0.2]),
                                                                                   model), row=quiet))


def test_rank_fixes_keeps_each_spec_once_with_its_highest_score():
    a, b = STATIC.replace(granularity="per-channel"), STATIC.replace(scheme="symmetric")
    f = lambda what, score, spec, config=None: Fix(what, "", "accuracy", score, spec, config or {})  # noqa: E731
    causes = [Cause("channel-spread", "x", "", fixes=[f("pc", 1.0, a), f("keep", 2.0, STATIC.replace(
        keep_float=("x",)))]), Cause("relu-symmetric", "y", "", fixes=[f("sym", 0.5, b), f("pc again", 3.0, a)])]
    general = [f("pc prior", 2.5, a), f("more images", 0.7, STATIC, {"calib_size": 64}), f("same", 0.7, STATIC),
               f("advice", 0.1, None)]
    ranked = rank_fixes(causes, general)
    assert [(x.what, x.score) for x in ranked] == [("pc again", 3.0), ("keep", 2.0), ("more images", 0.7),
                                                   ("same", 0.7), ("sym", 0.5), ("advice", 0.1)]
    # a prior counts only where no cause measured the spec: a measured 0.2 stands against a prior of 2.5
    low = [Cause("channel-spread", "x", "", fixes=[f("pc measured", 0.2, a)])]
    assert [(x.what, x.score) for x in rank_fixes(low, general[:1])] == [("pc measured", 0.2)]
    assert [x.what for x in rank_fixes([], general[:1])] == ["pc prior"]
    assert rank_fixes([], []) == []
    with pytest.raises(ValueError, match="Fix"):
        rank_fixes([], ["per-channel"])


def test_general_fixes_scores_and_backends():
    fixes = {f.what: f for f in general_fixes(STATIC, 4.0, 0.75)}
    assert fixes["per-channel weights"].score == pytest.approx(0.6 * 3.0)
    assert fixes["mse calibration"].score == pytest.approx(0.25 * 1.0)
    qat = next(f for w, f in fixes.items() if w.startswith("QAT"))
    assert qat.score == pytest.approx(0.4) and qat.spec.mode == "qat"  # small loss: QAT is not worth much
    big = next(f for f in general_fixes(STATIC, 30.0, 0.75) if f.what.startswith("QAT"))
    assert big.score == pytest.approx(15.0)
    assert general_fixes(STATIC, 0.0, None) == [] and general_fixes(QuantSpec("fp16"), 3.0, None) == []
    assert all(f.spec.mode != "qat" for f in general_fixes(INT4.replace(precision="int8"), 3.0, None))
    ort = STATIC.replace(backend="ort")  # ONNX Runtime rounds its own weights: no AdaRound, no bias correction
    on_ort = general_fixes(ort, 5.0, None)
    assert not any(f.spec.rounding == "adaround" or f.spec.bias_correction for f in on_ort)
    assert any(f.spec.equalize for f in on_ort)
    pt2e = general_fixes(QuantSpec("int8", granularity="per-channel", backend="pt2e"), 5.0, None)
    assert all(f.spec.backend in ("pt2e", "auto", "fx") for f in pt2e)
    _all_valid(on_ort + pt2e + general_fixes(INT4, 40.0, None))
    for bad in (-0.1, 1.5, "half"):
        with pytest.raises(ValueError, match="weights_share"):
            general_fixes(STATIC, 3.0, bad)
    with pytest.raises(ValueError, match="lost_points"):
        general_fixes(STATIC, float("nan"), None)


def test_find_causes_refuses_what_it_cannot_diagnose():
    model = _spread_model()
    p = _prepared(model, [torch.randn(4, 2, 8, 8)], [torch.randn(4, 2, 8, 8)])
    found = culprits(_rows(model, [1.0, 0.2]), model)
    with pytest.raises(ValueError, match="quantizes nothing"):
        find_causes(p, QuantSpec("fp16"), found)
    ghost = culprits([LayerRow("features.9", 0, "Conv2d", 1, None, None, gain_only_float=1.0)], None)
    with pytest.raises(ValueError, match="features.9"):
        find_causes(p, INT4, ghost, row=_row(INT4))
    with pytest.raises(ValueError, match="weights_share"):
        find_causes(p, INT4, found, weights_share=2.0)
    assert find_causes(p, INT4, found, row=_row(INT4, lost=-0.1)) == []  # nothing lost


def test_the_model_input_cannot_be_kept_but_its_layer_can():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    calib = [torch.randn(8, 2, 8, 8)]
    p = _prepared(model, calib, [3 * calib[0]])
    rows = [LayerRow("act:input", 2, "input", 0, None, None, gain_only_float=1.0, kind="activation",
                     cannot_keep="the input's quantizer is the int8 input of the layers that read it")]
    causes = find_causes(p, STATIC, culprits(rows, model), row=_row(STATIC))
    assert causes and all(not (f.spec and "act:input" in f.spec.keep_float) for c in causes for f in c.fixes)
    assert {c.cause for c in causes} >= {"calib-exceeded"}


def _all_valid(fixes):
    """Every fix's spec is one a backend runs, and it survives its dict (what the app and the CLI store)."""
    for f in fixes:
        if f.spec is not None:
            assert spec_problem(f.spec) is None, f.what
            assert QuantSpec.from_dict(f.spec.to_dict()) == f.spec
            assert Fix.from_dict(f.to_dict()) == f
