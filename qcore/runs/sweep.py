"""Run many specs against one FP32 baseline: progress, cancellation, one error row per failure.

The model and data are loaded once. The FP32 baseline is evaluated first (its logits are the reference for agreement
and KL) and its latency measured eager, channels-last and compiled (on a CPU AOTInductor with freezing, cached:
:mod:`qcore.backends.buildcache`; on a GPU TF32 and torch.compile: :mod:`qcore.backends.gpu_compile`), interleaved,
so a speed-up can also be quoted against the fastest FP32 (``speedup_vs_best_fp32``, named in ``best_fp32``). Then
each spec is quantized from a copy of the FP32 model, evaluated on the same images, and timed interleaved with FP32
eager in this process. A spec that raises becomes an ``error`` row (out of GPU memory: named, with the batch size)
and the sweep goes on; a spec no backend can run here is ``skipped`` with the reason; a cancel leaves ``cancelled``.
"""

from __future__ import annotations

import copy
import gc
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from qcore import data
from qcore.backends import BackendUnavailable, resolve
from qcore.backends.buildcache import on_build, summarize
from qcore.backends.gpu_compile import fp32_variants
from qcore.data.draws import calibration_draws
from qcore.env import gpu, hardware
from qcore.env.space import is_out_of_space
from qcore.metrics.draws import apply_draws, draw_accuracies, draws_note, reads_calibration_images
from qcore.metrics.measure import accuracy, correct_counts, predict, predicted_class, size_bytes, time_interleaved
from qcore.metrics.paired_rows import attach, eval_key
from qcore.metrics.pareto import mark_pareto
from qcore.metrics.result import Result, manifest
from qcore.metrics.scale import set_accuracy_scale, set_timing
from qcore.nets import models, train, weights
from qcore.ptq.run import quantize as ptq_quantize
from qcore.quant.spec import FP32, QuantSpec
from qcore.runs.auto_probe import probe_auto
from qcore.runs.no_space import raise_if_full
from qcore.runs.progress import SaysBuilds, within
from qcore.runs.sweep_config import SweepConfig

__all__ = ["ProgressFn", "SPEC_PHASES", "SweepConfig", "Prepared", "prepare", "measure_baseline", "time_baseline",
           "quantize_spec", "accuracy_into", "latency_into", "finish_notes", "measure_spec", "measure_quantized",
           "run_sweep"]

ProgressFn = Callable[[float, int, str], None]
# The phases of one spec, in order, as progress reports them: a sweep of 4 specs at its second spec's timing
# reports done = 1 (the FP32 row) + 1 + 2/3, so the time left can be estimated from phases done while a spec runs.
SPEC_PHASES = {"quantize": "quantizing and calibrating", "evaluate": "evaluating", "time": "timing against FP32"}


@dataclass
class Prepared:
    """What every spec of a sweep shares: data, the FP32 model and its reference numbers."""

    config: SweepConfig
    device: str
    loaded: weights.LoadedModel
    calib: list[torch.Tensor]
    eval_batches: list[tuple[torch.Tensor, torch.Tensor]]
    example: torch.Tensor
    ref_logits: torch.Tensor
    labels: torch.Tensor
    fp32_size: int
    manifest: dict
    best_fp32: str = "fp32 eager"
    best_fp32_ratio: float = 1.0  # eager p50 / best FP32 p50, measured in the baseline block
    baseline_run_id: str = ""  # the stored FP32 row every result of this sweep is measured against
    bundle: object = None  # the DatasetBundle (its training split feeds mode="qat"'s fine-tune)
    calib_draws: list[list[torch.Tensor]] = field(default_factory=list)  # each draw's batches; [0] is calib
    calib_seeds: list[int] = field(default_factory=list)


