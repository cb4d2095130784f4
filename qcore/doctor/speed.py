"""Where the time goes: one spec built on its backend and profiled with that runtime's own profiler
(torch.profiler for the torch backends, ONNX Runtime's profiling, OpenVINO's ``PERF_COUNT``), in the categories
of :mod:`qcore.doctor.events` (int8 kernels, ops still in FP32, quantize/dequantize, layout conversions,
overhead), milliseconds per call, and the same for the FP32 model (torch eager: what a row's speed-up is
measured against). The categories sum to the wall time per call, timed apart from the profiled calls with
:func:`qcore.metrics.measure.time_interleaved` (the profiler's own cost stays out of it).

The FP32 model is profiled first, then the quantized one: ONNX Runtime and OpenVINO run thread pools of their own,
which would slow torch if they ran beside it. The pt2e backend is profiled on an AOTInductor package built with
Inductor's ``cpp.enable_kernel_profile`` (a build of its own, cached like the others): the package the sweep times
records none of its kernels, so torch.profiler would see one opaque call. The XNNPACK backend (an ExecuTorch
program) is not broken down (``profiler`` is "" and the note says why). Post-training algorithms (CLE, bias
correction, AdaRound) are left out of the build: they change weights, not kernels; a QAT spec is profiled as the
spec it deploys as (:attr:`~qcore.quant.spec.QuantSpec.ptq_spec`).

:func:`same_machine` refuses a point timed on another machine (its profile would say nothing of its timing);
:func:`measured_here` gathers what each backend measured here for the same point; the causes and their fixes
are :mod:`qcore.doctor.speed_causes`' (re-exported here).
"""

from __future__ import annotations

import math
import socket
import statistics
from dataclasses import dataclass, field

import torch

from qcore.doctor.collect import openvino_ops, ort_ops, torch_ops
from qcore.doctor.events import CATEGORIES, classify
from qcore.doctor.speed_causes import speed_causes
from qcore.env import hardware
from qcore.metrics.measure import time_interleaved
from qcore.quant.spec import QuantSpec
from qcore.quant.spec_ptq import PTQ_DEFAULTS

__all__ = ["CATEGORIES", "SpeedProfile", "profile", "profile_model", "same_machine", "measured_here", "speed_causes"]

TIMING_BUDGET_S = 1.0  # of the wall-time block beside the profiled calls (it runs exactly `calls` rounds)


@dataclass
class SpeedProfile:
    """Where one call's time goes, per category (:data:`CATEGORIES`), for the quantized and the FP32 model."""

    backend: str
    profiler: str  # "torch.profiler", "onnxruntime profiling", "openvino PERF_COUNT", or "" (note says why)
    ms_per_call: dict[str, float] = field(default_factory=dict)
    fp32_ms_per_call: dict[str, float] = field(default_factory=dict)
    float_ops: list[tuple[str, float]] = field(default_factory=list)  # (op, ms per call), largest first
    calls: int = 0
    note: str = ""

    @property
    def total_ms(self) -> float:
        return sum(self.ms_per_call.values())

    @property
    def fp32_total_ms(self) -> float:
        return sum(self.fp32_ms_per_call.values())

    def share(self, *categories: str) -> float:
        """The fraction of the quantized model's time in ``categories`` (0 when nothing was profiled)."""
        total = self.total_ms
        return sum(self.ms_per_call.get(c, 0.0) for c in categories) / total if total > 0 else 0.0

    def to_dict(self) -> dict:
        return {"backend": self.backend, "profiler": self.profiler, "ms_per_call": dict(self.ms_per_call),
                "fp32_ms_per_call": dict(self.fp32_ms_per_call), "float_ops": [list(o) for o in self.float_ops],
                "calls": self.calls, "note": self.note}

    @classmethod
    def from_dict(cls, d: dict) -> SpeedProfile:
        return cls(backend=d["backend"], profiler=d.get("profiler", ""),
                   ms_per_call={k: float(v) for k, v in (d.get("ms_per_call") or {}).items()},
                   fp32_ms_per_call={k: float(v) for k, v in (d.get("fp32_ms_per_call") or {}).items()},
                   float_ops=[(str(n), float(v)) for n, v in d.get("float_ops") or []],
                   calls=int(d.get("calls", 0)), note=d.get("note", ""))


