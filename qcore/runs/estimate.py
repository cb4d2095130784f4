"""What a run will cost before it starts, said as an estimate with what it was made from (Home, Sweep, Explore).

A sweep job (:func:`job_seconds`, the one estimate Home's start, the Sweep page before Run and a running job's
ETA read): from the job's own settings, step by step (FP32 first, then each spec): the timing budget; the
evaluation images, once per calibration draw, at the forward speed a baseline's training recorded (a training
step is about three forward passes: forward, then backward twice the cost); each draw's calibration images;
a first C++ build of the compiled FP32 reference and of each compiled spec's programs (one per input shape and
draw); a QAT spec's fine-tunes (the FP32 control once per schedule, the QAT model at :data:`QAT_STEP_FACTOR`
times a plain step) and its evaluations; a spec's post-training algorithms (:mod:`.estimate_ptq`). What a
finished job of the same settings made is loaded, not counted.

A baseline's training: the recipe's optimizer steps at the seconds per step recorded for that model (a
baseline trained on this machine, else :data:`QUIET_RECORDS`); for a model without a record, the nearest
recorded model in GFLOPs, scaled by the GFLOPs ratio and the pixels (a rough figure, and said so).

>>> per_image = 268.0 / 936 / 128 / 3  # mobilenet_v3_small's recorded training step, a third of it per image
>>> round(3 * 6.0 + 3 * 2000 * per_image + 256 * per_image + 70.0)  # Home's default: 2 specs, 1 static
93
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from qcore.data.registry import canonical_name
from qcore.env.paths import subdir
from qcore.metrics.draws import reads_calibration_images
from qcore.nets import models, train
from qcore.quant.spec import QAT_DEFAULTS, QuantSpec
from qcore.runs.estimate_ptq import ptq_seconds
from qcore.runs.store import spec_key

__all__ = ["QUIET_RECORDS", "COMPILED_BACKENDS", "RECORDED_BUILD_S", "QAT_STEP_FACTOR", "Estimate",
           "training_records", "training_seconds", "build_seconds", "job_seconds", "probe_seconds", "duration_text"]

# Baseline trainings measured on the project's 2-core CPU with nothing else running (README, "Baselines"):
# (model, dataset) -> (optimizer steps, training seconds, batch size, image side).
QUIET_RECORDS: dict[tuple[str, str], tuple[int, float, int, int]] = {
    ("resnet18", "fashion-mnist"): (1638, 440.0, 128, 32),
    ("mobilenet_v3_small", "fashion-mnist"): (936, 268.0, 128, 32),
}


@dataclass(frozen=True)
class Estimate:
    seconds: float
    basis: str  # what the figure was made from, in words
    steps: tuple[float, ...] = ()  # a job's: each step's seconds, FP32 first (the ETA weighs what is left by them)

    def text(self) -> str:
        return f"about {duration_text(self.seconds)} ({self.basis})"


def duration_text(seconds: float) -> str:
    """``45 s``, ``7 min``, ``1 h 20 min``: rounded as an estimate should be."""
    s = max(1, round(seconds))
    if s < 90:
        return f"{s} s"
    if s < 3600:
        return f"{round(s / 60)} min"
    return f"{s // 3600} h {round(s % 3600 / 60)} min"


@dataclass(frozen=True)
class _Record:
    model: str
    dataset: str
    steps: int
    seconds: float
    batch: int
    image: int
    where: str  # "trained on this machine" | "recorded on a quiet 2-core CPU"

    @property
    def step_seconds(self) -> float:
        return self.seconds / max(self.steps, 1)


def training_records() -> list[tuple]:
    """Every recorded training, this machine's baselines first: ``(model, dataset, steps, seconds, batch, image
    side, where)``."""
    out = []
    for meta_file in sorted(subdir("baselines").glob("*.json")):
        try:
            m = json.loads(meta_file.read_text())
            out.append((m["model"], m["dataset"], int(m["steps"]), float(m["train_seconds"]),
                        int(m["recipe"]["batch_size"]), int(m["image_size"]), "trained on this machine"))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a record of before, or half-written: not one to estimate from
    out += [(model, dataset, *rec, "recorded on a quiet 2-core CPU") for (model, dataset), rec in QUIET_RECORDS.items()]
    return out


def _gflops(model: str) -> float | None:
    try:
        return models.model_info(model).gflops or None
    except (ValueError, AttributeError):
        return None


def _nearest(model: str, dataset: str) -> tuple[_Record, float] | None:
    """The record to estimate ``model``'s speed from, and the factor its seconds per image are scaled by."""
    records = [_Record(*r) for r in training_records()]
    same = [r for r in records if r.model == model]
    if same:
        return next((r for r in same if r.dataset == dataset), same[0]), 1.0
    mine = _gflops(model)
    scored = [(abs((g or 0) / mine - 1), r, g) for r in records if mine and (g := _gflops(r.model))]
    if not scored:
        return None
    _, rec, theirs = min(scored, key=lambda t: t[0])
    return rec, mine / theirs


