import csv
import dataclasses

import pytest
import torch

from qcore.backends import fx_int8
from qcore.backends.auto import ORDER
from qcore.metrics.result import COLUMNS, baseline_of
from qcore.nets.models import ModelInputError
from qcore.present.report import _hover_text, csv_text, html_report
from qcore.quant.spec import FP32, QuantSpec
from qcore.runs.sweep import SweepConfig, prepare, run_sweep

SPECS = [
    FP32,
    QuantSpec("int8"),
    QuantSpec("int8", granularity="per-tensor", calibration="entropy"),
    QuantSpec("int4", mode="weight-only", granularity="per-group", calibration="minmax"),
]


@pytest.fixture
def config(fashion_mnist, resnet18_checkpoint):
    return SweepConfig(model="resnet18", weights=str(resnet18_checkpoint), calib_size=32, eval_limit=64,
                       latency_budget_s=0.2)


def test_a_failing_spec_becomes_an_error_row_and_the_rest_go_on(config, monkeypatch):
    real = fx_int8.FXInt8._static

    def flaky(self, model, spec, *args):
        if spec.calibration == "entropy":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB (injected failure)")
        return real(self, model, spec, *args)

    monkeypatch.setattr(fx_int8.FXInt8, "_static", flaky)
    seen, progress = [], []
    results = run_sweep(config, SPECS, on_result=seen.append, progress=lambda d, t, m: progress.append((d, t)))
    assert [r.status for r in results] == ["ok", "ok", "error", "ok"]
    assert "injected failure" in results[2].error  # the GPU's words, after qcore's: the batch and what to do
    assert results[2].error.startswith(f"out of GPU memory at batch size {config.batch_size} (the GPU")
    assert "the sweep went on with the next spec; choose a smaller batch size" in results[2].error
    assert seen == results  # each result was handed over as soon as it was measured
    assert progress[-1] == (4, 4)
    dones = [d for d, _ in progress]
    assert dones == sorted(dones)  # never back, never a jump over a spec: the ETA counts the phases of a spec
    assert [round(d, 3) for d in dones if 1 <= d < 2] == [1.0, 1.333, 1.667]  # quantize, evaluate, time
    base, int8, _, int4 = results
    assert base.spec == FP32 and base.speedup == 1.0 and base.size_ratio == 1.0
    assert int8.kernel == "native" and int8.backend == "fx" and int8.size_ratio < 0.26
    assert any(n.startswith(f"auto chose fx (qcore's default order for static: {', '.join(ORDER['static'])})")
               for n in int8.notes)  # fmt: skip
    # FP32 eager, channels-last and compiled (AOTInductor, cached) were timed: the fastest is the reference
    assert base.best_fp32 in ("fp32 eager", "fp32 channels-last", "fp32 compiled")
    assert base.speedup_vs_best_fp32 <= 1.0 and (base.speedup_vs_best_fp32 == 1.0) == (base.best_fp32 == "fp32 eager")
    assert "eager p50" in base.notes[0] and "channels-last p50" in base.notes[0] and "compiled p50" in base.notes[0]
    assert int8.speedup_vs_best_fp32 == pytest.approx(int8.speedup * base.speedup_vs_best_fp32)
    assert base.build_seconds > 0 and base.first_build_seconds > 0
    assert any(n.startswith("FP32 compiled with AOTInductor and freezing, ") for n in base.notes)
    assert int8.build_seconds is None  # torch.ao FX compiles nothing
    assert int4.kernel == "simulated" and int4.size_ratio < 0.14
    assert 0 <= int8.agreement <= 100 and int8.top1_delta == pytest.approx(int8.top1 - base.top1)
    assert int8.manifest["calib_size"] == 32 and int8.manifest["eval_size"] == 64
    assert {"torch", "torchvision", "cpu", "threads", "quantized_engine", "seed"} <= set(int8.manifest)
    assert any(r.pareto for r in results)
    rows = list(csv.DictReader(csv_text(results).splitlines()))
    assert list(rows[0]) == list(COLUMNS)
    assert rows[1]["device"] == "cpu" and rows[1]["input_shape"] == "1x3x32x32"
    assert float(rows[0]["build_seconds"]) == pytest.approx(base.build_seconds, abs=1e-5)  # CSV: 6 decimals
    assert rows[1]["build_seconds"] == ""
    assert "build " in _hover_text(base) and "build" not in _hover_text(int8)
    page = html_report(results)
    assert "plotly" in page and "&quot;torch&quot;" in page and "injected failure" in page


def test_cancel_between_specs_leaves_cancelled_rows(config):
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 1  # let the first spec run, then cancel

    results = run_sweep(config, SPECS, cancel=cancel)
    assert [r.status for r in results] == ["ok", "ok", "cancelled", "cancelled"]


