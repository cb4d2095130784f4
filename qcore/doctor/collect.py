"""The ops each runtime's own profiler records, as :class:`qcore.doctor.events.Op` (name, microseconds, where,
quantized inputs), for :func:`qcore.doctor.events.classify`:

- torch (:func:`torch_ops`): ``torch.profiler`` over ``calls`` calls, each in a ``record_function`` range of its
  own, so the ops each call made directly are that range's children. A second pass of one call, with a range per
  leaf module (forward hooks) and the input dtypes recorded, names each of those ops with its module and says
  whether its inputs were quantized; it is matched to the timed calls op by op (the hooks' cost stays out of the
  timed pass). An AOTInductor package shows its kernels only when it was built with Inductor's
  ``cpp.enable_kernel_profile`` (:mod:`qcore.doctor.speed` builds the pt2e backend's that way).
- ONNX Runtime (:func:`ort_ops`): a session of the same model with ``SessionOptions.enable_profiling``; its JSON
  trace has each node's kernel time (``<node>_kernel_time``, ``args.op_name``) inside each ``model_run``.
- OpenVINO (:func:`openvino_ops`): the model compiled with ``PERF_COUNT``; the infer request's
  ``get_profiling_info()`` after each call gives each executed node's type, kernel (``exec_type``: ``..._I8`` is an
  int8 kernel) and time.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from qcore.doctor.events import LAYOUT, QDQ, Op, category

__all__ = ["CALL", "MODULE", "torch_ops", "ort_trace_ops", "ort_ops", "openvino_ops"]

CALL = "qcore.doctor.call"
MODULE = "qcore.doctor.module:"
_QUANTIZED_DTYPES = ("quint8", "qint8", "qint32", "quint4x2")
_FLOAT_DTYPES = ("float", "double", "c10::Half", "c10::BFloat16")


def _through_modules(ev, where: str = ""):
    """``(op event, module)`` for each op directly under ``ev`` (a call or module range), through module ranges."""
    for c in sorted(ev.cpu_children, key=lambda e: e.time_range.start):
        if c.name.startswith(MODULE):
            yield from _through_modules(c, c.name[len(MODULE):])
        elif c.name != CALL:
            yield c, where


def _quantized(ev) -> bool | None:
    dtypes = [str(d) for d in (getattr(ev, "input_dtypes", None) or [])]
    if any(q in d for d in dtypes for q in _QUANTIZED_DTYPES):
        return True
    if any(d in _FLOAT_DTYPES for d in dtypes):
        return False
    return None


def _split(ev, where: str, quantized: bool | None, call: int) -> list[Op]:
    """``ev``'s inclusive time as one Op, less its layout and quantize/dequantize descendants (Ops of their own)."""
    out, moved, stack = [], 0.0, list(ev.cpu_children)
    while stack:
        d = stack.pop()
        if category(d.name) in (LAYOUT, QDQ):
            out.append(Op(d.name, float(d.cpu_time_total), where, call=call))
            moved += d.cpu_time_total
        else:
            stack.extend(d.cpu_children)
    return [Op(ev.name, max(0.0, float(ev.cpu_time_total) - moved), where, quantized, call), *out]


def _named_pass(fn: Callable[[], object], model) -> list[tuple[str, str, bool | None]] | None:
    """``(op, module, quantized inputs)`` for each op one call makes, in order (None: not a module)."""
    from torch.autograd.profiler import record_function
    from torch.profiler import ProfilerActivity, profile

    if not isinstance(model, nn.Module):
        return None
    open_ranges, hooks = [], []

    def enter(name):
        def hook(module, args):
            r = record_function(MODULE + name)
            r.__enter__()
            open_ranges.append(r)
        return hook

    def leave(module, args, out):
        if open_ranges:
            open_ranges.pop().__exit__(None, None, None)

    for name, m in model.named_modules():
        if name and next(m.children(), None) is None:
            hooks += [m.register_forward_pre_hook(enter(name)), m.register_forward_hook(leave)]
    try:
        with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            with record_function(CALL):
                fn()
    finally:
        for h in hooks:
            h.remove()
    calls = [e for e in prof.events() if e.name == CALL]
    if len(calls) != 1:
        return None
    return [(ev.name, where, _quantized(ev)) for ev, where in _through_modules(calls[0])]


