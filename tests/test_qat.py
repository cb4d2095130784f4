"""QAT (issue 18): the spec's mode, the fx flow, the fine-tune, its cache, and a QAT row of a sweep."""

import csv

import pytest
import torch
from torch import nn

from qcore.backends import BackendUnavailable, kind_problem, resolve, runnable_grid
from qcore.metrics.result import COLUMNS, Result
from qcore.nets.train import Cancelled
from qcore.qat import cache
from qcore.qat.finetune import Schedule, finetune, top1
from qcore.qat.flows import FxQAT, freeze_bn, freeze_observers
from qcore.qat.measure import recovered
from qcore.quant.spec import QAT_DEFAULTS, QuantSpec, SpecError, expand_grid

# -- the spec ------------------------------------------------------------------------------------------------


def test_qat_defaults_and_static_specs_carry_no_schedule():
    s = QuantSpec("int8", mode="qat")
    assert (s.qat_epochs, s.qat_lr_scale, s.qat_freeze_bn, s.qat_freeze_observers, s.qat_seed) == (
        1.0, 0.01, 0.3, 0.4, 0)
    assert s.qat_epochs == QAT_DEFAULTS["qat_epochs"]
    assert s.label() == "INT8 per-channel min-max asym qat(1 ep)"
    static = QuantSpec("int8", qat_epochs=3)
    assert static.qat_epochs == 0.0 and static.qat_seed == 0  # normalised: a grid over epochs is one static run
    assert s.ptq_spec == QuantSpec("int8") and static.ptq_spec is static
    assert QuantSpec.from_dict(s.to_dict()) == s
    assert QuantSpec.from_dict({"precision": "int8", "mode": "static"}) == QuantSpec("int8")  # old rows' specs


@pytest.mark.parametrize(
    "kwargs, says",
    [
        (dict(precision="fp32", mode="qat"), "a float cast has no quantization ranges to train"),
        (dict(precision="fp16", mode="qat"), "a float cast has no quantization ranges to train"),
        (dict(precision="int4", mode="qat", calibration="entropy"), "calibration='entropy' is not allowed in "
                                                                    "weight-only mode"),
        (dict(mode="qat", qat_epochs=0), "qat_epochs=0 is not allowed; allowed: a number in (0, 100]"),
        (dict(mode="qat", qat_epochs=-1.5), "qat_epochs=-1.5 is not allowed"),
        (dict(mode="qat", qat_freeze_bn=1.5), "qat_freeze_bn=1.5 is not allowed; allowed: a number in (0, 1]"),
        (dict(mode="qat", qat_lr_scale=0), "qat_lr_scale=0 is not allowed"),
        (dict(mode="qat", qat_seed=-1), "qat_seed=-1 is not allowed"),
        (dict(mode="qat", granularity="per-group"), "granularity='per-group' is not allowed in mode='qat'"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_qat_on_nothing_to_train_or_bad_numbers_is_refused_naming_why(kwargs, says):
    with pytest.raises(SpecError) as err:
        QuantSpec(**kwargs)
    assert says in str(err.value)


def test_a_grid_of_static_and_qat_counts_fp32_qat_as_the_baseline_not_a_skip():
    specs, skipped = expand_grid(precision=["fp32", "int8"], mode=["static", "qat"])
    assert [s.label() for s in specs] == ["FP32", "INT8 per-channel min-max asym static",
                                          "INT8 per-channel min-max asym qat(1 ep)"]
    assert skipped == []  # FP32 is the baseline, measured first (issue 24, item 7)


def test_qat_runs_on_fx_and_a_backend_without_a_qat_flow_says_so():
    spec = QuantSpec("int8", granularity="per-tensor", mode="qat")
    choice = resolve(spec, "cpu")
    assert choice.backend.name == "fx" and "QAT: among the backends with a QAT flow, fx" in choice.why
    assert kind_problem(spec) is None
    pt2e = spec.replace(backend="pt2e", granularity="per-channel")
    assert "prepare_qat_pt2e" in kind_problem(pt2e) and "allowed: auto, fx" in kind_problem(pt2e)
    with pytest.raises(BackendUnavailable, match="does not run mode='qat'"):
        resolve(spec.replace(backend="ort"), "cpu")
    keep, skipped = runnable_grid(precision=["int8"], mode=["qat"], backend=["fx", "openvino"])
    assert [s.backend for s in keep] == ["fx"] and "openvino" in skipped[0][1]


def test_recovered_is_the_share_of_the_controls_lead_won_back():
    assert recovered(88.0, 84.0, 89.0) == pytest.approx(0.8)
    assert recovered(84.0, 84.0, 89.0) == 0.0
    assert recovered(90.0, 84.0, 89.0) == pytest.approx(1.2)  # QAT beat its control
    assert recovered(88.0, 89.0, 89.0) is None  # the control does not beat PTQ: nothing to win back
    assert recovered(None, 84.0, 89.0) is None


def test_old_result_bodies_open_and_qat_fields_round_trip():
    old = Result(QuantSpec("int8"), "resnet18", "fashion-mnist").to_dict()
    for name in ("ptq_top1", "control_top1", "recovered", "finetune_seconds", "qat_curve"):
        old.pop(name)
    old["spec"] = {k: v for k, v in old["spec"].items() if not k.startswith("qat_")}
    r = Result.from_dict(old)
    assert r.ptq_top1 is None and r.qat_curve == {} and r.spec == QuantSpec("int8")
    r = Result(QuantSpec("int8", mode="qat", qat_epochs=0.5), "m", "d", top1=88.0, ptq_top1=84.0, control_top1=89.0,
               recovered=0.8, qat_curve={"qat": {"step": [0, 3], "top1": [84.0, 88.0]}})
    back = Result.from_dict(r.to_dict())
    assert back.qat_curve == r.qat_curve and back.spec.qat_epochs == 0.5
    row = r.row()
    assert list(row)[-5:] == list(COLUMNS[-5:]) and row["recovered"] == 0.8 and row["qat_epochs"] == 0.5


# -- the fx flow and the fine-tune, on a tiny network --------------------------------------------------------


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.relu(self.bn(self.conv(x)))), 1))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = Tiny().eval()
    x = torch.randn(64, 3, 8, 8)
    y = (x[:, 0].mean((1, 2)) > 0).long() + 2 * (x[:, 1].mean((1, 2)) > 0).long()
    return model, x, y