def prepare(config: SweepConfig, progress: ProgressFn | None = None, cancel: Callable[[], bool] | None = None
            ) -> Prepared:  # fmt: skip
    device = hardware.resolve_device(config.device)
    models.check_input_size(config.model, config.image_size or data.default_image_size(config.dataset))
    if config.input_size:
        models.check_input_size(config.model, config.input_size)
    bundle = weights.load_dataset_for(config.model, config.dataset, config.image_size)
    input_size = config.input_size or bundle.image_size

    def train_progress(done, total, msg):
        if progress:
            waiting = msg.startswith(train.WAITING)  # another process trains it: this sweep loads it after
            progress(0, 1, f"the {config.model} baseline: {msg}" if waiting else
                     f"training the {config.model} baseline, {done / max(total, 1):.0%}: {msg}")

    loaded = weights.load_model(config.model, bundle, config.weights, progress=train_progress, cancel=cancel)
    calib_set, eval_set = data.split_calib_eval(bundle, min(config.calib_size, len(bundle.train)),
                                                config.eval_limit, config.seed)
    draws, seeds, calib_manifest = calibration_draws(bundle, config.calib_size, config.calib_draws, config.seed,
                                                     config.calib_list, config.calib_batch_size)
    calib = draws[0]
    eval_batches = list(data.batches(eval_set, config.eval_batch_size))
    gen = torch.Generator().manual_seed(config.seed)
    example = torch.randn(config.batch_size, 3, input_size, input_size, generator=gen)
    fp32 = loaded.model.to(device)
    ref_logits, labels = predict(fp32, eval_batches, device)
    fp32.cpu()
    m = manifest(
        seed=config.seed,
        dataset=config.dataset,
        dataset_source=bundle.source,
        image_size=bundle.image_size,
        **({"resize": bundle.resize, "interpolation": bundle.interpolation} if bundle.resize else {}),
        calib_size=sum(len(b) for b in calib),
        eval_size=len(eval_set),
        weights=loaded.weights,
        device=device,
        batch_size=config.batch_size,
        input_shape=list(example.shape),
        **calib_manifest,
    )
    return Prepared(config, device, loaded, calib, eval_batches, example, ref_logits, labels,
                    size_bytes(loaded.model.state_dict()), m, bundle=bundle, calib_draws=draws, calib_seeds=seeds)


def _base_result(p: Prepared, spec: QuantSpec) -> Result:
    c = p.config
    return Result(
        spec=spec,
        model=c.model,
        dataset=c.dataset,
        weights=p.loaded.weights,
        backend=spec.backend,
        device=p.device,
        batch_size=c.batch_size,
        input_shape="x".join(str(s) for s in p.example.shape),
        threads=torch.get_num_threads(),
        manifest=p.manifest,
        best_fp32=p.best_fp32,
        baseline_run_id=p.baseline_run_id,
        host=socket.gethostname(),
        cpu_model=hardware.detect().cpu,
        accuracy_host=socket.gethostname(),
    )


def measure_baseline(p: Prepared) -> Result:
    """The FP32 row: accuracy, eager, channels-last and compiled latency (the fastest sets best_fp32), size."""
    r = time_baseline(p)
    acc = accuracy(p.ref_logits, p.labels, p.ref_logits)
    attach(r, predicted_class(p.ref_logits) == p.labels, eval_key(p))
    r.top1, r.top5, r.top1_delta, r.agreement, r.logit_kl = acc.top1, acc.top5, 0.0, 100.0, 0.0
    set_accuracy_scale(r, correct_counts(p.ref_logits, p.labels, p.ref_logits))
    return r


