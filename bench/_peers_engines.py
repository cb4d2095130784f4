"""The engines of bench/peers.py: how each one is built from the FP32 model and the calibration images.

``build(engine, model, calib, threads)`` returns an :class:`Engine`: the callable timed on a torch
batch, the artifact whose bytes are the size figure, ``prep`` (what is done to a float batch before
the timed call: channels-last, or quantizing it for the ``u8in`` experiment), notes, and the build
records of the engines that go through qcore's build cache (their cached rebuild is timed too).

OpenVINO from torch's PT2E flow: ``ov-pt2e-int8`` is NNCF's PT2E recipe (executorch's
``OpenVINOQuantizer``, ``quantize_pt2e``, then ``openvino.convert_model`` of the exported graph);
the ``ovc`` option compiles qcore's own pt2e graph (X86 quantizer) with ``torch.compile``'s
OpenVINO backend (``openvino.torch``, through AOTAutograd: without it Dynamo fails on the exported
graph's symbolic batch). That backend quietly falls back to Inductor when OpenVINO cannot take the
graph; the engine refuses instead (:func:`ov_compiled`).

PT2E experiments (``qcore-pt2e-int8+OPT[+OPT...]``): the quantized graph of the ``pt2e`` backend
(same quantizer, calibration and convert: ``qcore.backends.pt2e_int8.build_pt2e``), compiled the way
the options say. Without ``aoti`` it is ``torch.compile`` (Inductor, freezing, one graph per input
shape unless ``dyn``), called through ``qcore.backends.compiled.CompiledWithFreezing`` (Dynamo reads
the freezing flag while it traces: on for those calls only, then restored); with ``aoti`` one
AOTInductor package per input shape, built through the build cache. Every other option is passed to
the compile call, never set process-wide.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

# option -> (what it is, Inductor configs it adds)
PT2E_OPTS: dict[str, tuple[str, dict]] = {
    "static": ("one graph per input shape (dynamic=False; the default here)", {}),
    "dyn": ("dynamic shapes, as torch.compile decides (dynamic=None)", {}),
    "cpp": ("Inductor's C++ wrapper: kernels called from generated C++, not Python", {"cpp_wrapper": True}),
    "noguard": ("no Dynamo guards on module attributes (frozen weights never change)", {}),
    "useaoti": ("torch.compile with AOTInductor as its backend (Dynamo still in front)", {"use_aoti": True}),
    "autotune": ("max_autotune (benchmarks kernel choices at compile time)", {"max_autotune": True}),
    "gemmcpp": ("max_autotune with Inductor's C++ GEMM templates for linear layers",
                {"max_autotune": True, "max_autotune_gemm_backends": "CPP,ATEN"}),
    "noprepack": ("no oneDNN weight prepacking at freezing (cpp.weight_prepack off)", {"cpp.weight_prepack": False}),
    "simd256": ("vector length fixed at 256 bits (AVX2) for generated kernels", {"cpp.simdlen": 256}),
    "nofreeze": ("freezing off (weights stay parameters; what freezing buys)", {"freezing": False}),
    "kprof": ("profiling hooks in generated C++ kernels (bench/profile_int8.py)", {"cpp.enable_kernel_profile": True}),
    "cl": ("channels-last (NHWC) input, converted outside the timed call", {}),
    "u8in": ("uint8 NHWC input: the graph's first quantize done outside the timed call (edge fusion)", {}),
    "aoti": ("AOTInductor: a C++ package per input shape, through qcore's build cache", {}),
    "spin": ("OpenMP threads spin while idle (OMP_WAIT_POLICY=ACTIVE, as ORT's do)", {}),
    "keepmem": ("glibc malloc keeps freed memory, through the environment (every child now does so itself)", {}),
    "ovc": ("torch.compile(backend='openvino'): OpenVINO's CPU plugin runs the PT2E graph (openvino.torch)", {}),
}
# Environment a child process needs for an engine (read at start-up, so set by the parent).
ENGINE_ENV = {"spin": {"OMP_WAIT_POLICY": "ACTIVE"},
              "keepmem": {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(4 << 30),
                          "MALLOC_TOP_PAD_": str(256 << 20)}}  # fmt: skip


@dataclass
class Engine:
    fn: Callable[[torch.Tensor], torch.Tensor]
    artifact: object
    prep: Callable[[torch.Tensor], torch.Tensor] = lambda x: x
    notes: list[str] = field(default_factory=list)
    builds: list = field(default_factory=list)  # qcore.backends.buildcache.BuildRecord: this engine is cached


def engine_env(engine: str) -> dict[str, str]:
    env = {}
    for opt in engine.split("+")[1:]:
        env.update(ENGINE_ENV.get(opt, {}))
    return env


def int8_spec(backend: str, calibration: str = "minmax"):
    from qcore.quant.spec import QuantSpec

    return QuantSpec("int8", granularity="per-channel", calibration=calibration, backend=backend)


def _to_cl(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def _take_input_quantize(gm: torch.fx.GraphModule) -> tuple[float, int, int, int, torch.dtype]:
    """Remove the graph's first quantize (input -> uint8): the graph then takes the quantized input."""
    (x,) = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for user in list(x.users):
        if "quantize_per_tensor" in str(user.target) and "dequantize" not in str(user.target):
            _, scale, zp, qmin, qmax, dtype = user.args
            user.replace_all_uses_with(x)
            gm.graph.erase_node(user)
            gm.recompile()
            return float(scale), int(zp), int(qmin), int(qmax), dtype
    raise ValueError("the quantized graph's input is not quantized by a quantize_per_tensor node")