def _schedule(**changes):
    base = dict(model="tiny", epochs=1.0, batch_size=16, optimizer="adamw", lr=1e-2, weight_decay=0.0,
                label_smoothing=0.0, freeze_bn=0.5, freeze_observers=0.5, seed=0, train_images=64)
    return Schedule(**{**base, **changes})


def test_qat_starts_from_the_ptq_ranges_and_converts_to_the_fx_int8_modules(tiny, one_thread):
    from qcore.backends import get_backend

    model, x, _ = tiny
    spec = QuantSpec("int8", granularity="per-tensor", calibration="percentile", percentile=99.0, mode="qat")
    flow = FxQAT(spec)
    prepared = flow.prepare(model, x[:2], [x[:32]])
    ptq = get_backend("fx").quantize(model, spec.ptq_spec, [x[:32]], x[:2], "cpu")
    converted = flow.convert(prepared)
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in converted.modules())
    # untrained, the QAT model is the PTQ model: the same int8 modules from the same ranges
    torch.testing.assert_close(converted(x), ptq(x), atol=0.05, rtol=0)
    # a prepared graph without calibration loads the trained state and converts to the same model
    again = flow.prepare(model, x[:2], None)
    again.load_state_dict(prepared.state_dict())
    torch.testing.assert_close(flow.convert(again)(x), converted(x))


