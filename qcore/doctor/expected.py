"""What this CPU should give: the INT8-over-FP32 speed-up published for its instruction set, with the source, the
model and batch it was measured on, and where a measured point stands in it.

The instruction set is read from :class:`qcore.env.hardware.Hardware`'s flags (what ``/proc/cpuinfo`` shows, which
a hypervisor may narrow): AMX (``amx_int8``) first, then AVX-512 VNNI or AVX-VNNI, then AVX2 (or AVX-512 without
VNNI). Each range is the span of the image-classifier rows of one published table (docs/doctor.md, "What this CPU
should give", says which rows, and what was and was not verified):

- AVX2 without VNNI, 1.7-2.1x: OpenVINO 2021.4's INT8-vs-FP32 table, Core i7-8700T and Xeon W-1290P columns
  (the issue's range).
- AVX-512 VNNI, 2.4-4.2x: the same table, Core i7-1185G7 and Xeon Platinum 8270 columns (the issue's range).
- AMX, 1.4-5.5x: Intel Neural Compressor's validated models, PyTorch 2.3.0 PTQ (torch.ao static INT8) on a Xeon
  Platinum 8480+, batch 1, 4 cores per instance: EfficientNet-B3 1.43x, ResNet18 2.83x, Inception V3 2.94x,
  ResNet50 3.64x, ResNeXt101_32x8d 5.45x.

These are throughput figures (many streams or instances at once); one call's latency at batch 1 with every core,
which is what a sweep times, usually gains less. On a GPU the same idea is the tensor cores' peak INT8 rate over
their peak TF32 rate (what cuDNN runs an FP32 convolution on by default), from NVIDIA's data sheets: an upper bound,
not a model-level figure. Where nothing was published (ARM, other GPUs) :func:`expected_speedup` returns None and
:func:`why_unknown` says why.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Expected", "RANGES", "GPU_PEAKS", "isa_of", "expected_speedup", "why_unknown", "standing"]


@dataclass(frozen=True)
class Expected:
    """A published INT8-over-FP32 speed-up range for one instruction set (or tensor-core generation)."""

    isa: str  # "AVX-512 VNNI", "AMX", "Ampere tensor cores"
    low: float
    high: float
    source: str  # who published it and what was measured (hardware, software, models, batch)
    url: str
    note: str  # how it applies here: which rows, what differs from this machine's measurement

    def text(self) -> str:
        span = f"{self.low:.1f}x" if self.low == self.high else f"{self.low:.1f}-{self.high:.1f}x"
        return f"{self.isa}: {span} ({self.source})"


_OPENVINO = "https://docs.openvino.ai/2021.4/openvino_docs_performance_int8_vs_fp32.html"
_INC = "https://intel.github.io/neural-compressor/latest/docs/source/validated_model_list.html"
_THROUGHPUT = ("a throughput figure (several streams at once); one call at batch 1 on every core, as a sweep times "
               "it, usually gains less")

RANGES: dict[str, Expected] = {
    "amx": Expected(
        "AMX", 1.4, 5.5,
        "Intel Neural Compressor validated models: PyTorch 2.3.0+cpu PTQ, static INT8, Xeon Platinum 8480+, batch 1, "
        "4 cores per instance, 14 instances (tested by Intel 2024-07-22)",
        _INC,
        "the torchvision classifiers of the table: EfficientNet-B3 1.43x, ResNet18 2.83x, Inception V3 2.94x, ResNet50 "
        "3.64x, ResNeXt101_32x8d 5.45x (PeleeNet 1.55x and ResNeSt50 10.24x are not torchvision models, left out); "
        + _THROUGHPUT),
    "vnni": Expected(
        "AVX-512 VNNI", 2.4, 4.2,
        "OpenVINO 2021.4 INT8 vs FP32 table, throughput, Core i7-1185G7 and Xeon Platinum 8270",
        _OPENVINO,
        "the classifier rows of both columns: mobilenet-v2 2.4x (i7-1185G7) to resnet-18-pytorch 4.2x (8270); "
        + _THROUGHPUT),
    "avx-vnni": Expected(
        "AVX-VNNI (256-bit)", 2.4, 4.2,
        "OpenVINO 2021.4 INT8 vs FP32 table, throughput, measured on AVX-512 VNNI CPUs (i7-1185G7, Xeon 8270)",
        _OPENVINO,
        "no table for 256-bit AVX-VNNI was found: its INT8-over-FP32 peak ratio is the same (4x per FMA width), so "
        "the AVX-512 VNNI range is used, unverified for this instruction set; " + _THROUGHPUT),
    "avx2": Expected(
        "AVX2 without VNNI", 1.7, 2.1,
        "OpenVINO 2021.4 INT8 vs FP32 table, throughput, Core i7-8700T and Xeon W-1290P",
        _OPENVINO,
        "int8 pairs are multiplied into int16 (vpmaddubsw), so INT8 gains about half what VNNI gains; the classifier "
        "rows of both columns run 1.7x (mobilenet-v2-pytorch, squeezenet1.1 on the i7-8700T) to 2.1x (resnet-18 on "
        "the W-1290P), but for mobilenet-v2-1.0-224-TF on the i7-8700T at 1.5x; " + _THROUGHPUT),
    "avx512-no-vnni": Expected(
        "AVX-512 without VNNI", 1.7, 2.1,
        "OpenVINO 2021.4 INT8 vs FP32 table, throughput, Core i7-8700T and Xeon W-1290P (AVX2)",
        _OPENVINO,
        "no table for AVX-512 without VNNI was found; it multiplies int8 pairs into int16 as AVX2 does (vpmaddubsw), "
        "so the AVX2 range is used, unverified for this instruction set; " + _THROUGHPUT),
}

# Tensor cores: peak dense INT8 TOPS over peak dense TF32 TFLOPS, from NVIDIA's data sheets (A100: 624 / 156;
# H100 SXM: 1978.9 / 494.7). Keyed by a part of the GPU's name.
GPU_PEAKS: dict[str, tuple[str, float, str]] = {
    "A100": ("Ampere tensor cores (A100)", 624 / 156,
             "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
             "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf"),
    "H100": ("Hopper tensor cores (H100)", 1978.9 / 494.7, "https://www.nvidia.com/en-us/data-center/h100/"),
    "H200": ("Hopper tensor cores (H200)", 1978.9 / 494.7, "https://www.nvidia.com/en-us/data-center/h200/"),
}


def isa_of(hw) -> str | None:
    """The key of :data:`RANGES` for ``hw``'s CPU flags (None: no x86 INT8 instruction set we have figures for)."""
    flags = set(hw.flags)
    if hw.machine.lower() in ("aarch64", "arm64") or hw.machine.lower().startswith("arm"):
        return None
    if "amx_int8" in flags:
        return "amx"
    if "avx512_vnni" in flags:
        return "vnni"
    if "avx_vnni" in flags:
        return "avx-vnni"
    if "avx512f" in flags or "avx512bw" in flags:
        return "avx512-no-vnni"
    if "avx2" in flags:
        return "avx2"
    return None