def pt2e_variant(model, calib, opts: set[str]) -> Engine:
    """qcore's PT2E recipe (its quantizer, calibration, convert), compiled the way ``opts`` says."""
    from qcore.backends.buildcache import digest
    from qcore.backends.compiled import CompiledWithFreezing
    from qcore.backends.pt2e_int8 import build_pt2e

    unknown = opts - set(PT2E_OPTS)
    if unknown:
        raise ValueError(f"unknown PT2E option(s) {sorted(unknown)}; allowed: {sorted(PT2E_OPTS)}")
    graph = build_pt2e(model, int8_spec("pt2e"), calib, calib[0][:1])
    converted, artifact = graph.converted, graph.artifact
    prep = _to_cl if opts & {"cl", "u8in"} else (lambda x: x)
    if "u8in" in opts:
        scale, zp, qmin, qmax, dtype = _take_input_quantize(converted)
        prep = lambda x: _to_cl(torch.clamp(torch.round(x / scale) + zp, qmin, qmax).to(dtype))  # noqa: E731
    configs = {"freezing": True}
    for opt in sorted(opts):
        configs.update(PT2E_OPTS[opt][1])
    notes = [f"PT2E, options: {'+'.join(sorted(opts))}; Inductor configs {configs}"]
    if "aoti" in opts:
        from qcore.backends.compiled import PerShape, aoti_compiler

        configs.pop("use_aoti", None)
        configs.pop("cpp_wrapper", None)  # AOTInductor is C++ anyway
        fmt = torch.channels_last if opts & {"cl", "u8in"} else None
        runner = PerShape(aoti_compiler(converted, digest(converted), options=configs), memory_format=fmt)
        return Engine(runner, artifact, prep, notes, runner.records)
    kw = {"dynamic": None if "dyn" in opts else False, "options": configs}
    if "noguard" in opts:
        configs["guard_filter_fn"] = torch.compiler.skip_guard_on_all_nn_modules_unsafe
    return Engine(CompiledWithFreezing(torch.compile(converted, **kw)), artifact, prep, notes)


