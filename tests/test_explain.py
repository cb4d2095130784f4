"""qcore.present.explain: the plain-language sentences under a result, on every kind of row."""

import subprocess
import sys
from pathlib import Path

from qcore.metrics.result import Result
from qcore.present.explain import explain
from qcore.quant.spec import QuantSpec

ROOT = Path(__file__).resolve().parent.parent


def _result(spec: QuantSpec, **kw) -> Result:
    base = dict(kernel="native", top1=90.0, top1_delta=-0.5, agreement=98.0, speedup=2.0, speedup_vs_best_fp32=1.5,
                best_fp32="fp32 channels-last", size_bytes=11_000_000, size_ratio=0.25, latency_ms_p50=5.0,
                fp32_latency_ms_p50=10.0)  # fmt: skip
    base.update(kw)
    return Result(spec, "resnet18", "fashion-mnist", **base)


def test_explain_int4_simulated_is_smaller_but_not_faster():
    spec = QuantSpec("int4", granularity="per-group", calibration="minmax", mode="weight-only")
    text = explain(_result(spec, kernel="simulated", speedup=0.3, size_ratio=0.14))
    assert text.startswith("INT4 here is simulated: the weights are stored in 4 bits but computed in FP32")
    assert "so it is smaller but not faster" in text
    assert "slower than FP32 (0.30x the speed)" in text


def test_explain_int8_static_native_with_accuracy_points_and_best_fp32():
    text = explain(_result(QuantSpec("int8"), engine="x86"))
    assert "real int8 kernels (x86 engine)" in text
    assert "fell by 0.50 points (90.50% to 90.00%)" in text
    assert "2.00x as fast as FP32" in text and "(FP32 channels-last) it is 1.50x" in text
    assert "0.250x the FP32 size (44.0 MB to 11.0 MB" in text


def test_explain_fp16_emulated_and_dynamic_layers():
    fp16 = explain(_result(QuantSpec("fp16"), kernel="simulated", speedup=1.0))
    assert "FP16 here is emulated" in fp16 and "about as fast as FP32" in fp16
    dyn = explain(_result(QuantSpec("int8", mode="dynamic"), quantized_layers=1, total_layers=21, top1_delta=0.0))
    assert "only quantizes Linear layers (here 1 of 21 layers)" in dyn and "unchanged at 90.00%" in dyn


def test_explain_failed_skipped_cancelled_and_baseline_rows():
    spec = QuantSpec("int8")
    assert "failed: RuntimeError: boom" in explain(Result(spec, "m", "d", status="error", error="RuntimeError: boom"))
    assert "was skipped: no ORT" in explain(Result(spec, "m", "d", status="skipped", error="no ORT"))
    assert "Resume the job" in explain(Result(spec, "m", "d", status="cancelled"))
    assert "FP32 reference" in explain(_result(QuantSpec("fp32"), top1_delta=0.0))
    assert explain(Result(spec, "m", "d"))  # no numbers at all: still a sentence, no exception


def test_explain_is_torch_free():
    code = "import sys, qcore.present.explain; assert 'torch' not in sys.modules and 'streamlit' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_explain_fp32_on_another_engine_is_a_variant_not_the_reference():
    text = explain(_result(QuantSpec("fp32", backend="ort"), backend="ort", engine="onnxruntime 1.32.0",
                           top1_delta=0.0, speedup=1.3))
    assert text.startswith("FP32 here runs on onnxruntime 1.32.0: the same FP32 weights")
    assert "FP32 reference" not in text and "1.30x as fast as FP32" in text


def test_explain_shows_a_dash_for_what_was_not_measured():
    text = explain(_result(QuantSpec("int8"), latency_ms_p50=None))
    assert "– ms against 10.00 ms" in text


def test_the_change_is_told_in_images_with_its_interval():
    from qcore.metrics import scale

    r = _result(QuantSpec("int8"), top1=91.85, top1_delta=-0.05)
    scale.set_accuracy_scale(r, {"both": 1835, "lost": 3, "gained": 2, "neither": 160})
    text = explain(r)
    assert "-1 of 2000 images (lost 3, gained 2); the 95% interval of the change is [-0.32, +0.22] points, " \
           "within what chance alone moves it" in text
    scale.set_accuracy_scale(r, {"both": 1700, "lost": 120, "gained": 20, "neither": 160})
    assert "more than chance alone would move it" in explain(r)