def test_finetune_curve_freezes_and_cancel(tiny, one_thread):
    from torch.utils.data import TensorDataset

    model, x, y = tiny
    data = TensorDataset(x, y)
    evals = [(x[:32], y[:32])]
    spec = QuantSpec("int8", mode="qat")
    prepared = FxQAT(spec).prepare(model, x[:2], [x[:32]])
    s = _schedule(epochs=2.5, freeze_bn=0.2, freeze_observers=0.2)  # 10 steps, frozen after 2
    seen = []
    record = finetune(prepared, data, evals, s, freeze_bn=freeze_bn, freeze_observers=freeze_observers,
                      progress=lambda d, t, m: seen.append((d, t)))
    assert record["step"] == [0, 2, 4, 6, 8, 10] and record["epoch"][-1] == 2.5
    assert record["train_loss"][0] is None and all(v > 0 for v in record["train_loss"][1:])
    assert record["top1"][-1] == pytest.approx(top1(prepared, evals)) and record["seconds"] > 0
    assert seen[-1] == (10, 10)
    scale = [m.scale.clone() for m in prepared.modules() if hasattr(m, "fake_quant_enabled")]
    bn = [m.bn.running_mean.clone() for m in prepared.modules() if hasattr(m, "freeze_bn")]
    assert bn, "conv-bn fused into a QAT module"
    finetune(prepared, data, evals, _schedule(epochs=0.5, freeze_bn=0.01, freeze_observers=0.01),
             freeze_bn=freeze_bn, freeze_observers=freeze_observers)
    # frozen from the first step: ranges and BatchNorm statistics do not move, weights do
    assert all(torch.equal(a, m.scale) for a, m in
               zip(scale, [m for m in prepared.modules() if hasattr(m, "fake_quant_enabled")]))
    assert all(torch.equal(a, m.bn.running_mean) for a, m in
               zip(bn, [m for m in prepared.modules() if hasattr(m, "freeze_bn")]))
    with pytest.raises(Cancelled, match="QAT fine-tune cancelled at step 0/"):
        finetune(prepared, data, evals, s, freeze_bn=freeze_bn, cancel=lambda: True, what="QAT fine-tune")


def test_a_model_fx_cannot_trace_is_refused_before_training():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            y = self.conv(x)
            return y if y.sum() > 0 else -y

    with pytest.raises(ValueError, match="cannot be traced for QAT by torch.fx: TraceError"):
        FxQAT(QuantSpec("int8", mode="qat")).prepare(Branchy(), torch.randn(2, 3, 4, 4), None)


def test_cache_paths_keys_and_round_trip(_isolated_home):
    a = cache.cache_path("m", "qat", {"x": 1})
    assert a == cache.cache_path("m", "qat", {"x": 1}) and a != cache.cache_path("m", "qat", {"x": 2})
    assert a.parent == _isolated_home / "qat" and a.name.startswith("m__qat__")
    assert cache.load(a) is None
    with cache.locked(a):
        cache.save(a, {"w": torch.arange(3.0)}, {"seconds": 1.5})
    state, record = cache.load(a)
    assert torch.equal(state["w"], torch.arange(3.0)) and record == {"seconds": 1.5}
    assert cache.tensor_digest([torch.tensor(1.0)]) != cache.tensor_digest([torch.tensor(2.0)])
    assert not list(a.parent.glob(".*tmp*"))  # atomic writes leave no temporary file


# -- a QAT row of a sweep, end to end ------------------------------------------------------------------------


def test_a_qat_row_reports_ptq_control_and_recovered_and_is_cached(fashion_mnist, mobilenet_checkpoint, one_thread):
    from qcore.present.report import csv_text
    from qcore.runs.sweep import SweepConfig, run_sweep

    config = SweepConfig(model="mobilenet_v3_small", weights=str(mobilenet_checkpoint), calib_size=16,
                         eval_limit=32, eval_batch_size=32, latency_budget_s=0.1, fp32_compiled=False)
    spec = QuantSpec("int8", granularity="per-tensor", mode="qat", qat_epochs=0.003)  # 1 step of 128 images
    messages = []
    base, r = run_sweep(config, [spec], progress=lambda d, t, m: messages.append(m))
    assert r.status == "ok", r.error
    assert r.backend == "fx" and r.kernel == "native" and r.quantized_layers > 0
    assert r.ptq_top1 is not None and r.control_top1 is not None and r.finetune_seconds > 0
    assert r.recovered == recovered(r.top1, r.ptq_top1, r.control_top1)
    # QAT - PTQ paired on the same 32 images (issue 24, item 7): the images won and lost make the change
    assert r.eval_images == 32 and r.qat_images_won + r.qat_images_lost <= 32
    assert 100 * (r.qat_images_won - r.qat_images_lost) / 32 == pytest.approx(r.top1 - r.ptq_top1)
    assert r.qat_vs_ptq_lo <= r.top1 - r.ptq_top1 <= r.qat_vs_ptq_hi
    assert sum(n.startswith(f"QAT - PTQ {r.top1 - r.ptq_top1:+.2f} points, 95% ") for n in r.notes) == 1
    assert r.qat_curve["qat"]["step"] == [0, 1] and r.qat_curve["control"]["step"] == [0, 1]
    assert r.qat_curve["control"]["top1"][0] == pytest.approx(base.top1)  # the control starts at FP32
    assert r.qat_curve["eval_images"] == 32 and r.qat_curve["steps"] == 1
    assert any("QAT fine-tune: step 1/1" in m for m in messages)
    assert any("FP32 control fine-tune: step 1/1" in m for m in messages)
    row = next(csv.DictReader(csv_text([base, r]).splitlines()[:1] + csv_text([base, r]).splitlines()[2:]))
    assert float(row["ptq_top1"]) == pytest.approx(r.ptq_top1) and row["qat_epochs"] == "0.003"
    # a second sweep loads both fine-tunes from the cache and measures the same model
    _, again = run_sweep(config, [spec])
    assert again.top1 == r.top1 and again.control_top1 == r.control_top1
    assert sum("loaded from the cache" in n for n in again.notes) == 2


