"""Issue 24, item 6: the activation quantizers between the layers are rows, and a spec can keep one in FP32.

A tiny model with a residual addition: the rows list the input's quantizer and the addition's; keeping the
addition's in FP32 on fx leaves a float ``add`` where the fully quantized build has ``quantized.add`` (oracle: the
converted graph), and with its reader ``fc`` in FP32 too nothing quantizes the sum (oracle: the output of a
hand-built float path through the build's own int8 convolutions). On pt2e the exported graph's ``add`` is left
unannotated. The output SQNR of a quantizer is checked against torch.ao's own MinMaxObserver on the same data.
Other backends, modes and unknown names are refused with the reason.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from qcore.backends import quantize
from qcore.backends.act_quantizers import INPUT, check_act_names
from qcore.backends.base import keep_float_problem
from qcore.backends.fx_int8 import activation_range, model_quantizers
from qcore.backends.layer_names import check_keep_float
from qcore.layers.activations import activation_errors
from qcore.layers.row import LayerRow
from qcore.layers.walk import candidates, rank, walk_specs
from qcore.quant.spec import QuantSpec, SpecError

SPEC = QuantSpec("int8", granularity="per-tensor", calibration="minmax", backend="fx")


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        y = self.conv1(x)
        z = self.conv2(y) + y
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(z, 1), 1))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = Residual().eval()
    calib = [torch.randn(8, 3, 16, 16) for _ in range(2)]
    return model, calib, torch.randn(1, 3, 16, 16)


def _targets(gm) -> list[str]:
    return [str(n.target) for n in gm.graph.nodes if n.op == "call_function"]


def test_the_rows_list_the_input_and_the_additions_quantizer(tiny):
    model, _, example = tiny
    found = model_quantizers(model, example)
    # the pooling and flatten after the sum share its range (one observer): the same quantizer
    assert [(q.name, q.op) for q in found] == [(INPUT, "input"), ("act:add", "add + adaptive_avg_pool2d + flatten")]
    assert found[0].problem and "keep those layers in FP32" in found[0].problem and found[1].problem is None


def test_keeping_the_additions_quantizer_in_fp32_on_fx(tiny, one_thread):
    model, calib, example = tiny
    full = quantize(model, SPEC, calib, example, "cpu").model
    kept = quantize(model, SPEC.replace(keep_float=("act:add",)), calib, example, "cpu").model
    assert "quantized.add" in _targets(full)
    assert "quantized.add" not in _targets(kept) and "<built-in function add>" in _targets(kept)
    add = next(n for n in kept.graph.nodes if str(n.target) == "<built-in function add>")
    assert all(a.target == "dequantize" for a in add.all_input_nodes)  # int8 convolutions' outputs, dequantized
    # fc reads the sum, and fc is int8: it quantizes its input itself (the quantizer moved, as documented)
    assert any("quantize_per_tensor" in t for t in _targets(kept))

    both = quantize(model, SPEC.replace(keep_float=("act:add", "fc")), calib, example, "cpu").model
    add = next(n for n in both.graph.nodes if str(n.target) == "<built-in function add>")
    later, stack = set(), list(add.users)
    while stack:  # nothing after the sum quantizes anything
        n = stack.pop()
        later.add(str(n.target))
        stack.extend(n.users)
    assert not any("quantize" in t for t in later)
    # the hand-built path: the build's own int8 convolutions on the quantized input, then float all the way
    q_in = next(n for n in both.graph.nodes if n.target is torch.quantize_per_tensor)
    scale, zp = (getattr(both, a.target) for a in q_in.args[1:3])
    x = torch.randn(4, 3, 16, 16)
    y = both.conv1(torch.quantize_per_tensor(x, float(scale), int(zp), torch.quint8))
    z = both.conv2(y).dequantize() + y.dequantize()
    expected = model.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(z, 1), 1))
    with torch.no_grad():
        torch.testing.assert_close(both(x), expected, rtol=0, atol=1e-5)


def test_keeping_the_additions_quantizer_in_fp32_on_pt2e(tiny, one_thread):
    pytest.importorskip("torchao")
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from qcore.backends.pt2e_int8 import _quantizer

    model, _, example = tiny
    spec = QuantSpec("int8", granularity="per-channel", backend="pt2e", keep_float=("act:add", "fc"))

    def add_annotation(s):
        ex = torch.export.export(model, (torch.randn(2, 3, 16, 16),), strict=True).module()
        prepared = prepare_pt2e(ex, _quantizer(s, model, example))
        add = next(n for n in prepared.graph.nodes if n.op == "call_function" and "add" in str(n.target))
        return add.meta.get("quantization_annotation"), prepared

    kept, prepared = add_annotation(spec)
    assert kept is not None and not kept.input_qspec_map and kept.output_qspec is None  # marked "not quantized"
    full, _ = add_annotation(spec.replace(keep_float=("fc",)))
    assert full is not None and full.input_qspec_map  # the conv + add pattern quantizes the other input
    with pytest.raises(SpecError, match="no activation quantizer 'act:ad'; near names: act:add"):
        _quantizer(spec.replace(keep_float=("act:ad",)), model, example)


def test_the_quantizers_output_sqnr_against_torchs_minmax_observer(tiny):
    from torch.ao.quantization.observer import MinMaxObserver

    model, calib, example = tiny
    batches = [torch.randn(6, 3, 16, 16)]
    found, errs = activation_errors(model, SPEC, calib, example, batches)
    qmin, qmax = activation_range()
    obs = MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine, quant_min=qmin, quant_max=qmax)

    def the_sum(x):
        y = model.conv1(x)
        return model.conv2(y) + y

    with torch.no_grad():
        for x in calib:
            obs(the_sum(x))
        scale, zp = obs.calculate_qparams()
        t = the_sum(batches[0]).double()
        q = torch.fake_quantize_per_tensor_affine(t.float(), float(scale), int(zp), qmin, qmax).double()
    sqnr = 10 * math.log10(float((t * t).sum()) / float(((t - q) ** 2).sum()))
    assert [q.name for q in found] == [INPUT, "act:add"]
    assert errs["act:add"].sqnr == pytest.approx(sqnr, abs=1e-3) and 20 < sqnr < 60


def test_other_backends_modes_and_names_are_refused_with_the_reason(tiny):
    model, _, example = tiny
    spec = SPEC.replace(keep_float=("act:add",))
    assert keep_float_problem(spec, "fx") is None and keep_float_problem(spec, "pt2e") is None
    why = keep_float_problem(spec, "ort")
    assert "the ort backend cannot keep an activation quantizer in FP32 (act:add)" in why and "fx, pt2e" in why
    with pytest.raises(SpecError, match="only static INT8 inserts.*mode='weight-only'.*allowed: precision 'int8'"):
        QuantSpec("int4", mode="weight-only", keep_float=("act:add",))
    with pytest.raises(SpecError, match="keep_int8 \\(act:add\\) names an activation quantizer"):
        QuantSpec("int4", mode="weight-only", keep_int8=("act:add",))
    found = model_quantizers(model, example)
    with pytest.raises(SpecError, match="act:input \\(input\\) cannot be kept in FP32: the input's quantizer"):
        check_act_names(("act:input",), found)
    with pytest.raises(SpecError, match="no activation quantizer 'act:mul'; near names: .*2 activation quantizers"):
        check_act_names(("act:mul",), found)
    from qcore.backends import BackendUnavailable

    with pytest.raises(BackendUnavailable, match="the ort backend cannot keep an activation quantizer"):
        quantize(model, spec.replace(backend="ort"), [], example, "cpu")


def test_resnet18s_quantizers_and_the_check_of_a_specs_names():
    import torchvision

    net = torchvision.models.resnet18(num_classes=10).eval()
    found = model_quantizers(net)
    assert [q.name for q in found][:3] == [INPUT, "act:maxpool", "act:layer1.0.relu"] and len(found) == 10
    assert found[1].op == "MaxPool2d, sharing conv1's range"  # conv1's quantizer, read again after the pooling
    # the residual additions, fused with the ReLU after them; the last one's range is shared by the pooling
    assert {q.op for q in found[2:-1]} == {"add + ReLU"} and found[-1].op == "add + ReLU + AdaptiveAvgPool2d + flatten"
    assert len(check_keep_float(SPEC.replace(keep_float=("act:layer2.0.relu", "fc")), net)) == 21
    with pytest.raises(SpecError, match="no activation quantizer 'act:layer1.0.add'; near names: act:layer1.0.relu"):
        check_keep_float(SPEC.replace(keep_float=("act:layer1.0.add",)), net)


def test_the_walk_promotes_activation_rows_and_never_the_inputs():
    rows = [LayerRow("conv1", 0, "Conv2d", 10, 40.0, 1e-4, output_sqnr_db=30.0),
            LayerRow("fc", 1, "Linear", 10, 45.0, 1e-4, output_sqnr_db=25.0),
            LayerRow(INPUT, 2, "input", 0, None, None, output_sqnr_db=10.0, kind="activation",
                     cannot_keep="the input's quantizer ..."),
            LayerRow("act:add", 3, "add", 0, None, None, output_sqnr_db=20.0, kind="activation")]
    assert rank(rows, "output_sqnr_db") == ["act:add", "fc", "conv1"]
    assert rank(rows, "weight_sqnr_db") == ["conv1", "fc", "act:add"]  # no weight: last
    assert candidates(rows) == ["conv1", "fc", "act:add"]
    specs = walk_specs(SPEC, rank(rows, "output_sqnr_db"), steps=2)
    assert [s.keep_float for s in specs] == [(), ("act:add",), ("act:add", "fc")]


def test_the_table_has_activation_rows_with_their_accuracy_columns(fashion_mnist, resnet18_checkpoint, one_thread):
    from qcore.layers.sensitivity import measure_layers
    from qcore.runs.sweep import SweepConfig

    config = SweepConfig(model="resnet18", weights=str(resnet18_checkpoint), calib_size=8, eval_limit=16,
                         fp32_compiled=False)
    sens = measure_layers(config, SPEC, accuracy_columns=True, error_images=8, only=(INPUT, "act:layer1.0.relu"))
    assert sens.plan.text().startswith("0 layers and 2 activation quantizers: 3 model build(s)")
    inp, add = sens.rows
    assert (inp.kind, inp.op, add.kind, add.op) == ("activation", "input", "activation", "add + ReLU")
    assert inp.cannot_keep and inp.gain_only_float is None and inp.weight_sqnr_db is None
    assert 20 < inp.output_sqnr_db < 60 and 20 < add.output_sqnr_db < 60 and add.error_images == 8
    assert add.gain_only_float == pytest.approx(add.top1_only_float - sens.top1_quantized)
    assert add.loss_only_quant == pytest.approx(sens.top1_fp32 - add.top1_only_quant)
    with pytest.raises(SpecError, match="no layer 'act:layer1.0.add'; near names: act:layer1.0.relu"):
        measure_layers(config, SPEC, accuracy_columns=False, only=("act:layer1.0.add",))
    ort = measure_layers(config, QuantSpec("int8", granularity="per-tensor", backend="ort"), accuracy_columns=False,
                         error_images=8, only=("fc",)) if _has_ort() else None
    if ort is not None:
        assert any("no activation rows: the ort backend" in n for n in ort.notes)


def _has_ort() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class Gate(nn.Module):
    """A squeeze-excitation-like gate: a quantized conv's output into a hardsigmoid (torch.ao's fixed-scale op),
    multiplied back, and a residual addition with its ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.gate = nn.Conv2d(8, 8, 1)
        self.act = nn.Hardsigmoid()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        y = self.conv(x)
        y = y * self.act(self.gate(y))
        z = self.relu(self.conv2(y) + y)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(z, 1), 1))


