"""NVIDIA TensorRT as a qcore backend: FP32/FP16/BF16 engines, and static INT8 through NVIDIA ModelOpt.

:mod:`.tensorrt_recipe` says what a spec becomes (refusals, ModelOpt's config, the engine's cache key); this module
runs it. The float cast or ModelOpt's calibrated fake quantizers are exported (``torch.export``, inside ModelOpt's
``export_torch_mode`` for a quantized model) and Torch-TensorRT serializes one engine per input shape
(``convert_exported_program_to_serialized_trt_engine``), built through :class:`~qcore.backends.buildcache.BuildCache`
(kind ``trt``, keyed by the GPU, its driver and the TensorRT version among the rest, so an engine built on another
GPU is never loaded: its key differs, and its metadata is checked again before it is deserialized). An engine runs
through TensorRT's own runtime (``execute_async_v3`` on torch's current stream). The artifact is the engine of the
latency shape: what would be deployed.

Nothing here imports TensorRT, Torch-TensorRT or ModelOpt until a spec is quantized; ``unsupported`` reads only
package metadata, so a machine without them (or without a GPU) lists the backend as unavailable with the reason.
Calibration (:func:`calibrate`) runs wherever ModelOpt is installed, CPU included (fake quantization in torch).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata
import importlib.util
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from qcore.backends.base import Backend, Quantized, count_layers, register_backend
from qcore.backends.buildcache import BuildCache, digest, input_signature
from qcore.backends.compiled import PerShape
from qcore.backends.tensorrt_recipe import (
    describe,
    engine_parts,
    float_dtype,
    foreign_engine,
    histogram_args,
    modelopt_config,
    spec_problem,
    version_problem,
    wanted_tensorrt,
)
from qcore.env.gpu import GpuInfo, detect_gpu
from qcore.metrics.measure import stopwatch

__all__ = ["installed", "calibrate", "quantized_layers", "TensorRtBackend"]

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# import name -> the distributions that may provide it (TensorRT ships per CUDA major)
_DISTS = {"torch_tensorrt": ("torch-tensorrt", "torch_tensorrt"),
          "tensorrt": ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu13-bindings",
                       "tensorrt-cu12-bindings"),
          "modelopt": ("nvidia-modelopt", "nvidia_modelopt")}


def installed() -> dict[str, str | None]:
    """The versions of Torch-TensorRT, TensorRT and ModelOpt installed here (None: absent), from package metadata
    only: nothing is imported."""
    out: dict[str, str | None] = {}
    for module, dists in _DISTS.items():
        out[module] = None
        if importlib.util.find_spec(module) is None:
            continue
        for dist in dists:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                out[module] = importlib.metadata.version(dist)
                break
        out[module] = out[module] or "unknown"
    return out


def _wanted() -> str | None:
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return wanted_tensorrt(importlib.metadata.requires("torch-tensorrt") or [])
    return None


def calibrate(model: torch.nn.Module, spec, calib: Iterable[torch.Tensor], device: str) -> torch.nn.Module:
    """ModelOpt's fake quantizers inserted into ``model`` (in place) as :func:`.tensorrt_recipe.modelopt_config`
    says, and calibrated on ``calib``: ModelOpt's max pass for min-max; for entropy, percentile and mse, its
    histogram calibrators fed the same images and asked for the spec's method (weights: max, per channel)."""
    import modelopt.torch.quantization as mtq

    batches = [x.to(device) for x in calib]

    def loop(m):
        with torch.no_grad():
            for x in batches:
                m(x)

    hist = histogram_args(spec)
    if hist is None:
        mtq.quantize(model, modelopt_config(spec), forward_loop=loop)
        return model
    from modelopt.torch.quantization import model_calib
    from modelopt.torch.quantization.calib import HistogramCalibrator
    from modelopt.torch.quantization.nn import TensorQuantizer

    mtq.quantize(model, modelopt_config(spec))  # algorithm None: quantizers in place, ranges not yet taken
    model_calib.enable_stats_collection(model)
    loop(model)
    method, kwargs = hist
    for q in model.modules():
        if not isinstance(q, TensorQuantizer) or q._disabled or getattr(q, "_calibrator", None) is None:
            continue
        if isinstance(q._calibrator, HistogramCalibrator):
            q.load_calib_amax(method, **kwargs)
        else:
            q.load_calib_amax()
        q.enable_quant()
        q.disable_calib()
    return model


def quantized_layers(model: torch.nn.Module) -> int:
    """Layers whose weight quantizer ModelOpt left on: the layers TensorRT will run in INT8."""
    return sum(1 for m in model.modules()
               if getattr(getattr(m, "weight_quantizer", None), "_disabled", True) is False)  # fmt: skip


