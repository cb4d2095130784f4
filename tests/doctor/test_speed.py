"""Where the time goes (qcore.doctor.events, collect, speed, speed_causes): ops classified by known answers,
categories that sum to the wall time by construction, a real fx INT8 build of a tiny net profiled (int8 kernels,
quantize/dequantize, the layer kept in FP32 named; a dynamic spec's convolutions named), the machine check, what
was measured here, and the speed causes with their scores. Nothing here depends on how fast anything ran."""

from __future__ import annotations

import socket

import pytest
import torch
from torch import nn

from qcore.doctor.collect import ort_trace_ops
from qcore.doctor.events import CATEGORIES, FP32, INT8, LAYOUT, OVERHEAD, QDQ, Op, category, classify
from qcore.doctor.speed import SpeedProfile, measured_here, profile_model, same_machine, speed_causes
from qcore.doctor.speed_causes import BATCH_TO, amdahl
from qcore.env import hardware
from qcore.env.hardware import Hardware
from qcore.metrics.result import Result
from qcore.quant.spec import QuantSpec

STATIC_FX = QuantSpec("int8", backend="fx", device="cpu")


@pytest.mark.parametrize("name, quantized, expected", [
    ("quantized::conv2d", None, INT8), ("quantized::linear_dynamic", None, INT8),
    ("onednn::qconv2d_pointwise", None, INT8), ("aoti_torch_cpu__qconv_pointwise_tensor", None, INT8),
    ("aten::_weight_int8pack_mm", None, INT8), ("QLinearConv", None, INT8), ("MatMulInteger", None, INT8),
    ("DynamicQuantizeMatMul", None, INT8), ("aten::quantized_max_pool2d", None, INT8),
    ("aten::quantize_per_tensor", None, QDQ), ("aten::dequantize", None, QDQ),
    ("aten::quantize_per_channel", None, QDQ),
    ("QuantizeLinear", None, QDQ), ("DequantizeLinear", None, QDQ), ("FakeQuantize", None, QDQ),
    ("aten::contiguous", None, LAYOUT), ("aten::to", None, LAYOUT), ("aten::copy_", None, LAYOUT),
    ("aten::permute", None, LAYOUT), ("aten::to_dense", None, LAYOUT),
    ("aten::mkldnn_reorder_conv2d_weight", None, LAYOUT),
    ("Reorder", None, LAYOUT), ("Transpose", None, LAYOUT),
    ("aten::item", None, OVERHEAD), ("aten::empty", None, OVERHEAD), ("aten::q_scale", None, OVERHEAD),
    ("aten::conv2d", None, FP32), ("aten::linear", False, FP32), ("aten::add", None, FP32),
    ("aten::hardswish", False, FP32), ("aten::hardsigmoid", True, INT8),  # the same op on quint8: an int8 kernel
    ("graph_0_cpp_fused_hardsigmoid_mul_quantize_per_tensor_16", None, FP32),  # float math between dq and q
    ("graph_0_cpp_fused_quantize_per_tensor_0", None, QDQ), ("cpp_fused__to_copy_clone_3", None, LAYOUT),
])
def test_ops_fall_in_their_categories(name, quantized, expected):
    assert category(name, quantized) == expected


def test_classify_known_answer_and_the_wall_time_is_the_sum():
    ops = [Op("quantized::conv2d", 3000), Op("aten::quantize_per_tensor", 500), Op("aten::dequantize", 500),
           Op("aten::contiguous", 200), Op("aten::conv2d", 1000, "conv2"), Op("aten::item", 100)]
    ms, float_ops, scale = classify(ops, 2)  # the ops' sums over 2 calls
    assert ms == pytest.approx({INT8: 1.5, QDQ: 0.5, LAYOUT: 0.1, FP32: 0.5, OVERHEAD: 0.05})
    assert float_ops == [("conv2 (conv2d)", pytest.approx(0.5))] and scale == 1.0
    ms, _, scale = classify(ops, 2, wall_ms=3.0)  # the time no op covers is overhead
    assert ms[OVERHEAD] == pytest.approx(0.05 + 3.0 - 2.65) and sum(ms.values()) == pytest.approx(3.0)
    assert scale == 1.0
    ms, float_ops, scale = classify(ops, 2, wall_ms=1.325)  # ops over the wall: every category halved
    assert scale == pytest.approx(0.5) and sum(ms.values()) == pytest.approx(1.325)
    assert ms[INT8] == pytest.approx(0.75) and float_ops[0][1] == pytest.approx(0.25)


