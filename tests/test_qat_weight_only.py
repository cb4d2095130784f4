"""QAT of INT4 weight-only (issue 18): the spec, the fake quantization against the packed layer, the flow, a row."""

import copy

import pytest
import torch
from torch import nn

from qcore.backends import get_backend, resolve
from qcore.backends.weight_only import WeightOnlyLayer
from qcore.qat.finetune import Schedule, finetune, top1
from qcore.qat.flows import FLOWS, freeze_bn, freeze_observers
from qcore.qat.weight_only_flow import FakeQuantWeight, WeightOnlyQAT, fake_quantize_weight
from qcore.quant.spec import QuantSpec, allowed_modes
from qcore.quant.spec_text import parse_spec


def test_int4_qat_is_qat_of_the_weight_only_spec_and_runs_on_the_weight_only_backend():
    spec = QuantSpec("int4", granularity="per-tensor", mode="qat", qat_epochs=0.5)
    assert spec.ptq_spec == QuantSpec("int4", granularity="per-tensor", mode="weight-only")
    assert spec.label() == "INT4 per-tensor min-max asym qat(0.5 ep)"
    assert parse_spec(spec.label()) == spec
    assert allowed_modes("int4") == ["weight-only", "qat"]
    assert QuantSpec("int4", granularity="per-group", group_size=32, mode="qat").ptq_spec.group_size == 32
    choice = resolve(spec, "cpu")
    assert choice.backend.name == "weight-only" and "among the backends with a QAT flow, fx, weight-only" in choice.why
    assert isinstance(FLOWS["weight-only"](spec), WeightOnlyQAT)


@pytest.mark.parametrize("fields", [
    dict(precision="int4", granularity="per-tensor"),
    dict(precision="int4", granularity="per-channel", calibration="mse", scheme="symmetric"),
    dict(precision="int4", granularity="per-group", group_size=32),
    dict(precision="int4", granularity="per-group", group_size=128, calibration="percentile", percentile=99.0),
], ids=lambda f: "-".join(str(v) for v in f.values()))
def test_fake_quantization_is_the_packed_layer_bit_for_bit_with_a_straight_through_gradient(fields):
    torch.manual_seed(0)
    conv = nn.Conv2d(24, 40, 3)  # 216 inputs a row: per-group rows end in a short, padded group
    spec = QuantSpec(mode="qat", **fields)
    w = conv.weight.detach().clone().requires_grad_(True)
    fq = fake_quantize_weight(w, spec)
    packed = WeightOnlyLayer(conv, spec.bits, spec.granularity, spec.group_size, spec.calibration, spec.symmetric,
                             spec.percentile)
    assert torch.equal(fq.detach(), packed.dequantized_weight())
    assert not torch.equal(fq.detach(), w.detach())  # it did round
    upstream = torch.randn_like(w)
    (fq * upstream).sum().backward()
    assert torch.equal(w.grad, upstream)  # the gradient passes the rounding unchanged


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.relu(self.bn(self.conv(x)))), 1))


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    model = Tiny().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
        model.conv.weight[0, 0, 0, 0] = 2.0  # an outlier: per-tensor INT4 rounds every other weight coarsely
    x = torch.randn(64, 3, 8, 8)
    y = (x[:, 0].mean((1, 2)) > 0).long() + 2 * (x[:, 1].mean((1, 2)) > 0).long()
    return model, x, y