def ov_compiled(converted: torch.fx.GraphModule, example: torch.Tensor, threads: int):
    """``converted`` compiled by ``torch.compile(backend="openvino")`` at ``example``'s shape (the CPU plugin with
    qcore's OpenVINO settings: ``threads``, latency hint, f32 where not int8). Raises RuntimeError when OpenVINO
    did not take the whole graph (its backend would silently run Inductor's code, or torch's ops, instead)."""
    import openvino.torch  # noqa: F401  (registers the "openvino" backend)
    from openvino.frontend.pytorch.torchdynamo import partition

    from qcore.backends.openvino_backend import _ov_config

    seen = []
    make = partition.Partitioner.make_partitions

    def watched(self, graph_module, options):  # the backend's partition, judged by its own check
        fused = make(self, graph_module, options)
        seen.append(self.check_fully_supported(fused))
        return fused

    options = {"device": "CPU", "config": _ov_config(threads), "aot_autograd": True}
    fn = torch.compile(converted, backend="openvino", dynamic=False, options=options)
    partition.Partitioner.make_partitions = watched
    try:
        with torch.no_grad():
            fn(example)
    finally:
        partition.Partitioner.make_partitions = make
    if seen != [True]:
        raise RuntimeError(f"OpenVINO's torch.compile backend did not take the whole graph (fully supported: {seen})")
    return fn


def ov_pt2e(model, calib, threads: int) -> Engine:
    """NNCF's PT2E flow for OpenVINO: the model exported, quantized by ``nncf.experimental.torch.fx.quantize_pt2e``
    with executorch's ``OpenVINOQuantizer`` (MIXED; NNCF's defaults, fast bias correction included, as ``ov-int8``'s
    ``nncf.quantize``), exported again and converted by ``openvino.convert_model``, run by OpenVINO's CPU plugin
    (qcore's OpenVINO settings, a program per input shape)."""
    import copy

    import nncf
    import openvino as ov
    from executorch.backends.openvino.quantizer.quantizer import OpenVINOQuantizer, QuantizationMode
    from nncf.experimental.torch.fx import quantize_pt2e

    from qcore.backends.openvino_backend import _OvModel

    example = calib[0][:1]
    images = [x[i : i + 1] for x in calib for i in range(x.shape[0])]
    exported = torch.export.export(copy.deepcopy(model).eval(), (example,)).module()
    quantized = quantize_pt2e(exported, OpenVINOQuantizer(mode=QuantizationMode.INT8_MIXED), nncf.Dataset(images),
                              subset_size=len(images))  # fmt: skip
    ov_model = ov.convert_model(torch.export.export(quantized, (example,)))
    notes = ["PT2E: OpenVINOQuantizer through NNCF's quantize_pt2e, torch.export, openvino.convert_model, OpenVINO CPU"]
    return Engine(_OvModel(ov_model, threads), quantized.state_dict(), notes=notes)


def ovc(model, calib, threads: int) -> Engine:
    """qcore's pt2e graph (X86InductorQuantizer) compiled by ``torch.compile(backend="openvino")``."""
    from qcore.backends.pt2e_int8 import build_pt2e

    converted = build_pt2e(model, int8_spec("pt2e"), calib, calib[0][:1]).converted

    class PerShapeOv:  # compiled (and checked) per input shape, as the other engines
        def __init__(self) -> None:
            self.fns: dict = {}

        def __call__(self, x: torch.Tensor) -> torch.Tensor:
            fn = self.fns.get(x.shape)
            if fn is None:
                fn = self.fns[x.shape] = ov_compiled(converted, x, threads)
            return fn(x)

    notes = ["PT2E graph (X86InductorQuantizer), torch.compile(backend='openvino'), one graph per input shape"]
    return Engine(PerShapeOv(), converted.state_dict(), notes=notes)


