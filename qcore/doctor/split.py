"""Weights or activations: where a quantized point's loss comes from (AIMET QuantAnalyzer's split).

A quantized model rounds two things: its weights (once, ahead of time) and its activations (at every layer, on
every image). AIMET's QuantAnalyzer asks which of the two costs the accuracy by measuring the same quantized
model twice more: once with only the weight quantizers on, once with only the activation quantizers on. When
the weights-only model keeps FP32's accuracy and the activations-only one loses it, the fixes are activation
fixes (a better calibration, a finer activation range, an activation quantizer kept in FP32), and the other way
round weight fixes (per-channel weights, AdaRound, INT8 for a layer). :func:`split` measures those two builds,
and the two together as a check, each as top-1 and agreement with FP32 on the sweep's evaluation images.

Neither half has a kernel of its own (no CPU kernel multiplies int8 activations by FP32 weights), so the halves
are simulated with fake quantization: quantize -> dequantize in float at the places and with the numbers the
real build uses.

- static INT8: the FP32 model prepared by torch.ao FX as the fx backend prepares it (BatchNorm folded, the
  spec's calibration observers, layers and activation quantizers in ``keep_float`` left without), calibrated on
  the sweep's calibration images. Activations: each observer replaced by a fixed
  ``torch.fake_quantize_per_tensor_affine`` with the scale and zero point it chose. Weights: each quantized
  Conv/Linear's folded weight rounded as the backend's int8 kernel rounds it (:func:`qcore.ptq.weights.grid_for`).
  Averages (pooling) of int8 values are taken on their integer codes and rounded as the kernel rounds them.
  ``full_*`` has both on: how close it comes to the real build (``real_logits``) says how far to trust the halves.
  The other static backends (pt2e, ORT, OpenVINO, XNNPACK) place their quantizers their own way: the check says how
  far the fx graph's are from theirs.
- dynamic INT8: the quantized Linear layers' inputs rounded per call with that batch's own range (a forward
  pre-hook: uint8 from torch's ``_choose_qparams_per_tensor``, 7 bits where fbgemm's dynamic kernel reduces the
  range), their weights as above; convolutions stay FP32, as in the real build.
- weight-only: no activation is quantized, so the activations half is FP32 itself (not built) and the weights
  half is the point, its weights rounded as the weight-only backend stores them (that backend computes in float
  from exactly those weights: nothing simulated).
- FP16/BF16: a cast of weights and activations together; there is nothing to split (all numbers None).

A spec with post-training algorithms is split after them (:func:`qcore.ptq.run.apply`, as the real build runs
them): the weights half and the full build use its corrected biases and AdaRound's codes, the activations half the
FP32 weights (BatchNorm folded, equalized when the spec equalizes).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from qcore.backends._observer import calibrate
from qcore.backends.act_quantizers import check_act_names, is_act, keep_in_mapping
from qcore.backends.fx_int8 import called_modules, model_quantizers, static_qconfig_mapping
from qcore.backends.weight_only import fold_batchnorm
from qcore.env import hardware
from qcore.layers.activations import observer_qparams
from qcore.metrics.measure import accuracy, predict, predicted_class, stopwatch
from qcore.nets.train import Cancelled
from qcore.ptq.run import apply as ptq_apply
from qcore.ptq.weights import grid_for
from qcore.quant.primitives import choose_qparams
from qcore.quant.spec import QuantSpec
from qcore.quant.spec_ptq import ptq_label

__all__ = ["Split", "split", "Simulation", "simulation", "real_logits", "FLOAT_NOTE", "WEIGHT_ONLY_NOTE"]

ProgressFn = Callable[[int, int, str], None]
FLOAT_NOTE = ("FP16/BF16 cast weights and activations together to the same format: there is no weights-or-"
              "activations split to measure (the loss, if any, is the cast's)")
WEIGHT_ONLY_NOTE = ("a weight-only spec quantizes no activations: the whole loss is the weights' (the activations "
                    "half is FP32 itself, not built)")
LAYER_TYPES = (nn.Conv2d, nn.Linear)


@dataclass
class Split:
    """Top-1 and agreement with FP32 (percent) with only the weights, only the activations, and both quantized."""

    weights_top1: float | None
    weights_agreement: float | None
    acts_top1: float | None
    acts_agreement: float | None
    full_top1: float | None
    full_agreement: float | None
    eval_images: int
    seconds: float
    simulated: str  # "" when every number comes from real kernels; else what is simulated and how
    note: str
    full_vs_real: float | None = None  # percent of images where the full simulation predicts the real build's class

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Split:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown Split field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
        return cls(**d)

    def share_weights(self, fp32_top1: float) -> float | None:
        """The weights' share (0..1) of the two halves' top-1 losses against ``fp32_top1``, a gain counting as no
        loss; None when a half was not measured or neither lost."""
        if self.weights_top1 is None or self.acts_top1 is None:
            return None
        lw, la = max(fp32_top1 - self.weights_top1, 0.0), max(fp32_top1 - self.acts_top1, 0.0)
        return lw / (lw + la) if lw + la > 0 else None


class _FakeQuant(nn.Module):
    """An activation observer frozen into ``fake_quantize_per_tensor_affine`` with its qparams, while ``on``."""

    def __init__(self, qparams: tuple[float, int, int, int]) -> None:
        super().__init__()
        self.qparams, self.on = qparams, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fake_quantize_per_tensor_affine(x, *self.qparams) if self.on and x.is_floating_point() else x


class _DynamicInput:
    """A forward pre-hook: the layer's input quantized -> dequantized per call with its own range, while ``on``."""

    def __init__(self, symmetric: bool, reduce_range: bool) -> None:
        self.symmetric, self.reduce_range, self.on, self.calls = symmetric, reduce_range, False, 0

    def fake(self, x: torch.Tensor) -> torch.Tensor:
        if self.symmetric:  # torchao's symmetric int8 (per tensor here; see Split.simulated)
            scale, zp = choose_qparams(x.amin(), x.amax(), -128, 127, symmetric=True)
            return torch.fake_quantize_per_tensor_affine(x, float(scale), int(zp), -128, 127)
        scale, zp = torch._choose_qparams_per_tensor(x, self.reduce_range)  # fbgemm's dynamic Linear's own choice
        return torch.fake_quantize_per_tensor_affine(x, scale, zp, 0, 127 if self.reduce_range else 255)

    def __call__(self, _module, args):
        if not self.on:
            return None
        self.calls += 1
        return (self.fake(args[0]),) + tuple(args[1:])