def test_untrained_the_flow_is_ptq_and_trained_it_converts_to_what_training_saw(tiny, one_thread):
    from torch.utils.data import TensorDataset

    model, x, y = tiny
    spec = QuantSpec("int4", granularity="per-tensor", mode="qat")
    flow = WeightOnlyQAT(spec)
    prepared = flow.prepare(model, x[:2], None)
    assert sum(isinstance(m, FakeQuantWeight) for m in prepared.modules()) == 2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in prepared.modules())  # folded, as PTQ folds it
    ptq = get_backend("weight-only").quantize(model, spec.ptq_spec, None, x[:2], "cpu")
    torch.testing.assert_close(prepared.eval()(x), ptq(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(flow.convert(prepared)(x), ptq(x), atol=1e-5, rtol=1e-5)

    before = prepared.conv.layer.weight.detach().clone()
    s = Schedule(model="tiny", epochs=2.0, batch_size=16, optimizer="adamw", lr=1e-2, weight_decay=0.0,
                 label_smoothing=0.0, freeze_bn=0.3, freeze_observers=0.4, seed=0, train_images=64)
    record = finetune(prepared, TensorDataset(x, y), [(x, y)], s, freeze_bn=freeze_bn,
                      freeze_observers=freeze_observers)
    assert record["step"][-1] == 8 and not torch.equal(before, prepared.conv.layer.weight)
    converted = flow.convert(prepared)
    assert sum(isinstance(m, WeightOnlyLayer) for m in converted.modules()) == 2
    torch.testing.assert_close(converted(x), prepared.eval()(x), atol=1e-5, rtol=1e-5)
    assert top1(converted, [(x, y)]) == record["top1"][-1]
    q = flow.quantized(converted, model, "note")
    assert q.kernel == "simulated" and q.backend == "weight-only" and q.quantized_layers == 2
    assert any("qat_freeze_observers has nothing to freeze" in n for n in q.notes)
    # a prepared copy loads the trained state (the cache's path) and converts to the same model
    again = flow.prepare(model, x[:2], None)
    again.load_state_dict(prepared.state_dict())
    torch.testing.assert_close(flow.convert(again)(x), converted(x))


def test_a_layer_kept_in_float_is_not_trained_through_rounding(tiny):
    model, x, _ = tiny
    flow = WeightOnlyQAT(QuantSpec("int4", mode="qat", keep_float=("fc",)))
    prepared = flow.prepare(model, x[:2], None)
    assert isinstance(prepared.conv, FakeQuantWeight) and isinstance(prepared.fc, nn.Linear)
    assert flow.key()["keep_float"] == ["fc"]
    with pytest.raises(ValueError, match="no Conv2d or Linear layer to quantize"):
        WeightOnlyQAT(QuantSpec("int4", mode="qat", keep_float=("conv", "fc"))).prepare(model, x[:2], None)


def test_an_int4_qat_row_of_a_sweep_reports_its_weight_only_ptq_and_control(fashion_mnist, mobilenet_checkpoint,
                                                                            one_thread):
    from qcore.runs.sweep import SweepConfig, run_sweep

    config = SweepConfig(model="mobilenet_v3_small", weights=str(mobilenet_checkpoint), calib_size=16, eval_limit=32,
                         eval_batch_size=32, latency_budget_s=0.1, fp32_compiled=False)
    ptq = QuantSpec("int4", granularity="per-tensor", mode="weight-only")
    spec = QuantSpec("int4", granularity="per-tensor", mode="qat", qat_epochs=0.003)  # 1 step of 128 images
    _, plain, r = run_sweep(config, [ptq, spec])
    assert r.status == "ok", r.error
    assert r.backend == "weight-only" and r.kernel == "simulated" and r.quantized_layers == plain.quantized_layers
    assert r.ptq_top1 == pytest.approx(plain.top1)  # its PTQ counterpart is the weight-only row
    assert r.control_top1 is not None and r.finetune_seconds > 0 and r.qat_curve["steps"] == 1
    assert r.size_bytes == pytest.approx(plain.size_bytes, rel=0.01)  # the same packed artifact
    assert any("weight ranges by minmax from the weights themselves" in n for n in r.notes)


def test_the_same_schedule_trains_the_same_model_whatever_ran_before(one_thread):
    """Dropout draws from torch's global generator; the fine-tune seeds it, so a QAT run after a cached control
    (nothing drawn before) equals one after a trained control (much drawn before)."""
    from torch.utils.data import TensorDataset

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
    x, y = torch.randn(32, 3, 2, 2), torch.randint(0, 3, (32,))
    s = Schedule(model="m", epochs=2.0, batch_size=8, optimizer="adamw", lr=1e-2, weight_decay=0.0,
                 label_smoothing=0.0, freeze_bn=1.0, freeze_observers=1.0, seed=3, train_images=32)
    trained = []
    for draws_before in (0, 1000):
        torch.rand(draws_before)
        m = copy.deepcopy(model)
        state = torch.random.get_rng_state()
        finetune(m, TensorDataset(x, y), [(x, y)], s, freeze_bn=freeze_bn)
        assert torch.equal(torch.random.get_rng_state(), state)  # the caller's generator is given back as it was
        trained.append(m[1].weight.detach().clone())
    assert torch.equal(trained[0], trained[1])