def torch_ops(fn: Callable[[], object], calls: int, model=None) -> tuple[list[Op], list[float], str]:
    """The ops ``calls`` calls of ``fn`` make, under torch.profiler (see the module), each call's duration in
    milliseconds, and a note ("" when every call's ops were named by the module pass)."""
    from torch.autograd.profiler import record_function
    from torch.profiler import ProfilerActivity, profile

    names = _named_pass(fn, model)
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            with record_function(CALL):
                fn()
    ops, unmatched, took = [], 0, []
    ranges = sorted((e for e in prof.events() if e.name == CALL), key=lambda e: e.time_range.start)
    for c, call in enumerate(ranges):
        took.append(float(call.cpu_time_total) / 1000.0)
        top = [ev for ev, _ in _through_modules(call)]
        same = names is not None and [n for n, _, _ in names] == [e.name for e in top]
        unmatched += not same
        for i, ev in enumerate(top):
            ops += _split(ev, names[i][1], names[i][2], c) if same else _split(ev, "", None, c)
    note = ""
    if names is None:
        note = "ops not named by module (the model is not a torch module)"
    elif unmatched:
        note = (f"{unmatched} of {calls} calls made other ops than the naming pass: their ops are not named by "
                "module, and an op on quantized tensors there counts as FP32")
    return ops, took, note


def ort_trace_ops(events: list[dict], calls: int) -> tuple[list[Op], list[float]]:
    """The node kernel times of the last ``calls`` ``model_run`` events of an ONNX Runtime profiling trace (each
    op's ``call``: the run it fell in), and each run's duration in milliseconds."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])[-calls:]
    windows = [(r["ts"], r["ts"] + r["dur"]) for r in runs]
    ops = []
    for e in events:
        name = str(e.get("name", ""))
        if e.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        run = next((i for i, (a, b) in enumerate(windows) if a <= e["ts"] <= b), None)
        if run is not None:
            node = name[: -len("_kernel_time")]
            ops.append(Op(str((e.get("args") or {}).get("op_name") or node), float(e["dur"]), node, call=run))
    return ops, [float(r["dur"]) / 1000.0 for r in runs]


def ort_ops(model_bytes: bytes, x: torch.Tensor, calls: int, threads: int | None = None
            ) -> tuple[list[Op], list[float]]:
    """The node kernel times of ``calls`` runs of ``model_bytes`` on ``x``, from ONNX Runtime's own profiler (a
    session with the ort backend's settings and profiling on), and each run's duration in milliseconds."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="qcore-ort-profile-") as folder:
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(folder) / "ort")
        session = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x.detach().cpu().float().contiguous().numpy()}
        for _ in range(2 + calls):  # two warm-up runs, left out by ort_trace_ops
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    return ort_trace_ops(events, calls)


def openvino_ops(ov_model, config: dict, x: torch.Tensor, calls: int) -> tuple[list[Op], list[float]]:
    """Each executed node's time in each of ``calls`` calls of ``ov_model`` (compiled for ``x``'s shape with
    ``config`` and ``PERF_COUNT``; a node whose kernel is ``..._I8``/``..._U8`` counts as quantized), and each
    call's duration in milliseconds."""
    import openvino as ov

    from qcore.metrics.measure import stopwatch

    model = ov_model.clone()
    model.reshape({model.inputs[0]: list(x.shape)})
    request = ov.Core().compile_model(model, "CPU", {**config, "PERF_COUNT": True}).create_infer_request()
    arr = x.detach().cpu().float().contiguous().numpy()
    for _ in range(2):
        request.infer({0: arr})
    ops, took = [], []
    for c in range(calls):
        with stopwatch() as t:
            request.infer({0: arr})
        took.append(t[0] * 1000.0)
        for info in request.get_profiling_info():
            if info.status != info.Status.EXECUTED:
                continue
            kernel = str(info.exec_type).upper()
            floats = re.search(r"(^|_)(FP32|F32|BF16|F16|FP16)($|_)", kernel)
            quantized = True if re.search(r"(^|_)(I8|U8)($|_)", kernel) else (False if floats else None)
            ops.append(Op(str(info.node_type), info.real_time.total_seconds() * 1e6, str(info.node_name), quantized, c))
    return ops, took
