"""INT8 on CPU through torchao's PT2E flow: export, X86InductorQuantizer, Inductor with freezing.

``torch.export`` (strict) captures the model with a dynamic batch dimension, the quantizer
annotates it (activations uint8 per tensor with the user's calibration method, weights int8
symmetric per output channel), calibration runs on the exported graph (:func:`build_pt2e`, public so
that ``bench/peers.py`` compiles the very same graph other ways), and ``torch.compile`` with
``freezing`` lowers the quantize/dequantize pairs into fused oneDNN int8 kernels
(:func:`compile_pt2e`). Without freezing there is no speed-up; it is passed to this one compile as an
option (every recompile for a new input shape gets it too), never left set for the whole process.
"""

from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ..measure import stopwatch
from ._observer import calibrate
from .base import Backend, Quantized, count_layers, register_backend
from .fx_int8 import activation_range

__all__ = ["COMPILE_OPTIONS", "CompiledWithFreezing", "ChannelsLastInput", "PT2EGraph", "build_pt2e", "compile_pt2e",
           "drop_export_guards", "PT2EInt8"]

# Inductor options of the compile (torch.compile(options=...)): freezing folds the int8 weights and their
# scales into constants, which is what turns the quantize/dequantize pairs into oneDNN's fused int8 kernels;
# cpp_wrapper calls the graph's kernels from generated C++, not Python (mobilenet_v2, batch 1: 12.3 -> 9.9 ms
# here). Applied to every compile of this one callable, recompiles for new input shapes included.
COMPILE_OPTIONS = {"freezing": True, "cpp_wrapper": True}


@contextmanager
def _freezing_while_tracing():
    """Dynamo, which traces before Inductor sees the options, reads ``torch._inductor.config.freezing`` itself
    to decide that parameters are constants; without it the frozen graph still takes the weights as inputs
    and oneDNN's weight prepacking fails. So the flag is on while a call may trace, and restored after."""
    import torch._inductor.config as inductor_config

    before = inductor_config.freezing
    inductor_config.freezing = True
    try:
        yield
    finally:
        inductor_config.freezing = before


def _quantizer(spec):
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    qmin, qmax = activation_range()
    base = get_default_x86_inductor_quantization_config(reduce_range=qmax == 127, is_dynamic=spec.mode == "dynamic")
    if spec.mode == "static":
        act = copy.copy(base.input_activation)
        from ._observer_pt2e import CalibrationObserverPT2E

        ctor = CalibrationObserverPT2E.with_args(
            method=spec.calibration,
            percentile=spec.percentile,
            dtype=torch.uint8,
            qscheme=torch.per_tensor_affine,
            quant_min=qmin,
            quant_max=qmax,
        )
        act = type(act)(**{**act.__dict__, "observer_or_fake_quant_ctr": ctor})
        base = type(base)(act, act, base.weight, base.bias, base.is_qat)
    return X86InductorQuantizer().set_global(base)


def _graph_constants(gm: torch.fx.GraphModule) -> dict[str, torch.Tensor]:
    """The tensors the quantized graph really reads (int8 weights, scales, biases).

    ``state_dict()`` would also hold the unused FP32 originals that export kept as parameters.
    """
    out = {}
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            obj = gm
            for part in node.target.split("."):
                obj = getattr(obj, part)
            if isinstance(obj, torch.Tensor):
                out[node.target] = obj
    return out


def drop_export_guards(gm: torch.fx.GraphModule) -> None:
    """torch.export's ``_guards_fn`` pins H and W to the export's size; the quantized graph does not need it.

    Without this, a model exported at the latency input (224x224) refuses the evaluation images (32x32).
    """
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and node.target == "_guards_fn" and not node.users:
            gm.graph.erase_node(node)
    gm.recompile()


class CompiledWithFreezing:
    """Calls a ``torch.compile``'d callable whose options include freezing. Its first call for each input
    shape and grad mode (what makes Dynamo trace and compile again) runs with freezing visible to Dynamo
    (:func:`_freezing_while_tracing`); the later calls, the timed ones, pay only a set lookup."""

    def __init__(self, compiled) -> None:
        self.compiled = compiled
        self._traced: set[tuple] = set()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), tuple(x.stride()), x.dtype, torch.is_grad_enabled(), torch.is_inference_mode_enabled())
        if key in self._traced:
            return self.compiled(x)
        with _freezing_while_tracing():
            out = self.compiled(x)
        self._traced.add(key)
        return out