def _walls(fns: dict, calls: int, apart: bool) -> dict[str, float]:
    """p50 ms of each callable over ``calls`` rounds, interleaved (``apart``: each in a block of its own)."""
    def timed(group):
        return time_interleaved(group, min_runs=calls, max_runs=calls, budget_s=TIMING_BUDGET_S)

    lat = {}
    for group in ([{k: v} for k, v in fns.items()] if apart else [fns]):
        lat.update(timed(group))
    return {k: v.p50 for k, v in lat.items()}


def _profiled_pt2e(model, spec: QuantSpec, calib, x: torch.Tensor):
    """The pt2e backend's program for ``x``'s shape, built with Inductor's kernel profiling on (see the module)."""
    from qcore.backends.buildcache import digest
    from qcore.backends.compiled import PerShape, aoti_compiler
    from qcore.backends.pt2e_int8 import build_pt2e

    graph = build_pt2e(model, spec, calib, x)
    runner = PerShape(aoti_compiler(graph.converted, digest(graph.converted) + "-kernel-profile",
                                    options={"cpp.enable_kernel_profile": True}), memory_format=torch.channels_last)
    runner.prepare(x)
    return runner


def _spec_to_profile(spec: QuantSpec) -> tuple[QuantSpec, list[str]]:
    notes = []
    if spec.mode == "qat":
        spec = spec.ptq_spec
        notes.append(f"a QAT spec: profiled as the spec it deploys as ({spec.label()})")
    if spec.asks_ptq:
        spec = spec.replace(**PTQ_DEFAULTS)
        notes.append("post-training algorithms left out of the build (they change weights, not kernels)")
    return spec, notes


def profile(p, spec: QuantSpec, *, calls: int = 20) -> SpeedProfile:
    """Profile ``spec`` built on its backend (as the sweep resolves it) for a prepared sweep ``p``
    (:class:`qcore.runs.sweep.Prepared`) at ``p.example``'s shape, and the FP32 model beside it."""
    return profile_model(p.loaded.model, spec, p.calib, p.example, device=p.device, calls=calls,
                         model_name=p.config.model)


def profile_model(model: torch.nn.Module, spec: QuantSpec, calib, example: torch.Tensor, *, device: str = "cpu",
                  calls: int = 20, model_name: str | None = None) -> SpeedProfile:
    """:func:`profile` for a model, calibration batches and an input (the backend ``spec`` resolves to on
    ``device``; ``model_name`` picks this machine's ``auto`` measurements). Raises ValueError for ``calls`` < 1 and
    :class:`qcore.backends.BackendUnavailable` for a spec no backend runs here."""
    from qcore.backends import resolve

    if not isinstance(calls, int) or calls < 1:
        raise ValueError(f"calls={calls!r} is not allowed; allowed: a whole number of 1 or more")
    if device != "cpu":
        return SpeedProfile(spec.backend, "", calls=calls, note=f"device {device}: only CPU points are profiled "
                            "here (torch.profiler's CUDA activity is not wired)")
    spec, notes = _spec_to_profile(spec)
    backend = resolve(spec, device, model=model_name, batch_size=int(example.shape[0])).backend
    fp32 = model.eval()
    x = example.detach().cpu()
    if backend.name == "pt2e":
        run = _profiled_pt2e(model, spec, calib, x)
        q_model, artifact = None, None
        notes.append("pt2e: timed and profiled on a package built with Inductor's cpp.enable_kernel_profile")
    else:
        q = backend.quantize(model, spec, calib, x, device)
        run, q_model, artifact = q, q.model, q.artifact
    with torch.inference_mode():
        walls = _walls({"fp32": lambda: fp32(x), "variant": lambda: run(x)}, calls, apart=backend.own_threads)
    fp32_ops, fp32_took, fp32_note = torch_ops(lambda: fp32(x), calls, fp32)  # torch first: engines' pools after
    fp32_ms, _, _ = classify(fp32_ops, calls, wall_ms=walls["fp32"], call_ms=fp32_took)
    profiler, ops, took, q_note = "torch.profiler", None, [], ""
    if backend.name == "ort":
        profiler, (ops, took) = "onnxruntime profiling", ort_ops(artifact, x, calls)
        notes.append("FP32 profiled first (torch), then ONNX Runtime in a session of its own: their thread pools "
                     "would slow each other")
    elif backend.name in ("openvino", "pt2e-openvino"):
        inner, config = getattr(q_model, "model", None), getattr(q_model, "config", None)
        if inner is not None and config is not None:
            profiler, (ops, took) = "openvino PERF_COUNT", openvino_ops(inner, config, x, calls)
            notes.append("FP32 profiled first (torch), then OpenVINO: their thread pools would slow each other")
        else:
            profiler, q_note = "", "the OpenVINO model of this build could not be reached for PERF_COUNT"
    elif backend.name == "xnnpack":
        profiler, q_note = "", ("ExecuTorch's own profiler (ETDump) is not wired here: the XNNPACK program's "
                                f"{walls['variant']:.2f} ms per call is not broken down")
    else:
        ops, took, q_note = torch_ops(lambda: run(x), calls, q_model)
    ms, float_ops = {}, []
    if ops is not None:
        ms, float_ops, scale = classify(ops, calls, wall_ms=walls["variant"], call_ms=took)
        notes.append(f"the profiled calls took {statistics.median(took):.3f} ms (median; FP32 "
                     f"{statistics.median(fp32_took):.3f} ms): each category is their median, scaled ({scale:.2f}) "
                     "to sum to the unprofiled p50 (the profiler's own cost and the load change the total)")
    if backend.name == "pt2e":
        q_note = ""  # its kernels are named by Inductor, not by module
    notes += [n for n in (q_note, fp32_note and f"FP32: {fp32_note}") if n]
    notes.append(f"p50 of {calls} unprofiled calls: {walls['variant']:.3f} ms quantized, {walls['fp32']:.3f} ms FP32 "
                 "eager")
    return SpeedProfile(backend.name, profiler, ms, fp32_ms, float_ops, calls, "; ".join(notes))