def test_per_call_medians_ignore_a_call_slowed_by_load():
    ops = [Op("quantized::conv2d", 1000, call=0), Op("quantized::conv2d", 1000, call=1),
           Op("quantized::conv2d", 9000, call=2), Op("aten::conv2d", 400, "fc", call=0),
           Op("aten::conv2d", 400, "fc", call=1), Op("aten::conv2d", 400, "fc", call=2)]
    ms, float_ops, scale = classify(ops, 3, call_ms=[1.6, 1.6, 60.0], wall_ms=1.6)
    assert ms == pytest.approx({INT8: 1.0, FP32: 0.4, QDQ: 0.0, LAYOUT: 0.0, OVERHEAD: 0.2})
    assert scale == pytest.approx(1.0) and float_ops == [("fc (conv2d)", pytest.approx(0.4))]
    ms, _, scale = classify(ops, 3, call_ms=[1.6, 1.6, 60.0], wall_ms=0.8)  # scaled to the unprofiled p50
    assert sum(ms.values()) == pytest.approx(0.8) and ms[INT8] / ms[FP32] == pytest.approx(2.5)


@pytest.mark.parametrize("kwargs, message", [
    ({"calls": 0}, "calls=0 is not allowed"),
    ({"calls": 2, "wall_ms": -1.0}, "wall_ms=-1.0 is not allowed"),
    ({"calls": 2, "call_ms": [1.0]}, "call_ms has 1 durations for 2 calls"),
])
def test_classify_refuses_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        classify([Op("aten::add", 1.0)], **kwargs)


def test_classify_refuses_bad_ops():
    with pytest.raises(ValueError, match="has a time of -1"):
        classify([Op("aten::add", -1.0)], 1)
    with pytest.raises(ValueError, match="names call 3; allowed: 0 to 1"):
        classify([Op("aten::add", 1.0, call=3)], 2)


def test_ort_trace_keeps_the_last_runs_kernels():
    def node(name, op, ts, dur):
        return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}

    events = [
        {"cat": "Session", "name": "model_run", "ts": 0, "dur": 100},  # a warm-up run: left out
        node("/conv1/Conv", "QLinearConv", 10, 80),
        {"cat": "Session", "name": "model_run", "ts": 200, "dur": 50},
        node("/conv1/Conv", "QLinearConv", 205, 30), node("/fc/Gemm", "Gemm", 240, 5),
        {"cat": "Node", "name": "/fc/Gemm_fence_before", "ts": 239, "dur": 1},
        {"cat": "Session", "name": "model_run", "ts": 300, "dur": 40},
        node("/conv1/Conv", "QLinearConv", 305, 20),
    ]
    ops, took = ort_trace_ops(events, 2)
    assert took == [0.05, 0.04]
    assert ops == [Op("QLinearConv", 30.0, "/conv1/Conv", call=0), Op("Gemm", 5.0, "/fc/Gemm", call=0),
                   Op("QLinearConv", 20.0, "/conv1/Conv", call=1)]
    ms, float_ops, _ = classify(ops, 2, call_ms=took)
    assert ms[INT8] == pytest.approx(0.025) and float_ops == [("/fc/Gemm (Gemm)", pytest.approx(0.0025))]


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.relu = nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()
        self.conv2, self.pool, self.fc = nn.Conv2d(8, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.conv2(self.relu(self.conv1(x)))), 1))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return TinyNet().eval(), [torch.randn(4, 3, 16, 16)], torch.randn(2, 3, 16, 16)


def test_a_real_fx_int8_profile_names_the_layer_kept_in_fp32(tiny, one_thread):
    model, calib, x = tiny
    prof = profile_model(model, STATIC_FX.replace(keep_float=("conv2",)), calib, x, calls=3)
    assert (prof.backend, prof.profiler, prof.calls) == ("fx", "torch.profiler", 3)
    assert set(prof.ms_per_call) == set(CATEGORIES) == set(prof.fp32_ms_per_call)
    assert prof.ms_per_call[INT8] > 0 and prof.ms_per_call[QDQ] > 0
    assert prof.float_ops and all(name.startswith("conv2 (") for name, _ in prof.float_ops)
    assert prof.fp32_ms_per_call[INT8] == 0 and prof.fp32_ms_per_call[FP32] > 0  # the FP32 model has no int8
    assert SpeedProfile.from_dict(prof.to_dict()) == prof


def test_a_dynamic_spec_on_a_cnn_names_its_convolutions(tiny, one_thread):
    model, calib, x = tiny
    spec = QuantSpec("int8", mode="dynamic", backend="fx", device="cpu")
    prof = profile_model(model, spec, calib, x, calls=3)
    named = {name for name, _ in prof.float_ops}
    assert {"conv1 (conv2d)", "conv2 (conv2d)"} <= named
    row = _row(spec, backend="fx", p50=1.0, quantized_layers=1, total_layers=3)
    causes = speed_causes(row, prof, _hw("avx2"), {})
    float_ops = next(c for c in causes if c.cause == "float-ops")
    assert "1 of 3" in float_ops.evidence and "conv1 (conv2d)" in float_ops.evidence
    assert float_ops.fixes[0].spec.mode == "static" and float_ops.fixes[0].score > 1


