"""INT8 on CPU through torchao's PT2E flow: export, X86InductorQuantizer, Inductor with freezing.

``torch.export`` (strict) captures the model with a dynamic batch dimension, the quantizer
annotates it (activations uint8 per tensor with the user's calibration method, weights int8
symmetric per output channel), calibration runs on the exported graph, and ``torch.compile``
with ``freezing`` lowers the quantize/dequantize pairs into fused oneDNN int8 kernels.
Without freezing there is no speed-up, so it is switched on for the compile.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from ..measure import stopwatch
from ..observers import observer_class
from . import Backend, Quantized, count_layers, register_backend
from .fx_int8 import activation_range


def _quantizer(spec):
    from torchao.quantization.pt2e import observer as ao_obs
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    qmin, qmax = activation_range()
    base = get_default_x86_inductor_quantization_config(reduce_range=qmax == 127, is_dynamic=spec.mode == "dynamic")
    if spec.mode == "static":
        act = copy.copy(base.input_activation)
        ctor = observer_class(ao_obs.ObserverBase).with_args(
            method=spec.calibration,
            percentile=spec.percentile or 99.99,
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


class ChannelsLastInput(nn.Module):
    """Feeds the compiled graph NHWC images: oneDNN's int8 convolutions work in that layout, so an NCHW
    input costs a reorder before the first one (mobilenet_v2, batch 32: 276 -> 143 ms here)."""

    def __init__(self, compiled) -> None:
        super().__init__()
        self.compiled = compiled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.compiled(x.contiguous(memory_format=torch.channels_last))


class PT2EInt8(Backend):
    name = "pt2e"

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
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        model = copy.deepcopy(model).eval().cpu()
        total = count_layers(model)
        batch = torch.export.Dim("batch", min=1, max=65536)
        with warnings.catch_warnings(), stopwatch() as t_prep:
            warnings.simplefilter("ignore")
            # Batch 1 would be specialised to a constant; export at 2 with the batch marked dynamic.
            ex2 = example if example.shape[0] > 1 else torch.cat([example, example])
            exported = torch.export.export(model, (ex2,), dynamic_shapes=({0: batch},), strict=True).module()
            prepared = prepare_pt2e(exported, _quantizer(spec))
        with stopwatch() as t_cal, torch.no_grad():
            for x in calib:
                prepared(x)
            for m in prepared.modules():
                if hasattr(m, "calibrator"):
                    m.calculate_qparams()
        with stopwatch() as t_conv, torch.no_grad():
            converted = convert_pt2e(prepared)
            drop_export_guards(converted)
            artifact = _graph_constants(converted)
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True  # process-wide: recompiles for new batch sizes need it too
            # cpp_wrapper: the graph's kernels called from generated C++, not Python (mobilenet_v2, batch 1:
            # 12.3 -> 9.9 ms here); no guards on the module's attributes: its frozen weights never change
            compiled = torch.compile(
                converted,
                options={"cpp_wrapper": True, "guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe},
            )
            compiled = ChannelsLastInput(compiled)
            compiled(example)  # compile now, so that the first timed call is not the compile
        nq = sum(1 for t in artifact.values() if t.dtype == torch.int8 and t.dim() > 1)
        return Quantized(
            model=compiled,
            backend=self.name,
            kernel="native",
            device="cpu",
            artifact=artifact,
            quantized_layers=nq,
            total_layers=total,
            calib_seconds=t_cal[0],
            quantize_seconds=t_prep[0] + t_conv[0],
            engine="onednn (inductor)",
            notes=["torchao PT2E: X86InductorQuantizer, torch.compile with freezing and the C++ wrapper, "
                   "channels-last input"],
        )


register_backend(PT2EInt8())
