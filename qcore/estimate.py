"""What a run will cost before it starts, said as an estimate with what it was made from (Home, Explore).

A sweep: the last finished job with the same settings on this machine, if one is stored (its wall time per
step: FP32 and each spec are one step each); else its settings: every spec and FP32 are timed for the timing
budget, and evaluated on the evaluation images at the forward speed a baseline's training recorded (a
training step is about three forward passes: forward, then backward twice the cost), plus the start-up.

A baseline's training: the recipe's optimizer steps at the seconds per step recorded for that model (a
baseline trained on this machine, else :data:`QUIET_RECORDS`); for a model without a record, the nearest
recorded model in GFLOPs, scaled by the GFLOPs ratio and the pixels (a rough figure, and said so).

>>> round(3 * 6.0 + 3 * 2000 * (268.0 / 936 / 128 / 3))  # default sweep: 2 specs + FP32, 6 s budget, 2,000 images
22
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import models, train
from .data.registry import canonical_name
from .paths import subdir

__all__ = ["QUIET_RECORDS", "Estimate", "training_records", "training_seconds", "sweep_seconds", "duration_text"]

# Baseline trainings measured on the project's 2-core CPU with nothing else running (README, "Baselines"):
# (model, dataset) -> (optimizer steps, training seconds, batch size, image side).
QUIET_RECORDS: dict[tuple[str, str], tuple[int, float, int, int]] = {
    ("resnet18", "fashion-mnist"): (1638, 440.0, 128, 32),
    ("mobilenet_v3_small", "fashion-mnist"): (936, 268.0, 128, 32),
}
# The settings that make two sweeps cost the same per step (the start-up, a few seconds, is said, not guessed).
_SETTINGS = ("model", "dataset", "weights", "device", "batch_size", "image_size", "input_size", "calib_size",
             "eval_limit", "seed", "latency_budget_s")  # fmt: skip


@dataclass(frozen=True)
class Estimate:
    seconds: float
    basis: str  # what the figure was made from, in words

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
    """How long :func:`qcore.train.train_baseline` will take for ``model`` on ``dataset`` (None when nothing
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


def _same_settings(job, config: dict) -> bool:
    return job.kind == "sweep" and job.state == "done" and all(job.config.get(k) == config.get(k) for k in _SETTINGS)


def sweep_seconds(config: dict, n_specs: int, history: list | None = None) -> Estimate:
    """How long a sweep of ``n_specs`` specs (and FP32) with ``config`` (:meth:`SweepConfig.to_dict`) takes,
    once its baseline exists. ``history``: stored jobs, newest first (:meth:`qcore.store.Store.jobs`)."""
    steps = n_specs + 1
    for job in history or []:
        if _same_settings(job, config) and job.started_at and job.finished_at and job.total:
            per = (job.finished_at - job.started_at) / job.total
            return Estimate(per * steps, f"the last run of these settings here, job {job.job_id}: {job.total} "
                                         f"steps in {job.finished_at - job.started_at:.0f} s")
    budget = float(config.get("latency_budget_s") or 0)
    timing = steps * budget
    images = config.get("eval_limit") or 10_000
    found = _nearest(config["model"], canonical_name(config["dataset"]))
    if found is None:
        return Estimate(timing, f"at least: {steps} x the {budget:g} s timing budget, plus evaluating and loading")
    rec, factor = found
    side = config.get("image_size") or rec.image
    per_image = rec.step_seconds / rec.batch / 3 * factor * (side / rec.image) ** 2
    evaluating = steps * images * per_image
    return Estimate(timing + evaluating,
                    f"{timing:.0f} s of timing, the {budget:g} s budget for FP32 and each spec, and about "
                    f"{evaluating:.0f} s evaluating {images:,} images {steps} times at the forward speed {rec.where} "
                    f"for {rec.model}; plus a few seconds to start")
