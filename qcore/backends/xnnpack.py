"""ExecuTorch's XNNPACK backend: the runtime a phone or an embedded board would run (optional).

Static INT8: torchao's PT2E flow with ExecuTorch's ``XNNPACKQuantizer``: weights int8 symmetric
per output channel (or per tensor), range -127..127; activations int8 per tensor, asymmetric
(a zero point) or symmetric as the spec says, calibrated with the spec's method on the same
images as every other backend. No ``reduce_range``: XNNPACK's int8 kernels do not saturate on
AVX2 the way fbgemm's do. FP32: the model as it is.

The quantized (or FP32) graph is lowered with ``to_edge_transform_and_lower`` and the
``XnnpackPartitioner``, which hands every subgraph XNNPACK supports to its delegate, then
serialized by ``to_executorch`` into a ``.pte`` program: the bytes a device would load, so their
length is the size figure. Ops the partitioner leaves out run on ExecuTorch's portable kernels
(plain C++ loops); the Result's notes name them, and ``kernel`` is ``native`` only when every
convolution and linear layer is delegated.

A program is specialised to its input shape (the latency shape, and the evaluation batch,
:mod:`.compiled`) and cached on disk
(:mod:`qcore.backends.buildcache`): lowering a torchvision model takes tens of seconds. It runs through
``executorch.runtime`` in this process. XNNPACK has its own thread pool (pthreadpool), set to
``torch.get_num_threads()`` threads like every other engine; a sweep times it in a block of its
own, never alternated with torch.
"""

from __future__ import annotations

import copy
import importlib.util
import warnings
from pathlib import Path

import torch

from qcore.backends.base import Backend, Quantized, count_layers, register_backend
from qcore.backends.buildcache import BuildCache, digest, input_signature
from qcore.backends.compiled import RECIPE, PerShape, export_for
from qcore.metrics.measure import stopwatch

__all__ = ["set_threads", "delegation", "xnnpack_compiler", "XnnpackBackend"]

# Nodes of a lowered graph that are bookkeeping, not computation (reading a delegate's outputs).
_STRUCTURAL = {"getitem", "output", "placeholder", "executorch_call_delegate"}
_LAYER_OPS = ("convolution", "linear", "addmm", "_mm")


def _missing() -> str | None:
    if importlib.util.find_spec("executorch") is None:
        return "executorch is not installed (pip install -r requirements-xnnpack.txt)"
    return None


def set_threads(n: int | None = None) -> int:
    """XNNPACK's thread pool to ``n`` threads (default: torch's); returns the count it now has."""
    from executorch.extension.pybindings.portable_lib import _threadpool_get_thread_count, _unsafe_reset_threadpool

    n = n or torch.get_num_threads()
    if _threadpool_get_thread_count() != n:
        _unsafe_reset_threadpool(n)  # "unsafe" while a program runs; none does between calls
    return _threadpool_get_thread_count()


def _quantizer(spec):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    from qcore.backends._observer_pt2e import CalibrationObserverPT2E

    base = get_symmetric_quantization_config(is_per_channel=spec.granularity == "per-channel")
    act = base.input_activation
    ctor = CalibrationObserverPT2E.with_args(
        method=spec.calibration,
        percentile=spec.percentile,
        dtype=torch.int8,
        qscheme=torch.per_tensor_symmetric if spec.symmetric else torch.per_tensor_affine,
        quant_min=act.quant_min,
        quant_max=act.quant_max,
    )
    act = type(act)(**{**act.__dict__, "observer_or_fake_quant_ctr": ctor})
    return XNNPACKQuantizer().set_global(type(base)(act, act, base.weight, base.bias, base.is_qat))