def _device(hw, device: str) -> str:
    if device not in ("cpu", "cuda", "auto"):
        raise ValueError(f"device={device!r} is not allowed; allowed: auto, cpu, cuda")
    if device == "auto":
        return "cuda" if hw.gpu else "cpu"
    return device


def _gpu(hw) -> Expected | None:
    name = (hw.gpu or "").upper()
    for key, (isa, ratio, url) in GPU_PEAKS.items():
        if key in name:
            return Expected(isa, ratio, ratio, "NVIDIA data sheet: peak dense INT8 TOPS over peak dense TF32 TFLOPS",
                            url, "a peak arithmetic ratio, an upper bound: no model-level INT8-over-FP32 figure for "
                            "this GPU was found; FP32 convolutions run on TF32 tensor cores by default (cuDNN)")
    return None


def expected_speedup(hw, device: str = "cpu") -> Expected | None:
    """The published INT8-over-FP32 range for ``hw`` (a :class:`qcore.env.hardware.Hardware`) on ``device``
    (``cpu``, ``cuda`` or ``auto``: the GPU when ``hw`` has one); None where none was published
    (:func:`why_unknown` says why)."""
    if _device(hw, device) == "cuda":
        return _gpu(hw)
    key = isa_of(hw)
    return RANGES[key] if key else None


def why_unknown(hw, device: str = "cpu") -> str:
    """Why :func:`expected_speedup` has no range for ``hw`` on ``device`` ("" when it has one)."""
    if expected_speedup(hw, device) is not None:
        return ""
    if _device(hw, device) == "cuda":
        if not hw.gpu:
            return "no GPU on this machine"
        return (f"no published INT8 figure gathered for {hw.gpu}; known: "
                f"{', '.join(v[0] for v in GPU_PEAKS.values())}")
    if hw.machine.lower() in ("aarch64", "arm64") or hw.machine.lower().startswith("arm"):
        return (f"no published INT8-over-FP32 range gathered for ARM ({hw.machine}); the ranges known are for x86 "
                "AVX2, AVX-512 VNNI and AMX")
    return (f"this CPU shows none of avx2, avx512f, avx512_vnni, avx_vnni, amx_int8 (flags: "
            f"{', '.join(hw.flags) or 'none of note'}): x86 INT8 kernels need AVX2 at least")


def _x(v: float) -> str:
    return f"{round(v, 2):g}x"


def standing(speedup: float | None, e: Expected | None) -> str:
    """Where a measured INT8-over-FP32 ``speedup`` stands in ``e``: "below the published range (1.3x vs 2.4-4.2x)",
    "within ...", "above ..."; "" when either is unknown."""
    if speedup is None or e is None or speedup != speedup:
        return ""
    what = "the published peak ratio" if e.low == e.high else "the published range"
    span = f"{e.low:.1f}x" if e.low == e.high else f"{e.low:.1f}-{e.high:.1f}x"
    if speedup < e.low:
        where = "below"
    elif speedup > e.high:
        where = "above"
    else:
        where = "at" if e.low == e.high else "within"
    return f"{where} {what} ({_x(speedup)} vs {span})"
