"""The glue between qcore's calibration methods and torch's int8 flows, for the fx and pt2e backends.

torch.ao's FX flow and torchao's PT2E flow insert observers into the model: modules that watch the
activations during calibration, then give the scale and zero point. :class:`CalibrationObserverMixin` is
such an observer running one of :mod:`qcore.quant.observers`' methods (the user's: entropy, MSE, ...). Each flow
recognises observers by its own base class, so there are two named classes over the same mixin:
:class:`CalibrationObserver` here (torch.ao's ``ObserverBase``) and
:class:`~qcore.backends._observer_pt2e.CalibrationObserverPT2E` (torchao's, in a module of its own so that
torchao is imported only when PT2E runs). :func:`calibrate` is the calibration loop both backends share.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.ao.quantization.observer import ObserverBase

from qcore.metrics.measure import stopwatch
from qcore.quant.observers import get_calibrator

__all__ = ["CalibrationObserverMixin", "CalibrationObserver", "calibrate"]


class CalibrationObserverMixin:
    """Accumulates statistics with a :class:`qcore.quant.observers.Calibrator`; ``calculate_qparams`` solves once.

    Mixed in before a flow's ``ObserverBase``; used through ``.with_args(method="entropy", dtype=...,
    qscheme=..., quant_min=0, quant_max=255)`` in a QConfig or a quantization spec.
    """

    def __init__(
        self,
        method: str = "minmax",
        percentile: float = 99.99,
        dtype=torch.quint8,
        qscheme=torch.per_tensor_affine,
        quant_min: int = 0,
        quant_max: int = 255,
        is_dynamic: bool = False,
        **_ignored,
    ) -> None:
        super().__init__(dtype=dtype, is_dynamic=is_dynamic)
        self.qscheme = qscheme
        self.quant_min, self.quant_max = quant_min, quant_max
        self.method = method
        self.calibrator = get_calibrator(method, percentile)
        self._cached: tuple[torch.Tensor, torch.Tensor] | None = None
        self.register_buffer("min_val", torch.tensor(float("inf")))
        self.register_buffer("max_val", torch.tensor(float("-inf")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() and x.is_floating_point():
            try:
                self.calibrator.update(x)
            except ValueError as e:  # NaN or Inf: say which quantizer saw it
                where = getattr(self, "qcore_name", "") or "an activation quantizer"
                raise ValueError(f"{where}: {e}") from None
            self._cached = None
            self.min_val.fill_(self.calibrator.min_val)
            self.max_val.fill_(self.calibrator.max_val)
        return x

    def calculate_qparams(self):
        if self._cached is None:
            symmetric = self.qscheme in (torch.per_tensor_symmetric, torch.per_channel_symmetric)
            self._cached = self.calibrator.qparams(self.quant_min, self.quant_max, symmetric)
        return self._cached

    def extra_repr(self) -> str:
        return f"method={self.method}, dtype={self.dtype}, qscheme={self.qscheme}"


class CalibrationObserver(CalibrationObserverMixin, ObserverBase):
    """qcore's calibration methods as a torch.ao observer (the fx backend's QConfig)."""


def calibrate(prepared: nn.Module, batches: Iterable[torch.Tensor]) -> float:
    """Run the calibration ``batches`` through a prepared model, then solve every qcore observer's ranges
    (so the time returned, in seconds, includes the entropy or MSE search, not only the forward passes)."""
    for name, m in prepared.named_modules():
        if isinstance(m, CalibrationObserverMixin):
            m.qcore_name = f"the activation quantizer {name}"
    with stopwatch() as t, torch.no_grad():
        for x in batches:
            prepared(x)
        for m in prepared.modules():
            if isinstance(m, CalibrationObserverMixin):
                m.calculate_qparams()
    return t[0]