def time_baseline(p: Prepared) -> Result:
    """The FP32 row without its accuracy (Time again copies that): eager, channels-last and compiled latency,
    interleaved (the fastest sets best_fp32), and size."""
    model = p.loaded.model.to(p.device)
    x = p.example.to(p.device)
    cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    fns = {"fp32 eager": lambda: model(x), "fp32 channels-last": lambda: cl_model(x_cl)}
    builds, notes = [], []
    if p.config.fp32_compiled and p.device == "cuda":  # TF32 and torch.compile: the best FP32 a GPU user runs
        fns.update(fp32_variants(model, x, notes))
    if p.config.fp32_compiled and p.device == "cpu":
        from qcore.backends.compiled import compiled_fp32

        try:
            compiled = compiled_fp32(model, x)
        except Exception as exc:  # a model AOTInductor cannot compile still gets its eager baseline
            notes.append(f"FP32 compiled (AOTInductor) not measured: {type(exc).__name__}: {str(exc)[:200]}")
        else:
            builds = compiled.records
            fns["fp32 compiled"] = lambda: compiled(x)
    timed_from = time.time()
    lat = time_interleaved(fns, device=p.device, budget_s=p.config.latency_budget_s)
    timed_to = time.time()
    eager = lat["fp32 eager"]
    p.best_fp32 = min(lat, key=lambda k: lat[k].p50)
    p.best_fp32_ratio = eager.p50 / lat[p.best_fp32].p50
    r = _base_result(p, FP32)
    r.timed_from, r.timed_to = timed_from, timed_to
    r.baseline_run_id = r.run_id  # measured against itself: delta 0, speed-up 1
    r.backend, r.kernel = "float", "native"
    set_timing(r, eager)
    r.fp32_latency_ms_p50 = eager.p50
    r.speedup, r.speedup_vs_best_fp32, r.best_fp32 = 1.0, 1.0 / p.best_fp32_ratio, p.best_fp32
    r.size_bytes, r.size_ratio = p.fp32_size, 1.0
    r.calib_seconds = r.quantize_seconds = 0.0
    r.build_seconds, r.first_build_seconds, build_note = summarize(builds)
    r.notes = [f"FP32 {', '.join(f'{k[5:]} p50 {v.p50:.2f} ms' for k, v in lat.items())} (interleaved; the fastest "
               f"is {p.best_fp32})"] + notes + p.loaded.notes
    if build_note:
        r.notes.append(f"FP32 compiled with AOTInductor and freezing, {build_note}")
    model.cpu()
    return r


def quantize_spec(p: Prepared, spec: QuantSpec, progress: ProgressFn | None = None,
                  cancel: Callable[[], bool] | None = None):
    """``(row, choice, q)``: the row so far and the quantized model; ``q`` is None for a spec no backend runs
    here (the row is then ``skipped``, with the reason). Raises on failure. The spec's post-training algorithms
    (qcore.ptq) run first, reporting each layer to ``progress`` and stopping when ``cancel()`` turns True."""
    r = _base_result(p, spec)
    try:
        choice = resolve(spec, p.device, model=p.config.model, batch_size=p.config.batch_size)
    except BackendUnavailable as exc:
        r.status, r.error = "skipped", str(exc)
        return r, None, None
    if spec.keep_float or spec.keep_int8:  # an unknown name would be ignored by the backends: refused here
        from qcore.backends.layer_names import check_keep_float

        check_keep_float(spec, p.loaded.model)
    calib = [x.to(p.device) for x in p.calib] if p.device != "cpu" else p.calib
    q = ptq_quantize(choice.backend, p.loaded.model, spec, calib, p.example, p.device, progress, cancel)
    _quantized_into(r, p, choice, q)
    return r, choice, q


def _quantized_into(r: Result, p: Prepared, choice, q) -> None:
    """What building ``q`` says of the row: backend, kernel, engine, size, layers, the choice's reason."""
    r.backend, r.kernel, r.engine = q.backend, q.kernel, q.engine
    r.size_bytes = size_bytes(q.artifact)
    r.size_ratio = r.size_bytes / p.fp32_size
    r.calib_seconds, r.quantize_seconds = q.calib_seconds, q.quantize_seconds
    r.ptq_algorithm_seconds = q.ptq_seconds if r.spec.asks_ptq else None
    r.quantized_layers, r.total_layers = q.quantized_layers, q.total_layers
    r.notes = ([choice.why] if choice.why else []) + list(q.notes)