def delegation(graph_module) -> dict:
    """What the partitioner delegated: ``{"subgraphs", "delegated", "portable": {op: count}}``."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(graph_module)
    portable = {
        op: b.non_delegated
        for op, b in sorted(info.delegation_by_operator.items())
        if b.non_delegated and op not in _STRUCTURAL
    }
    return {"subgraphs": info.num_delegated_subgraphs, "delegated": info.num_delegated_nodes, "portable": portable}


def xnnpack_compiler(graph: torch.nn.Module, what: str, cache: BuildCache | None = None):
    """A ``compile`` for :class:`~.compiled.PerShape` that lowers ``graph`` to XNNPACK programs."""
    cache = cache or BuildCache()

    def compile(x: torch.Tensor):
        def build(path: Path) -> dict:
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
            from executorch.exir import to_edge_transform_and_lower

            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ep = export_for(graph, x)
                edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])
                info = delegation(edge.exported_program().graph_module)
                path.write_bytes(edge.to_executorch().buffer)
            return {"unit": "program", "shape": list(x.shape), **info}

        parts = {"what": what, "input": input_signature(x), "partitioner": "XnnpackPartitioner()", "recipe": RECIPE}
        return cache.get_or_build("xnnpack", parts, build, _load, suffix=".pte")

    return compile


class _Program:
    """A loaded ``.pte``: float32 NCHW batch in, logits out."""

    def __init__(self, blob: bytes) -> None:
        from executorch.runtime import Runtime

        self.blob = blob
        self.program = Runtime.get().load_program(blob)  # holds the bytes' memory: keep both alive
        self.method = self.program.load_method("forward")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.method.execute([x])[0]


def _load(path: Path) -> _Program:
    return _Program(Path(path).read_bytes())


class XnnpackBackend(Backend):
    name = "xnnpack"
    kinds = ("float", "static")
    own_threads = True

    def unsupported(self, spec, device):
        if device != "cpu":
            return "ExecuTorch's XNNPACK backend runs on the CPU"
        if spec.is_float and spec.precision != "fp32":
            return f"the xnnpack backend runs FP32 and static INT8 here, not {spec.precision}"
        if not spec.is_float and (spec.precision != "int8" or spec.mode != "static"):
            return (
                f"the xnnpack backend runs static INT8 (and FP32), not {spec.precision} {spec.mode}; "
                "allowed: precision int8 with mode static"
            )
        return _missing()

    def quantize(self, model, spec, calib, example, device):
        from qcore.backends.pt2e_int8 import (  # the same PT2E recipe, XNNPACK's quantizer
            _graph_constants,
            quantized_graph,
        )

        model = copy.deepcopy(model).eval().cpu()
        total = count_layers(model)
        threads = set_threads()
        t_prep = t_cal = 0.0
        if spec.is_float:
            graph, nq = model, 0
        else:
            graph, t_prep, t_cal = quantized_graph(model, _quantizer(spec), calib, example)
            nq = sum(1 for t in _graph_constants(graph).values() if t.dtype == torch.int8 and t.dim() > 1)
        with stopwatch() as t_key:
            what = digest(graph)
        runner = PerShape(xnnpack_compiler(graph, what))
        runner.prepare(example)  # build (or load) the latency shape's program now
        record = runner.records[0]
        portable = record.meta.get("portable", {})
        layers_left = sorted(op for op in portable if any(k in op for k in _LAYER_OPS))
        notes = [
            ("ExecuTorch XNNPACK: XNNPACKQuantizer (int8 weights symmetric "
             f"{'per channel' if spec.granularity == 'per-channel' else 'per tensor'}, int8 activations), "
             if not spec.is_float else "ExecuTorch XNNPACK FP32: ")
            + f"to_edge_transform_and_lower with XnnpackPartitioner, a .pte program per input shape; "
            f"XNNPACK thread pool {threads} threads"
        ]  # fmt: skip
        if portable:
            ops = ", ".join(f"{op} x{n}" for op, n in portable.items())
            notes.append(f"not delegated to XNNPACK, run by ExecuTorch's portable kernels: {ops}")
        else:
            notes.append(f"every op delegated to XNNPACK ({record.meta.get('subgraphs', '?')} delegated subgraphs)")
        if layers_left and not spec.is_float:
            notes.append(f"kernel 'simulated': {', '.join(layers_left)} not delegated, so not int8 XNNPACK kernels")
        return Quantized(
            model=runner,
            backend=self.name,
            kernel="simulated" if layers_left and not spec.is_float else "native",
            device="cpu",
            artifact=Path(record.path).read_bytes(),
            quantized_layers=nq,
            total_layers=total,
            calib_seconds=t_cal,
            quantize_seconds=t_prep + t_key[0],
            engine=f"xnnpack (executorch, {threads} threads)",
            notes=notes,
            builds=runner.records,
        )


register_backend(XnnpackBackend())
