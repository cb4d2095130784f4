"""What this machine can do: CPU model and the instruction sets that decide which kernels are fast.

Read from ``/proc/cpuinfo`` (what the hypervisor really exposes, which may be less than the
chip has) and from torch. No torch import at module import time.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import asdict, dataclass

__all__ = ["Hardware", "detect", "resolve_device", "quantized_engine"]

# Flags that matter for quantized and low-precision inference on x86.
_INTERESTING_FLAGS = (
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
)


@dataclass(frozen=True)
class Hardware:
    cpu: str
    machine: str
    flags: tuple[str, ...]
    cores: int
    threads: int
    gpu: str | None

    @property
    def has_vnni(self) -> bool:
        """int8 dot products without 16-bit saturation (so activations need no reduce_range)."""
        return any(f in self.flags for f in ("avx512_vnni", "avx_vnni", "amx_int8")) or self.machine in (
            "aarch64",
            "arm64",
        )

    @property
    def has_native_bf16(self) -> bool:
        return any(f in self.flags for f in ("avx512_bf16", "amx_bf16"))

    @property
    def has_native_fp16(self) -> bool:
        return any(f in self.flags for f in ("avx512_fp16", "amx_fp16"))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["flags"] = list(self.flags)
        return d

    def summary(self) -> str:
        flags = ", ".join(self.flags) or "none of note"
        gpu = f"; GPU: {self.gpu}" if self.gpu else "; no GPU"
        return f"{self.cpu} ({self.machine}), {self.threads} threads; flags: {flags}{gpu}"


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model", "cpu model") and model in ("", platform.machine()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, flags


@functools.lru_cache(maxsize=1)
def detect() -> Hardware:
    import torch

    model, flags = _cpuinfo()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return Hardware(
        cpu=model,
        machine=platform.machine(),
        flags=tuple(f for f in _INTERESTING_FLAGS if f in flags),
        cores=os.cpu_count() or 1,
        threads=torch.get_num_threads(),
        gpu=gpu,
    )


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; ``cuda`` without one raises."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but no CUDA GPU is visible; allowed here: cpu, auto")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r} is not allowed; allowed: auto, cpu, cuda")
    return device


def quantized_engine() -> str:
    """The torch.ao engine for int8 on this CPU: x86 (fbgemm + oneDNN) or qnnpack on ARM."""
    import torch

    engines = torch.backends.quantized.supported_engines
    for name in ("x86", "fbgemm", "qnnpack"):
        if name in engines:
            return name
    raise RuntimeError(f"no int8 engine in this torch build (engines: {engines})")
