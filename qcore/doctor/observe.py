"""The doctor's measurements on real tensors: a layer's weight as deployed, and an activation quantizer's tensor on
the calibration images and on held-out images. :mod:`qcore.doctor.causes` reads them as causes.

Weights (:func:`weight_stats`), on the weight the kernels hold (BatchNorm folded, :func:`qcore.layers.errors.deployed`):

- each output channel's range (``max |w|`` for symmetric weights, which every INT8 kernel takes; ``max - min``
  for asymmetric weight-only) and the widest over the median (a per-tensor scale is set by the widest);
- the outlier share: the share of a row's values (the tensor, a channel or a group, as the spec's granularity cuts
  it) with ``|w|`` beyond half the row's range, for the row where it is least; and that row's range over the
  99.99th percentile of its ``|w|`` (nearest rank);
- the weight's error under the spec: each output channel's relative MSE, averaged over the channels
  (:func:`channel_rel_mse`; quantized as the backend does, :func:`qcore.layers.errors.dequantized_weight`).

Activations (:func:`act_stats`): the model prepared by torch.ao FX for the static INT8 spec
(:func:`qcore.backends.fx_int8.prepared_fx`) and calibrated on the calibration images, as the fx backend does; the
tensor an observer reads (an activation quantizer ``act:...`` of :mod:`qcore.backends.act_quantizers`, or the input
of a layer: the observer that feeds it) is read by a forward pre-hook, on the calibration images and on held-out
images. A value is *clipped* when it lies more than half a step outside the range ``[(qmin - zp) s, (qmax - zp) s]``
the calibration chose (its rounding error exceeds what any in-range value gets); relative MSE is
``sum (x - fq(x))^2 / sum x^2`` with ``fq`` torch's ``fake_quantize_per_tensor_affine``. The same tensors feed a
fresh calibrator of each other method (and the spec's own, solved asymmetric) so that the held-out error of
each alternative is measured on the same values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from qcore.layers.activations import observer_calls, observer_qparams
from qcore.quant.observers import get_calibrator, nearest_rank
from qcore.quant.spec import CHOICES, QuantSpec

__all__ = ["SAMPLE", "WeightStats", "ActStats", "channel_ranges", "weight_stats", "channel_rel_mse", "weight_noise",
           "model_weights", "removed", "cle_noise", "held_out", "act_stats"]

SAMPLE = 1 << 16  # values of each batch kept (evenly strided) for the 99.99th percentile of a large tensor


@dataclass
class WeightStats:
    name: str
    channels: int
    ratio: float  # widest channel range / median channel range
    widest: int
    widest_range: float
    median_range: float
    outlier_share: float  # share of the row's values with |w| beyond half its range (the row with the least)
    range_over_p9999: float  # that row's max |w| / the 99.99th percentile of its |w|
    rel_mse: float  # under the spec: channel_rel_mse
    row: int = 0  # that row
    rows: int = 1  # rows the spec's granularity cuts the weight into


def channel_ranges(w: torch.Tensor, symmetric: bool) -> torch.Tensor:
    """Each output channel's range: ``max |w|`` (symmetric) or ``max - min``."""
    rows = w.detach().float().reshape(w.shape[0], -1)
    return rows.abs().amax(1) if symmetric else rows.amax(1) - rows.amin(1)


