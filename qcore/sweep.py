"""Run many specs against one FP32 baseline: progress, cancellation, one error row per failure.

The model and data are loaded once. The FP32 baseline is evaluated first (its logits are
the reference for agreement and KL) and its latency measured in three ways, eager,
channels-last and compiled (AOTInductor with freezing, built once per model, weights and
shape and cached: :mod:`qcore.buildcache`), interleaved, so a speed-up can also be quoted
against the fastest FP32 (``speedup_vs_best_fp32``, named in ``best_fp32``). Then each spec is
quantized from a copy of the FP32 model, evaluated on the same images, and timed
interleaved with FP32 eager in this process. A spec that raises becomes an ``error`` row
and the sweep goes on; a spec no backend can run here becomes a ``skipped`` row with the
reason; a cancel request stops between specs and leaves ``cancelled`` rows.
"""

from __future__ import annotations

import copy
import gc
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import torch

from . import data, hardware, models, weights
from .backends import BackendUnavailable, resolve
from .buildcache import summarize
from .limits import LIMITS, check_input_values
from .measure import accuracy, predict, size_bytes, time_interleaved
from .pareto import mark_pareto
from .result import Result, manifest
from .spec import FP32, QuantSpec

__all__ = ["ProgressFn", "SweepConfig", "Prepared", "prepare", "measure_baseline", "measure_spec", "run_sweep"]

ProgressFn = Callable[[int, int, str], None]


@dataclass(frozen=True)
class SweepConfig:
    """Everything about a sweep except the specs. The CLI's and the app's defaults come from here."""

    model: str = "resnet18"
    dataset: str = "fashion-mnist"
    weights: str = "auto"
    device: str = "auto"
    batch_size: int = 1
    image_size: int | None = None  # side the images are loaded (and a baseline trained) at; None: the dataset's
    input_size: int | None = None  # latency input side; None: the image size
    calib_size: int = 256
    eval_limit: int | None = 2000
    seed: int = 0
    eval_batch_size: int = 250
    calib_batch_size: int = 32
    latency_budget_s: float = 6.0
    # also time FP32 compiled by AOTInductor (the first time per model and shape: a C++ build of a minute or
    # more on 2 cores, then loaded from the build cache in about a second); CPU only
    fp32_compiled: bool = True

    def __post_init__(self) -> None:
        for name in ("batch_size", "calib_size", "eval_batch_size", "calib_batch_size", "seed", "latency_budget_s"):
            LIMITS[name].check(getattr(self, name))
        LIMITS["image_size"].check(self.image_size, none="the dataset's")
        LIMITS["input_size"].check(self.input_size, none="the image size")
        LIMITS["eval_limit"].check(self.eval_limit, none="all")
        if self.input_size or self.image_size:
            check_input_values(self.batch_size, self.input_size or self.image_size)
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device={self.device!r} is not allowed; allowed: auto, cpu, cuda")
        if not isinstance(self.fp32_compiled, bool):
            raise ValueError(f"fp32_compiled={self.fp32_compiled!r} is not allowed; allowed: true, false")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SweepConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


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


def prepare(
    config: SweepConfig, progress: ProgressFn | None = None, cancel: Callable[[], bool] | None = None
) -> Prepared:
    device = hardware.resolve_device(config.device)
    models.check_input_size(config.model, config.image_size or data.default_image_size(config.dataset))
    if config.input_size:
        models.check_input_size(config.model, config.input_size)
    bundle = weights.load_dataset_for(config.model, config.dataset, config.image_size)
    input_size = config.input_size or bundle.image_size

    def train_progress(done, total, msg):
        if progress:
            progress(0, 1, f"training the {config.model} baseline, {done / max(total, 1):.0%}: {msg}")

    loaded = weights.load_model(config.model, bundle, config.weights, progress=train_progress, cancel=cancel)
    calib_set, eval_set = data.split_calib_eval(bundle, config.calib_size, config.eval_limit, config.seed)
    calib = [x for x, _ in data.batches(calib_set, config.calib_batch_size)]
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
        calib_size=len(calib_set),
        eval_size=len(eval_set),
        weights=loaded.weights,
        device=device,
        batch_size=config.batch_size,
        input_shape=list(example.shape),
    )
    return Prepared(
        config,
        device,
        loaded,
        calib,
        eval_batches,
        example,
        ref_logits,
        labels,
        size_bytes(loaded.model.state_dict()),
        m,
    )


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
    )


def measure_baseline(p: Prepared) -> Result:
    """The FP32 row: accuracy, eager, channels-last and compiled latency (the fastest sets best_fp32), size."""
    model = p.loaded.model.to(p.device)
    x = p.example.to(p.device)
    cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    fns = {"fp32 eager": lambda: model(x), "fp32 channels-last": lambda: cl_model(x_cl)}
    builds, notes = [], []
    if p.config.fp32_compiled and p.device == "cpu":
        from .backends.compiled import compiled_fp32

        try:
            compiled = compiled_fp32(model, x)
        except Exception as exc:  # a model AOTInductor cannot compile still gets its eager baseline
            notes.append(f"FP32 compiled (AOTInductor) not measured: {type(exc).__name__}: {str(exc)[:200]}")
        else:
            builds = compiled.records
            fns["fp32 compiled"] = lambda: compiled(x)
    lat = time_interleaved(fns, device=p.device, budget_s=p.config.latency_budget_s)
    eager = lat["fp32 eager"]
    p.best_fp32 = min(lat, key=lambda k: lat[k].p50)
    p.best_fp32_ratio = eager.p50 / lat[p.best_fp32].p50
    r = _base_result(p, FP32)
    r.baseline_run_id = r.run_id  # measured against itself: delta 0, speed-up 1
    acc = accuracy(p.ref_logits, p.labels, p.ref_logits)
    r.backend, r.kernel = "float", "native"
    r.top1, r.top5, r.top1_delta, r.agreement, r.logit_kl = acc.top1, acc.top5, 0.0, 100.0, 0.0
    r.latency_ms_p50, r.latency_ms_p90 = eager.p50, eager.p90
    r.fp32_latency_ms_p50 = eager.p50
    r.latency_samples_ms = eager.samples_ms
    r.speedup, r.speedup_vs_best_fp32, r.best_fp32 = 1.0, 1.0 / p.best_fp32_ratio, p.best_fp32
    r.size_bytes, r.size_ratio = p.fp32_size, 1.0
    r.calib_seconds = r.quantize_seconds = 0.0
    r.build_seconds, r.first_build_seconds, build_note = summarize(builds)
    timings = ", ".join(f"{k.removeprefix('fp32 ')} p50 {v.p50:.2f} ms" for k, v in lat.items())
    r.notes = [f"FP32 {timings} (interleaved; the fastest is {p.best_fp32})"] + notes + p.loaded.notes
    if build_note:
        r.notes.append(f"FP32 compiled with AOTInductor and freezing, {build_note}")
    model.cpu()
    return r