def accuracy_into(r: Result, p: Prepared, q, backend=None, logits: torch.Tensor | None = None) -> None:
    """Evaluate ``q`` on the sweep's images into ``r`` (against the FP32 logits and labels), with the scale:
    the paired counts of images lost and gained, top-1's interval and the change's (qcore.metrics.scale). With
    calibration draws (``p.calib_draws`` > 1, a spec whose ranges come from calibration images, ``backend``
    given), the other draws are quantized and evaluated too, and the accuracy fields, the images lost and gained
    and both intervals describe the draws' mean (qcore.metrics.draws): one estimate, every number of the row.
    ``logits``: ``q``'s on the sweep's images, when the caller has them (so it is not evaluated twice)."""
    if logits is None:
        logits, _ = predict(q, p.eval_batches, q.device)
    accs = [accuracy(logits, p.labels, p.ref_logits)]
    attach(r, predicted_class(logits) == p.labels, eval_key(p))  # any two rows compared paired (the doctor's moves)
    if backend is not None and len(p.calib_draws) > 1 and reads_calibration_images(r.spec):
        def build(calib):  # each draw's model: its own calibration, and its own PTQ algorithms' fit
            return ptq_quantize(backend, p.loaded.model, r.spec, calib, p.example, p.device)

        accs += draw_accuracies(p, build, r.spec, start=1)
    apply_draws(r, accs, p.calib_seeds)


def latency_into(r: Result, p: Prepared, q, choice) -> None:
    """Time ``q`` interleaved with FP32 eager into ``r`` (own-thread engines in blocks of their own)."""
    backend = choice.backend
    fp32 = p.loaded.model
    fp32_dev = fp32.to(p.device)
    x = p.example.to(p.device)
    budget = p.config.latency_budget_s
    r.threads = torch.get_num_threads()  # before set_timing: the busy rule compares the load with it
    r.timed_from = time.time()
    if backend.own_threads:  # another engine's thread pool: interleaved, each would slow the other
        lat = {
            "variant": time_interleaved({"variant": lambda: q(x)}, device=p.device, budget_s=budget / 2)["variant"],
            "fp32": time_interleaved({"fp32": lambda: fp32_dev(x)}, device=p.device, budget_s=budget / 2)["fp32"],
        }
    else:
        lat = time_interleaved({"fp32": lambda: fp32_dev(x), "variant": lambda: q(x)}, device=p.device, budget_s=budget)
    r.timed_to = time.time()
    fp32.cpu()
    set_timing(r, lat["variant"], lat["fp32"])  # p50, p90, interval, spread, the FP32 p50, speed-up, busy
    r.speedup_vs_best_fp32 = r.speedup / p.best_fp32_ratio


def finish_notes(r: Result, q, choice) -> None:
    """The notes a measured row carries about its build, its engine and a simulated kernel."""
    r.build_seconds, r.first_build_seconds, build_note = summarize(q.builds)  # also what the evaluation built
    if build_note:
        r.notes.append(build_note)
    if choice.backend.own_threads:
        r.notes.append(f"{q.backend} runs its own thread pool: timed in its own block, then torch FP32 in the next")
    if q.kernel == "simulated":
        r.notes.append("latency is of a simulated kernel: it does not show what real low-bit kernels would do")


def measure_spec(p: Prepared, spec: QuantSpec, phase: Callable[[str], None] | None = None,
                 progress: ProgressFn | None = None, cancel: Callable[[], bool] | None = None) -> Result:
    """Quantize, evaluate and time one spec; raises on failure (the sweep turns that into a row).
    ``phase(name)`` is called as each of :data:`SPEC_PHASES` after the first begins; ``progress`` and ``cancel``
    reach the spec's post-training algorithms (layer by layer)."""
    phase = phase or (lambda name: None)
    r, choice, q = quantize_spec(p, spec, progress, cancel)
    if q is None:
        return r
    phase("evaluate")
    accuracy_into(r, p, q, choice.backend)
    phase("time")
    latency_into(r, p, q, choice)
    finish_notes(r, q, choice)
    if len(p.calib_draws) > 1:
        r.notes.append(draws_note(r, spec, len(p.calib_draws)))
    return r


def measure_quantized(p: Prepared, r: Result, choice, q, logits: torch.Tensor | None = None) -> Result:
    """Evaluate and time ``q`` (a backend's :class:`~qcore.backends.Quantized`, built as ``choice`` says) into
    ``r``: size, accuracy against the FP32 logits (``logits``: ``q``'s, when the caller has them), latency
    interleaved with FP32 eager, notes (QAT's models)."""
    _quantized_into(r, p, choice, q)
    accuracy_into(r, p, q, logits=logits)
    latency_into(r, p, q, choice)
    finish_notes(r, q, choice)
    return r


