"""Post-training algorithms that win back accuracy without training: cross-layer equalization, bias correction,
AdaRound (``QuantSpec.equalize``, ``bias_correction``, ``rounding``; :mod:`qcore.quant.spec_ptq`).

:func:`qcore.ptq.run.apply` prepares a copy of the FP32 model for the backend that will quantize it
(:mod:`.fold`, :mod:`.cle`, :mod:`.adaround`, :mod:`.weights`, :mod:`.capture`). It stands above
:mod:`qcore.backends` (it reproduces their weight quantizers) and below the sweep that calls it; the backends learn
of AdaRound's codes only through :mod:`qcore.quant.pinned`.
"""

__all__ = []  # import the modules themselves (qcore.ptq.run, ...): each pulls in torch
