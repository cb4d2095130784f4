"""The post-training algorithms of a spec, in order, on a copy of the FP32 model: what a backend then quantizes.

1. BatchNorm folded (:mod:`qcore.ptq.fold`): the weights the kernels will see.
2. ``equalize``: cross-layer equalization, then high-bias absorption (:mod:`qcore.ptq.cle`).
3. Layer by layer, in the order the model calls them, for the layers the backend will quantize (Conv2d and
   Linear; Linear only in dynamic mode; not those kept in FP32): ``rounding="adaround"`` chooses the layer's codes
   (:mod:`qcore.ptq.adaround`) and pins them (:mod:`qcore.quant.pinned`); ``bias_correction`` then adds to the
   layer's bias the mean difference, per output channel over the calibration images, between the float model's
   output of that layer and the output of the model whose layers so far hold their quantized weights (Nagel et
   al. 2019, empirical bias correction: it also absorbs the shift the earlier layers' rounding left). Activation
   quantization is not part of that simulation: the correction is for the weights.

The returned model holds float weights (AdaRound's: the float values of the chosen codes) and corrected biases;
the backend quantizes it as it would any model, and :func:`qcore.quant.pinned.pinned` around that makes it take
AdaRound's codes as they are.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from qcore.backends.fx_int8 import called_modules
from qcore.nets.train import Cancelled
from qcore.ptq.adaround import adaround_codes, layer_forward
from qcore.ptq.capture import layer_inputs, output_means
from qcore.ptq.cle import absorb_high_biases, equalize
from qcore.ptq.fold import fold
from qcore.ptq.weights import grid_for
from qcore.quant.pinned import pinned
from qcore.quant.spec import QuantSpec
from qcore.quant.spec_ptq import ADAROUND_BATCH

__all__ = ["Prepared", "apply", "quantize"]

ProgressFn = Callable[[int, int, str], None]


@dataclass
class Prepared:
    """The model to quantize, the pins its AdaRound codes need, what was done and what it cost."""

    model: nn.Module
    pins: dict = field(default_factory=dict)
    codes: dict[str, torch.Tensor] = field(default_factory=dict)  # layer -> AdaRound's codes (the grid's rows)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    layers: int = 0  # layers rounded or corrected


def _quantized_layers(model: nn.Module, spec: QuantSpec, example: torch.Tensor) -> list[str]:
    types = (nn.Linear,) if spec.mode == "dynamic" else (nn.Conv2d, nn.Linear)
    return [n for n in called_modules(model, example, types) if n not in spec.keep_float]


def _cle_notes(eq, folded) -> list[str]:
    if not eq.pairs:
        notes = ["cross-layer equalization: this model has no equalizable pair of layers (no two layers joined "
                 "only by a ReLU); the spec ran without it"]
    else:
        notes = [f"cross-layer equalization: {len(eq.pairs)} pairs of layers equalized"
                 + (f", {eq.relu6_replaced} ReLU6 replaced by ReLU (as in the paper)" if eq.relu6_replaced else "")
                 + f", {eq.absorbed} channels' high biases absorbed into the next layer"]
    if eq.blocked:
        why = "; ".join(f"{n} where {reason}" for reason, n in eq.blocked.most_common())
        notes.append(f"cross-layer equalization skipped layers: {why}")
    return notes


def apply(model: nn.Module, spec: QuantSpec, backend: str, calib: Sequence[torch.Tensor], example: torch.Tensor,
          progress: ProgressFn | None = None, cancel: Callable[[], bool] | None = None) -> Prepared:
    """``model`` (untouched) prepared for ``backend`` as ``spec``'s algorithms say, on the calibration batches
    ``calib``; raises :class:`qcore.nets.train.Cancelled` when ``cancel()`` turns True (nothing is kept)."""
    progress = progress or (lambda d, t, m: None)
    cancel = cancel or (lambda: False)
    start = time.perf_counter()
    calib = [x.detach().float().cpu() for x in calib]
    example = example.detach().float().cpu()[:1]
    folded = fold(model)
    out = Prepared(folded.model)
    if folded.total_bn:
        out.notes.append(f"{folded.folded} of {folded.total_bn} BatchNorm layers folded before the post-training "
                         "algorithms")
    if spec.equalize:
        progress(0, 1, "cross-layer equalization")
        eq = equalize(folded)
        absorb_high_biases(folded, eq)
        out.notes += _cle_notes(eq, folded)
    adaround, bc = spec.rounding == "adaround", spec.bias_correction
    if adaround or bc:
        _per_layer(out, spec, backend, calib, example, progress, cancel, adaround, bc)
    out.seconds = time.perf_counter() - start
    return out


def _per_layer(out: Prepared, spec, backend, calib, example, progress, cancel, adaround: bool, bc: bool) -> None:
    model = out.model
    float_model = copy.deepcopy(model)  # the target: float weights, as equalized
    names = _quantized_layers(model, spec, example)
    images = sum(len(x) for x in calib)
    if adaround and images < ADAROUND_BATCH:
        raise ValueError(f"AdaRound needs at least {ADAROUND_BATCH} calibration images (one batch); this sweep has "
                         f"{images}; allowed: calib_size >= {ADAROUND_BATCH}")
    ada_batches = _rebatch(_first_images(calib, spec.adaround_images)) if adaround else []
    bc_batches = ada_batches or _rebatch(calib)  # with AdaRound, its images: the inputs it captured serve both
    means = output_means(float_model, names, bc_batches) if bc else {}
    flipped, gains, shifts, floats = [], [], [], []
    for i, name in enumerate(names):
        if cancel():
            raise Cancelled("cancelled while the post-training algorithms ran: nothing was stored")
        progress(i, len(names), f"{'AdaRound' if adaround else 'bias correction'}: layer {i + 1} of {len(names)} "
                                f"({name})")
        layer = model.get_submodule(name)
        bits = 8 if name in spec.keep_int8 else None
        grid = grid_for(layer.weight, spec, backend, bits)
        if adaround:
            x_q = layer_inputs(model, name, ada_batches)
            x_fp = layer_inputs(float_model, name, ada_batches)
            with torch.no_grad():
                target = layer_forward(float_model.get_submodule(name), x_fp, float_model.get_submodule(name).weight)
            del x_fp
            codes, stats = adaround_codes(layer, grid, x_q, target, spec.adaround_iters)
            w, pins = grid.pin(codes)
            out.pins.update(pins)
            out.codes[name] = codes
            flipped.append(stats["flipped"])
            gains.append((stats["error_nearest"], stats["error_adaround"]))
        else:
            w = grid.fake()
        saved = layer.weight.detach().clone()
        layer.weight.data.copy_(w)
        if bc:
            if adaround:  # the rounded layer on the inputs AdaRound captured: no second pass
                with torch.no_grad():
                    y = layer_forward(layer, x_q, w)
                got = y.transpose(0, 1).reshape(y.shape[1], -1).double().mean(1)
            else:
                got = output_means(model, [name], bc_batches, stop_after=name)[name]
            shift = (means[name] - got).float()
            if layer.bias is None:
                layer.bias = nn.Parameter(torch.zeros_like(shift), requires_grad=False)
            layer.bias.data.add_(shift)
            shifts.append(float(shift.abs().mean()))
        if not adaround:  # restored after the walk: the backend rounds the float weight itself (to the same codes)
            floats.append((layer, saved))
    for layer, saved in floats:
        layer.weight.data.copy_(saved)
    out.layers = len(names)
    if adaround:
        better = sum(a < n for n, a in gains)
        share = 100 * sum(flipped) / max(len(flipped), 1)
        out.notes.append(f"AdaRound: {len(names)} layers, {spec.adaround_iters} steps each on "
                         f"{sum(len(x) for x in ada_batches)} calibration images; {share:.1f}% of weights rounded "
                         f"the other way than nearest on average; the output error fell in {better} of {len(names)} "
                         "layers")
    if bc:
        used = sum(len(x) for x in bc_batches)
        out.notes.append(f"bias correction: {len(names)} layers' biases corrected on {used} calibration images "
                         f"(mean |shift| {sum(shifts) / max(len(shifts), 1):.2e})")


def _rebatch(batches: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The same images in fewer, larger batches for the passes that capture a layer (at 32x32, 256 images a batch:
    one call instead of eight, where a small network's time is mostly each op's overhead); 32 a batch at 224x224."""
    if not batches:
        return []
    x = torch.cat(list(batches))
    size = max(32, min(256, 2**18 // max(x.shape[-1] * x.shape[-2], 1)))
    return list(x.split(size))


def _first_images(batches: Sequence[torch.Tensor], n: int) -> list[torch.Tensor]:
    out, have = [], 0
    for x in batches:
        if have >= n:
            break
        out.append(x[: n - have])
        have += len(out[-1])
    return out


def quantize(backend, model: nn.Module, spec: QuantSpec, calib: Sequence[torch.Tensor], example: torch.Tensor,
             device: str, progress: ProgressFn | None = None, cancel: Callable[[], bool] | None = None):
    """``backend.quantize(...)`` of ``spec``, after its post-training algorithms (:func:`apply`) where it asks for
    any: AdaRound's codes pinned for the length of the build, the algorithms' notes first among the result's,
    their seconds in ``ptq_seconds``. A pinned code the backend never looked up is named in the notes (that layer
    was rounded to nearest by the backend)."""
    if not spec.asks_ptq:
        return backend.quantize(model, spec, calib, example, device)
    prep = apply(model, spec, backend.name, calib, example, progress, cancel)
    with pinned(prep.pins) as used:
        q = backend.quantize(prep.model, spec, calib, example, device)
    q.ptq_seconds = prep.seconds
    missed = len(set(prep.pins) - used)
    if missed:
        prep.notes.append(f"{missed} of {len(prep.pins)} layers' AdaRound codes did not reach the kernel: the "
                          f"{backend.name} backend quantized those weights itself (nearest rounding)")
    q.notes = prep.notes + [f"post-training algorithms took {prep.seconds:.1f} s"] + list(q.notes)
    return q