def _phases(progress: ProgressFn, done: int, total: int, label: str) -> Callable[[str], None]:
    """``phase(name)`` for one spec: progress at ``done`` plus the share of :data:`SPEC_PHASES` before ``name``."""
    names = list(SPEC_PHASES)
    return lambda name: progress(done + names.index(name) / len(names), total, f"{label} · {SPEC_PHASES[name]}")


def run_sweep(
    config: SweepConfig,
    specs: list[QuantSpec],
    *,
    progress: ProgressFn | None = None,
    cancel: Callable[[], bool] | None = None,
    on_result: Callable[[Result], None] | None = None,
    sweep_id: str = "",
    include_baseline: bool = True,
    baseline_run_id: str = "",
) -> list[Result]:
    """Measure the FP32 baseline and every spec; return one Result per spec (baseline first).

    ``progress(done, total, message)`` is called before and after each spec and as each of its phases begins
    (``done`` then counts the finished phases as fractions of a spec: :data:`SPEC_PHASES`); ``cancel()`` is
    checked between specs; ``on_result`` receives each Result the moment it is measured (the
    app commits it to the database there). Pareto flags are set at the end. Every row's
    ``baseline_run_id`` names the FP32 row: this sweep's, or ``baseline_run_id`` (the stored row of
    the job being resumed) when ``include_baseline`` is False.
    """
    said = SaysBuilds(progress or (lambda d, t, m: None))
    try:
        with on_build(said.building):  # a first C++ build is named as such, not as the phase that asked for it
            return _run_sweep(config, specs, said, cancel or (lambda: False), on_result, sweep_id, include_baseline,
                              baseline_run_id)
    except Exception as exc:  # a full disk ends the sweep with a named message (rows stored so far are kept)
        raise_if_full(exc, sweep_id)
        raise


def _run_sweep(config, specs, progress, cancel, on_result, sweep_id, include_baseline, baseline_run_id):
    # torch FP32 is the baseline, measured once below; FP32 on another engine (ort, openvino) is a variant
    todo = [s for s in specs if not s.is_reference]
    total = len(todo) + (1 if include_baseline else 0)
    results: list[Result] = []

    def emit(r: Result) -> None:
        r.sweep_id = sweep_id
        results.append(r)
        if on_result:
            on_result(r)

    progress(0, total, f"loading {config.model} and {config.dataset}")
    p = prepare(config, progress, cancel)
    done = 0
    progress(done, total, "FP32 baseline (eager, channels-last, compiled)")
    baseline = measure_baseline(p)  # always: it sets the best-FP32 reference for the speed-ups
    p.baseline_run_id = baseline.run_id if include_baseline else baseline_run_id
    if include_baseline:
        emit(baseline)
        done += 1
    probed = probe_auto(p, todo, lambda m: progress(done, total, m), cancel)  # auto measures a new point first
    for spec in todo:
        if cancel():
            for rest in todo[done - (1 if include_baseline else 0) :]:
                r = _base_result(p, rest)
                r.status, r.error = "cancelled", "the sweep was cancelled before this spec ran"
                emit(r)
            break
        phase = _phases(progress, done, total, spec.label())
        phase("quantize")
        start = time.perf_counter()
        try:
            if spec.mode == "qat":  # a fine-tune inside the spec: its own progress, cancelled between steps
                from qcore.qat.measure import measure_qat

                r = measure_qat(p, spec, base_result=_base_result, measure_quantized=measure_quantized,
                                progress=within(progress, done, total, spec.label()), cancel=cancel)
            else:
                r = measure_spec(p, spec, phase, within(progress, done, total, spec.label()), cancel)
        except Exception as exc:  # one failing spec must not end the sweep; a full disk ends it (run_sweep)
            if is_out_of_space(exc):
                raise
            r = _base_result(p, spec)
            r.status, r.error = "error", gpu.error_text(exc, p.config.batch_size)
            if type(exc).__name__ == "Cancelled":
                r.status = "cancelled"
        gc.collect()  # free the quantized copy before the next spec
        r.notes += [f"measured in {time.perf_counter() - start:.1f} s", *probed.get(spec, ())]
        emit(r)
        done += 1
        progress(done, total, spec.label())
    mark_pareto(results)
    return results
