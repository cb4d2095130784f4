"""Ways of running a QuantSpec, registered by name: the one answer to "which backend runs this spec".

A backend turns an FP32 model, a spec and calibration batches into a :class:`Quantized`: the runnable
model, whether its arithmetic is ``native`` (real low-precision kernels) or ``simulated`` (fake-quantized
or dequantized to float at run time), the deployable artifact whose serialized size is reported, and
how many layers were really quantized.

Each backend declares the kinds of spec it implements (``kinds``) and says why it cannot run a given
spec on a given device (``unsupported``); :func:`kind_problem`, :func:`backends_for`, :func:`resolve` and
:func:`resolve_backend` read only that. What ``backend="auto"`` picks, and why, is the policy of
:mod:`qcore.backends.auto` (its default order, or this machine's measurements); its default order is also
the order the backends of a kind are listed in here. ``QuantSpec`` checks the maths (INT4 activations do
not exist), not the backends.
Importing this package registers the built-in backends lazily; backends never time anything
(``qcore.metrics.measure`` does). Beside them: :mod:`.buildcache` (compiled builds on disk),
:mod:`.layer_names` (the layers a spec can quantize or keep), :mod:`.qat_choice` (which backends run a QAT spec).
Imports env, quant, metrics and nets; never qat (above it) or anything higher.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from qcore.backends.auto import ORDER, Choice, choose
from qcore.backends.base import (
    LAYER_TYPES,
    Backend,
    BackendUnavailable,
    Quantized,
    count_layers,
    ptq_backend_problem,
    register_backend,
    registered,
)
from qcore.backends.qat_choice import QAT_BACKENDS, qat_backend_problem, resolve_qat
from qcore.quant.spec import QuantSpec, expand_grid

__all__ = ["Backend", "BackendUnavailable", "Quantized", "LAYER_TYPES", "count_layers", "register_backend",
           "list_backends", "get_backend", "kind_problem", "backends_for", "Choice", "resolve", "resolve_backend",
           "runnable_grid", "quantize"]


def list_backends() -> list[str]:
    """Every registered backend's name."""
    return list(_table())


def get_backend(name: str) -> Backend:
    """The backend registered as ``name``; raises ``ValueError`` naming the available ones."""
    table = _table()
    if name not in table:
        raise ValueError(f"backend={name!r} is not available; available: {', '.join(table)}")
    return table[name]


def _preferred(kind: str) -> list[str]:
    """Every backend that implements ``kind``: auto's default order first, then the rest."""
    table = _table()
    names = [n for n in ORDER.get(kind, ()) if n in table] + list(table)
    return [n for n in dict.fromkeys(names) if kind in table[n].kinds]


def kind_problem(spec: QuantSpec) -> str | None:
    """Why ``spec.backend`` can never run a spec of this kind (None when it can, or for ``auto``):
    ``backend='torchao' does not run mode='static'; allowed: auto, fx, pt2e, openvino, ort``."""
    if spec.mode == "qat":  # trained, then run as its static INT8 counterpart: qcore.backends.qat_choice says which
        return qat_backend_problem(spec)
    if spec.backend == "auto":
        return None if _preferred(spec.kind) else f"no backend runs {spec.kind} specs"
    backend = get_backend(spec.backend)
    if spec.kind in backend.kinds:  # bias correction and AdaRound: fx, pt2e, weight-only only (qcore.ptq)
        return ptq_backend_problem(spec, spec.backend)
    what = spec.precision if spec.is_float else f"mode={spec.mode!r}"
    return f"backend={spec.backend!r} does not run {what}; allowed: {', '.join(['auto', *_preferred(spec.kind)])}"


def backends_for(spec: QuantSpec, device: str) -> list[str]:
    """The backends that can run ``spec`` on ``device`` (whatever ``spec.backend`` names), auto's first."""
    table = _table()
    if spec.mode == "qat":  # the backends of its static counterpart that have a QAT flow
        return [n for n in backends_for(spec.ptq_spec, device) if n in QAT_BACKENDS]
    return [n for n in _preferred(spec.kind) if table[n].problem(spec, device) is None]


def resolve(spec: QuantSpec, device: str, *, model: str | None = None, batch_size: int | None = None) -> Choice:
    """The backend that will run ``spec`` on ``device`` and why (a :class:`~qcore.backends.auto.Choice`);
    raises BackendUnavailable with the reason.

    For ``backend="auto"`` the policy is :func:`qcore.backends.auto.choose` (``model`` and ``batch_size``
    select this machine's measurements, if any); a backend named by the spec is a choice already made
    (``why`` is empty).
    """
    table = _table()
    if spec.mode == "qat":
        return resolve_qat(spec, device, table, model=model, batch_size=batch_size)
    if spec.backend != "auto":
        reason = kind_problem(spec) or table[spec.backend].problem(spec, device)
        if reason:
            raise BackendUnavailable(reason)
        return Choice(table[spec.backend], "")
    return choose(spec, device, table, model=model, batch_size=batch_size)


def resolve_backend(spec: QuantSpec, device: str) -> Backend:
    """The backend that will run ``spec`` on ``device``; raises BackendUnavailable with the reason."""
    return resolve(spec, device).backend


def runnable_grid(**options) -> tuple[list[QuantSpec], list[tuple[dict, str]]]:
    """:func:`qcore.quant.spec.expand_grid`, less the specs whose backend never runs their kind (skipped with
    the reason from :func:`kind_problem`): the grid the CLI and the app's Sweep page measure."""
    specs, skipped = expand_grid(**options)
    keep = []
    for spec in specs:
        if (why := kind_problem(spec)) is None:
            keep.append(spec)
        else:
            skipped.append(({k: getattr(spec, k) for k in options if hasattr(spec, k)}, why))
    return keep, skipped


def quantize(
    model: nn.Module,
    spec: QuantSpec,
    calib: Iterable[torch.Tensor],
    example: torch.Tensor,
    device: str = "cpu",
) -> Quantized:
    """One verb, one config: quantize a copy of ``model`` as ``spec`` says (``model`` is untouched)."""
    return resolve_backend(spec, device).quantize(model, spec, calib, example, device)


_loaded = False


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from qcore.backends import (  # noqa: F401  (each registers itself; ort, openvino, xnnpack, tensorrt import their engines lazily)
        float_cast,
        fx_int8,
        openvino_backend,
        ort,
        pt2e_int8,
        pt2e_openvino,
        tensorrt,
        torchao_linear,
        weight_only,
        xnnpack,
    )


# The built-in backends in the order _load_builtin imports them: the registry is listed in this order whichever
# module was imported first (a test that imports qcore.backends.tensorrt directly registers it before the rest)
_BUILTIN = ("float", "fx", "openvino", "ort", "pt2e", "pt2e-openvino", "tensorrt", "torchao", "weight-only", "xnnpack")


def _table() -> dict[str, Backend]:
    """The registry, with the built-in backends loaded (once) the first time it is read: the built-in ones in
    :data:`_BUILTIN`'s order, then any other in the order it registered."""
    _load_builtin()
    table = registered()
    rank = {n: i for i, n in enumerate(_BUILTIN)}
    return {n: table[n] for n in sorted(table, key=lambda n: rank.get(n, len(rank)))}