def training_seconds(model: str, dataset: str, image_size: int | None = None,
                     train_images: int = 60_000) -> Estimate | None:
    """How long :func:`qcore.nets.train.train_baseline` will take for ``model`` on ``dataset`` (None when nothing
    recorded is near enough). ``train_images``: the size of the training split (Fashion-MNIST's 60,000)."""
    recipe = train.recipe_for(model, dataset, image_size=image_size)
    found = _nearest(model, canonical_name(dataset))
    if found is None:
        return None
    rec, factor = found
    steps = max(1, round(recipe.epochs * max(1, train_images // recipe.batch_size)))
    per_step = rec.step_seconds * factor * (recipe.batch_size / rec.batch) * (recipe.image_size / rec.image) ** 2
    how = (f"{steps:,} steps at the speed {rec.where} for {rec.model}: {rec.steps:,} steps in {rec.seconds:.0f} s"
           + ("" if rec.model == model else f", scaled by the GFLOPs ratio {factor:.2g}: a rough figure"))
    return Estimate(steps * per_step, how)


# --- a job: what its own settings cost ------------------------------------------------------------

# Backends whose quantized model is a built program, one per input shape (qcore.backends.compiled), and the kind
# of build; a first build of each costs what RECORDED_BUILD_S says unless this machine's build cache has records.
COMPILED_BACKENDS = {"pt2e": "aoti", "xnnpack": "xnnpack"}
# A first build recorded on the project's 2-core CPU (qcore.backends.buildcache: resnet18's FP32 AOTInductor package at
# 32 px, 70 s); builds at 224 px took 100-800 s (docs/benchmarks.md): a rough figure, and said so.
RECORDED_BUILD_S = {"aoti": 70.0, "xnnpack": 70.0}
# A QAT training step against a plain one (fake quantization forward and backward): one epoch of
# mobilenet_v3_small took 100 s for the FP32 control and 2-3 minutes for each QAT model (README, bench/qat.py).
QAT_STEP_FACTOR = 1.5
CURVE_EVALS = 6  # a fine-tune evaluates its curve at the start and after each fifth (qcore.qat.finetune)
TRAIN_IMAGES = {"fashion-mnist": 60_000, "cifar10": 50_000}  # the training split a QAT fine-tune passes over
# The settings that make a stored job's builds and fine-tunes this job's too (they are then loaded, not made).
_FP32_BUILD = ("model", "dataset", "weights", "device", "batch_size", "image_size", "input_size")
_SAME_MODELS = _FP32_BUILD + ("calib_size", "calib_draws", "calib_list", "calib_batch_size", "seed", "eval_limit",
                              "eval_batch_size")  # fmt: skip


@dataclass
class _Tally:
    """Seconds by what they are spent on, and the count of each kind of work."""

    seconds: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)

    def add(self, what: str, seconds: float, n: int = 1) -> float:
        self.seconds[what] = self.seconds.get(what, 0.0) + seconds
        self.counts[what] = self.counts.get(what, 0) + n
        return seconds


def _spec(s) -> QuantSpec:
    return s if isinstance(s, QuantSpec) else QuantSpec.from_dict(s)


def _backend(spec: QuantSpec, device: str, config: dict) -> str:
    """The backend that will run ``spec`` (its own name when the policy cannot be asked)."""
    if spec.mode == "qat" or spec.backend != "auto":
        return spec.backend
    try:
        from qcore.backends import resolve

        return resolve(spec, device, model=config["model"], batch_size=config.get("batch_size")).backend.name
    except Exception:  # a spec no backend runs here: it becomes a skipped row, which costs nothing
        return ""


def build_seconds(kind: str) -> tuple[float, str]:
    """What a first build of ``kind`` costs: the mean of this machine's cached builds of that kind, else
    :data:`RECORDED_BUILD_S`; and where that figure comes from."""
    from qcore.backends.buildcache import BuildCache

    seen = []
    try:
        for path in BuildCache().entries()[:200]:
            if path.name.startswith(f"{kind}-"):
                seen.append(float(json.loads(path.with_suffix(".json").read_text())["build_seconds"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if seen:
        return sum(seen) / len(seen), f"the mean of {len(seen)} build(s) in this machine's build cache"
    return RECORDED_BUILD_S[kind], "recorded on the project's 2-core CPU, a rough figure"


def _made_before(config: dict, history: list | None) -> tuple[bool, set[str], set[str]]:
    """What finished jobs of these settings already made, so this job loads it: the compiled FP32 reference,
    the spec keys (their builds and QAT models) and the QAT schedules (their FP32 controls)."""
    fp32, specs, schedules = False, set(), set()
    for job in history or []:
        if job.kind != "sweep" or job.state != "done":
            continue
        if job.config.get("fp32_compiled", True) and all(job.config.get(k) == config.get(k) for k in _FP32_BUILD):
            fp32 = True
        if all(job.config.get(k) == config.get(k) for k in _SAME_MODELS):
            for d in job.specs:
                s = _spec(d)
                specs.add(spec_key(s.to_dict()))
                if s.mode == "qat":
                    schedules.add(_schedule(s))
    return fp32, specs, schedules


def _schedule(spec: QuantSpec) -> tuple:
    return tuple(getattr(spec, k) for k in QAT_DEFAULTS)


def job_seconds(config: dict, specs: list, history: list | None = None) -> Estimate:
    """How long a sweep job of ``specs`` (QuantSpecs or their dicts; FP32 is measured first anyway) with ``config``
    (:meth:`SweepConfig.to_dict`) takes once its baseline exists, from its own settings: per step (FP32, then each
    spec) the evaluation images at the forward speed a baseline's training recorded (a training step is about
    three forward passes), each draw's calibration images and evaluation, the timing budget, a first C++ build
    of the compiled FP32 reference and of each compiled spec's programs (one per input shape), and a QAT spec's
    fine-tunes (its FP32 control once per schedule). What a finished job of the same settings made (``history``:
    stored jobs) is loaded, not made again. ``Estimate.steps`` holds each step's seconds (the ETA's weights)."""
    from qcore.env.hardware import resolve_device

    c = config
    todo = [s for s in map(_spec, specs) if not s.is_reference]
    device = resolve_device(c.get("device") or "auto")
    budget = float(c.get("latency_budget_s") or 0)
    images = int(c.get("eval_limit") or 10_000)
    calib = int(c.get("calib_size") or 0)
    draws = int(c.get("calib_draws") or 1)
    found = _nearest(c["model"], canonical_name(c["dataset"]))
    rec, factor = found if found else (None, 1.0)
    side = c.get("image_size") or (rec.image if rec else 32)
    fwd = rec.step_seconds / rec.batch / 3 * factor * (side / rec.image) ** 2 if rec else 0.0
    latency_shape = (c.get("batch_size") or 1, c.get("input_size") or side)
    shapes = len({latency_shape, (min(int(c.get("eval_batch_size") or 250), images), side)})
    fp32_built, made, schedules = _made_before(c, history)
    builds = {kind: build_seconds(kind) for kind in set(COMPILED_BACKENDS.values())}  # the cache read once a kind
    t = _Tally()

    # Time again (qcore.service.retime): builds for the timing shape, then timing only
    retime = bool(c.get("retime_of"))
    fp32 = t.add("timing", budget) + (0.0 if retime else t.add("evaluating", images * fwd))
    if c.get("fp32_compiled", True) and device == "cpu" and not fp32_built:
        fp32 += t.add("aoti", builds["aoti"][0])
    steps = [fp32]
    for s in todo:
        key = spec_key(s.to_dict())
        if retime:
            kind = COMPILED_BACKENDS.get(_backend(s.ptq_spec, device, c))
            steps.append(t.add("timing", budget) + (t.add(kind, builds[kind][0]) if kind else 0.0))
            continue
        if s.mode == "qat":
            steps.append(_qat(s, c, t, fwd, images, calib, budget, rec, factor, key in made, schedules))
            continue
        n = draws if reads_calibration_images(s) else 1
        sec = t.add("timing", budget) + t.add("evaluating", n * images * fwd, n)
        if s.mode == "static":
            sec += t.add("calibrating", n * calib * fwd, n)
        if s.asks_ptq:  # CLE, bias correction, AdaRound (qcore.runs.estimate_ptq): fitted again on each draw
            cheap, ada = ptq_seconds(s, c["model"], fwd, calib)
            sec += t.add("ptq", n * cheap, n) + (t.add("adaround", n * ada, n) if ada else 0.0)
        kind = COMPILED_BACKENDS.get(_backend(s, device, c))
        if kind and key not in made:
            sec += t.add(kind, n * shapes * builds[kind][0], n * shapes)
        steps.append(sec)
    if len(steps) > 1 and not retime:  # auto's first-use probe runs before the first spec (qcore.runs.auto_probe)
        steps[1] += t.add("probe", _probe_seconds(c, todo, device, c.get("input_size") or side))
    return Estimate(sum(steps), _basis(t, c, rec, images, budget, builds), tuple(steps))


def _probe_seconds(c: dict, todo: list, device: str, size: int) -> float:
    from qcore.runs import auto_probe

    if not auto_probe.enabled(c):
        return 0.0
    kinds = auto_probe.plan(todo, device, c["model"], int(c.get("batch_size") or 1), int(size))
    return sum(probe_seconds(names) for _, _, names in kinds)


def probe_seconds(names: list[str], seconds: float | None = None) -> float:
    """About how long ``auto``'s probe of ``names`` takes (:mod:`qcore.runs.auto_probe`): ``seconds`` of timing each
    (default :data:`~qcore.runs.auto_probe.PROBE_SECONDS`), plus the first builds of the compiled ones, its blocks
    built side by side on as many cores as there are blocks (:mod:`qcore.runs.probe_measure`): the longest block's
    builds, or their sum shared by the cores, whichever is longer."""
    import os

    from qcore.runs.auto_probe import PROBE_SECONDS
    from qcore.runs.probe_measure import backend_table, blocks

    seconds = PROBE_SECONDS if seconds is None else seconds
    built = [sum(build_seconds(COMPILED_BACKENDS[n])[0] for n in b if n in COMPILED_BACKENDS)
             for b in blocks(names, backend_table())]  # fmt: skip
    cores = max(1, min(len(built), os.cpu_count() or 1))
    return seconds * len(names) + max(max(built, default=0.0), sum(built) / cores)


def _qat(s: QuantSpec, c: dict, t: _Tally, fwd: float, images: int, calib: int, budget: float, rec, factor: float,
         cached: bool, schedules: set) -> float:
    """A QAT row: its PTQ counterpart, the FP32 control (once per schedule), the QAT fine-tune, the QAT model's
    evaluation (read by its row and by the pairing with PTQ) and its timing."""
    sec = t.add("evaluating", 2 * images * fwd, 2) + t.add("timing", budget)
    if s.ptq_spec.mode == "static":
        sec += t.add("calibrating", calib * fwd)
    from qcore.qat.finetune import schedule_for  # the fine-tune's own schedule: its batch and number of steps

    dataset = canonical_name(c["dataset"])
    recipe = train.recipe_for(c["model"], dataset, image_size=c.get("image_size"))
    sched = schedule_for(c["model"], dataset, s, TRAIN_IMAGES.get(dataset, 60_000), c.get("image_size"))
    steps = sched.steps
    step_s = (rec.step_seconds * factor * (sched.batch_size / rec.batch) * (recipe.image_size / rec.image) ** 2
              if rec else 0.0)
    if _schedule(s) not in schedules:  # the control of this schedule: trained once (its curve evaluates it)
        schedules.add(_schedule(s))
        sec += t.add("fine-tuning", steps * step_s + CURVE_EVALS * images * fwd)
    else:  # loaded from the QAT cache, then evaluated
        sec += t.add("evaluating", images * fwd)
    if not cached:  # the QAT graph starts from PTQ's ranges (static: a calibration pass), then trains
        if s.ptq_spec.mode == "static":
            sec += t.add("calibrating", calib * fwd)
        sec += t.add("fine-tuning", steps * step_s * QAT_STEP_FACTOR + CURVE_EVALS * images * fwd)
    return sec


def _s(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 9.5 else f"{seconds:.1f} s"


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _basis(t: _Tally, c: dict, rec, images: int, budget: float, builds: dict) -> str:
    """What an estimate was made from, in words."""
    sec, n = t.seconds, t.counts
    parts = [f"{_s(sec.get('timing', 0))} of timing, the {budget:g} s budget for FP32 and each spec"]
    if rec is None:
        parts.append("evaluating, calibrating and any fine-tune not counted: no training of this model or one "
                     "near it in GFLOPs is recorded")
    else:
        parts.append(f"{_s(sec.get('evaluating', 0))} evaluating {images:,} images {_times(n.get('evaluating', 0))} "
                     f"at the forward speed {rec.where} for {rec.model}")
        if n.get("calibrating"):
            parts.append(f"{_s(sec['calibrating'])} calibrating on {c.get('calib_size')} images "
                         f"{_times(n['calibrating'])}")
        if n.get("fine-tuning"):
            parts.append(f"{_s(sec['fine-tuning'])} fine-tuning for QAT ({n['fine-tuning']} fine-tune(s), FP32 "
                         "controls included)")
    if sec.get("ptq") or sec.get("adaround"):  # (an estimate of its own: qcore.runs.estimate_ptq)
        ada = f", including AdaRound (~{duration_text(sec['adaround'])})" if sec.get("adaround") else ""
        parts.append(f"{_s(sec.get('ptq', 0) + sec.get('adaround', 0))} for the post-training algorithms{ada} "
                     "(rough: from the forward speed and the layers' weights)")
    if sec.get("probe"):
        parts.append(f"{_s(sec['probe'])} for auto to measure which INT8 backend is fastest here (first time)")
    for kind, what in (("aoti", "AOTInductor C++ build"), ("xnnpack", "XNNPACK lowering")):
        if n.get(kind):
            parts.append(f"{_s(sec[kind])} for {n[kind]} first {what}{'' if n[kind] == 1 else 's'} "
                         f"({builds[kind][1]})")
    return "; ".join(parts) + "; plus a few seconds to start"


def job_steps(job, history: list | None = None) -> tuple[float, ...]:
    """Each step's estimated seconds for stored sweep job ``job`` (FP32 first), from what had finished before it was
    created (``history``: stored jobs); empty when its steps cannot be estimated."""
    before = [j for j in history or [] if j.job_id != job.job_id and (j.finished_at or 0) <= job.created_at]
    try:
        steps = job_seconds(job.config, job.specs, before).steps
    except Exception:  # a config of before, a model without a record: every step weighs the same
        steps = ()
    return steps if len(steps) == job.total and sum(steps) > 0 else ()


def seconds_left(steps: tuple[float, ...], done: float, elapsed: float) -> float:
    """The time left ``elapsed`` seconds into a job that has done ``done`` of its ``steps`` (a running step's
    finished phases count as a fraction): the estimate of what is left, scaled by how long what is done took
    against its estimate. Before anything is done, the estimate less the time elapsed.

    >>> seconds_left((100.0, 10.0, 10.0, 300.0), 2, 55.0)  # FP32 with its build and a spec took half the estimate
    155.0
    """
    whole = min(int(done), len(steps))
    done_est = sum(steps[:whole]) + (steps[whole] * (done - whole) if whole < len(steps) else 0.0)
    left_est = sum(steps) - done_est
    if done_est <= 0:
        return max(0.0, left_est - elapsed)
    return left_est * elapsed / done_est
