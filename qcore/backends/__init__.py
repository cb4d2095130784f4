"""Ways of running a QuantSpec, registered by name (``list_backends`` / ``get_backend``).

A backend turns an FP32 model, a spec and calibration batches into a :class:`Quantized`:
the runnable model, whether its arithmetic is ``native`` (real low-precision kernels) or
``simulated`` (fake-quantized or dequantized to float at run time), the deployable artifact
whose serialized size is reported, and how many layers were really quantized.

Each backend module registers itself on import; importing this package registers the
built-in ones. Backends never time anything: ``qcore.measure`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..spec import QuantSpec


class BackendUnavailable(RuntimeError):
    """This backend cannot run this spec here (the message says why); the sweep records a skip."""


@dataclass
class Quantized:
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
    engine: str = ""
    notes: list[str] = field(default_factory=list)
    # what was compiled or lowered for it (qcore.buildcache.BuildRecord), built or loaded from the cache;
    # a list the model may still append to (a program per new input shape)
    builds: list = field(default_factory=list)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.input_dtype))


class Backend:
    """Base class: ``name``, ``unsupported(spec, device)`` and ``quantize(...)``."""

    name = ""
    # True for engines with their own thread pool (ONNX Runtime, OpenVINO): timed in a block of their own,
    # never alternated with torch in one loop (their idle workers spin on the cores torch needs, and back)
    own_threads = False

    def unsupported(self, spec: QuantSpec, device: str) -> str | None:
        """None when this backend can run ``spec`` on ``device``; else the reason it cannot."""
        raise NotImplementedError

    def quantize(
        self, model: nn.Module, spec: QuantSpec, calib: Iterable[torch.Tensor], example: torch.Tensor, device: str
    ) -> Quantized:
        raise NotImplementedError


_REGISTRY: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    if backend.name in _REGISTRY:
        raise ValueError(f"backend {backend.name!r} is already registered")
    _REGISTRY[backend.name] = backend
    return backend


def list_backends() -> list[str]:
    _load_builtin()
    return list(_REGISTRY)


def get_backend(name: str) -> Backend:
    _load_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"backend={name!r} is not available; available: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def resolve(spec: QuantSpec, device: str, *, model: str | None = None, batch_size: int | None = None):
    """The backend that will run ``spec`` on ``device`` and why (``auto.Choice``); raises BackendUnavailable.

    For ``backend="auto"`` the policy is :func:`qcore.backends.auto.choose` (``model`` and
    ``batch_size`` select this machine's measurements, if any).
    """
    from .auto import Choice, choose

    _load_builtin()
    if spec.backend != "auto":
        backend = get_backend(spec.backend)
        reason = backend.unsupported(spec, device)
        if reason:
            raise BackendUnavailable(reason)
        return Choice(backend, "")
    return choose(spec, device, _REGISTRY, model=model, batch_size=batch_size)


def resolve_backend(spec: QuantSpec, device: str) -> Backend:
    """The backend that will run ``spec`` on ``device``; raises BackendUnavailable with the reason."""
    return resolve(spec, device).backend


def quantize(
    model: nn.Module,
    spec: QuantSpec,
    calib: Iterable[torch.Tensor],
    example: torch.Tensor,
    device: str = "cpu",
) -> Quantized:
    """One verb, one config: quantize a copy of ``model`` as ``spec`` says (``model`` is untouched)."""
    return resolve_backend(spec, device).quantize(model, spec, calib, example, device)


LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def count_layers(model: nn.Module) -> int:
    """Conv and Linear layers: the ones quantization is about."""
    return sum(isinstance(m, LAYER_TYPES) for m in model.modules())


_loaded = False


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import (  # noqa: F401  (each registers itself; ort and openvino import their engines lazily)
        float_cast,
        fx_int8,
        openvino_backend,
        ort,
        pt2e_int8,
        torchao_linear,
        weight_only,
        xnnpack,
    )