def test_calls_must_be_a_positive_whole_number(tiny):
    model, calib, x = tiny
    with pytest.raises(ValueError, match="calls=0 is not allowed"):
        profile_model(model, STATIC_FX, calib, x, calls=0)


def _hw(*flags: str) -> Hardware:
    return Hardware(cpu="test CPU", machine="x86_64", flags=flags, cores=2, threads=2, gpu=None)


def _row(spec=STATIC_FX, *, backend="fx", p50=10.0, fp32=20.0, host=None, cpu=None, batch=1, **more) -> Result:
    r = Result(spec=spec, model="resnet18", dataset="cifar10", backend=backend, batch_size=batch,
               input_shape=f"{batch}x3x32x32", latency_ms_p50=p50, fp32_latency_ms_p50=fp32,
               speedup=fp32 / p50 if p50 else None, host=socket.gethostname() if host is None else host,
               cpu_model=hardware.detect().cpu if cpu is None else cpu)
    for k, v in more.items():
        setattr(r, k, v)
    return r


def test_a_point_from_another_machine_is_refused():
    assert same_machine(_row()) == ""
    assert same_machine(_row(host="", cpu="")) == ""  # a row that names no machine counts as this one's
    elsewhere = same_machine(_row(host="gpu-node-7"))
    assert elsewhere.startswith("measured elsewhere: gpu-node-7")
    assert same_machine(_row(cpu="Some Other CPU")).startswith("measured elsewhere:")
    old = _row(host="", cpu="")
    old.manifest = {"cpu": "Some Other CPU"}  # rows stored before host/cpu_model: the manifest's CPU
    assert "Some Other CPU" in same_machine(old)


def test_measured_here_takes_this_machines_rows_of_the_same_point(tmp_path):
    from qcore.backends import auto
    from qcore.runs.store import Store

    store = Store(tmp_path / "runs.sqlite")
    row = _row(backend="fx", p50=10.0, fp32=20.0)
    for r in (row, _row(backend="pt2e", p50=6.0), _row(backend="ort", p50=10.0, fp32=40.0),  # ort: 10 * 20/40
              _row(backend="pt2e", p50=1.0, host="elsewhere"), _row(backend="pt2e", p50=1.0, batch=8),
              _row(QuantSpec("int8", mode="dynamic", backend="fx", device="cpu"), backend="fx", p50=1.0)):
        store.add_result(r)
    auto.record_measurement("static", "resnet18", 1, 32, {"xnnpack": 4.0, "fx": 12.0}, "test")
    assert measured_here(store, row) == pytest.approx({"fx": 10.0, "pt2e": 6.0, "ort": 5.0, "xnnpack": 4.0})


def test_the_backend_measured_twice_as_fast_is_the_first_fix():
    row = _row(backend="fx", p50=10.0)
    causes = speed_causes(row, None, _hw("avx2", "avx512f", "avx512_vnni"), {"fx": 10.0, "pt2e": 5.0, "ort": 9.5})
    first = causes[0]
    assert first.cause == "slow-backend" and first.numbers["factor"] == pytest.approx(2.0)
    assert first.fixes[0].score == pytest.approx(2.0) and first.fixes[0].spec == STATIC_FX.replace(backend="pt2e")
    assert [f.spec.backend for f in first.fixes] == ["pt2e"]  # ort, 1.05x faster, is within the noise
    assert not [c for c in speed_causes(row, None, _hw("avx2"), {"fx": 10.0, "ort": 9.5}) if c.cause == "slow-backend"]


def test_overhead_at_batch_one_suggests_a_batch_and_a_compiled_path():
    prof = SpeedProfile("fx", "torch.profiler", {INT8: 2.0, FP32: 0.0, QDQ: 1.0, LAYOUT: 0.5, OVERHEAD: 6.5},
                        {}, [], 20, "")
    causes = {c.cause: c for c in speed_causes(_row(p50=10.0), prof, _hw("avx2"), {})}
    batch = causes["batch"].fixes[0]
    fixed, rest = 6.5, 3.5  # ms per call: the fixed overhead and the rest, at batch 1
    assert batch.config == {"batch_size": BATCH_TO}
    assert batch.score == pytest.approx((fixed + rest) / (fixed / BATCH_TO + rest))
    compiled = causes["overhead"].fixes[0]
    assert compiled.spec.backend == "pt2e" and compiled.score == pytest.approx(amdahl(0.75, 1e9))