def _weight_rows(w: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    from qcore.layers.clipping import rows_of

    return rows_of(w, spec)


def _weights_symmetric(spec: QuantSpec) -> bool:
    return spec.symmetric if spec.ptq_spec.mode == "weight-only" else True  # int8 kernels: symmetric weights


def weight_stats(name: str, w: torch.Tensor, spec: QuantSpec, rel_mse: float) -> WeightStats:
    """The numbers of the module's doc for weight ``w`` of layer ``name`` (its error ``rel_mse`` measured apart).
    The outlier share and the range over the 99.99th percentile are the row's (tensor, channel or group) whose
    range is set by the fewest values."""
    w = w.detach().float()
    ranges = channel_ranges(w, _weights_symmetric(spec))
    median = float(ranges.median())
    widest = int(ranges.argmax())
    rows = _weight_rows(w, spec).abs()
    amax = rows.amax(1)
    shares = (rows > amax.unsqueeze(1) / 2).sum(1).double() / rows.shape[1]
    worst = int(shares.argmin())
    p = nearest_rank(rows[worst], 99.99)
    return WeightStats(name, int(w.shape[0]), float(ranges[widest]) / median if median > 0 else math.inf, widest,
                       float(ranges[widest]), median, float(shares[worst]),
                       float(amax[worst]) / p if p > 0 else math.inf, rel_mse, worst, int(rows.shape[0]))


def channel_rel_mse(w: torch.Tensor, q: torch.Tensor) -> float:
    """The relative MSE of each output channel (``sum (w - q)^2 / sum w^2`` over the channel), averaged over the
    channels with any signal: a channel the scale leaves a few codes counts as much as the widest one (a whole
    tensor's relative MSE is the widest channels' error, whose energy dominates)."""
    w, q = w.detach().double().reshape(w.shape[0], -1), q.detach().double().reshape(w.shape[0], -1)
    signal = (w * w).sum(1)
    keep = signal > 0
    return float((((w - q) ** 2).sum(1)[keep] / signal[keep]).mean()) if bool(keep.any()) else math.nan


def weight_noise(model: nn.Module, names: list[str], spec: QuantSpec) -> dict[str, float]:
    """Each named layer's weight error under ``spec`` (:func:`channel_rel_mse` of its weight quantized ->
    dequantized as the backend does, :func:`qcore.layers.errors.dequantized_weight`); ``model`` as deployed
    (BatchNorm folded). A name ``model`` lacks is left out."""
    from qcore.layers.errors import dequantized_weight

    modules = dict(model.named_modules())
    out = {}
    for n in names:
        if n in modules:
            e = channel_rel_mse(modules[n].weight, dequantized_weight(modules[n], spec.ptq_spec))
            if math.isfinite(e):
                out[n] = e
    return out


def held_out(p, n: int) -> list[torch.Tensor]:
    """The first ``n`` evaluation images of a Prepared (``p.eval_batches``), as batches."""
    out, seen = [], 0
    for x, _ in p.eval_batches:
        if seen >= n:
            break
        out.append(x[: n - seen])
        seen += out[-1].shape[0]
    return out


def model_weights(model: nn.Module, spec: QuantSpec) -> list[str]:
    """The layers ``spec`` quantizes: every Conv and Linear (Linear only for dynamic INT8)."""
    from qcore.backends.layer_names import layer_names

    names = layer_names(model)
    if spec.mode == "dynamic":  # dynamic INT8 quantizes Linear layers only
        names = [n for n in names if isinstance(model.get_submodule(n), nn.Linear)]
    return names


def removed(base: dict[str, float], fixed: dict[str, float]) -> float:
    """The share of the summed weight error ``fixed`` removes (layers both measured)."""
    common = [n for n in base if n in fixed]
    before = sum(base[n] for n in common)
    return 1.0 - sum(fixed[n] for n in common) / before if before > 0 else 0.0


def cle_noise(model: nn.Module, names: list[str], spec: QuantSpec) -> dict[str, float] | None:
    """:func:`weight_noise` after cross-layer equalization (:mod:`qcore.ptq.cle`); None for a model torch.fx
    cannot trace."""
    from qcore.ptq.cle import equalize
    from qcore.ptq.fold import FoldError, fold

    try:
        folded = fold(model)
    except FoldError:
        return None
    equalize(folded)
    return weight_noise(folded.model, [n for n in names if n in dict(folded.model.named_modules())], spec)


@dataclass
class ActStats:
    name: str  # "act:..." or the layer whose input it is
    source: str  # the observer node and call that reads the tensor: two names with one source are one tensor
    lo: float
    hi: float
    scale: float
    zero_point: int
    qmin: int
    qmax: int
    calib_min: float = math.inf
    calib_max: float = -math.inf
    calib_values: int = 0
    calib_clipped: int = 0
    beyond_half: int = 0
    eval_values: int = 0
    eval_clipped: int = 0
    signal: float = 0.0
    noise: float = 0.0
    clip_noise: float = 0.0
    range_over_p9999: float = math.nan
    calibrated: bool = True  # False: a fixed range (sigmoid's), no calibration method chose it
    alternatives: dict[str, float] = field(default_factory=dict)  # "asymmetric" / a method -> held-out rel MSE

    @property
    def calib_clip(self) -> float:
        return self.calib_clipped / self.calib_values if self.calib_values else 0.0

    @property
    def eval_clip(self) -> float:
        return self.eval_clipped / self.eval_values if self.eval_values else 0.0

    @property
    def outlier_share(self) -> float:
        return self.beyond_half / self.calib_values if self.calib_values else 0.0

    @property
    def rel_mse(self) -> float:
        return self.noise / self.signal if self.signal > 0 else math.nan

    @property
    def clip_noise_share(self) -> float:
        return self.clip_noise / self.noise if self.noise > 0 else 0.0

    @property
    def codes_used(self) -> float:
        """The share of the codes that values of the calibration images' sign can reach."""
        span = self.qmax - self.qmin
        neg = max(0, self.zero_point - self.qmin) if self.calib_min < 0 else 0
        pos = max(0, self.qmax - self.zero_point) if self.calib_max > 0 else 0
        return min(1.0, (neg + pos) / span) if span else 1.0


def _is_observer(m) -> bool:
    from torch.ao.quantization.quantize import _is_activation_post_process

    return _is_activation_post_process(m)


def _feeding(prepared: torch.fx.GraphModule, layer: str):
    """The observer node whose tensor ``layer`` reads (through shape-only or range-sharing ops), or None."""
    node = next((n for n in prepared.graph.nodes if n.op == "call_module" and n.target == layer), None)
    src = node.args[0] if node is not None and node.args else None
    for _ in range(8):
        if not isinstance(src, torch.fx.Node):
            return None
        if src.op == "call_module" and _is_observer(prepared.get_submodule(src.target)):
            return src
        inputs = src.all_input_nodes
        if len(inputs) != 1:
            return None
        src = inputs[0]
    return None


def _targets(prepared, model, wants: list[str]) -> dict[str, tuple[nn.Module, int, str]]:
    """name -> (observer instance, which of its calls in one forward reads that tensor, that call's name)."""
    from qcore.backends.act_quantizers import is_act, quantizers

    call_of: dict[str, int] = {}
    seen: dict[int, int] = {}
    for node in prepared.graph.nodes:
        if node.op == "call_module" and _is_observer(m := prepared.get_submodule(node.target)):
            call_of[node.name] = seen.get(id(m), 0)
            seen[id(m)] = call_of[node.name] + 1
    found = {q.name: q for q in quantizers(prepared, model)} if any(is_act(w) for w in wants) else {}
    out = {}
    for want in wants:
        if is_act(want):
            if want in found:
                q = found[want]
                out[want] = (prepared.get_submodule(q.observer), q.call, f"{q.observer}#{q.call}")
        elif (obs := _feeding(prepared, want)) is not None:
            out[want] = (prepared.get_submodule(obs.target), call_of[obs.name], f"{obs.target}#{call_of[obs.name]}")
    return out


def _fq(x: torch.Tensor, scale: float, zp: int, qmin: int, qmax: int) -> torch.Tensor:
    return torch.fake_quantize_per_tensor_affine(x, scale, zp, qmin, qmax)


def act_stats(model: nn.Module, spec: QuantSpec, calib: list[torch.Tensor], held_out: list[torch.Tensor],
              example: torch.Tensor, wants: list[str]) -> dict[str, ActStats]:
    """The activation numbers of the module's doc for each name of ``wants`` (``act:...`` or a layer name for the
    layer's input) under the static INT8 ``spec``; a name the FX graph does not have is left out. Raises what
    torch.ao raises for a model FX cannot trace."""
    from qcore.backends._observer import CalibrationObserverMixin
    from qcore.backends.fx_int8 import prepared_fx

    spec = spec.ptq_spec.replace(keep_float=())
    prepared = prepared_fx(model, spec, example.detach().float().cpu()[:1])
    targets = _targets(prepared, model, wants)
    if not targets:
        return {}
    instances = {id(m): m for m, _, _ in targets.values()}
    methods = [m for m in CHOICES["calibration"] if m != spec.calibration]
    fresh = {name: {m: get_calibrator(m, spec.percentile or 99.99) for m in [spec.calibration, *methods]}
             for name in targets}
    samples: dict[str, list[torch.Tensor]] = {name: [] for name in targets}

    def feed(calls):  # the calibration pass: every alternative calibrator sees what the observer sees
        for name, (m, k, _) in targets.items():
            for c in fresh[name].values():
                c.update(calls[id(m)][k])

    calib = [x.detach().float().cpu() for x in calib]
    observer_calls(prepared, calib, instances, feed)  # qcore.backends._observer.calibrate's loop, with the hooks in it
    for m in prepared.modules():
        if isinstance(m, CalibrationObserverMixin):
            m.calculate_qparams()
    stats = {}
    alt_q: dict[str, dict[str, tuple]] = {}
    for name, (m, _, source) in targets.items():
        scale, zp, qmin, qmax = observer_qparams(m)
        stats[name] = ActStats(name, source, (qmin - zp) * scale, (qmax - zp) * scale, scale, zp, qmin, qmax,
                               calibrated=isinstance(m, CalibrationObserverMixin))
        alt_q[name] = {}
        if stats[name].calibrated:
            own = fresh[name][spec.calibration]
            if spec.symmetric:
                s, z = own.qparams(qmin, qmax, False)
                alt_q[name]["asymmetric"] = (float(s), int(z))
            for method in methods:
                s, z = fresh[name][method].qparams(qmin, qmax, spec.symmetric)
                alt_q[name][method] = (float(s), int(z))

    def count(calls):  # calibration images again: range, clipping, the values beyond half the range
        for name, (m, k, _) in targets.items():
            x, st = calls[id(m)][k], stats[name]
            a = max(abs(st.lo), abs(st.hi))
            st.calib_min, st.calib_max = min(st.calib_min, float(x.min())), max(st.calib_max, float(x.max()))
            st.calib_values += x.numel()
            st.calib_clipped += int(((x < st.lo - st.scale / 2) | (x > st.hi + st.scale / 2)).sum())
            st.beyond_half += int((x.abs() > a / 2).sum())
            flat = x.abs().reshape(-1)
            samples[name].append(flat[:: max(1, flat.numel() // SAMPLE)])

    def held(calls):  # held-out images: clipping and the error of each range
        for name, (m, k, _) in targets.items():
            x, st = calls[id(m)][k], stats[name]
            clipped = (x < st.lo - st.scale / 2) | (x > st.hi + st.scale / 2)
            err = (x - _fq(x, st.scale, st.zero_point, st.qmin, st.qmax)) ** 2
            st.eval_values += x.numel()
            st.eval_clipped += int(clipped.sum())
            st.signal += float((x.double() ** 2).sum())
            st.noise += float(err.double().sum())
            st.clip_noise += float(err[clipped].double().sum())
            for alt, (s, z) in alt_q[name].items():
                st.alternatives[alt] = st.alternatives.get(alt, 0.0) + float(
                    ((x - _fq(x, s, z, st.qmin, st.qmax)).double() ** 2).sum())

    observer_calls(prepared, calib, instances, count)
    observer_calls(prepared, [x.detach().float().cpu() for x in held_out], instances, held)
    for name, st in stats.items():
        p = nearest_rank(torch.cat(samples[name]), 99.99) if samples[name] else 0.0
        st.range_over_p9999 = max(abs(st.lo), abs(st.hi)) / p if p > 0 else math.inf
        if st.signal > 0:
            st.alternatives = {k: v / st.signal for k, v in st.alternatives.items()}
    return stats
