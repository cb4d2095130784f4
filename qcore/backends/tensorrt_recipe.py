"""What the ``tensorrt`` backend makes of a spec, with nothing imported: the refusals, ModelOpt's quantization
config, and what keys an engine in the build cache. Plain data and arithmetic, so every rule is tested on a
machine with no GPU, no TensorRT and no ModelOpt (:mod:`.tensorrt` runs them).

The flow of record for a torchvision CNN on an NVIDIA GPU (NVIDIA's ModelOpt and Torch-TensorRT examples):

- FP32, FP16, BF16: the model cast in torch, exported, compiled by Torch-TensorRT into one engine. Torch-TensorRT
  2.14 builds strongly typed networks (the types of the graph are the engine's; there is no ``enabled_precisions``
  any more), so the cast decides the precision. FP32 engines use TF32 tensor cores where the GPU has them,
  as TensorRT does by default (noted in the row).
- Static INT8: ModelOpt inserts fake quantizers (weights int8 symmetric per output channel or per tensor,
  activations int8 symmetric per tensor), calibrates them on the spec's images with the spec's method, and the
  exported graph's quantize/dequantize pairs become TensorRT's INT8 layers (explicit quantization). What is not
  quantized runs in FP16 where the GPU has FP16 tensor cores (TensorRT's ``--int8 --fp16``), FP32 otherwise.
- FP8 (E4M3) would take ModelOpt's FP8 config (per-tensor scales, max calibration) on compute capability 8.9
  and newer: qcore's specs have no FP8 precision yet (:data:`FP8_CONFIG` is what it would run).

Calibration: ModelOpt's max calibrator is min-max on a symmetric grid (amax = max |x|); its histogram calibrator
computes ``entropy`` (TensorRT's KL search) and ``percentile``. Its ``mse`` is refused (:data:`MSE_BROKEN`), and
``moving-average`` has no ModelOpt counterpart. TensorRT's INT8 is symmetric (zero point 0), so an asymmetric spec
is refused rather than silently run symmetric.
"""

from __future__ import annotations

from qcore.env.gpu import GpuInfo, lacks
from qcore.quant.spec import QuantSpec

__all__ = ["RECIPE", "CALIBRATIONS", "MSE_BROKEN", "REQUIREMENTS", "FP8_CONFIG", "spec_problem", "wanted_tensorrt",
           "version_problem",
           "modelopt_config", "histogram_args", "float_dtype", "engine_parts", "foreign_engine", "describe"]

# Bumped when what an engine build makes changes in a way its key cannot see.
RECIPE = 1
# the spec's calibration -> ModelOpt's: its calibrator, and the histogram method (None: the max calibrator)
CALIBRATIONS: dict[str, str | None] = {"minmax": None, "entropy": "entropy", "percentile": "percentile"}
# Why ModelOpt's own histogram MSE search is not used (tests/backends/test_tensorrt.py shows it, and fails once fixed)
MSE_BROKEN = ("ModelOpt 0.47's histogram MSE search calls its fake quantizer with num_bits where that function now "
              "takes a bias, so it scores every range wrongly (on a post-ReLU tensor of max 2.2 it picked 0.14, where "
              "a brute-force search finds 2.13: 8,800x the error)")
REQUIREMENTS = "requirements-gpu.txt"
_INSTALL = f"pip install -r {REQUIREMENTS} (the set-up does this where it finds a CUDA GPU)"
# The module types whose quantizers ModelOpt's own INT8 preset turns off (its CNN-relevant exclusions)
_OFF_FOR = ("nn.BatchNorm1d", "nn.BatchNorm2d", "nn.BatchNorm3d", "nn.LeakyReLU")
FP8_CONFIG: dict = {
    "quant_cfg": [{"quantizer_name": "*", "enable": False},
                  {"quantizer_name": "*weight_quantizer", "cfg": {"num_bits": (4, 3), "axis": None}},
                  {"quantizer_name": "*input_quantizer", "cfg": {"num_bits": (4, 3), "axis": None}},
                  *({"quantizer_name": "*", "parent_class": c, "enable": False} for c in _OFF_FOR)],
    "algorithm": "max",
}


