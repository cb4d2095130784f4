"""What a spec's post-training algorithms (:mod:`qcore.ptq`) will cost before they run, for
:func:`qcore.runs.estimate.job_seconds`: an estimate from the forward speed a baseline's training recorded (seconds
per image of a whole forward pass) and the model's quantized layers, rough and said so.

- Cross-layer equalization: about a second (each pair of layers rescaled once, no images).
- Bias correction: the float model's layer outputs over the calibration images (one forward pass), then per layer
  a pass that stops at it (half the model on average): ``(1 + L / 2)`` passes of the calibration images.
- AdaRound: per layer, its inputs in the float and in the rounded model (two passes that stop at it) over
  ``adaround_images`` images, then ``adaround_iters`` steps on a batch of 32: the layer's forward and backward (three
  forward passes of that layer's share of the model), the element-wise work on its weights (the rectified
  sigmoid, the regularizer and Adam), :data:`ADAROUND_WEIGHT_S` per weight and step, and
  :data:`ADAROUND_STEP_S` per step (the optimizer's calls, whatever the layer's size).

Each is per calibration draw (bias correction and AdaRound are fitted on each draw's images again).
"""

from __future__ import annotations

import functools

from qcore.quant.spec import QuantSpec
from qcore.quant.spec_ptq import ADAROUND_BATCH

__all__ = ["CLE_S", "ADAROUND_WEIGHT_S", "ADAROUND_STEP_S", "ADAROUND_LAYER_S", "model_layers", "ptq_seconds"]

CLE_S = 1.0  # cross-layer equalization and high-bias absorption: a second or less on the models here
# An AdaRound step of one layer (qcore.ptq.adaround.adaround_codes on a batch of 32), measured on the project's 2-core
# CPU while other work ran (the best of 3; a quiet machine is faster): 1.1 ms for a 16x16x3x3 convolution, 5.9 ms for
# 128x128x3x3 (0.15 M weights), 88 ms for 512x512x3x3 (2.4 M): about 1 ms plus 35 ns a weight.
ADAROUND_WEIGHT_S = 3.5e-8
ADAROUND_STEP_S = 1e-3
# and per layer, whatever its steps: the copies, the final rounding and its error on every image (a sweep of
# mobilenet_v3_small at 5 steps a layer took 61 s for 54 layers under load 5.8; 0.3 s a layer is the quiet share)
ADAROUND_LAYER_S = 0.3


@functools.lru_cache(maxsize=32)
def model_layers(model: str) -> tuple[tuple[str, bool, int], ...]:
    """``(name, is_linear, weights)`` of each Conv and Linear layer of torchvision's ``model`` with a 10-class head,
    built on the meta device (nothing allocated); () when it cannot be built."""
    from torch import nn

    from qcore.nets.models import meta_model

    try:
        net = meta_model(model)
    except Exception:
        return ()
    return tuple((n, isinstance(m, nn.Linear), m.weight.numel()) for n, m in net.named_modules()
                 if n and isinstance(m, (nn.Conv2d, nn.Linear)))  # fmt: skip


def ptq_seconds(spec: QuantSpec, model: str, fwd: float, calib: int) -> tuple[float, float]:
    """``(cross-layer equalization and bias correction, AdaRound)`` seconds of ``spec``'s algorithms for one
    calibration draw of ``calib`` images, at ``fwd`` seconds per image of a whole forward pass of ``model``."""
    if spec.is_float or not spec.asks_ptq:
        return 0.0, 0.0
    layers = model_layers(model)
    quantized = [(n, w) for n, linear, w in layers
                 if (linear or spec.mode != "dynamic") and n not in spec.keep_float]  # fmt: skip
    count = len(quantized)
    share = count / max(len(layers), 1)  # of the model's compute, roughly: the layers walked
    cheap = (CLE_S if spec.equalize else 0.0) + (calib * fwd * (1 + count / 2) if spec.bias_correction else 0.0)
    if spec.rounding != "adaround":
        return cheap, 0.0
    images = min(spec.adaround_images, calib)
    capture = count * images * fwd  # two passes a layer, each stopping at it (half the model on average)
    step = 3 * ADAROUND_BATCH * fwd * share + sum(w for _, w in quantized) * ADAROUND_WEIGHT_S + count * ADAROUND_STEP_S
    return cheap, capture + spec.adaround_iters * step + count * ADAROUND_LAYER_S