def same_machine(row) -> str:
    """"" when ``row`` (a Result) was timed on this machine (its host and CPU, or its manifest's CPU for rows
    stored before those fields, match this one's; a row that names neither counts as this machine's), else
    "measured elsewhere: <host / cpu>"."""
    here_host, here_cpu = socket.gethostname(), hardware.detect().cpu
    cpu = row.cpu_model or str((row.manifest or {}).get("cpu") or "")
    if (row.host and row.host != here_host) or (cpu and cpu != here_cpu):
        who = " / ".join(v for v in (row.host, cpu) if v)
        return f"measured elsewhere: {who} (this machine: {here_host} / {here_cpu})"
    return ""


def _input_size(shape: str) -> int | None:
    try:
        return int(str(shape).split("x")[-1])
    except ValueError:
        return None


def measured_here(store, row) -> dict[str, float]:
    """Backend -> the best p50 ms measured on this machine for ``row``'s model, dataset, batch size, input shape,
    precision and kind of spec: stored ok rows timed here (each scaled to ``row``'s FP32 timing, p50 times
    ``row``'s FP32 p50 over its own, so rows timed under other load compare), and ``auto``'s probe of this point
    (:func:`qcore.backends.auto.measured_point`: p50s timed side by side, as they are)."""
    from qcore.backends import auto

    best: dict[str, float] = {}

    def keep(backend: str, ms: float) -> None:
        if ms is not None and math.isfinite(ms) and ms > 0:
            best[backend] = min(best.get(backend, math.inf), float(ms))

    for r in store.results(model=row.model, dataset=row.dataset, status="ok"):
        same = (r.spec.kind, r.spec.precision, r.batch_size, r.input_shape, r.device) == (
            row.spec.kind, row.spec.precision, row.batch_size, row.input_shape, row.device)
        if not same or not r.latency_ms_p50 or same_machine(r):
            continue
        ms = r.latency_ms_p50
        if r.fp32_latency_ms_p50 and row.fp32_latency_ms_p50:
            ms *= row.fp32_latency_ms_p50 / r.fp32_latency_ms_p50
        keep(r.backend, ms)
    size = _input_size(row.input_shape)
    if row.spec.kind in auto.ORDER and row.spec.kind != "float" and size and row.spec.precision == "int8":
        point = auto.measured_point(row.spec.kind, row.model, row.batch_size, size, device=row.device or "cpu") or {}
        for b, ms in (point.get("p50_ms") or {}).items():
            keep(b, ms)
    return best
