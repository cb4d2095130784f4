"""Weight observers that honour pinned codes (:mod:`qcore.quant.pinned`): the fx and pt2e backends' weights.

Each is torch's own min-max observer (per tensor or per output channel) with one change: when the tensor it
observes is pinned (AdaRound chose its codes, :mod:`qcore.ptq.adaround`), ``calculate_qparams`` returns the
pinned scale and zero point, so the int8 weights the kernel gets are the chosen codes. Unpinned tensors get
exactly what torch's observer computes. The tensor is identified once, on the first observation (a weight does
not change during calibration). The PT2E twin, over torchao's observer, is
:class:`qcore.backends._observer_pt2e.PinnedPerChannelPT2E`.
"""

from __future__ import annotations

from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

from qcore.quant import pinned

__all__ = ["PinnedMixin", "PinnedMinMaxObserver", "PinnedPerChannelMinMaxObserver"]


class PinnedMixin:
    """Mixed in before a min-max observer class: pinned qparams for a pinned tensor, the observer's otherwise."""

    def forward(self, x):
        if not getattr(self, "_pin_checked", False) and pinned.active():
            self._pin_checked, self._pin = True, pinned.lookup(x)
        return super().forward(x)

    def calculate_qparams(self):
        scale, zero_point = super().calculate_qparams()
        pin = getattr(self, "_pin", None)
        if pin is None:
            return scale, zero_point
        if pin[0].numel() != scale.numel():
            raise ValueError(f"a pinned weight has {pin[0].numel()} scales where the backend's quantizer has "
                             f"{scale.numel()}: the codes were chosen for another granularity")
        return pin[0].to(scale.dtype).reshape(scale.shape), pin[1].to(zero_point.dtype).reshape(zero_point.shape)


class PinnedMinMaxObserver(PinnedMixin, MinMaxObserver):
    """torch.ao's per-tensor min-max observer, pins honoured."""


class PinnedPerChannelMinMaxObserver(PinnedMixin, PerChannelMinMaxObserver):
    """torch.ao's per-channel min-max observer, pins honoured."""
