"""Which layers cost the accuracy: per-layer sensitivity (Part 1) and the measured mixed-precision walk (Part 2).

- The quantizable layers of a model and the check of a spec's ``keep_float`` against them are
  :mod:`qcore.backends.layer_names` (below the sweep, which checks them too).
- :mod:`.errors`: SQNR, relative MSE and cosine similarity, and each layer's weight error under a spec (on the
  weight as deployed: BatchNorm folded).
- :mod:`.activations`: the rows of the activation quantizers between the layers (static INT8: the input,
  residual additions, activation functions) and their own output error.
- :mod:`.spearman`: rank correlation, for the bench that chose the walk's default metric.
- :mod:`.sensitivity`: one pass over every layer: weight error, output error (hooks, FP32 vs quantized) and,
  optionally, top-1 with only this layer left in FP32 / only this layer quantized, on the spec's own backend.
- :mod:`.rows`: the per-layer rows in the run database, committed one by one (a stopped job resumes).
- :mod:`.walk`: keep the next most sensitive layer in FP32, one fully measured point (a sweep row) per step.
- :mod:`.job`: the worker's runners for both (kinds ``"layers"`` and ``"mixed-walk"``).
"""

from __future__ import annotations

__all__ = []
