"""Which backend runs a QAT spec: the backends that have a QAT flow (:data:`QAT_BACKENDS`, the flows themselves
are :data:`qcore.qat.flows.FLOWS`), why the others have none, and the choice among them.

A QAT spec (``mode="qat"``) is deployed as its static counterpart (:attr:`QuantSpec.ptq_spec`) on the backend
that counterpart resolves to, restricted to :data:`QAT_BACKENDS`; ``backend="auto"`` follows
:func:`qcore.backends.auto.choose` over those backends. It lives here, below :mod:`qcore.qat`, so that the
registry (:mod:`qcore.backends`) answers for QAT specs without importing the training code above it.
"""

from __future__ import annotations

from collections.abc import Mapping

from qcore.backends.base import BackendUnavailable
from qcore.quant.spec import QuantSpec

__all__ = ["QAT_BACKENDS", "qat_backend_problem", "resolve_qat"]

# Backends a QAT spec can be trained for and then run on (fx: INT8 static; weight-only: INT4 weight-only, see
# qcore.qat.weight_only_flow); the reason the others cannot.
QAT_BACKENDS = ("fx", "weight-only")
_WHY_NOT = {
    "pt2e": "QAT here trains through torch.ao FX (prepare_qat_fx) and runs on the fx backend's int8 kernels; "
            "the pt2e flow (prepare_qat_pt2e, then an AOTInductor build) is not wired",
}


def _why_not(name: str) -> str:
    return _WHY_NOT.get(name, f"the {name} backend has no QAT flow here (QAT runs on: {', '.join(QAT_BACKENDS)})")


def qat_backend_problem(spec: QuantSpec) -> str | None:
    """Why the backend a QAT spec names can never run it (None for ``auto`` and for a QAT backend)."""
    if spec.backend in ("auto", *QAT_BACKENDS):
        return None
    return f"backend={spec.backend!r} does not run mode='qat': {_why_not(spec.backend)}; allowed: auto, " + \
        ", ".join(QAT_BACKENDS)


def resolve_qat(spec: QuantSpec, device: str, table: Mapping[str, object], *, model: str | None = None,
                batch_size: int | None = None):
    """The backend (a :class:`~qcore.backends.auto.Choice`) that runs a QAT spec's converted model: the choice
    for its static counterpart among :data:`QAT_BACKENDS`. Raises BackendUnavailable with the reason."""
    from qcore.backends.auto import Choice, choose

    if (why := qat_backend_problem(spec)) is not None:
        raise BackendUnavailable(why)
    ptq = spec.ptq_spec
    if spec.backend != "auto":
        backend = table[spec.backend]
        if (reason := backend.problem(ptq, device)) is not None:
            raise BackendUnavailable(reason)
        return Choice(backend, "")
    qat_table = {n: b for n, b in table.items() if n in QAT_BACKENDS}
    choice = choose(ptq, device, qat_table, model=model, batch_size=batch_size)
    choice.why += " (QAT: among the backends with a QAT flow, " + ", ".join(QAT_BACKENDS) + ")"
    return choice
