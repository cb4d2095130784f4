"""What this machine's GPU is and can do: its name, compute capability, memory, driver and clocks, the
low-precision tensor-core formats that capability has, and the message an out-of-memory error becomes.

The formats follow NVIDIA's compute capabilities (the CUDA programming guide's feature tables and
TensorRT's support matrix): FP16 tensor cores from 7.0 (Volta), INT8 tensor cores from 7.5 (Turing;
TensorRT 10 and later build INT8 engines only there and above), BF16 and TF32 from 8.0 (Ampere), FP8 E4M3
from 8.9 (Ada, Hopper). A capability is a pair of ints; everything here but :func:`detect_gpu` and
:func:`manifest` is plain arithmetic on it, so it is tested without a GPU.

No torch import at module import time.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import subprocess
from dataclasses import asdict, dataclass

__all__ = ["GpuInfo", "FORMATS", "detect_gpu", "formats", "lacks", "ability_text", "is_out_of_memory",
           "error_text", "oom_message", "manifest"]

# format -> the least compute capability with tensor cores for it, and the architecture that brought them
FORMATS: dict[str, tuple[tuple[int, int], str]] = {
    "fp16": ((7, 0), "Volta"),
    "int8": ((7, 5), "Turing"),
    "bf16": ((8, 0), "Ampere"),
    "tf32": ((8, 0), "Ampere"),
    "fp8": ((8, 9), "Ada or Hopper"),
}
_LABEL = {"fp16": "FP16", "int8": "INT8", "bf16": "BF16", "tf32": "TF32", "fp8": "FP8 (E4M3)"}


@dataclass(frozen=True)
class GpuInfo:
    """One CUDA device as the manifest and the engine cache name it."""

    name: str
    capability: tuple[int, int]
    memory_mb: int
    driver: str = ""  # "" where neither NVML nor nvidia-smi says
    sm_clock_mhz: int | None = None  # the maximum clocks (nvidia-smi's clocks.max.*), where known
    memory_clock_mhz: int | None = None
    cuda: str = ""  # the CUDA runtime torch was built with

    def to_dict(self) -> dict:
        d = asdict(self)
        d["capability"] = f"{self.capability[0]}.{self.capability[1]}"
        return d


def formats(capability: tuple[int, int]) -> list[str]:
    """The formats of :data:`FORMATS` this compute capability has tensor cores for, in :data:`FORMATS`' order."""
    return [f for f, (least, _) in FORMATS.items() if tuple(capability) >= least]


def lacks(fmt: str, capability: tuple[int, int], name: str = "this GPU") -> str | None:
    """Why a GPU of ``capability`` cannot run ``fmt`` on tensor cores (None when it can):
    ``FP8 (E4M3) needs compute capability 8.9 or newer (Ada or Hopper); NVIDIA A100 is 8.0``."""
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r} is not allowed; allowed: {', '.join(FORMATS)}")
    (major, minor), arch = FORMATS[fmt]
    if tuple(capability) >= (major, minor):
        return None
    return (f"{_LABEL[fmt]} needs compute capability {major}.{minor} or newer ({arch}); {name} is "
            f"{capability[0]}.{capability[1]}")


def ability_text(info: GpuInfo | None) -> str:
    """One line for the app's Home: the GPU and what its tensor cores run, or that there is none."""
    if info is None:
        return "No CUDA GPU is visible: sweeps run on the CPU (TensorRT and GPU timings need one)."
    has = formats(info.capability)
    cc = f"{info.capability[0]}.{info.capability[1]}"
    line = (f"GPU: {info.name} (compute capability {cc}, {info.memory_mb / 1024:.0f} GiB"
            f"{', driver ' + info.driver if info.driver else ''}). Tensor cores: "
            f"{', '.join(_LABEL[f] for f in has) or 'none'}")
    missing = [f"{_LABEL[f]} (needs {FORMATS[f][0][0]}.{FORMATS[f][0][1]}, {FORMATS[f][1]})" for f in FORMATS
               if f not in has]
    return line + (f"; not {', '.join(missing)}" if missing else "") + "."


def _nvidia_smi(fields: str) -> list[str]:
    """The first GPU's ``nvidia-smi --query-gpu=fields`` values, or [] where it cannot say."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, f"--query-gpu={fields}", "--format=csv,noheader,nounits"], capture_output=True,
                             text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    lines = out.strip().splitlines()
    return [v.strip() for v in lines[0].split(",")] if lines else []


def _int(text: str) -> int | None:
    with contextlib.suppress(ValueError):
        return int(float(text))
    return None


@functools.lru_cache(maxsize=1)
def detect_gpu() -> GpuInfo | None:
    """The first CUDA device, or None where torch sees none."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    smi = _nvidia_smi("driver_version,clocks.max.sm,clocks.max.memory")
    smi += [""] * (3 - len(smi))
    return GpuInfo(name=props.name, capability=(props.major, props.minor),
                   memory_mb=int(props.total_memory // (1024 * 1024)), driver=smi[0],
                   sm_clock_mhz=_int(smi[1]), memory_clock_mhz=_int(smi[2]), cuda=str(torch.version.cuda or ""))


def manifest() -> dict | None:
    """The GPU in a run's manifest (name, capability, memory, driver, clocks, the formats it has), or None."""
    info = detect_gpu()
    if info is None:
        return None
    return {**info.to_dict(), "tensor_core_formats": formats(info.capability)}


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is the GPU running out of memory (torch's OutOfMemoryError, or TensorRT's words for it)."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return "out of memory" in text and ("cuda" in text or "gpu" in text)


def error_text(exc: BaseException, batch_size: int) -> str:
    """A failed spec's error as its row shows it: ``Type: message``; for the GPU running out of memory,
    :func:`oom_message` (after freeing torch's cached blocks, so that the next spec starts clean)."""
    if not is_out_of_memory(exc):
        return f"{type(exc).__name__}: {exc}"
    import torch

    free = None
    with contextlib.suppress(Exception):
        torch.cuda.empty_cache()
        free = torch.cuda.mem_get_info()[0] / (1024 * 1024)
    return oom_message(exc, batch_size, detect_gpu() if torch.cuda.is_available() else None, free)


def oom_message(exc: BaseException, batch_size: int, info: GpuInfo | None, free_mb: float | None = None) -> str:
    """The error a row gets when the GPU ran out of memory: the batch size, the GPU's memory and what to do."""
    where = f"{info.name}, {info.memory_mb / 1024:.1f} GiB" if info else "the GPU"
    free = f", {free_mb / 1024:.1f} GiB free after the failure" if free_mb is not None else ""
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return (f"out of GPU memory at batch size {batch_size} ({where}{free}): {first}; the sweep went on with the "
            f"next spec; choose a smaller batch size or a smaller input size for this model")
