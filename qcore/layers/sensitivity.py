"""Per-layer sensitivity of one quantized spec: where the accuracy goes.

For every Conv and Linear layer of the model (:func:`qcore.backends.layer_names.layer_names`):

- **weight error**: SQNR and relative MSE of the layer's weight as the kernels hold it (each BatchNorm folded
  into the convolution before it, :func:`qcore.layers.errors.deployed`) after quantize -> dequantize with the
  spec's weight settings (:func:`qcore.layers.errors.weight_errors`);
- **output error**: SQNR, relative MSE and cosine similarity of the layer's output, FP32 model vs the quantized
  model, on the same ``error_images`` images, read by forward hooks at the same module names. Static INT8 and
  weight-only fold each BatchNorm into its convolution, so the FP32 side is the folded FP32 model, and where the
  int8 kernel fuses a ReLU (``ConvReLU2d``) the FP32 output gets the same ReLU. The quantized side carries the
  error of every layer before it (as torch's numeric suite compares outputs): a layer deep in the network
  shows the sum;
- **accuracy** (optional): top-1 and agreement with FP32 with only this layer left in FP32 (``keep_float=(L,)``)
  and with only this layer quantized (every other layer, and every activation quantizer the backend can keep,
  in ``keep_float``), each a real build on the spec's own backend and kernels, evaluated on the ``eval_images``
  images of the config.

A static INT8 spec on fx or pt2e also gets a row per activation quantizer between the layers
(``kind="activation"``: the model input, residual additions, activation functions; :mod:`.activations`), with
that quantizer's own output error and the same accuracy columns (only it in FP32: its producers run in FP32;
only it quantized). On the other backends the table has layer rows only (a note says why).

Cost: one build and two forward passes of ``error_images`` images for the errors (and one calibrated FX
preparation for the activation rows); with accuracy, ``2 N + 1`` builds and evaluations for ``N`` rows
(:func:`plan`). resnet18 has 21 layers and 9 activation quantizers: 61 builds.

The hooks need modules at the layers' names, which the eager backends keep (fx, weight-only). A spec that
resolves to a compiled backend (pt2e: one graph, no modules) gets its output errors from the fx backend's
build of the same spec (the same int8 arithmetic on torch.ao's kernels), and its activation rows from the fx
graph's quantizers, said in the result's notes; its accuracy columns are measured on its own backend.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from qcore.backends import BackendUnavailable, resolve
from qcore.backends.act_quantizers import NOT_KEPT
from qcore.backends.base import KEEP_ACT_BACKENDS
from qcore.backends.layer_names import layer_names, near_names
from qcore.layers.activations import activation_errors
from qcore.layers.errors import ErrorSum, deployed, weight_error, weight_errors
from qcore.layers.row import METRICS, LayerRow
from qcore.metrics.measure import accuracy, predict
from qcore.ptq.run import quantize as ptq_quantize
from qcore.quant.spec import QuantSpec, SpecError
from qcore.runs.sweep import Prepared, SweepConfig, prepare

__all__ = ["METRICS", "LayerRow", "Plan", "plan", "output_errors", "Sensitivity", "measure_layers"]

ProgressFn = Callable[[int, int, str], None]

@dataclass
class Plan:
    """What a sensitivity job will run, said before it runs; ``seconds`` once the first build was timed."""

    layers: int
    builds: int
    evaluations: int
    eval_images: int
    seconds: float | None = None
    activations: int = 0

    def text(self) -> str:
        eta = f", about {self.seconds / 60:.1f} min" if self.seconds is not None else ""
        acts = f" and {self.activations} activation quantizers" if self.activations else ""
        return (f"{self.layers} layers{acts}: {self.builds} model build(s) and {self.evaluations} evaluation(s) of "
                f"{self.eval_images} images{eta}")


def plan(layers: int, accuracy_columns: bool, eval_images: int, activations: int = 0, keepable: int | None = None
         ) -> Plan:
    """Builds and evaluations: 1 and 1 (the spec on every layer) plus 2 per row with the accuracy columns
    (``keepable``: the activation quantizers that can be kept in FP32, default all; the others get none)."""
    rows = layers + (activations if keepable is None else keepable)
    extra = 2 * rows if accuracy_columns else 0
    return Plan(layers, 1 + extra, 1 + extra, eval_images, activations=activations)


def _describe(m: nn.Module) -> str:
    if isinstance(m, nn.Linear):
        return f"Linear {m.in_features}->{m.out_features}"
    k = "x".join(map(str, m.kernel_size))
    dw = " depthwise" if m.groups > 1 and m.groups == m.in_channels else ""
    return f"{type(m).__name__} {k}{dw} {m.in_channels}->{m.out_channels}"


def _capture(model: nn.Module, names: list[str], x: torch.Tensor) -> dict[str, tuple[torch.Tensor, str]]:
    """Each named module's output for ``x`` (dequantized) and the module's type name."""
    modules = dict(model.named_modules())
    out: dict[str, tuple[torch.Tensor, str]] = {}
    hooks = []
    for name in names:
        m = modules.get(name)
        if m is None:
            continue

        def hook(_m, _inp, y, name=name, kind=type(m).__name__):
            y = y.dequantize() if getattr(y, "is_quantized", False) else y
            out[name] = (y.detach().float(), kind)

        hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return out


def output_errors(reference: nn.Module, quantized: nn.Module, names: list[str],
                  batches: list[torch.Tensor]) -> dict[str, ErrorSum]:
    """Per layer, the error of ``quantized``'s output against ``reference``'s over ``batches`` (see the module)."""
    sums = {n: ErrorSum() for n in names}
    for x in batches:
        ref = _capture(reference, names, x)
        got = _capture(quantized, names, x)
        for n in names:
            if n not in ref or n not in got:
                continue
            r, q = ref[n][0], got[n][0]
            if "ReLU" in got[n][1]:  # the int8 kernel fused the ReLU that follows this layer
                r = torch.relu(r)
            if r.shape == q.shape:
                sums[n].add(r, q)
    return sums


@dataclass
class Sensitivity:
    """A job's outcome: the rows, the spec's and FP32's top-1 on the evaluation images, and notes."""

    spec: QuantSpec
    rows: list[LayerRow]
    top1_fp32: float
    top1_quantized: float
    agreement_quantized: float
    eval_images: int
    plan: Plan
    backend: str = ""
    notes: list[str] = field(default_factory=list)
    cancelled: bool = False