def spec_problem(spec: QuantSpec, device: str, gpu: GpuInfo | None) -> str | None:
    """Why the tensorrt backend cannot run ``spec`` on ``device`` with this GPU (None: it can, as far as the spec
    and the GPU go; :func:`version_problem` checks the installed packages)."""
    if device != "cuda":
        return (f"the tensorrt backend builds NVIDIA TensorRT engines, which run on a CUDA GPU only; "
                f"device={device!r} (allowed: cuda)")
    if gpu is None:
        return "no CUDA GPU is visible (torch.cuda.is_available() is False): TensorRT needs one"
    if spec.is_float:
        fmt = {"fp16": "fp16", "bf16": "bf16"}.get(spec.precision)
        return lacks(fmt, gpu.capability, gpu.name) if fmt else None
    if spec.precision != "int8" or spec.mode != "static":
        return (f"the tensorrt backend runs fp32, fp16, bf16 and static int8, not {spec.precision} {spec.mode} "
                "(TensorRT's weight-only INT4/INT8 is for transformer matmuls in TensorRT-LLM)")
    if (why := lacks("int8", gpu.capability, gpu.name)) is not None:
        return f"INT8 engines: {why}"
    if not spec.symmetric:
        return ("TensorRT's INT8 is symmetric (zero point 0, scale = amax / 127), so scheme='asymmetric' cannot be "
                "honoured; allowed: symmetric")
    if spec.granularity not in ("per-channel", "per-tensor"):
        return f"granularity={spec.granularity!r} is not allowed; allowed: per-channel, per-tensor (weights)"
    if spec.calibration == "mse":
        return f"calibration='mse' is refused: {MSE_BROKEN}; allowed: {', '.join(CALIBRATIONS)}"
    if spec.calibration not in CALIBRATIONS:
        return (f"ModelOpt has no {spec.calibration} calibrator (its max calibrator is min-max on a symmetric "
                f"grid; its histogram calibrator does entropy and percentile); allowed: {', '.join(CALIBRATIONS)}")
    return None


def _major_minor(version: str) -> tuple[int, ...]:
    parts = []
    for p in version.split(".")[:2]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def wanted_tensorrt(requires: list[str]) -> str | None:
    """The TensorRT (major.minor) a torch-tensorrt build asks for, read from its requirements
    (``tensorrt-cu13<11.2.0,>=11.1.0`` -> ``11.1``); None where it names none."""
    for req in requires:
        name = req.split(";")[0].strip()
        base = name.split("<")[0].split(">")[0].split("=")[0].split("!")[0].split("~")[0].strip().lower()
        if not base.startswith("tensorrt") or base.endswith(("-bindings", "-libs")):
            continue
        for clause in name[len(base):].split(","):
            clause = clause.strip()
            if clause.startswith((">=", "==", "~=")):
                return ".".join(clause[2:].strip().split(".")[:2])
    return None


def version_problem(installed: dict[str, str | None], wants_tensorrt: str | None, quantizes: bool) -> str | None:
    """Why the installed packages cannot build engines (None: they can). ``installed`` maps ``torch_tensorrt``,
    ``tensorrt`` and ``modelopt`` to their versions (None: not installed); ``wants_tensorrt`` is the TensorRT
    torch-tensorrt was built for (``11.1``: its requirement, major.minor); ``quantizes``: the spec needs ModelOpt."""
    if not installed.get("torch_tensorrt"):
        return f"torch-tensorrt is not installed; {_INSTALL}"
    if not installed.get("tensorrt"):
        return f"TensorRT (the tensorrt package) is not installed; {_INSTALL}"
    if wants_tensorrt and _major_minor(installed["tensorrt"]) != _major_minor(wants_tensorrt):
        return (f"torch-tensorrt {installed['torch_tensorrt']} was built for TensorRT {wants_tensorrt}.x but "
                f"TensorRT {installed['tensorrt']} is installed: an engine would fail to build or load; {_INSTALL}")
    if quantizes and not installed.get("modelopt"):
        return f"nvidia-modelopt (which inserts and calibrates the quantizers) is not installed; {_INSTALL}"
    return None


