"""INT8 on CPU through torchao's PT2E flow: export, X86InductorQuantizer, AOTInductor with freezing.

``torch.export`` (strict) captures the model with a dynamic batch dimension, the quantizer
annotates it (activations uint8 per tensor with the user's calibration method, weights int8
symmetric per output channel), calibration runs on the exported graph and it is converted
(:func:`quantized_graph` for any quantizer, :func:`build_pt2e` for this backend's: public, so that
``bench/peers.py`` compiles the very same graph other ways and the xnnpack backend lowers one made by
its own quantizer). AOTInductor with ``freezing`` then lowers the quantize/dequantize pairs into
fused oneDNN int8 kernels driven by generated C++ (:mod:`.compiled`): one package for the latency
shape, one per evaluation batch shape, channels-last input (oneDNN's int8 convolutions work in
NHWC, so an NCHW input would cost a reorder before the first one: mobilenet_v2, batch 32: 276 -> 143
ms here). Packages are cached on disk (:mod:`qcore.backends.buildcache`), keyed by the quantized graph (its
int8 weights, scales and zero points) and the input shape, so a spec run a second time loads its
packages instead of compiling them. Without freezing there is no speed-up, so it is on for every
build: passed to the call (AOTInductor applies it for the length of that build, the graph being
exported before, so no tracer reads the global flag), never set process-wide.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from qcore.backends._observer import calibrate
from qcore.backends.act_quantizers import KeepNodesFloat, check_act_names, is_act
from qcore.backends.base import Backend, Quantized, count_layers, register_backend
from qcore.backends.buildcache import digest
from qcore.backends.compiled import PerShape, aoti_compiler
from qcore.backends.fx_int8 import activation_range, model_quantizers
from qcore.metrics.measure import stopwatch

__all__ = ["PT2EGraph", "quantized_graph", "build_pt2e", "drop_export_guards", "PT2EInt8"]


def _quantizer(spec, model: nn.Module | None = None, example: torch.Tensor | None = None):
    """The X86 Inductor quantizer of ``spec``: its calibration method on activations, its ``keep_float`` layers
    left out by module name and its ``keep_float`` activation quantizers (``act:`` names, found on ``model``'s
    FX graph) by their producers' nodes (:class:`qcore.backends.act_quantizers.KeepNodesFloat`)."""
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    qmin, qmax = activation_range()
    base = get_default_x86_inductor_quantization_config(reduce_range=qmax == 127, is_dynamic=spec.mode == "dynamic")
    inp, out = base.input_activation, base.output_activation
    if spec.mode == "static":
        act = copy.copy(base.input_activation)
        from qcore.backends._observer_pt2e import CalibrationObserverPT2E

        ctor = CalibrationObserverPT2E.with_args(
            method=spec.calibration,
            percentile=spec.percentile,
            dtype=torch.uint8,
            qscheme=torch.per_tensor_affine,
            quant_min=qmin,
            quant_max=qmax,
        )
        inp = out = type(act)(**{**act.__dict__, "observer_or_fake_quant_ctr": ctor})
    base = type(base)(inp, out, _pinned_weight(base.weight), base.bias, base.is_qat)
    quantizer = X86InductorQuantizer().set_global(base)
    for name in spec.keep_float:  # matched against the exported graph's nn_module_stack: those ops stay FP32
        if not is_act(name):
            quantizer.set_module_name_qconfig(name, None)
    if any(is_act(n) for n in spec.keep_float):
        if model is None:
            raise ValueError("keeping an activation quantizer in FP32 needs the model (its FX graph names them)")
        return KeepNodesFloat(quantizer, check_act_names(spec.keep_float, model_quantizers(model, example)))
    return quantizer