@dataclass
class Simulation:
    """A float model whose weights and activations can each be switched to their quantized values."""

    model: nn.Module
    layers: list  # (name, module, float weight, float bias, kernel weight, kernel bias)
    acts: list  # objects with an ``on`` flag (_FakeQuant modules, _DynamicInput hooks)

    def set(self, weights: bool, acts: bool) -> None:
        with torch.no_grad():
            for _, m, fw, fb, kw, kb in self.layers:
                m.weight.copy_(kw if weights else fw)
                if kb is not None:
                    m.bias.copy_(kb if weights else fb)
        for a in self.acts:
            a.on = acts


def _backend(spec: QuantSpec) -> str:
    """Whose weight rounding the simulation copies (:func:`qcore.ptq.weights.grid_for`)."""
    if spec.mode == "weight-only":
        return "weight-only"
    return "pt2e" if spec.backend in ("pt2e", "pt2e-openvino") else "fx"  # pt2e-openvino: pt2e's graph


def _layers(named: list[tuple[str, nn.Module]], spec: QuantSpec, base: nn.Module | None, codes: dict) -> list:
    """Each layer's float and kernel weight and bias: the kernel's as the backend rounds it (AdaRound's codes as
    chosen), the float's from ``base`` (the model before bias correction and AdaRound) when given."""
    out = []
    for name, m in named:
        src = base.get_submodule(name) if base is not None else m
        w = m.weight.detach().clone()
        kw = w if name in codes else grid_for(w, spec, _backend(spec), 8 if name in spec.keep_int8 else None).fake()
        kb = None if m.bias is None else m.bias.detach().clone()
        fb = None if kb is None else (src.bias.detach().clone() if src.bias is not None else torch.zeros_like(kb))
        out.append((name, m, src.weight.detach().clone(), fb, kw.to(w.dtype), kb))
    return out