class ChannelsLastInput(nn.Module):
    """Feeds the compiled graph NHWC images: oneDNN's int8 convolutions work in that layout, so an NCHW
    input costs a reorder before the first one (mobilenet_v2, batch 32: 276 -> 143 ms here)."""

    def __init__(self, compiled) -> None:
        super().__init__()
        self.compiled = compiled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.compiled(x.contiguous(memory_format=torch.channels_last))


@dataclass
class PT2EGraph:
    """The converted (quantized) graph of :func:`build_pt2e`, before any compile, and what it cost."""

    converted: torch.fx.GraphModule
    artifact: dict[str, torch.Tensor]  # the tensors the graph reads: int8 weights, scales, biases
    calib_seconds: float
    build_seconds: float  # export, prepare and convert


def build_pt2e(model: nn.Module, spec, calib, example: torch.Tensor) -> PT2EGraph:
    """Export ``model`` (batch dimension dynamic), annotate it with the X86 Inductor quantizer for ``spec``
    (the user's calibration method on activations), calibrate on ``calib`` and convert. ``model`` is
    untouched; nothing is compiled (:func:`compile_pt2e` does that)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    model = copy.deepcopy(model).eval().cpu()
    batch = torch.export.Dim("batch", min=1, max=65536)
    with warnings.catch_warnings(), stopwatch() as t_prep:
        warnings.simplefilter("ignore")
        # Batch 1 would be specialised to a constant; export at 2 with the batch marked dynamic.
        ex2 = example if example.shape[0] > 1 else torch.cat([example, example])
        exported = torch.export.export(model, (ex2,), dynamic_shapes=({0: batch},), strict=True).module()
        prepared = prepare_pt2e(exported, _quantizer(spec))
    calib_s = calibrate(prepared, calib)
    with stopwatch() as t_conv, torch.no_grad():
        converted = convert_pt2e(prepared)
        drop_export_guards(converted)
    return PT2EGraph(converted, _graph_constants(converted), calib_s, t_prep[0] + t_conv[0])


def compile_pt2e(converted: torch.fx.GraphModule, example: torch.Tensor) -> ChannelsLastInput:
    """``converted`` compiled by Inductor with :data:`COMPILE_OPTIONS`, fed channels-last input, and run
    once on ``example`` (so that the first timed call is not the compile)."""
    # no guards on the module's attributes: its frozen weights never change
    options = {**COMPILE_OPTIONS, "guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe}
    compiled = ChannelsLastInput(CompiledWithFreezing(torch.compile(converted, options=options)))
    with torch.no_grad():
        compiled(example)
    return compiled


class PT2EInt8(Backend):
    name = "pt2e"
    kinds = ("static", "dynamic")

    def unsupported(self, spec, device):
        if spec.is_float or spec.precision != "int8" or spec.mode not in ("static", "dynamic"):
            return "the pt2e backend runs static and dynamic INT8"
        if device != "cpu":
            return "X86InductorQuantizer targets the CPU; torch has no CUDA kernel for int8 convolutions"
        if spec.granularity != "per-channel":
            return "X86InductorQuantizer quantizes weights per channel only; allowed: per-channel"
        if spec.scheme != "asymmetric":
            return "X86InductorQuantizer quantizes activations asymmetrically (uint8); allowed: asymmetric"
        try:
            import torchao.quantization.pt2e  # noqa: F401
        except ImportError as exc:  # pragma: no cover - torchao is in requirements.txt
            return f"torchao is not importable: {exc}"
        return None

    def quantize(self, model, spec, calib, example, device):
        total = count_layers(model)
        graph = build_pt2e(model, spec, calib, example)
        with stopwatch() as t_compile:
            compiled = compile_pt2e(graph.converted, example)
        nq = sum(1 for t in graph.artifact.values() if t.dtype == torch.int8 and t.dim() > 1)
        return Quantized(
            model=compiled,
            backend=self.name,
            kernel="native",
            device="cpu",
            artifact=graph.artifact,
            quantized_layers=nq,
            total_layers=total,
            calib_seconds=graph.calib_seconds,
            quantize_seconds=graph.build_seconds + t_compile[0],
            engine="onednn (inductor)",
            notes=["torchao PT2E: X86InductorQuantizer, torch.compile with freezing and the C++ wrapper, "
                   "channels-last input"],
        )


register_backend(PT2EInt8())