def test_skipped_spec_has_a_reason(config):
    results = run_sweep(config, [QuantSpec("int8", backend="pt2e", granularity="per-tensor")])
    assert results[1].status == "skipped" and "per channel only" in results[1].error


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="batch_size=0"):
        SweepConfig(batch_size=0)
    with pytest.raises(ValueError, match=r"image_size=7 is not allowed; allowed: 8\.\.1024 \(pixels .*\) or None"):
        SweepConfig(image_size=7)
    with pytest.raises(ValueError, match=r"seed=36893488147419103232 is not allowed; allowed: 0\.\.2,147,483,647"):
        SweepConfig(seed=2**65)
    with pytest.raises(ValueError, match=r"latency_budget_s=nan is not allowed"):
        SweepConfig(latency_budget_s=float("nan"))
    with pytest.raises(ValueError, match=r"batch_size=1024 at 512x512 pixels .* allowed: at most 268,435,456"):
        SweepConfig(batch_size=1024, input_size=512)


def test_image_size_sets_the_size_data_is_loaded_and_timed_at(config):
    prep = prepare(dataclasses.replace(config, image_size=40))
    assert prep.calib[0].shape[-2:] == prep.eval_batches[0][0].shape[-2:] == (40, 40)
    assert prep.example.shape[-2:] == (40, 40) and prep.manifest["image_size"] == 40
    assert prep.loaded.input_size == 40


def test_a_missing_baseline_is_trained_with_its_progress_shown(fashion_mnist, monkeypatch):
    from qcore.nets import train

    real = train.recipe_for
    monkeypatch.setattr(train, "recipe_for", lambda *a, **k: dataclasses.replace(
        real(*a, **k), train_limit=96, eval_limit=32, max_steps=3, batch_size=32))
    messages = []
    prep = prepare(SweepConfig(model="resnet18", weights="baseline", calib_size=8, eval_limit=16),
                   progress=lambda d, t, m: messages.append(m))
    assert prep.loaded.weights.startswith("baseline:")
    training = [m for m in messages if m.startswith("training the resnet18 baseline, ")]
    assert training[0].startswith("training the resnet18 baseline, 25%: epoch 1/1")  # 1 of 3 steps + 1 eval batch
    assert training[-1].startswith("training the resnet18 baseline, 100%: evaluating on the test split")


def test_a_model_that_cannot_take_the_image_size_is_refused_first(fashion_mnist):
    with pytest.raises(ModelInputError, match=r"inception_v3 cannot take 32x32 inputs .* is (\d+)"):
        prepare(SweepConfig(model="inception_v3"))
    with pytest.raises(ModelInputError, match="inception_v3 cannot take 64x64"):
        prepare(SweepConfig(model="inception_v3", image_size=96, input_size=64))


def test_other_engines_are_timed_in_their_own_block(config, monkeypatch):
    """ONNX Runtime's threads and torch's must not alternate in one loop (they slow each other down)."""
    pytest.importorskip("onnxruntime")
    from qcore.metrics import measure
    from qcore.runs import sweep

    blocks = []

    def recording(fns, **kw):
        blocks.append(sorted(fns))
        return measure.time_interleaved(fns, **kw)

    monkeypatch.setattr(sweep, "time_interleaved", recording)
    base, ort_row, fx_row = run_sweep(config, [QuantSpec("fp32", backend="ort"), QuantSpec("int8")])
    assert blocks == [["fp32 channels-last", "fp32 compiled", "fp32 eager"], ["variant"], ["fp32"], ["fp32", "variant"]]
    assert ort_row.status == "ok" and ort_row.backend == "ort" and any("own block" in n for n in ort_row.notes)
    assert ort_row.speedup == pytest.approx(ort_row.fp32_latency_ms_p50 / ort_row.latency_ms_p50)
    assert fx_row.backend == "fx" and not any("own block" in n for n in fx_row.notes)
    # every row names the torch FP32 row, and newest first (as stored) the ORT FP32 row is not taken for it
    assert {r.baseline_run_id for r in (base, ort_row, fx_row)} == {base.run_id}
    assert baseline_of([fx_row, ort_row, base]) is base


def test_every_row_carries_its_scale(config):
    """The FP32 p50 each row was divided by, calls, spread, the median's interval, the load and the busy flag;
    the images and intervals of top-1 and its change (issue 11, items 2 and 7)."""
    base, q = run_sweep(dataclasses.replace(config, fp32_compiled=False), [QuantSpec("int8", mode="dynamic")])
    for r in (base, q):
        assert r.timed_calls == len(r.latency_samples_ms) >= 7
        assert r.latency_ms_lo <= r.latency_ms_p50 <= r.latency_ms_hi and r.latency_spread >= 1.0
        assert r.eval_images == 64 and r.top1_lo <= r.top1 <= r.top1_hi
        assert isinstance(r.busy, str)
    assert q.speedup == pytest.approx(q.fp32_latency_ms_p50 / q.latency_ms_p50)
    assert q.images_gained - q.images_lost == round(q.top1_delta * 64 / 100)
    assert q.top1_delta_lo <= q.top1_delta <= q.top1_delta_hi
    assert (base.images_lost, base.images_gained, base.top1_delta_lo, base.top1_delta_hi) == (0, 0, 0.0, 0.0)
    row = next(csv.DictReader(csv_text([q]).splitlines()))
    assert row["timed_calls"] == str(q.timed_calls) and row["eval_images"] == "64"