def build(engine: str, model, calib, threads: int) -> Engine:
    """The :class:`Engine` called ``engine`` (see bench/peers.py --help for the names)."""
    from qcore.backends import get_backend
    from qcore.quant.spec import QuantSpec

    example = calib[0][:1]
    sd = model.state_dict()
    if engine == "torch-fp32-eager":
        return Engine(model, sd)
    if engine == "torch-fp32-channels-last":
        return Engine(model.to(memory_format=torch.channels_last), sd, _to_cl)
    if engine == "torch-fp32-compile":
        from qcore.backends.compiled import CompiledWithFreezing

        compiled = CompiledWithFreezing(torch.compile(model, dynamic=False, options={"freezing": True}))
        return Engine(compiled, sd, notes=["torch.compile, Inductor, freezing, per shape"])
    if engine == "torch-fp32-aoti":
        from qcore.backends.buildcache import digest
        from qcore.backends.compiled import PerShape, aoti_compiler

        runner = PerShape(aoti_compiler(model, digest(model)), memory_format=torch.channels_last)
        return Engine(runner, sd, notes=["qcore's compiled FP32 reference: AOTInductor, freezing"],
                      builds=runner.records)  # fmt: skip
    if engine.startswith("qcore-fx-int8"):
        q = get_backend("fx").quantize(model, int8_spec("fx"), calib, example, "cpu")
        return Engine(q, q.artifact, _to_cl if engine.endswith("channels-last") else (lambda x: x), q.notes)
    if engine == "qcore-pt2e-int8":
        q = get_backend("pt2e").quantize(model, int8_spec("pt2e"), calib, example, "cpu")
        return Engine(q, q.artifact, notes=q.notes, builds=q.builds)
    if engine == "qcore-pt2e-openvino-int8":
        q = get_backend("pt2e-openvino").quantize(model, int8_spec("pt2e-openvino"), calib, example, "cpu")
        return Engine(q, q.artifact, notes=q.notes)
    if engine == "ov-pt2e-int8":
        return ov_pt2e(model, calib, threads)
    if engine == "qcore-pt2e-int8+ovc":
        return ovc(model, calib, threads)
    if engine.startswith("qcore-pt2e-int8+"):
        if "ovc" in engine.split("+"):
            raise ValueError("ovc takes no other option: qcore-pt2e-int8+ovc")
        return pt2e_variant(model, calib, set(engine.split("+")[1:]))
    if engine in ("xnnpack-int8", "xnnpack-fp32"):
        spec = int8_spec("xnnpack") if engine == "xnnpack-int8" else QuantSpec("fp32", backend="xnnpack")
        backend = get_backend("xnnpack")
        reason = backend.problem(spec, "cpu")
        if reason:
            raise RuntimeError(reason)
        q = backend.quantize(model, spec, calib, example, "cpu")
        return Engine(q, q.artifact, notes=q.notes, builds=q.builds)
    if engine.startswith("ort-"):
        from qcore.backends import ort

        spec = QuantSpec("fp32", backend="ort") if engine == "ort-fp32" else int8_spec("ort", engine.split("-")[-1])
        q = ort.OrtBackend().quantize(model, spec, calib, example, "cpu")
        # Alone in its process, ORT may spin its workers (its default and its fastest).
        return Engine(ort.OrtModel(q.artifact, threads, spinning=True), q.artifact, notes=q.notes[:1] + ["spinning on"])
    if engine.startswith("ov-"):
        from qcore.backends import openvino_backend

        spec = QuantSpec("fp32", backend="openvino") if engine == "ov-fp32" else int8_spec("openvino")
        q = openvino_backend.OpenVinoBackend().quantize(model, spec, calib, example, "cpu")
        return Engine(q.model, q.artifact, notes=q.notes)
    raise ValueError(f"unknown engine {engine!r}; see bench/peers.py --help for the engines")


def runner_of(fn):
    """The per-shape runner (qcore.backends.compiled.PerShape) inside an engine's callable, if any."""
    from qcore.backends.compiled import PerShape

    for obj in (fn, getattr(fn, "model", None)):
        if isinstance(obj, PerShape):
            return obj
    return None


def options_help() -> str:
    return "\n".join(f"    {k:10s} {v[0]}" for k, v in PT2E_OPTS.items())


def environ_for(engine: str) -> dict[str, str]:
    """The child's environment: this one plus what ``engine`` needs at start-up."""
    return {**os.environ, **engine_env(engine)}
