"""torchao's ``quantize_`` on Linear layers: INT8 dynamic, INT8 weight-only, INT4 weight-only.

These are torchao's own tensor subclasses and kernels (int8 weight matmuls on CPU and CUDA;
tinygemm INT4 on CUDA: torch's own ``_weight_int4pack_mm``, bfloat16 activations). Only ``nn.Linear`` layers are
quantized: for transformers (vit_b_16, swin_t) that is most of the weights, for CNNs just the
classifier; the result says how many layers were quantized. torchao chooses its own ranges
(min-max), so only ``calibration=minmax`` is accepted here. nn.MultiheadAttention's output
projection stays FP32: torch marks it (``NonDynamicallyQuantizableLinear``) because the attention
reads and transposes its weight itself, which torchao's weight tensors do not support.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear

from qcore.backends.base import Backend, Quantized, count_layers, register_backend
from qcore.metrics.measure import stopwatch

__all__ = ["TorchAOLinear", "quantizable"]


def _config(spec):
    from torchao.quantization import (
        Int4WeightOnlyConfig,
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
    )
    from torchao.quantization.granularity import PerGroup, PerRow, PerTensor
    from torchao.quantization.quant_primitives import MappingType

    gran = PerRow() if spec.granularity == "per-channel" else PerTensor()
    if spec.mode == "dynamic":
        act = MappingType.SYMMETRIC if spec.symmetric else MappingType.ASYMMETRIC
        return Int8DynamicActivationInt8WeightConfig(act_mapping_type=act, granularity=gran)
    if spec.precision == "int8":
        if spec.granularity == "per-group":
            gran = PerGroup(spec.group_size)
        return Int8WeightOnlyConfig(granularity=gran)
    # tile_packed_to_4d is tinygemm's layout, run by torch's own kernel; torchao's default ("plain") needs mslk
    return Int4WeightOnlyConfig(group_size=spec.group_size, int4_packing_format="tile_packed_to_4d")


def quantizable(layer: nn.Module, fqn: str = "") -> bool:
    """An nn.Linear that torchao can take: any but those its parent reads (nn.MultiheadAttention's out_proj)."""
    return isinstance(layer, nn.Linear) and not isinstance(layer, NonDynamicallyQuantizableLinear)


class TorchAOLinear(Backend):
    name = "torchao"
    kinds = ("dynamic", "weight-only")

    def unsupported(self, spec, device):
        if spec.is_float or spec.mode == "static":
            return "the torchao backend runs dynamic INT8 and weight-only INT8/INT4 on Linear layers"
        if spec.calibration != "minmax":
            return f"torchao chooses weight ranges by min-max itself; calibration={spec.calibration!r} cannot apply"
        if spec.mode == "weight-only" and spec.precision == "int8" and not spec.symmetric:
            return "torchao's INT8 weight-only is symmetric; allowed: scheme=symmetric"
        if spec.precision == "int4":
            if device != "cuda":
                return "torchao's INT4 weight-only kernel (tinygemm) runs on CUDA only"
            if spec.granularity != "per-group" or spec.symmetric:
                return "torchao's INT4 weight-only is per-group and asymmetric; allowed: per-group, asymmetric"
        try:
            import torchao.quantization  # noqa: F401
        except ImportError as exc:  # pragma: no cover - torchao is in requirements.txt
            return f"torchao is not importable: {exc}"
        return None

    def quantize(self, model, spec, calib, example, device):
        from torchao.quantization import quantize_

        with stopwatch() as t:
            m = copy.deepcopy(model).eval().to(device)
            n = sum(quantizable(x) for x in m.modules())
            kept = sum(isinstance(x, nn.Linear) for x in m.modules()) - n
            if spec.precision == "int4":  # tinygemm takes bfloat16 weights; activations are cast in and out
                for layer in m.modules():
                    if quantizable(layer):
                        layer.to(torch.bfloat16)
            quantize_(m, _config(spec), filter_fn=quantizable)
        notes = [f"torchao quantized {n} Linear layer(s); convolutions stay FP32"]
        if kept:
            notes.append(f"{kept} nn.MultiheadAttention output projection(s) stay FP32: the attention reads their "
                         "weight itself")
        if n == 0:
            notes.append("this model has no Linear layer: nothing was quantized")
        run, engine = m, f"torchao {_version()}"
        if device == "cuda" and n:  # as a GPU user runs it (eager: 0.41x of FP32 on vit_b_16, H200; compiled 1.34x)
            from qcore.backends.gpu_compile import compiled

            with stopwatch() as t_compile:
                run, how = compiled(m, example.to(device))
            notes.append(how)
            engine += " eager" if run is m else " compiled"
            t[0] += t_compile[0]
        return Quantized(
            model=run,
            backend=self.name,
            kernel="native" if n else "simulated",
            device=device,
            artifact=m.state_dict(),
            quantized_layers=n,
            total_layers=count_layers(model),
            quantize_seconds=t[0],
            engine=engine,
            notes=notes,
        )


def _version() -> str:
    import torchao

    return torchao.__version__


register_backend(TorchAOLinear())