def measure_spec(p: Prepared, spec: QuantSpec) -> Result:
    """Quantize, evaluate and time one spec; raises on failure (the sweep turns that into a row)."""
    r = _base_result(p, spec)
    try:
        choice = resolve(spec, p.device, model=p.config.model, batch_size=p.config.batch_size)
    except BackendUnavailable as exc:
        r.status, r.error = "skipped", str(exc)
        return r
    backend = choice.backend
    fp32 = p.loaded.model
    calib = [x.to(p.device) for x in p.calib] if p.device != "cpu" else p.calib
    q = backend.quantize(fp32, spec, calib, p.example, p.device)
    logits, _ = predict(q, p.eval_batches, q.device)
    acc = accuracy(logits, p.labels, p.ref_logits)
    fp32_dev = fp32.to(p.device)
    x = p.example.to(p.device)
    budget = p.config.latency_budget_s
    if backend.own_threads:  # another engine's thread pool: interleaved, each would slow the other
        lat = {
            "variant": time_interleaved({"variant": lambda: q(x)}, device=p.device, budget_s=budget / 2)["variant"],
            "fp32": time_interleaved({"fp32": lambda: fp32_dev(x)}, device=p.device, budget_s=budget / 2)["fp32"],
        }
    else:
        lat = time_interleaved({"fp32": lambda: fp32_dev(x), "variant": lambda: q(x)}, device=p.device, budget_s=budget)
    fp32.cpu()
    r.backend, r.kernel, r.engine = q.backend, q.kernel, q.engine
    r.top1, r.top5, r.top1_delta, r.agreement, r.logit_kl = (
        acc.top1,
        acc.top5,
        acc.top1_delta,
        acc.agreement,
        acc.logit_kl,
    )
    r.latency_ms_p50, r.latency_ms_p90 = lat["variant"].p50, lat["variant"].p90
    r.fp32_latency_ms_p50 = lat["fp32"].p50
    r.latency_samples_ms = lat["variant"].samples_ms
    r.speedup = lat["fp32"].p50 / lat["variant"].p50
    r.speedup_vs_best_fp32 = r.speedup / p.best_fp32_ratio
    r.size_bytes = size_bytes(q.artifact)
    r.size_ratio = r.size_bytes / p.fp32_size
    r.calib_seconds, r.quantize_seconds = q.calib_seconds, q.quantize_seconds
    r.quantized_layers, r.total_layers = q.quantized_layers, q.total_layers
    r.notes = ([choice.why] if choice.why else []) + list(q.notes)
    r.build_seconds, r.first_build_seconds, build_note = summarize(q.builds)  # also what the evaluation built
    if build_note:
        r.notes.append(build_note)
    if backend.own_threads:
        r.notes.append(f"{q.backend} runs its own thread pool: timed in its own block, then torch FP32 in the next")
    if q.kernel == "simulated":
        r.notes.append("latency is of a simulated kernel: it does not show what real low-bit kernels would do")
    return r


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

    ``progress(done, total, message)`` is called before and after each spec; ``cancel()`` is
    checked between specs; ``on_result`` receives each Result the moment it is measured (the
    app commits it to the database there). Pareto flags are set at the end. Every row's
    ``baseline_run_id`` names the FP32 row: this sweep's, or ``baseline_run_id`` (the stored row of
    the job being resumed) when ``include_baseline`` is False.
    """
    progress = progress or (lambda d, t, m: None)
    cancel = cancel or (lambda: False)
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
    progress(done, total, "FP32 baseline (eager, channels-last, compiled: the first compile takes a minute or more)")
    baseline = measure_baseline(p)  # always: it sets the best-FP32 reference for the speed-ups
    p.baseline_run_id = baseline.run_id if include_baseline else baseline_run_id
    if include_baseline:
        emit(baseline)
        done += 1
    for spec in todo:
        if cancel():
            for rest in todo[done - (1 if include_baseline else 0) :]:
                r = _base_result(p, rest)
                r.status, r.error = "cancelled", "the sweep was cancelled before this spec ran"
                emit(r)
            break
        progress(done, total, spec.label())
        start = time.perf_counter()
        try:
            r = measure_spec(p, spec)
        except Exception as exc:  # one failing spec must not end the sweep
            r = _base_result(p, spec)
            r.status, r.error = "error", f"{type(exc).__name__}: {exc}"
        gc.collect()  # free the quantized copy before the next spec
        r.notes.append(f"measured in {time.perf_counter() - start:.1f} s")
        emit(r)
        done += 1
        progress(done, total, spec.label())
    mark_pareto(results)
    return results