def test_a_cancel_during_the_fine_tune_leaves_a_cancelled_row(fashion_mnist, mobilenet_checkpoint, one_thread):
    from qcore.runs.sweep import SweepConfig, run_sweep

    config = SweepConfig(model="mobilenet_v3_small", weights=str(mobilenet_checkpoint), calib_size=16,
                         eval_limit=32, latency_budget_s=0.1, fp32_compiled=False)
    calls = []

    def cancel():  # false while the sweep starts the spec, true once the fine-tune asks
        calls.append(1)
        return len(calls) > 1

    _, r = run_sweep(config, [QuantSpec("int8", mode="qat", qat_epochs=0.01)], cancel=cancel)
    assert r.status == "cancelled" and "fine-tune cancelled at step 0/" in r.error


# -- charts --------------------------------------------------------------------------------------------------


def _qat_row():
    curve = {"step": [0, 1, 2], "epoch": [0.0, 0.25, 0.5], "train_loss": [None, 0.8, 0.7]}
    return Result(QuantSpec("int8", mode="qat", qat_epochs=0.5), "m", "d", top1=88.5, top1_delta=-0.5, agreement=98.0,
                  latency_ms_p50=5.0, speedup=2.0, size_bytes=1_000_000, size_ratio=0.25, ptq_top1=87.0,
                  control_top1=89.2, recovered=0.68, finetune_seconds=100.0,
                  qat_curve={"qat": {**curve, "top1": [87.0, 88.0, 88.5]},
                             "control": {**curve, "top1": [89.0, 89.1, 89.2]}, "steps": 2, "eval_images": 2000})


def test_qat_points_get_their_own_marker_and_the_curve_has_both_runs():
    from qcore.present.report import pareto_figure
    from qcore.qat.charts import QAT_SYMBOL, curve_figure, qat_hover_line

    base = Result(QuantSpec("fp32"), "m", "d", top1=89.0, top1_delta=0.0, agreement=100.0, latency_ms_p50=10.0,
                  speedup=1.0, size_bytes=4_000_000, size_ratio=1.0)
    static = Result(QuantSpec("int8"), "m", "d", top1=87.0, top1_delta=-2.0, agreement=97.0, latency_ms_p50=5.0,
                    speedup=2.0, size_bytes=1_000_000, size_ratio=0.25)
    fig = pareto_figure([base, static, _qat_row()])
    traces = {t.name: t for t in fig.data}
    assert list(traces["INT8 QAT"].marker.symbol) == [QAT_SYMBOL] and list(traces["INT8 QAT"].y) == [88.5]
    assert list(traces["INT8"].y) == [87.0]  # the PTQ point stays a circle of its precision
    assert "recovered 0.68" in traces["INT8 QAT"].text[0]
    assert qat_hover_line(_qat_row()) == ("QAT 0.5 epoch: PTQ 87.00%, control 89.20%, recovered 0.68, "
                                          "fine-tune 100 s")
    curve = curve_figure(_qat_row())
    names = [t.name for t in curve.data]
    assert names == ["QAT (fake-quantized) top-1", "QAT (fake-quantized) train loss", "FP32 control top-1",
                     "FP32 control train loss"]
    assert list(curve.data[1].x) == [0.25, 0.5]  # no loss at step 0
    assert "2000 test images" in curve.layout.yaxis.title.text