def test_fp16_without_native_math_on_this_cpu():
    row = _row(QuantSpec("fp16", backend="float", device="cpu"), backend="float", p50=40.0, fp32=20.0)
    causes = speed_causes(row, None, _hw("avx2", "avx512f", "avx512_vnni"), {})
    fast_math = next(c for c in causes if c.cause == "no-fast-math")
    assert "avx512_fp16" in fast_math.evidence
    scores = {f.spec.precision: f.score for f in fast_math.fixes}
    assert scores == pytest.approx({"fp32": 2.0, "int8": 2.4})  # FP32 undoes the 0.5x; INT8: the VNNI range's low end
    native = _hw("avx512f", "avx512_vnni", "avx512_fp16", "amx_fp16")
    slower = next(c for c in speed_causes(row, None, native, {}) if c.cause == "no-fast-math")
    assert "although this CPU has avx512_fp16" in slower.evidence  # flags are not kernels: it measured 0.5x
    faster = _row(QuantSpec("fp16", backend="float", device="cpu"), backend="float", p50=15.0, fp32=20.0)
    assert not speed_causes(faster, None, native, {})


def test_a_static_int8_measured_here_is_the_fix_with_its_measured_factor():
    row = _row(QuantSpec("fp16", backend="float", device="cpu"), backend="float", p50=40.0, fp32=20.0)
    causes = speed_causes(row, None, _hw("avx2", "avx512f", "avx512_vnni"), {}, {"fx": 10.0, "pt2e": 4.0})
    fix = next(c for c in causes if c.cause == "no-fast-math").fixes[0]
    assert (fix.spec.backend, fix.spec.mode, fix.score) == ("pt2e", "static", pytest.approx(40.0 / 4.0))
    unmeasured = next(c for c in speed_causes(row, None, _hw("avx2", "avx512f", "avx512_vnni"), {})
                      if c.cause == "no-fast-math")
    assert {f.spec.backend for f in unmeasured.fixes if f.spec.precision == "int8"} == {"auto"}


@pytest.mark.parametrize("backend, profiler", [("ort", "onnxruntime profiling"), ("openvino", "openvino PERF_COUNT")])
def test_engines_are_profiled_by_their_own_profiler(tiny, one_thread, backend, profiler):
    model, calib, x = tiny
    prof = profile_model(model, STATIC_FX.replace(backend=backend), calib, x, calls=3)
    assert (prof.backend, prof.profiler) == (backend, profiler)
    assert prof.ms_per_call[INT8] > 0 and "FP32 profiled first" in prof.note


def test_pt2e_is_profiled_on_a_package_that_records_its_kernels(tiny, one_thread):
    model, calib, x = tiny
    prof = profile_model(model, STATIC_FX.replace(backend="pt2e"), calib, x, calls=3)
    assert (prof.backend, prof.profiler) == ("pt2e", "torch.profiler") and "enable_kernel_profile" in prof.note
    assert prof.ms_per_call[INT8] > 0  # oneDNN's qconv calls, invisible in the package a sweep times


def test_ops_left_in_fp32_name_their_fixes():
    spec = STATIC_FX.replace(keep_float=("conv2",))
    prof = SpeedProfile("fx", "torch.profiler", {INT8: 5.0, FP32: 4.0, QDQ: 0.5, LAYOUT: 0.0, OVERHEAD: 0.5}, {},
                        [("conv2 (conv2d)", 2.0), ("features.3 (hardswish)", 1.5), ("fc (linear)", 0.5)], 20, "")
    cause = next(c for c in speed_causes(_row(spec), prof, _hw("avx2"), {}) if c.cause == "float-ops")
    gain = (1.7 + 2.1) / 2  # the middle of AVX2's published range
    assert "40% of the time" in cause.evidence and "features.3 (hardswish) 1.50 ms" in cause.evidence
    by_what = {f.what.split(":")[0].split(" (")[0]: f for f in cause.fixes}
    unkeep = by_what["quantize conv2 too"]
    assert unkeep.spec.keep_float == () and unkeep.score == pytest.approx(1 / (0.8 + 0.2 / gain))
    no_kernel = by_what["this layer type has no int8 kernel on fx"]
    assert no_kernel.spec is None and no_kernel.score == pytest.approx(1 / (0.8 + 0.2 / gain))
    assert "features.3 (hardswish)" in no_kernel.what and "conv2" not in no_kernel.what
    assert not [c for c in speed_causes(_row(QuantSpec("fp16", backend="float", device="cpu"), backend="float"),
                                        prof, _hw("avx512_fp16"), {}) if c.cause == "float-ops"]  # a cast: none