def _is_average(gm: torch.fx.GraphModule, node: torch.fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), (nn.AdaptiveAvgPool2d, nn.AvgPool2d))
    if node.op == "call_function":
        return node.target in (nn.functional.adaptive_avg_pool2d, nn.functional.avg_pool2d, torch.mean)
    return node.op == "call_method" and node.target == "mean"


class _Codes(nn.Module):
    """Around an average of fake-quantized values, while their quantizer is on: to its integer codes (``q - zp``)
    before it, back to float after it, rounded half to even in the integer domain as the int8 kernel rounds (the
    float average of dequantized values lands a hair off the kernel's exact ties)."""

    def __init__(self, fq: _FakeQuant, to_codes: bool) -> None:
        super().__init__()
        object.__setattr__(self, "fq", fq)  # not a submodule: it is the graph's, called elsewhere too
        self.to_codes = to_codes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fq.on:
            return x
        scale, zp, qmin, qmax = self.fq.qparams
        return torch.round(x / scale) if self.to_codes else torch.round(x).clamp(qmin - zp, qmax - zp) * scale


def _round_averages(gm: torch.fx.GraphModule) -> None:
    """Each average (pooling, mean) of a fake-quantized tensor computed on its integer codes (:class:`_Codes`): an
    int8 average is rounded back to its input's scale and zero point (the two share them, so FX puts no observer
    there), which the float average alone would skip (mobilenet_v3's squeeze-excitation pools)."""
    for i, node in enumerate(list(gm.graph.nodes)):
        src = node.args[0] if node.args else None
        if (not _is_average(gm, node) or not isinstance(src, torch.fx.Node) or src.op != "call_module"
                or not isinstance(gm.get_submodule(src.target), _FakeQuant)):
            continue
        fq = gm.get_submodule(src.target)
        gm.add_submodule(f"split_codes_{i}", _Codes(fq, True))
        gm.add_submodule(f"split_back_{i}", _Codes(fq, False))
        with gm.graph.inserting_before(node):
            codes = gm.graph.call_module(f"split_codes_{i}", (src,))
        node.replace_input_with(src, codes)
        with gm.graph.inserting_after(node):
            back = gm.graph.call_module(f"split_back_{i}", (node,))
        node.replace_all_uses_with(back, delete_user_cb=lambda user, back=back: user is not back)
    gm.recompile()