def test_bench_qat_help_runs():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "bench/qat.py", "--help"], capture_output=True, text=True, timeout=120,
                         cwd=root)
    assert out.returncode == 0, out.stderr
    assert "--epochs" in out.stdout and "--settings" in out.stdout


def test_a_row_stored_before_the_qat_fields_counts_as_done_when_its_job_resumes(tmp_path):
    import json
    import sqlite3

    from qcore.runs.store import Store, spec_key

    store = Store(tmp_path / "runs.sqlite")
    store.add_result(Result(QuantSpec("int8"), "m", "d", sweep_id="job1"))
    old = {k: v for k, v in QuantSpec("int8").to_dict().items() if not k.startswith("qat_")}
    with sqlite3.connect(store.path) as c:  # as a database written before QAT existed holds it
        c.execute("UPDATE results SET spec_key=?", (spec_key(old),))
    assert store.done_spec_keys("job1") == {spec_key(QuantSpec.from_dict(old).to_dict())}
    assert json.loads(next(iter(store.done_spec_keys("job1"))))["qat_epochs"] == 0.0


def test_qat_vs_ptq_pairs_the_two_models_image_by_image():
    """The paired counts by a loop over the images (the oracle), the change and its interval as every paired
    top-1 change in qcore (Newcombe, qcore.metrics.stats), and the hover line that shows them beside recovered."""
    from qcore.metrics.stats import paired_delta
    from qcore.qat.charts import qat_hover_line, qat_vs_ptq_text
    from qcore.qat.measure import qat_vs_ptq

    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (2000,), generator=g)
    ptq_right = torch.rand(2000, generator=g) < 0.85
    qat_right = torch.where(torch.rand(2000, generator=g) < 0.05, ~ptq_right, ptq_right)  # 5% of images flip

    def logits(right):  # the label's logit highest where right, another class's where wrong
        out = torch.zeros(2000, 10)
        out[torch.arange(2000), torch.where(right, labels, (labels + 1) % 10)] = 1.0
        return out

    won = sum(1 for q, p in zip(qat_right.tolist(), ptq_right.tolist()) if q and not p)
    lost = sum(1 for q, p in zip(qat_right.tolist(), ptq_right.tolist()) if p and not q)
    both = sum(1 for q, p in zip(qat_right.tolist(), ptq_right.tolist()) if q and p)
    r = _qat_row()
    r.top1, r.ptq_top1 = 100 * float(qat_right.double().mean()), 100 * float(ptq_right.double().mean())
    r.eval_images = 2000
    qat_vs_ptq(r, logits(qat_right), logits(ptq_right), labels)
    assert (r.qat_images_won, r.qat_images_lost) == (won, lost) and won > 10 and lost > 50
    delta, lo, hi = paired_delta(both, lost, won, 2000 - both - won - lost)
    assert 100 * delta == pytest.approx(r.top1 - r.ptq_top1)  # the two numbers describe one change
    assert (r.qat_vs_ptq_lo, r.qat_vs_ptq_hi) == pytest.approx((100 * lo, 100 * hi))
    assert r.qat_vs_ptq_lo < r.top1 - r.ptq_top1 < r.qat_vs_ptq_hi and r.qat_vs_ptq_hi - r.qat_vs_ptq_lo < 3
    text = (f"QAT - PTQ {r.top1 - r.ptq_top1:+.2f} points, 95% {100 * lo:+.2f} to {100 * hi:+.2f} on 2,000 images "
            f"({won:,} won, {lost:,} lost)")
    assert qat_vs_ptq_text(r) == text
    assert qat_hover_line(r) == (f"QAT 0.5 epoch: PTQ {r.ptq_top1:.2f}%, control 89.20%, recovered 0.68; {text}; "
                                 "fine-tune 100 s")