def modelopt_config(spec: QuantSpec) -> dict:
    """ModelOpt's quantization config for a static INT8 spec (its ``quant_cfg`` list form, ModelOpt 0.4x):
    every quantizer off, then weights and inputs of the quantizable layers on, the BatchNorm and LeakyReLU
    quantizers off as ModelOpt's INT8 preset has them, and the layers of ``keep_float`` off. ``algorithm`` is
    ``"max"`` for min-max; for a histogram method it is None and :mod:`.tensorrt` computes the ranges itself
    (ModelOpt's ``max`` pass would ask the histogram calibrator for a max it does not keep)."""
    if spec.is_float or spec.precision != "int8":
        raise ValueError(f"{spec.label()} is not a static INT8 spec")
    method = CALIBRATIONS[spec.calibration]
    act: dict = {"num_bits": 8, "axis": None}
    if method is not None:
        act["calibrator"] = "histogram"
    cfg = [{"quantizer_name": "*", "enable": False},
           {"quantizer_name": "*weight_quantizer",
            "cfg": {"num_bits": 8, "axis": 0 if spec.granularity == "per-channel" else None}},
           {"quantizer_name": "*input_quantizer", "cfg": act},
           *({"quantizer_name": "*", "parent_class": c, "enable": False} for c in _OFF_FOR),
           *({"quantizer_name": f"{name}.*", "enable": False} for name in spec.keep_float)]
    return {"quant_cfg": cfg, "algorithm": "max" if method is None else None}


def histogram_args(spec: QuantSpec) -> tuple[str, dict] | None:
    """``(method, kwargs)`` for ModelOpt's ``load_calib_amax`` on a histogram calibrator, or None for max."""
    method = CALIBRATIONS.get(spec.calibration)
    if method is None:
        return None
    return method, ({"percentile": spec.percentile} if method == "percentile" else {})


def float_dtype(spec: QuantSpec, gpu: GpuInfo) -> str:
    """The float type the engine's unquantized layers run in: the spec's own for a float cast; for INT8, fp16
    where the GPU has FP16 tensor cores (TensorRT's ``--int8 --fp16``), else fp32."""
    if spec.is_float:
        return spec.precision
    return "fp16" if lacks("fp16", gpu.capability) is None else "fp32"


def engine_parts(what: str, spec: QuantSpec, gpu: GpuInfo, versions: dict[str, str | None],
                 signature: dict) -> dict:
    """What keys one engine in the build cache: the graph compiled (``what``: a digest of the calibrated model),
    the spec, the GPU (name, capability, driver: an engine is built for one GPU and driver), the TensorRT,
    Torch-TensorRT and ModelOpt versions, the input's shape and dtype, and :data:`RECIPE`."""
    return {"what": what, "spec": spec.label(), "gpu": describe(gpu), "versions": dict(sorted(versions.items())),
            "input": signature, "recipe": RECIPE}


def foreign_engine(meta: dict, gpu: GpuInfo) -> str | None:
    """Why a cached engine's metadata says it was built elsewhere (None: on this GPU and driver). The key already
    holds the GPU; this is the second check, made before an engine is deserialized."""
    built = meta.get("gpu") if isinstance(meta, dict) else None
    here = describe(gpu)
    if not isinstance(built, dict):
        return "the cached engine does not say which GPU it was built on"
    differ = [k for k in here if built.get(k) != here[k]]
    if differ:
        return (f"the cached engine was built on {built.get('name')} (driver {built.get('driver') or '?'}), not "
                f"{gpu.name} (driver {gpu.driver or '?'}): its {', '.join(differ)} differ")
    return None


def describe(gpu: GpuInfo) -> dict:
    """The GPU as an engine's key and metadata hold it (what :func:`foreign_engine` compares)."""
    return {"name": gpu.name, "capability": list(gpu.capability), "driver": gpu.driver}
