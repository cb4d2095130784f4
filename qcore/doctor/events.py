"""Profiler events in categories: what each op a profiler recorded is (an int8 kernel, an op still in FP32,
quantize/dequantize, a layout conversion, framework bookkeeping), and the time of each category per call.

Classified by name (:func:`category`), and by the dtype of the op's inputs where the profiler records it (an op
on a quantized tensor, ``aten::hardsigmoid`` on quint8 say, or an OpenVINO node whose kernel is ``..._I8``, is an
int8 kernel; the same op on float tensors is an FP32 op):

- int8 kernels: ``quantized::*`` (fbgemm, oneDNN), oneDNN's ``qconv``/``qlinear`` (also as AOTInductor's
  ``aoti_torch_cpu__qconv_pointwise_tensor``), ``_int_mm``, ``*int8pack*``/``*int4pack*`` (weight-only), ONNX
  Runtime's ``QLinear*``, ``QGemm``, ``*Integer*``;
- quantize/dequantize: any name holding ``quantize`` (``aten::quantize_per_tensor``, ``aten::dequantize``,
  ``QuantizeLinear``, OpenVINO's ``FakeQuantize``) or ``fake_quant``;
- layout: ``aten::contiguous``, ``to``, ``_to_copy``, ``copy_``, ``permute``, ``clone``, ``to_dense``, views and
  reshapes, anything named ``reorder`` (oneDNN, OpenVINO, ONNX Runtime's NCHWc reorders), ``Transpose``, ``Cast``;
- overhead: bookkeeping ops (``aten::item``, ``empty``, ``q_scale`` ...) and the wall time per call no op covers;
- fp32 ops: every other op (convolutions, linear layers, activations on float tensors, Inductor's fused float
  kernels), named with the module or graph node it ran in.

Times are each op's own (a top-level op's inclusive time, less its layout and quantize/dequantize descendants,
which count in their own categories), so nothing is counted twice. :func:`classify` makes the categories sum to
the measured wall time per call: the time no op covers is overhead, and where the profiled ops sum to more than
the wall time (the profiler's own cost inflates them), every category is scaled down by the same factor.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["INT8", "FP32", "QDQ", "LAYOUT", "OVERHEAD", "CATEGORIES", "Op", "category", "classify", "label"]

INT8, FP32, QDQ, LAYOUT, OVERHEAD = "int8 kernels", "fp32 ops", "quantize/dequantize", "layout", "overhead"
CATEGORIES = (INT8, FP32, QDQ, LAYOUT, OVERHEAD)

_INT8_MARKS = ("qconv", "qlinear", "qgemm", "qattention", "_int_mm", "int8pack", "int4pack", "integer",
               "quantizematmul", "qmatmul")
_LAYOUT = {"contiguous", "to", "_to_copy", "copy_", "copy", "permute", "clone", "to_dense", "_to_dense", "to_mkldnn",
           "transpose", "t", "reshape", "view", "_reshape_alias", "_unsafe_view", "flatten", "unflatten", "as_strided",
           "expand", "squeeze", "unsqueeze", "cast", "convert", "identity", "memcpyfromhost", "memcpytohost",
           "channel_shuffle", "native_channel_shuffle"}
_BOOKKEEPING = {"item", "_local_scalar_dense", "empty", "empty_like", "empty_strided", "_empty_affine_quantized",
                "_empty_per_channel_affine_quantized", "q_scale", "q_zero_point", "qscheme", "q_per_channel_scales",
                "q_per_channel_zero_points", "q_per_channel_axis", "resize_", "detach", "detach_", "alias",
                "lift_fresh", "set_", "size", "stride", "dim", "numel", "parameter", "result", "constant"}
# words of Inductor's fused-kernel names (cpp_fused_<ops>_<n>) that are quantize/dequantize or data movement
_FUSED_QDQ = ("dequantize_per_tensor", "dequantize_per_channel", "quantize_per_tensor", "quantize_per_channel")
_FUSED_MOVE = ("_to_copy", "to_copy", "as_strided", "convert_element_type", "clone", "permute", "view", "copy",
               "reshape", "transpose", "cat", "constant_pad_nd")


@dataclass(frozen=True)
class Op:
    """One op a profiler recorded: its name (``aten::conv2d``, ``QLinearConv``), its own time in microseconds
    (summed over the profiled calls), where it ran (a module or graph node name, "" unknown) and whether its
    inputs were quantized (None: not recorded)."""

    name: str
    us: float
    where: str = ""
    quantized: bool | None = None
    call: int | None = None  # which profiled call (0, 1, ...) recorded it; None: the time is a sum over the calls


def _fused(name: str) -> str:
    """The category of an Inductor fused kernel, from the ops its name lists."""
    body = re.sub(r"_\d+$", "", name.split("cpp_fused_", 1)[-1])
    has_qdq = any(w in body for w in _FUSED_QDQ)
    for w in _FUSED_QDQ + _FUSED_MOVE:
        body = body.replace(w, " ")
    compute = [w for w in re.split(r"[_\s]+", body) if w and not w.isdigit()]
    if compute:
        return FP32
    return QDQ if has_qdq else LAYOUT


def category(name: str, quantized: bool | None = None) -> str:
    """The category (:data:`CATEGORIES`) of an op named ``name``; ``quantized``: its inputs were quantized
    tensors (True), float ones (False), or not recorded (None)."""
    n = name.lower()
    base = n.rsplit("::", 1)[-1]
    if "cpp_fused" in n:
        return _fused(n)
    if n.startswith(("quantized::", "_quantized::")) or base.startswith(("qlinear", "quantized_", "_quantized")) or any(
            k in n for k in _INT8_MARKS):
        return INT8
    if "quantize" in n or "fake_quant" in n:
        return QDQ
    if base in _LAYOUT or "reorder" in n:
        return LAYOUT
    if base in _BOOKKEEPING:
        return OVERHEAD
    return INT8 if quantized else FP32


def label(op: Op) -> str:
    """How an FP32 op is named: the module or node it ran in, then the op (``features.0.0 (conv2d)``)."""
    short = op.name.rsplit("::", 1)[-1]
    return f"{op.where} ({short})" if op.where and op.where != op.name else op.name


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def classify(ops: Iterable[Op], calls: int, *, wall_ms: float | None = None,
             call_ms: Sequence[float] | None = None) -> tuple[dict[str, float], list[tuple[str, float]], float]:
    """``(ms_per_call, float_ops, scale)`` for ``ops`` recorded over ``calls`` calls.

    Ops that say which call recorded them (``Op.call``, every one) give each category's median over the calls (a
    call slowed by the load of the moment does not move it); otherwise each category is the ops' sum over ``calls``
    divided by ``calls``. ``call_ms``: each
    profiled call's duration (in order); the part of a call no op covers is overhead. ``wall_ms``: the wall time per
    call timed without the profiler; every category is scaled by the same factor so that they sum to it (the
    profiler's own cost and the load change the total, not the shares). Without ``call_ms``, the part of
    ``wall_ms`` the ops leave is overhead, and ops summing to more than ``wall_ms`` are scaled down. Returns each
    category's milliseconds per call, the FP32 ops named (:func:`label`) with their milliseconds per call (largest
    first), and the scale applied (1.0: none)."""
    if not isinstance(calls, int) or calls < 1:
        raise ValueError(f"calls={calls!r} is not allowed; allowed: a whole number of 1 or more")
    if wall_ms is not None and not (wall_ms >= 0 and wall_ms != float("inf")):
        raise ValueError(f"wall_ms={wall_ms!r} is not allowed; allowed: a time of 0 ms or more, or None")
    if call_ms is not None and (len(call_ms) != calls or not all(v >= 0 for v in call_ms)):
        raise ValueError(f"call_ms has {len(call_ms)} durations for {calls} calls; allowed: one time of 0 ms or "
                         "more per call")
    ops = list(ops)
    pooled = any(op.call is None for op in ops)  # then every time is a share of the sum over the calls
    per_call = [dict.fromkeys(CATEGORIES, 0.0) for _ in range(1 if pooled else calls)]
    named: list[dict[str, float]] = [{} for _ in per_call]
    for op in ops:
        if not op.us >= 0:
            raise ValueError(f"op {op.name!r} has a time of {op.us!r} us; allowed: 0 or more")
        if op.call is not None and not 0 <= op.call < calls:
            raise ValueError(f"op {op.name!r} names call {op.call}; allowed: 0 to {calls - 1}")
        c = 0 if pooled else op.call
        cat = category(op.name, op.quantized)
        t = op.us / 1000.0 / (calls if pooled else 1)
        per_call[c][cat] += t
        if cat == FP32:
            named[c][label(op)] = named[c].get(label(op), 0.0) + t
    if call_ms is not None:
        durations = [statistics.fmean(call_ms)] if pooled else list(call_ms)
        for d, took in zip(per_call, durations):
            d[OVERHEAD] += max(0.0, took - sum(d.values()))
    ms = {k: _median([d[k] for d in per_call]) for k in CATEGORIES}
    labels = set().union(*named)
    fp32_named = {k: _median([d.get(k, 0.0) for d in named]) for k in labels}
    total = sum(ms.values())
    scale = 1.0
    if wall_ms is not None:
        if call_ms is None and wall_ms >= total:
            ms[OVERHEAD] += wall_ms - total
        elif total > 0:
            scale = wall_ms / total
            ms = {k: v * scale for k, v in ms.items()}
    float_ops = sorted(((k, v * scale) for k, v in fp32_named.items() if v > 0), key=lambda kv: (-kv[1], kv[0]))
    return ms, float_ops, scale
