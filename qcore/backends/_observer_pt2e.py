"""qcore's calibration methods as a torchao PT2E observer (see :mod:`qcore.backends._observer`).

A module of its own because importing torchao takes seconds: only the pt2e backend, when it runs, needs it.
"""

from __future__ import annotations

from torchao.quantization.pt2e.observer import ObserverBase, PerChannelMinMaxObserver

from qcore.backends._observer import CalibrationObserverMixin
from qcore.backends.pinned_observers import PinnedMixin

__all__ = ["CalibrationObserverPT2E", "PinnedPerChannelPT2E"]


class CalibrationObserverPT2E(CalibrationObserverMixin, ObserverBase):
    """qcore's calibration methods as a torchao PT2E observer (the pt2e backend's quantization spec)."""


class PinnedPerChannelPT2E(PinnedMixin, PerChannelMinMaxObserver):
    """torchao's per-channel min-max weight observer, pinned codes honoured (:mod:`qcore.backends.pinned_observers`)."""