def _quantize(p: Prepared, spec: QuantSpec):
    choice = resolve(spec, p.device, model=p.config.model, batch_size=p.config.batch_size)
    return ptq_quantize(choice.backend, p.loaded.model, spec, p.calib, p.example, p.device)


def _evaluate(p: Prepared, q) -> tuple[float, float]:
    logits, _ = predict(q, p.eval_batches, q.device)
    acc = accuracy(logits, p.labels, p.ref_logits)
    return acc.top1, acc.agreement


def measure_layers(
    config: SweepConfig,
    spec: QuantSpec,
    *,
    accuracy_columns: bool = True,
    error_images: int = 256,
    progress: ProgressFn | None = None,
    cancel: Callable[[], bool] | None = None,
    done: dict[str, LayerRow] | None = None,
    on_row: Callable[[LayerRow], None] | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    only: tuple[str, ...] = (),
) -> Sensitivity:
    """Measure every layer (and activation quantizer) of ``config.model`` under ``spec`` (see the module);
    ``done`` rows are kept as they are.

    ``on_row`` receives each row the moment it is complete (the job commits it there); ``cancel()`` is checked
    between rows; ``on_plan`` gets the counts and the time estimate once the first build was timed; ``only``
    names the rows to measure (layer or ``act:`` names; default: all; "only this one quantized" still keeps
    every other row in FP32).
    """
    if spec.is_float:
        raise SpecError(f"{spec.label()} quantizes nothing; per-layer sensitivity needs an INT8 or INT4 spec")
    if spec.keep_float or spec.keep_int8:
        raise SpecError("per-layer sensitivity starts from the spec on every layer; drop keep_float and keep_int8 "
                        f"({', '.join(spec.keep_float + spec.keep_int8)})")
    progress = progress or (lambda d, t, m: None)
    cancel = cancel or (lambda: False)
    done = dict(done or {})
    progress(0, 1, f"loading {config.model} and {config.dataset}")
    p = prepare(config, progress, cancel)
    fp32 = p.loaded.model
    names = layer_names(fp32)
    notes: list[str] = []
    try:
        choice = resolve(spec, p.device, model=config.model, batch_size=config.batch_size)
    except BackendUnavailable as exc:
        raise SpecError(f"{spec.label()} cannot run here: {exc}") from None
    first, seen = [], 0
    for x, _ in p.eval_batches:
        if seen >= error_images:
            break
        first.append(x[: error_images - seen])
        seen += first[-1].shape[0]
    acts, act_errs = [], {}
    if spec.mode == "static" and spec.precision == "int8":
        if choice.backend.name in KEEP_ACT_BACKENDS:
            try:
                acts, act_errs = activation_errors(fp32, spec, p.calib, p.example, first)
            except Exception as exc:  # a model torch.ao FX cannot trace: layer rows only
                notes.append(f"no activation rows: torch.ao FX could not prepare the model ({type(exc).__name__})")
            if acts and choice.backend.name != "fx":
                notes.append(f"activation rows: the quantizers of the fx graph; {choice.backend.name} keeps the "
                             "same ops in FP32 (matched by module and call order)")
        else:
            notes.append(f"no activation rows: the {choice.backend.name} backend places its own activation "
                         f"quantizers and cannot keep one in FP32 (those that can: {', '.join(KEEP_ACT_BACKENDS)})")
    act_names = [q.name for q in acts]
    unknown = [n for n in only if n not in names and n not in act_names]
    if unknown:
        near = ", ".join(near_names(unknown[0], names + act_names))
        raise SpecError(f"the model has no layer {unknown[0]!r}; near names: {near} ({len(names)} layers and "
                        f"{len(act_names)} activation quantizers in all)")
    measured = [n for n in names if not only or n in only]
    measured_acts = [q for q in acts if not only or q.name in only]
    keepable = [q.name for q in acts if not q.problem]
    the_plan = plan(len(measured), accuracy_columns, int(p.labels.numel()), len(measured_acts),
                    sum(1 for q in measured_acts if not q.problem))
    total = the_plan.builds + 1
    progress(0, total, the_plan.text())

    start = time.perf_counter()
    q_full = ptq_quantize(choice.backend, fp32, spec, p.calib, p.example, p.device)
    top1_q, agree_q = _evaluate(p, q_full)
    per_build = time.perf_counter() - start
    # the exclusions run on the backend that ran the spec (auto could rank another first for a keep_float spec)
    pinned = spec.replace(backend=q_full.backend) if spec.backend == "auto" else spec
    hooked = q_full.model
    if not isinstance(hooked, nn.Module) or not any(n == names[0] for n, _ in hooked.named_modules()):
        eager = spec.replace(backend="fx" if spec.mode in ("static", "dynamic") else "weight-only")
        hooked = _quantize(p, eager).model
        notes.append(f"output errors measured on the {eager.backend} backend's build of the spec ({q_full.backend} "
                     "compiles one graph with no modules to hook); accuracy on " + q_full.backend)
    the_plan.seconds = per_build * (the_plan.builds - 1) if accuracy_columns else 0.0
    if on_plan:
        on_plan(the_plan)
    progress(1, total, f"{the_plan.text()}; output errors")

    reference = deployed(fp32, spec)  # BatchNorm folded: the weights the kernels hold, the outputs they compute
    errs = output_errors(reference, hooked, names, first)
    werrs = weight_errors(reference, measured, spec)
    modules = dict(fp32.named_modules())
    top1_fp32 = accuracy(p.ref_logits, p.labels).top1
    rows: list[LayerRow] = []
    step = 1
    cancelled = False
    everything = names + keepable  # what "only this one quantized" keeps in FP32, but the one
    unkept: list[str] = []  # kept quantizers the build ran on int8 all the same

    def accuracy_of(row: LayerRow) -> None:
        nonlocal step
        progress(step, total, f"{row.layer}: only this one in FP32")
        alone = _quantize(p, pinned.replace(keep_float=(row.layer,)))
        not_kept = [n for n in alone.notes if n.startswith(f"{NOT_KEPT}{row.layer}:")]
        if not_kept:  # the build ran it on int8 all the same: no "only this in FP32" to measure, and no walk step
            row.cannot_keep = not_kept[0].removeprefix(f"{NOT_KEPT}{row.layer}: ")
            unkept.append(row.layer)
            step += 2
            return
        row.top1_only_float, row.agreement_only_float = _evaluate(p, alone)
        step += 1
        progress(step, total, f"{row.layer}: only this one quantized")
        if len(everything) > 1:
            only_it = pinned.replace(keep_float=tuple(n for n in everything if n != row.layer))
            row.top1_only_quant, row.agreement_only_quant = _evaluate(p, _quantize(p, only_it))
        else:
            row.top1_only_quant, row.agreement_only_quant = top1_q, agree_q
        step += 1
        row.gain_only_float = row.top1_only_float - top1_q
        row.loss_only_quant = top1_fp32 - row.top1_only_quant

    todo = [("layer", i, n) for i, n in enumerate(names) if n in measured]
    todo += [("activation", len(names) + i, q) for i, q in enumerate(acts) if q in measured_acts]
    for kind, i, what in todo:
        name = what if kind == "layer" else what.name
        if name in done:
            rows.append(done[name])
            step += 2 if accuracy_columns and (kind == "layer" or not what.problem) else 0
            continue
        if cancel():
            cancelled = True
            break
        t0 = time.perf_counter()
        if kind == "layer":
            m = modules[name]
            w = werrs.get(name) or weight_error(m, spec)
            o = errs[name]
            row = LayerRow(name, i, _describe(m), int(m.weight.numel()), _finite(w.sqnr), _finite(w.rel_mse),
                           eval_images=the_plan.eval_images, error_images=seen)
        else:
            o = act_errs[name]
            row = LayerRow(name, i, what.op, 0, None, None, eval_images=the_plan.eval_images, error_images=seen,
                           kind="activation", cannot_keep=what.problem or "")
        if o.count:
            row.output_sqnr_db, row.output_rel_mse, row.output_cosine = (_finite(o.sqnr), _finite(o.rel_mse),
                                                                        _finite(o.cosine))
        if accuracy_columns and (kind == "layer" or not what.problem):
            accuracy_of(row)
        row.seconds = time.perf_counter() - t0
        rows.append(row)
        if on_row:
            on_row(row)
        progress(step, total, name)
    if unkept:
        notes.append(f"{len(unkept)} activation quantizer(s) could not be kept in FP32 on {q_full.backend} ("
                     f"{', '.join(unkept[:3])}{' ...' if len(unkept) > 3 else ''}: torch.ao runs them on int8 anyway); "
                     "the 'only this one quantized' builds ran them on int8 too")
    return Sensitivity(spec, rows, top1_fp32, top1_q, agree_q, the_plan.eval_images, the_plan, q_full.backend,
                       notes, cancelled)


def _finite(v: float) -> float | None:
    """JSON and CSV have no inf: a perfect layer (no error) is stored as None with SQNR, never as a number."""
    return None if v is None or math.isnan(v) or math.isinf(v) else float(v)