def _static(model: nn.Module, spec: QuantSpec, calib, example) -> tuple[nn.Module, list[tuple[str, nn.Module]], list]:
    """``model`` prepared and calibrated as the fx backend does for ``spec``, its observers frozen into fake
    quantizers (off); returns the graph, its quantized layers by original name, and the fake quantizers."""
    from torch.ao.quantization.observer import ObserverBase
    from torch.ao.quantization.quantize_fx import prepare_fx

    mapping = static_qconfig_mapping(spec, hardware.quantized_engine())
    if any(is_act(n) for n in spec.keep_float):
        keep_in_mapping(mapping, check_act_names(spec.keep_float, model_quantizers(model, example)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao FX warns that it is deprecated in favour of PT2E
        gm = prepare_fx(copy.deepcopy(model).eval().cpu(), mapping, example_inputs=(example,))
    calibrate(gm, calib)
    fakes = []
    for name, obs in list(gm.named_modules()):
        if isinstance(obs, ObserverBase):
            int8 = obs.dtype in (torch.quint8, torch.qint8)
            new = _FakeQuant(observer_qparams(obs)) if int8 else nn.Identity()
            fakes += [new] if int8 else []
            parent, _, attr = name.rpartition(".")
            setattr(gm.get_submodule(parent) if parent else gm, attr, new)
    _round_averages(gm)
    called = {n.target for n in gm.graph.nodes if n.op == "call_module"}
    named = []
    for name, m in gm.named_modules():
        parent = name.rpartition(".")[0]
        fused = name not in called and parent in called and isinstance(gm.get_submodule(parent), nn.Sequential)
        if isinstance(m, LAYER_TYPES) and getattr(m, "qconfig", None) is not None and (name in called or fused):
            named.append((parent if fused else name, m))  # a fused conv-relu's conv: the conv's own name
    return gm, named, fakes


def _dynamic(model: nn.Module, spec: QuantSpec, example) -> tuple[nn.Module, list[tuple[str, nn.Module]], list]:
    """A copy of ``model`` with a :class:`_DynamicInput` pre-hook on each Linear the real build quantizes (those
    called as modules, not in ``keep_float``)."""
    model = copy.deepcopy(model).eval().cpu()
    names = [n for n in called_modules(model, example) if n not in spec.keep_float]
    reduce_range = hardware.quantized_engine() in ("fbgemm", "x86")  # torch's dynamic Linear asks it; qnnpack ignores
    hooks = [_DynamicInput(spec.symmetric, reduce_range) for _ in names]
    for name, hook in zip(names, hooks):
        model.get_submodule(name).register_forward_pre_hook(hook)
    return model, [(n, model.get_submodule(n)) for n in names], hooks


def _weight_only(model: nn.Module, spec: QuantSpec) -> tuple[nn.Module, list[tuple[str, nn.Module]]]:
    """``model`` as the weight-only backend folds it, and the layers it packs (Conv2d and Linear not kept)."""
    model = copy.deepcopy(model).eval().cpu()
    if not isinstance(model, torch.fx.GraphModule):  # already folded by the post-training algorithms
        model = fold_batchnorm(model)[0]
    named = [(n, m) for n, m in model.named_modules() if isinstance(m, LAYER_TYPES) and n not in spec.keep_float]
    return model, named


def _prepare_ptq(p, spec: QuantSpec, progress: ProgressFn, cancel) -> tuple[nn.Module, nn.Module | None, dict, str]:
    """``(model, base, codes, note)``: the model the real build quantizes (after the spec's post-training
    algorithms), the float model before bias correction and AdaRound (None when the spec has neither), AdaRound's
    codes by layer, and the algorithms' notes."""
    fp32 = p.loaded.model
    if not spec.asks_ptq:
        return fp32, None, {}, ""
    calib, example = p.calib, p.example
    done = ptq_apply(fp32, spec, _backend(spec), calib, example, progress, cancel)
    base = None
    if spec.bias_correction or spec.rounding == "adaround":
        plain = spec.replace(bias_correction=False, rounding="nearest")
        base = ptq_apply(fp32, plain, _backend(spec), calib, example).model
    how = ("the weights half and the full build hold its biases and codes, the activations half the FP32 weights"
           if base is not None else "both halves start from the equalized model")
    words = f"split after the post-training algorithms ({' '.join(ptq_label(spec))}): "
    return done.model, base, done.codes, words + how


def _real_check(full: torch.Tensor, real: torch.Tensor | None) -> float | None:
    if real is None:
        return None
    if real.shape != full.shape:
        raise ValueError(f"real_logits of shape {tuple(real.shape)} are not allowed; allowed: one row per evaluation "
                         f"image, {tuple(full.shape)}")
    return 100.0 * float((predicted_class(full) == predicted_class(real.float().cpu())).double().mean())


def simulation(p, spec: QuantSpec, progress: ProgressFn | None = None, cancel: Callable[[], bool] | None = None
               ) -> tuple[Simulation, str, str]:
    """``(sim, simulated, note)``: ``spec``'s fake-quantized model on ``p`` (static, dynamic or weight-only), with
    the words :class:`Split` carries; ``sim.set(weights=..., acts=...)`` switches each half on."""
    if spec.is_float or spec.mode == "qat" or (spec.mode == "static" and spec.precision != "int8"):
        raise ValueError(f"{spec.label()} cannot be split; allowed: static and dynamic INT8, weight-only INT8/INT4 "
                         "(a QAT spec's weights are trained: split its ptq_spec for the untrained point)")
    model, base, codes, ptq_note = _prepare_ptq(p, spec, progress or (lambda d, t, m: None), cancel)
    example, calib = p.example.detach().float().cpu(), [x.detach().float().cpu() for x in p.calib]
    keep_note = "; ".join(x for x in (
        f"{len(spec.keep_float)} layer(s) and activation quantizer(s) kept in FP32 get neither" if spec.keep_float
        else "", f"{len(spec.keep_int8)} layer(s) with INT8 weights" if spec.keep_int8 else "") if x)
    if spec.mode == "static":
        gm, named, acts = _static(model, spec, calib, example)
        simulated = (f"fake-quant on the FP32 graph (torch.ao FX, BatchNorm folded) with the spec's own scales: the "
                     f"fx backend's {len(acts)} activation quantizers with their calibrated scale and zero point, "
                     f"{len(named)} layers' weights rounded as the {_backend(spec)} backend's int8 kernels round them"
                     "; arithmetic in float")
        note = ""
    elif spec.mode == "dynamic":
        gm, named, acts = _dynamic(model, spec, example)
        simulated = (f"fake-quant on the FP32 model: the input of each of the {len(named)} quantized Linear layers "
                     "rounded per call with that batch's own range, "
                     + ("symmetric int8 per tensor (torchao rounds per row: finer)" if spec.symmetric else
                        "uint8 as torch's dynamic kernel chooses it")
                     + ", their weights as the int8 kernel rounds them; arithmetic in float")
        note = f"dynamic INT8 quantizes only the {len(named)} Linear layers; convolutions stay FP32"
    else:
        gm, named = _weight_only(model, spec)
        acts = []
        simulated = ("" if spec.backend in ("auto", "weight-only") else
                     f"weights rounded as qcore's weight-only backend stores them; the {spec.backend} backend "
                     "rounds its own way")
        note = WEIGHT_ONLY_NOTE
    note = "; ".join(x for x in (note, keep_note, ptq_note) if x)
    return Simulation(gm, _layers(named, spec, base, codes), acts), simulated, note


def split(p, spec: QuantSpec, *, real_logits: torch.Tensor | None = None, progress: ProgressFn | None = None,
          cancel: Callable[[], bool] | None = None) -> Split:
    """``spec`` on ``p`` (a :class:`qcore.runs.sweep.Prepared`) with only its weights and with only its activations
    quantized (see the module). ``real_logits``: the real build's logits on ``p.eval_batches`` (:func:`real_logits`),
    to say in ``simulated`` how often the full simulation predicts the same class. ``cancel()`` is checked before
    each build (raises :class:`qcore.nets.train.Cancelled`); ``progress(done, total, message)``."""
    progress = progress or (lambda d, t, m: None)
    cancel = cancel or (lambda: False)
    n = int(p.labels.numel())
    if spec.is_float:
        return Split(None, None, None, None, None, None, n, 0.0, "", FLOAT_NOTE)
    with stopwatch() as t:
        total = 4 if spec.mode != "weight-only" else 2
        progress(0, total, f"{spec.label()}: preparing the split")
        sim, simulated, note = simulation(p, spec, lambda d, t_, m: progress(0, total, m), cancel)
        halves = [("weights", True, False)] if spec.mode == "weight-only" else [
            ("weights", True, False), ("activations", False, True), ("full", True, True)]
        out: dict[str, tuple[float, float]] = {}
        full = None
        for i, (half, w, a) in enumerate(halves, start=1):
            if cancel():
                raise Cancelled("cancelled while the split ran: nothing was stored")
            progress(i, total, f"{spec.label()}: only the {half} quantized" if half != "full" else
                     f"{spec.label()}: both quantized (the check)")
            sim.set(weights=w, acts=a)
            with torch.no_grad():
                logits, _ = predict(sim.model, p.eval_batches, "cpu")
            acc = accuracy(logits, p.labels, p.ref_logits)
            out[half], full = (acc.top1, acc.agreement), logits
        if spec.mode == "weight-only":  # the same build: both quantized is only the weights quantized
            out["activations"] = (accuracy(p.ref_logits, p.labels).top1, 100.0)
            out["full"] = out["weights"]
        check = _real_check(full, real_logits)
        if check is not None and simulated:
            simulated += f"; the full simulation agrees with the real build on {check:.1f}% of images"
        progress(total, total, f"{spec.label()}: split done")
    return Split(*out["weights"], *out["activations"], *out["full"], n, t[0], simulated, note, check)


def real_logits(p, spec: QuantSpec) -> torch.Tensor:
    """The real build of ``spec`` (its backend, its post-training algorithms) on ``p.eval_batches``: its logits, to
    pass to :func:`split` as ``real_logits``."""
    from qcore.backends import resolve
    from qcore.ptq.run import quantize

    choice = resolve(spec, p.device, model=p.config.model, batch_size=p.config.batch_size)
    q = quantize(choice.backend, p.loaded.model, spec, p.calib, p.example, p.device)
    with torch.no_grad():
        return predict(q, p.eval_batches, q.device)[0]