def _inputs_seen(gm, module: str, x) -> list[bool]:
    seen = []
    h = gm.get_submodule(module).register_forward_pre_hook(lambda m, args: seen.append(args[0].is_quantized))
    with torch.inference_mode():
        gm(x)
    h.remove()
    return seen


def test_a_kept_quantizer_that_torch_ao_runs_on_int8_anyway_is_said_not_kept(one_thread):
    from qcore.backends.act_quantizers import NOT_KEPT

    torch.manual_seed(0)
    model, calib, x = Gate().eval(), [torch.randn(8, 3, 16, 16) for _ in range(2)], torch.randn(1, 3, 16, 16)
    names = {q.name for q in model_quantizers(model, x)}
    assert {"act:act", "act:relu"} <= names
    gated = quantize(model, SPEC.replace(keep_float=("act:act",)), calib, x)
    # the oracle: what the hardsigmoid module is handed in the converted graph
    assert _inputs_seen(gated.model, "act", x) == [True]  # torch.ao gave it int8: the keep did not take
    assert [n for n in gated.notes if n.startswith(NOT_KEPT)] == [
        f"{NOT_KEPT}act:act: torch.ao FX runs it on int8 anyway (it reads a quantized layer's output and has an "
        "int8 kernel of its own, such as a hardsigmoid's fixed-scale one)"]
    relu = quantize(model, SPEC.replace(keep_float=("act:relu",)), calib, x)
    assert _inputs_seen(relu.model, "relu", x) == [False]  # kept: FP32 in, so no note
    assert not [n for n in relu.notes if n.startswith(NOT_KEPT)]


def test_the_layers_pass_says_which_activation_rows_could_not_be_kept(fashion_mnist, one_thread):
    from qcore.layers.sensitivity import measure_layers
    from qcore.runs.sweep import SweepConfig

    gate, add = "act:features.1.block.1.scale_activation", "act:features.3.add"
    config = SweepConfig(model="mobilenet_v3_small", calib_size=8, eval_limit=16, fp32_compiled=False)
    sens = measure_layers(config, SPEC, accuracy_columns=True, error_images=8, only=(gate, add))
    by = {r.layer: r for r in sens.rows}
    assert by[gate].cannot_keep.startswith("torch.ao FX runs it on int8 anyway")
    assert by[gate].top1_only_float is None and by[gate].gain_only_float is None  # nothing measured as "kept"
    assert by[gate].output_sqnr_db is not None  # its error is still measured
    assert not by[add].cannot_keep and by[add].top1_only_float is not None
    assert any(n.startswith("1 activation quantizer(s) could not be kept in FP32 on fx") for n in sens.notes)
    assert candidates(sens.rows) == [add] and rank(sens.rows, "output_sqnr_db") == [add]  # no walk promotes it