def _pinned_weight(weight):
    """The quantizer's weight spec with its observer honouring codes pinned by AdaRound (same eps and range)."""
    from qcore.backends._observer_pt2e import PinnedPerChannelPT2E

    ctor = weight.observer_or_fake_quant_ctr
    keywords = dict(getattr(getattr(ctor, "p", None), "keywords", {}))
    return type(weight)(**{**weight.__dict__, "observer_or_fake_quant_ctr": PinnedPerChannelPT2E.with_args(**keywords)})


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


def quantized_graph(
    model: nn.Module, quantizer, calib, example: torch.Tensor, fold_quantize: bool = True
) -> tuple[torch.fx.GraphModule, float, float]:
    """``(converted graph, prepare + convert seconds, calibration seconds)``: the PT2E recipe up to the
    quantized graph (quantize/dequantize pairs around FP32 ops) that ``quantizer`` annotates, before any
    compilation: export with a dynamic batch, prepare, calibrate on ``calib``, convert (``fold_quantize``: the
    weights stored quantized, int8, before their dequantize; else FP32 with a quantize/dequantize pair, the same
    codes). ``model`` is not modified (export copies it)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    batch = torch.export.Dim("batch", min=1, max=65536)
    with warnings.catch_warnings(), stopwatch() as t_prep:
        warnings.simplefilter("ignore")
        # Batch 1 would be specialised to a constant; export at 2 with the batch marked dynamic.
        ex2 = example if example.shape[0] > 1 else torch.cat([example, example])
        exported = torch.export.export(model, (ex2,), dynamic_shapes=({0: batch},), strict=True).module()
        drop_export_guards(exported)  # calibration images (32x32) may differ from the latency input (224x224)
        prepared = prepare_pt2e(exported, quantizer)
    # the weight observers run in the forward pass too: with no calibration batch (dynamic mode needs none
    # for its activations) the example runs once, else the weights would keep default qparams
    calib_s = calibrate(prepared, list(calib) or [example])
    with stopwatch() as t_conv, torch.no_grad():
        converted = convert_pt2e(prepared, fold_quantize=fold_quantize)
        drop_export_guards(converted)
    return converted, t_prep[0] + t_conv[0], calib_s


@dataclass
class PT2EGraph:
    """The converted (quantized) graph of :func:`build_pt2e`, before any compile, and what it cost."""

    converted: torch.fx.GraphModule
    artifact: dict[str, torch.Tensor]  # the tensors the graph reads: int8 weights, scales, biases
    calib_seconds: float
    build_seconds: float  # export, prepare and convert


def build_pt2e(model: nn.Module, spec, calib, example: torch.Tensor) -> PT2EGraph:
    """The pt2e backend's graph: ``model`` exported, annotated with the X86 Inductor quantizer for ``spec``
    (the user's calibration method on activations), calibrated on ``calib`` and converted
    (:func:`quantized_graph`). ``model`` is untouched; nothing is compiled."""
    model = copy.deepcopy(model).eval().cpu()
    converted, build_s, calib_s = quantized_graph(model, _quantizer(spec, model, example), calib, example)
    return PT2EGraph(converted, _graph_constants(converted), calib_s, build_s)


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
        with stopwatch() as t_key:  # the key of every shape's package: a hash of the int8 graph
            what = digest(graph.converted)
        runner = PerShape(aoti_compiler(graph.converted, what), memory_format=torch.channels_last)
        runner.prepare(example)  # build (or load) the latency shape's package now, not in the first timed call
        nq = sum(1 for t in graph.artifact.values() if t.dtype == torch.int8 and t.dim() > 1)
        return Quantized(
            model=runner,
            backend=self.name,
            kernel="native",
            device="cpu",
            artifact=graph.artifact,
            quantized_layers=nq,
            total_layers=total,
            calib_seconds=graph.calib_seconds,
            quantize_seconds=graph.build_seconds + t_key[0],
            engine="onednn (inductor)",
            notes=["torchao PT2E: X86InductorQuantizer, AOTInductor with freezing (a C++ package per input "
                   "shape), channels-last input"],
            builds=runner.records,
        )


register_backend(PT2EInt8())
