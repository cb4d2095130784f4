"""What every backend shares: the :class:`Backend` base class, the :class:`Quantized` it returns, and the
table backends register themselves in (read through :mod:`qcore.backends`).

The leaf of the package: backend modules import from here, never from ``qcore.backends`` itself, so
loading the built-in backends does not import the package that loads them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from qcore.quant.spec import KINDS, QuantSpec
from qcore.quant.spec_keep import is_act

__all__ = ["BackendUnavailable", "Quantized", "Backend", "LAYER_TYPES", "count_layers", "register_backend",
           "registered", "KEEP_FLOAT_BACKENDS", "KEEP_INT8_BACKENDS", "KEEP_ACT_BACKENDS",
           "keep_float_problem", "PTQ_BACKENDS", "ptq_backend_problem"]


class BackendUnavailable(RuntimeError):
    """This backend cannot run this spec here (the message says why); the sweep records a skip."""


@dataclass
class Quantized:
    """A quantized model ready to run, and what it is: kernel, artifact, layer counts, timings, notes."""

    model: nn.Module | Callable[[torch.Tensor], torch.Tensor]
    backend: str
    kernel: str  # "native" | "simulated"
    device: str
    artifact: dict[str, torch.Tensor] | bytes  # what would be deployed; measure.size_bytes() sizes it
    quantized_layers: int = 0
    total_layers: int = 0
    input_dtype: torch.dtype = torch.float32
    calib_seconds: float = 0.0
    quantize_seconds: float = 0.0
    ptq_seconds: float = 0.0  # the post-training algorithms before it (qcore.ptq: CLE, bias correction, AdaRound)
    engine: str = ""
    notes: list[str] = field(default_factory=list)
    # what was compiled or lowered for it (qcore.backends.buildcache.BuildRecord), built or loaded from the cache;
    # a list the model may still append to (a program per new input shape)
    builds: list = field(default_factory=list)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.input_dtype))


class Backend:
    """Base class: ``name``, ``kinds``, ``unsupported(spec, device)`` and ``quantize(...)``.

    ``kinds`` says which kinds of spec (:data:`qcore.quant.spec.KINDS`: float casts, static, dynamic or weight-only
    quantization) the backend implements at all; ``unsupported`` says why it cannot run one particular spec
    on one device (a granularity it lacks, no CUDA kernel, an engine that is not installed).
    """

    name = ""
    kinds: tuple[str, ...] = KINDS  # a backend that does not narrow this is offered for every kind of spec
    # True for engines with their own thread pool (ONNX Runtime, OpenVINO): timed in a block of their own,
    # never alternated with torch in one loop (their idle workers spin on the cores torch needs, and back)
    own_threads = False

    def unsupported(self, spec: QuantSpec, device: str) -> str | None:
        """None when this backend can run ``spec`` on ``device``; else the reason it cannot."""
        raise NotImplementedError

    def problem(self, spec: QuantSpec, device: str) -> str | None:
        """Why this backend cannot run ``spec`` on ``device`` (None: it can): the rules every backend shares
        (layers kept in FP32 only where :data:`KEEP_FLOAT_BACKENDS` says), then its own :meth:`unsupported`."""
        return (keep_float_problem(spec, self.name) or ptq_backend_problem(spec, self.name)
                or self.unsupported(spec, device))

    def quantize(
        self, model: nn.Module, spec: QuantSpec, calib: Iterable[torch.Tensor], example: torch.Tensor, device: str
    ) -> Quantized:
        raise NotImplementedError


_REGISTRY: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    """Add ``backend`` to the table under its name (each backend module does this once, on import)."""
    if backend.name in _REGISTRY:
        raise ValueError(f"backend {backend.name!r} is already registered")
    if not backend.kinds or not set(backend.kinds) <= set(KINDS):
        raise ValueError(f"backend {backend.name!r} must declare kinds from {', '.join(KINDS)}; got {backend.kinds}")
    _REGISTRY[backend.name] = backend
    return backend


def registered() -> dict[str, Backend]:
    """The table itself, in registration order (:mod:`qcore.backends` loads the built-in ones first)."""
    return _REGISTRY


LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def count_layers(model: nn.Module) -> int:
    """Conv and Linear layers: the ones quantization is about."""
    return sum(isinstance(m, LAYER_TYPES) for m in model.modules())


# The backends that leave named layers in FP32 (QuantSpec.keep_float) on their own kernels: fx through
# QConfigMapping.set_module_name(name, None), pt2e (and pt2e-openvino, its graph) through the quantizer's module-name
# config, weight-only by not
# packing those layers, ONNX Runtime through quantize_static's nodes_to_exclude, OpenVINO through NNCF's
# ignored_scope (the module names mapped to the exported graph's nodes by qcore.backends.graph_names), TensorRT by
# turning off ModelOpt's quantizers of those modules (they run in the engine's float type). The others
# refuse such a spec rather than quietly quantize every layer.
KEEP_FLOAT_BACKENDS = ("fx", "pt2e", "pt2e-openvino", "weight-only", "ort", "openvino", "tensorrt")
# The backends that store named layers of an INT4 weight-only spec in INT8 instead (QuantSpec.keep_int8).
KEEP_INT8_BACKENDS = ("weight-only",)
# The backends that keep an activation quantizer in FP32 (a keep_float name "act:...", qcore.backends.act_quantizers):
# fx through its QConfigMapping, pt2e through the nodes it annotates. ONNX Runtime and OpenVINO place their own
# quantizers on the exported graph, with no name shared with torch.ao's.
KEEP_ACT_BACKENDS = ("fx", "pt2e", "pt2e-openvino")


# The backends whose weight rounding qcore reproduces (qcore.ptq.weights): bias correction and AdaRound's codes
# (pinned through qcore.quant.pinned) reach their kernels as chosen. The others quantize the weights themselves.
PTQ_BACKENDS = ("fx", "pt2e", "pt2e-openvino", "weight-only")


def ptq_backend_problem(spec: QuantSpec, backend: str) -> str | None:
    """Why ``backend`` cannot take what ``spec``'s bias correction or AdaRound chose (None: it can, or the spec
    asks for neither). Cross-layer equalization only changes the FP32 weights, so every backend takes it."""
    wants = [w for w, on in (("bias correction", spec.bias_correction), ("AdaRound", spec.rounding == "adaround"))
             if on]
    if not wants or backend in PTQ_BACKENDS:
        return None
    return (f"{' and '.join(wants)} need{'s' if len(wants) == 1 else ''} the backend's own weight rounding to be "
            f"known to qcore, and the {backend} backend quantizes the weights itself (its codes would not be the "
            f"ones chosen); allowed: {', '.join(PTQ_BACKENDS)} (or auto); cross-layer equalization (+cle) runs on "
            "every backend")


def keep_float_problem(spec: QuantSpec, backend: str) -> str | None:
    """Why ``backend`` cannot run ``spec``'s ``keep_float`` or ``keep_int8`` (None when it has neither, or the
    backend can)."""
    if spec.keep_float and backend not in KEEP_FLOAT_BACKENDS:
        return (f"the {backend} backend cannot keep layers in FP32 (keep_float); allowed: "
                f"{', '.join(KEEP_FLOAT_BACKENDS)} (or auto)")
    acts = [n for n in spec.keep_float if is_act(n)]
    if acts and backend not in KEEP_ACT_BACKENDS:
        return (f"the {backend} backend cannot keep an activation quantizer in FP32 ({acts[0]}): it places its own "
                f"quantizers, not torch.ao's; allowed: {', '.join(KEEP_ACT_BACKENDS)} (or auto)")
    if spec.keep_int8 and backend not in KEEP_INT8_BACKENDS:
        return (f"the {backend} backend cannot keep layers in INT8 under INT4 (keep_int8); allowed: "
                f"{', '.join(KEEP_INT8_BACKENDS)} (or auto)")
    return None