class _Engine:
    """One deserialized TensorRT engine: a float tensor in (cast to the engine's input type), float32 logits out."""

    def __init__(self, blob: bytes) -> None:
        import tensorrt as trt

        self.blob = blob
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(blob)
        if self.engine is None:
            raise RuntimeError("TensorRT could not deserialize the cached engine (another TensorRT or GPU made it)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        types = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16, trt.DataType.BF16: torch.bfloat16}
        self.in_dtype = types[self.engine.get_tensor_dtype(self.inputs[0])]
        self.out_dtype = types[self.engine.get_tensor_dtype(self.outputs[0])]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to("cuda", self.in_dtype).contiguous()
        ctx = self.context
        ctx.set_input_shape(self.inputs[0], tuple(x.shape))
        ctx.set_tensor_address(self.inputs[0], x.data_ptr())
        out = torch.empty(tuple(ctx.get_tensor_shape(self.outputs[0])), dtype=self.out_dtype, device="cuda")
        ctx.set_tensor_address(self.outputs[0], out.data_ptr())
        if not ctx.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise RuntimeError("TensorRT failed to run the engine")
        return out.float()


def _load_engine(path: Path, gpu: GpuInfo, make: Callable[[bytes], object] = _Engine):
    """A cached engine, after its metadata says it was built on this GPU and driver; else RuntimeError, and
    :class:`~qcore.backends.buildcache.BuildCache` deletes the entry and builds this GPU's."""
    meta = json.loads(path.with_suffix(".json").read_text()).get("extra", {})
    if why := foreign_engine(meta, gpu):
        raise RuntimeError(why)
    return make(path.read_bytes())


def _compiler(module: torch.nn.Module, spec, gpu: GpuInfo, dtype: torch.dtype, versions: dict, cache: BuildCache
              ) -> Callable[[torch.Tensor], tuple]:  # fmt: skip
    """A ``compile`` for :class:`~qcore.backends.compiled.PerShape`: the engine for one input shape, built or loaded
    (``versions``: :func:`installed`, part of its key)."""
    what = digest(module)

    def compile(x: torch.Tensor):
        x = x.to("cuda", dtype).contiguous()

        def build(path: Path) -> dict:
            import torch_tensorrt

            context = contextlib.nullcontext()
            if not spec.is_float:
                from modelopt.torch.quantization.utils import export_torch_mode

                context = export_torch_mode()
            with torch.no_grad(), context:
                program = torch.export.export(module, (x,), strict=False)
                blob = torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine(
                    program, inputs=[x], min_block_size=1)
            path.write_bytes(bytes(blob))
            return {"unit": "engine", "shape": list(x.shape), "gpu": describe(gpu), "versions": versions}

        parts = engine_parts(what, spec, gpu, versions, input_signature(x))
        return cache.get_or_build("trt", parts, build, lambda p: _load_engine(p, gpu), suffix=".engine")

    return compile


class TensorRtBackend(Backend):
    name = "tensorrt"
    kinds = ("float", "static")

    def unsupported(self, spec, device):
        why = spec_problem(spec, device, detect_gpu() if device == "cuda" else None)
        return why or version_problem(installed(), _wanted(), quantizes=not spec.is_float)

    def quantize(self, model, spec, calib, example, device):
        gpu = detect_gpu()
        versions = installed()
        m = copy.deepcopy(model).eval().to("cuda")
        notes = [f"TensorRT {versions['tensorrt']} engine built by torch-tensorrt {versions['torch_tensorrt']} "
                 f"on {gpu.name}; one engine per input shape"]
        calib_s, nq = 0.0, 0
        if not spec.is_float:
            with stopwatch() as t:
                calibrate(m, spec, calib, "cuda")
            calib_s, nq = t[0], quantized_layers(m)
            notes.append(f"ModelOpt {versions['modelopt']} calibrated {nq} layer(s): weights int8 "
                         f"{spec.granularity}, activations int8 per tensor, {spec.calibration} "
                         "(explicit quantize/dequantize pairs in the engine)")
        kind = float_dtype(spec, gpu)
        if kind == "fp32":
            notes.append("FP32 layers use TF32 tensor cores where the GPU has them (TensorRT's default)")
        elif not spec.is_float:
            notes.append("layers not quantized run in FP16 (TensorRT's --int8 --fp16)")
        dtype = DTYPES[kind]
        m = m.to(dtype)
        with stopwatch() as t_build:
            runner = PerShape(_compiler(m, spec, gpu, dtype, versions, BuildCache()))
            runner.prepare(example.to("cuda", dtype))
        engine = next(iter(runner.programs.values()))
        return Quantized(
            model=runner,
            backend=self.name,
            kernel="native",
            device="cuda",
            artifact=engine.blob,
            quantized_layers=nq,
            total_layers=count_layers(model),
            input_dtype=dtype,
            calib_seconds=calib_s,
            quantize_seconds=t_build[0],
            engine=f"tensorrt {versions['tensorrt']}",
            notes=notes,
            builds=runner.records,
        )


register_backend(TensorRtBackend())
