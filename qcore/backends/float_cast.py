"""FP32, FP16 and BF16: the model cast as a whole, measured as it really runs.

On a CPU without native FP16 arithmetic (no AVX512-FP16 / AMX-FP16) torch converts every
FP16 operand to FP32 and back inside each op: the numbers are FP16's, the speed is worse
than FP32's. The result says so (``kernel="simulated"`` and a note) rather than hide it.
The same holds for BF16 without AVX512-BF16 / AMX-BF16.
"""

from __future__ import annotations

import copy

import torch

from qcore.backends.base import Backend, Quantized, count_layers, register_backend
from qcore.env import hardware
from qcore.metrics.measure import stopwatch

__all__ = ["FloatCast"]

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class FloatCast(Backend):
    name = "float"
    kinds = ("float",)

    def unsupported(self, spec, device):
        if not spec.is_float:
            return f"the float backend casts to fp32/fp16/bf16, it does not run {spec.precision}"
        return None

    def quantize(self, model, spec, calib, example, device):
        dtype = _DTYPES[spec.precision]
        with stopwatch() as t:
            m = copy.deepcopy(model).eval().to(device=device, dtype=dtype)
        hw = hardware.detect()
        notes, kernel = [], "native"
        if device == "cpu" and spec.precision == "fp16" and not hw.has_native_fp16:
            kernel = "simulated"
            notes.append(
                "no native FP16 arithmetic on this CPU (no AVX512-FP16/AMX-FP16): the kernels convert "
                "FP16 to FP32 and back, so the latency measured is that of an emulation, not of FP16 math"
            )
        if device == "cpu" and spec.precision == "bf16" and not hw.has_native_bf16:
            kernel = "simulated"
            notes.append(
                "no native BF16 arithmetic on this CPU (no AVX512-BF16/AMX-BF16): BF16 ops are emulated through FP32"
            )
        n = count_layers(m)
        return Quantized(
            model=m,
            backend=self.name,
            kernel=kernel,
            device=device,
            artifact=m.state_dict(),
            quantized_layers=0 if spec.precision == "fp32" else n,
            total_layers=n,
            input_dtype=dtype,
            quantize_seconds=t[0],
            notes=notes,
        )


register_backend(FloatCast())
